//! What segloss must clean up however a run ends: the process groups of live adapters and the
//! scratch directories their arrays travel through.
//!
//! Every group and directory is registered here while it exists. On SIGINT, SIGTERM or SIGHUP a
//! watcher thread kills every registered group, removes every registered directory and exits with
//! the conventional status (128 + the signal's number: 130, 143 and 129). Registering and spawning happen
//! under one lock, so a signal never finds an adapter started but not yet registered.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The live process groups and scratch directories.
struct Live {
    groups: Vec<i32>,
    dirs: Vec<PathBuf>,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    groups: Vec::new(),
    dirs: Vec::new(),
});

fn live() -> MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs the signal watcher, once per process.
fn watch_signals() -> Result<(), String> {
    static WATCHING: OnceLock<Result<(), String>> = OnceLock::new();
    WATCHING
        .get_or_init(|| {
            let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
                .map_err(|error| format!("cannot watch SIGINT, SIGTERM and SIGHUP: {error}"))?;
            std::thread::Builder::new()
                .name("segloss-signals".into())
                .spawn(move || {
                    if let Some(signal) = signals.forever().next() {
                        // The lock stays held until exit: nothing new can start meanwhile.
                        let live = live();
                        for &group in &live.groups {
                            kill_group(group);
                        }
                        for dir in &live.dirs {
                            let _ = std::fs::remove_dir_all(dir);
                        }
                        std::process::exit(128 + signal);
                    }
                })
                .map(drop)
                .map_err(|error| format!("cannot start the signal watcher: {error}"))
        })
        .clone()
}

/// Sends SIGKILL to every process of a group.
pub(super) fn kill_group(group: i32) {
    // SAFETY: kill has no memory-safety preconditions; a negative pid names a process group.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

/// Spawns `command` as the leader of a new process group and registers the group.
pub(super) fn spawn_group(command: &mut Command) -> io::Result<Child> {
    watch_signals().map_err(io::Error::other)?;
    let mut live = live();
    let child = std::os::unix::process::CommandExt::process_group(command, 0).spawn()?;
    live.groups.push(group_of(&child));
    Ok(child)
}

/// The process group a child spawned by [`spawn_group`] leads.
pub(super) fn group_of(child: &Child) -> i32 {
    // Process ids fit an i32 (pid_t) on every Unix.
    child.id() as i32
}

/// Unregisters a group that has been killed.
pub(super) fn forget_group(group: i32) {
    live().groups.retain(|&live| live != group);
}

/// A scratch directory, registered while it exists and removed when dropped. Its path is UTF-8
/// and absolute, because the protocol's JSON carries it to the adapter.
pub(super) struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates a fresh directory in the system's temporary directory (`TMPDIR`).
    pub(super) fn create() -> Result<Scratch, String> {
        let parent = std::path::absolute(std::env::temp_dir())
            .map_err(|error| format!("cannot resolve the temporary directory (TMPDIR): {error}"))?;
        if parent.to_str().is_none() {
            return Err(format!(
                "the temporary directory {} is not valid UTF-8, which the protocol's JSON cannot \
                 carry; set TMPDIR to a UTF-8 path",
                parent.to_string_lossy()
            ));
        }
        watch_signals()?;
        let mut live = live();
        let path = tempfile::Builder::new()
            .prefix("segloss-certify-")
            .tempdir_in(&parent)
            .map_err(|error| format!("cannot create a directory in {}: {error}", parent.display()))?
            .keep();
        live.dirs.push(path.clone());
        Ok(Scratch { path })
    }

    /// The directory (valid UTF-8).
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        live().dirs.retain(|dir| dir != &self.path);
    }
}
