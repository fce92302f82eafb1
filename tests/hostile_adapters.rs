//! Certifying hostile adapters (`tests/adapters/hostile_adapter.py`): each misbehaviour fails
//! exactly the case it happens on, with the reason, and the run goes on; an adapter that cannot say
//! hello ends the run quickly; every run ends within a bound, leaves no adapter process behind and
//! removes its scratch directory, also when segloss is stopped by SIGINT or SIGTERM.
//! Needs `python3` (standard library only).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The per-case timeout of every run, in seconds (it also bounds the hello).
const TIMEOUT: u64 = 2;

/// How long a run may take before the test kills it and fails.
const DEADLINE: Duration = Duration::from_secs(40);

/// Three cases with values, in manifest order: the hostile adapter misbehaves on the one whose
/// seq (its index here) it is given.
const THREE_CASES: &str = "nll_loss/f64/N4C3/sum/ignore_index";

/// A directory of the test's own: `tmp`, the TMPDIR of the run, and `pids`, where the adapters
/// record their process ids. Dropping it kills what the run left behind and removes it.
struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let root =
            std::env::temp_dir().join(format!("segloss-hostile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        Sandbox { root }
    }

    /// `segloss certify --json --timeout 2` on the hostile adapter in `mode`, misbehaving on case
    /// `seq`, over the cases matching `filter`.
    fn certify(&self, mode: &str, seq: usize, filter: &str) -> Command {
        let binary = env!("CARGO_BIN_EXE_segloss");
        let adapter = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/adapters/hostile_adapter.py"
        );
        let mut command = Command::new(binary);
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("SEGLOSS_BIN", binary)
            .env("SEGLOSS_ADAPTER_PIDS", self.root.join("pids"))
            .env("TMPDIR", self.root.join("tmp"))
            .args(["certify", "--json", "--timeout", &TIMEOUT.to_string()])
            .args(["--filter", filter])
            .args(["--cmd", &format!("python3 {adapter} {mode} {seq}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// The recorded (role, pid) lines.
    fn recorded(&self) -> Vec<(String, i32)> {
        std::fs::read_to_string(self.root.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (role, pid) = line.split_once(' ')?;
                Some((role.to_string(), pid.parse().ok()?))
            })
            .collect()
    }

    /// The recorded processes that still run.
    fn running(&self) -> Vec<(String, i32)> {
        self.recorded()
            .into_iter()
            .filter(|&(_, pid)| is_hostile_adapter(pid))
            .collect()
    }

    /// Checks that every recorded process is gone (allowing a moment for SIGKILL to land) and
    /// that the run's TMPDIR is empty; `Err` says what was left.
    fn left_behind(&self) -> Result<(), String> {
        let give_up = Instant::now() + Duration::from_secs(3);
        while !self.running().is_empty() && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(20));
        }
        let running = self.running();
        let files: Vec<_> = std::fs::read_dir(self.root.join("tmp"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        if self.recorded().is_empty() {
            return Err("no adapter recorded its pid".into());
        }
        if !running.is_empty() || !files.is_empty() {
            return Err(format!(
                "left behind: processes {running:?}, files {files:?}"
            ));
        }
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for (_, pid) in self.running() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Whether `pid` is a live (not zombie) hostile adapter process.
fn is_hostile_adapter(pid: i32) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    String::from_utf8_lossy(&cmdline).contains("hostile_adapter.py") && !zombie
}

/// A finished run.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Finished {
    /// The JSON report, if the run printed one.
    fn report(&self) -> Option<Value> {
        serde_json::from_str(&self.stdout).ok()
    }

    /// The cases of the report in order, each with the (status, detail) of its checks.
    fn cases(&self) -> Vec<(String, Vec<(String, String)>)> {
        let report = self.report().unwrap_or(Value::Null);
        let mut cases: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for check in report["checks"].as_array().into_iter().flatten() {
            let text = |key: &str| check[key].as_str().unwrap_or_default().to_string();
            let name = text("check");
            let case = name
                .rsplit_once('/')
                .map_or(name.as_str(), |(case, _)| case);
            if cases.last().is_none_or(|(last, _)| last != case) {
                cases.push((case.to_string(), Vec::new()));
            }
            if let Some((_, checks)) = cases.last_mut() {
                checks.push((text("status"), text("detail")));
            }
        }
        cases
    }
}

/// A started run whose output is collected as it comes.
struct Running {
    child: Child,
    started: Instant,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

impl Running {
    fn start(mut command: Command) -> Running {
        let mut child = command.spawn().expect("segloss runs");
        let collect = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Running {
            child,
            started: Instant::now(),
            stdout,
            stderr,
        }
    }

    /// Waits for the run to end; past [`DEADLINE`] it is killed and the test fails.
    fn finish(mut self) -> Finished {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if self.started.elapsed() > DEADLINE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("segloss still ran after {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Finished {
            status,
            elapsed: self.started.elapsed(),
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr.join().unwrap(),
        }
    }
}

/// What a hostile run must show.
enum Expect {
    /// Case `seq` fails every check with a detail containing the text; the others pass.
    OnlyCaseFails(&'static str),
    /// Every case passes.
    AllPass,
    /// The run stops before any case with an error containing the text.
    StartFails(&'static str),
}

/// One hostile run: the mode, the case it misbehaves on, and what must be seen.
struct Hostile {
    mode: &'static str,
    seq: usize,
    expect: Expect,
}

/// What is wrong with a finished run, given what it must show.
fn judge(hostile: &Hostile, run: &Finished) -> Result<(), String> {
    let cases = run.cases();
    let failed = |(status, _): &(String, String)| status == "failed";
    match hostile.expect {
        Expect::OnlyCaseFails(reason) => {
            if cases.len() != 3 || run.status.success() {
                return Err(format!(
                    "expected 3 cases and a failed run: {}{}",
                    run.stdout, run.stderr
                ));
            }
            for (index, (case, checks)) in cases.iter().enumerate() {
                let bad = if index == hostile.seq {
                    checks
                        .iter()
                        .find(|check| !failed(check) || !check.1.contains(reason))
                } else {
                    checks.iter().find(|check| failed(check))
                };
                if let Some((status, detail)) = bad {
                    return Err(format!("{case}: {status}: {detail}"));
                }
            }
        }
        Expect::AllPass => {
            let all_passed = cases
                .iter()
                .all(|(_, checks)| checks.iter().all(|(status, _)| status == "passed"));
            if cases.len() != 3 || !all_passed || !run.status.success() {
                return Err(format!("expected 3 passed cases: {}", run.stdout));
            }
        }
        Expect::StartFails(reason) => {
            if run.status.success() || !run.stderr.contains(reason) || !cases.is_empty() {
                return Err(format!("expected an error {reason:?}: {}", run.stderr));
            }
        }
    }
    Ok(())
}

#[test]
fn each_misbehaviour_fails_only_its_own_case_and_leaves_nothing_behind() {
    use Expect::*;
    let table = [
        ("garbage", 1, OnlyCaseFails("garbage answer (not JSON)")),
        (
            "wrong-seq",
            0,
            OnlyCaseFails("garbage answer (seq is not 0)"),
        ),
        ("extra-line", 0, AllPass),
        (
            "endless-line",
            1,
            OnlyCaseFails("a line longer than 1048576 bytes"),
        ),
        ("header-bomb", 2, OnlyCaseFails("status ok, but")),
        ("fifo", 1, OnlyCaseFails("loss.npy is not a regular file")),
        ("dev-zero", 0, OnlyCaseFails("loss.npy is a symbolic link")),
        ("sleep", 1, OnlyCaseFails("no answer within 2.0 s")),
        (
            "exit",
            0,
            OnlyCaseFails("closed its output (exit status: 3)"),
        ),
        (
            "fork",
            1,
            OnlyCaseFails("a process it started still holds its output"),
        ),
        (
            "no-files",
            2,
            OnlyCaseFails("status ok, but loss.npy was not written"),
        ),
        ("int64-grad", 0, OnlyCaseFails("grad_input.npy is int64")),
        (
            "wrong-grad-shape",
            1,
            OnlyCaseFails("grad_input.npy has shape [12]"),
        ),
        (
            "no-hello",
            0,
            StartFails("no hello: no answer within 2.0 s"),
        ),
        (
            "garbage-hello",
            0,
            StartFails("does not speak segloss-certify version 1: hello?"),
        ),
    ];
    // The runs spend most of their time waiting on timeouts: all at once keeps the test short.
    let runs: Vec<_> = table
        .into_iter()
        .map(|(mode, seq, expect)| {
            let sandbox = Sandbox::new(mode);
            let running = Running::start(sandbox.certify(mode, seq, THREE_CASES));
            (Hostile { mode, seq, expect }, sandbox, running)
        })
        .collect();
    let mut problems = Vec::new();
    for (hostile, sandbox, running) in runs {
        let run = running.finish();
        let verdict = judge(&hostile, &run).and_then(|()| sandbox.left_behind());
        if let Err(problem) = verdict {
            problems.push(format!(
                "{} (case {}): {problem}",
                hostile.mode, hostile.seq
            ));
        }
        // A misbehaviour costs at most one timeout (and a hello) beyond the good cases.
        let bound = Duration::from_secs(3 * TIMEOUT + 4);
        if run.elapsed > bound {
            problems.push(format!("{} took {:?}", hostile.mode, run.elapsed));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn an_adapter_that_fails_its_hello_twice_is_abandoned_quickly() {
    let sandbox = Sandbox::new("abandoned");
    // Nine cases; the adapter exits on the second, and never says hello again.
    let run =
        Running::start(sandbox.certify("no-hello-after-restart", 1, "nll_loss/f64/N4C3/sum/"))
            .finish();
    sandbox.left_behind().unwrap();
    assert!(!run.status.success());
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(
        output.contains("failed its hello 2 times in a row")
            && output.contains("no hello: no answer within 2.0 s"),
        "{output}"
    );
    // Two hello timeouts (and start-ups on a busy machine), not one per remaining case: seven
    // of them would take 14 s.
    let bound = Duration::from_secs(2 * TIMEOUT + 8);
    assert!(run.elapsed < bound, "took {:?}", run.elapsed);
    let cases = run.cases();
    assert!(cases.len() >= 2, "{}", run.stdout);
    assert!(cases[0].1.iter().all(|(status, _)| status == "passed"));
    assert!(cases[1].1.iter().all(|(status, detail)| {
        status == "failed" && detail.contains("deliberate exit on case 1")
    }));
}

/// Starts a run on an adapter that sleeps on the first case, sends `signal` to segloss once the
/// adapter sleeps, and checks that segloss exits with `128 + signal`, leaving nothing behind.
fn interrupted_by(signal: i32) {
    let sandbox = Sandbox::new(&format!("signal-{signal}"));
    let running = Running::start(sandbox.certify("sleep", 0, THREE_CASES));
    let give_up = Instant::now() + DEADLINE;
    while !sandbox
        .recorded()
        .iter()
        .any(|(role, _)| role == "sleeping")
    {
        assert!(Instant::now() < give_up, "the adapter never slept");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(running.child.id() as i32, signal) };
    let signalled = Instant::now();
    let run = running.finish();
    assert_eq!(run.status.code(), Some(128 + signal), "{}", run.stderr);
    assert!(
        signalled.elapsed() < Duration::from_secs(1),
        "{:?}",
        signalled.elapsed()
    );
    sandbox.left_behind().unwrap();
}

#[test]
fn sigterm_stops_the_adapters_and_removes_the_scratch_directory() {
    interrupted_by(libc::SIGTERM);
}

#[test]
fn sigint_stops_the_adapters_and_removes_the_scratch_directory() {
    interrupted_by(libc::SIGINT);
}
