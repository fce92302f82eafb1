//! What the test adapters record through `adapter_support.record` (in the file named by
//! SEGLOSS_ADAPTER_PIDS): their process ids and their cases' `out` directories; and the check that
//! none of them outlives a run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The records of one run's adapters. Dropping them kills what still runs and removes the file.
pub struct Records {
    /// The file the adapters append to.
    pub path: PathBuf,
    /// The adapter's script name, as its processes' command lines show it.
    script: &'static str,
}

impl Records {
    /// Records in `path` of adapters running `script`; the file is created by the first record.
    pub fn new(path: PathBuf, script: &'static str) -> Records {
        Records { path, script }
    }

    /// The recorded (role, pid) pairs.
    pub fn pids(&self) -> Vec<(String, i32)> {
        self.lines()
            .iter()
            .filter_map(|line| {
                let (role, pid) = line.split_once(' ')?;
                Some((role.to_string(), pid.parse().ok()?))
            })
            .collect()
    }

    /// The recorded processes that still run (not zombies, and still the adapter's script).
    pub fn running(&self) -> Vec<i32> {
        self.pids()
            .into_iter()
            .map(|(_, pid)| pid)
            .filter(|&pid| {
                let proc = PathBuf::from(format!("/proc/{pid}"));
                let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
                let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
                let zombie = stat
                    .rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
                String::from_utf8_lossy(&cmdline).contains(self.script) && !zombie
            })
            .collect()
    }

    /// Waits up to 3 s (for SIGKILL to land) until no recorded process runs and no scratch
    /// directory of a recorded `out` directory exists; `Err` says what is left.
    pub fn all_gone(&self) -> Result<(), String> {
        if self.pids().is_empty() {
            return Err("no adapter recorded its pid".into());
        }
        let give_up = Instant::now() + Duration::from_secs(3);
        loop {
            let running = self.running();
            let dirs: Vec<PathBuf> = self
                .lines()
                .iter()
                .filter_map(|line| line.strip_prefix("out "))
                .filter_map(|out| Some(Path::new(out).parent()?.parent()?.to_path_buf()))
                .filter(|scratch| scratch.exists())
                .collect();
            if running.is_empty() && dirs.is_empty() {
                return Ok(());
            }
            if Instant::now() > give_up {
                return Err(format!(
                    "left behind: processes {running:?}, directories {dirs:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the recorded processes that still run (after a failed test).
    pub fn kill_running(&self) {
        for pid in self.running() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        self.kill_running();
        let _ = std::fs::remove_file(&self.path);
    }
}
