//! Certifying hostile adapters (`tests/adapters/hostile_adapter.py`): each misbehaviour fails
//! exactly the case it happens on, with the reason, and the run goes on; an adapter that cannot say
//! hello ends the run quickly; every run ends within a bound, leaves no adapter process behind and
//! removes its scratch directory, also when segloss is stopped by SIGINT, SIGTERM or SIGHUP.
//! Needs `python3` (standard library only).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use segloss::certify::command::CommandAdapter;
use segloss::certify::{certify, Implementation, Verdict};
use segloss::compare::Tier;
use segloss::corpus::Corpus;
use segloss::fixtures::Fixtures;
use serde_json::Value;

#[path = "adapters/records.rs"]
mod records;
use records::Records;

/// The per-case timeout of every run, in seconds.
const TIMEOUT: u64 = 2;

/// The hello timeout of the runs that test it (in-process: the others use the default).
const HELLO: Duration = Duration::from_secs(1);

const ADAPTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/adapters/hostile_adapter.py"
);

/// How long a run may take before the test kills it and fails.
const DEADLINE: Duration = Duration::from_secs(40);

/// Three cases with values, in manifest order: the hostile adapter misbehaves on the one whose
/// seq (its index here) it is given.
const THREE_CASES: &str = "nll_loss/f64/N4C3/sum/ignore_index*";

/// A directory of the test's own: `tmp`, the TMPDIR of the run, and the adapters' records.
/// Dropping it kills what the run left behind and removes it.
struct Sandbox {
    root: PathBuf,
    records: Records,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let root =
            std::env::temp_dir().join(format!("segloss-hostile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        let records = Records::new(root.join("records"), "hostile_adapter.py");
        Sandbox { root, records }
    }

    /// `segloss certify --json --timeout 2` on the hostile adapter in `mode`, misbehaving on case
    /// `seq`, over the cases matching `filter`.
    fn certify(&self, mode: &str, seq: usize, filter: &str) -> Command {
        let binary = env!("CARGO_BIN_EXE_segloss");
        let mut command = Command::new(binary);
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("SEGLOSS_BIN", binary)
            .env("SEGLOSS_ADAPTER_PIDS", &self.records.path)
            .env("TMPDIR", self.root.join("tmp"))
            .args(["certify", "--json", "--timeout", &TIMEOUT.to_string()])
            .args(["--filter", filter])
            .args(["--cmd", &format!("python3 {} {mode} {seq}", quote(ADAPTER))])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// The `--cmd` of the hostile adapter in `mode`, misbehaving on case `seq`, for an adapter
    /// started in this process.
    fn adapter_command(&self, mode: &str, seq: usize) -> String {
        format!(
            "SEGLOSS_BIN={} SEGLOSS_ADAPTER_PIDS={} python3 {} {mode} {seq}",
            quote(env!("CARGO_BIN_EXE_segloss")),
            quote(&self.records.path.to_string_lossy()),
            quote(ADAPTER)
        )
    }

    /// Checks that no adapter process runs any more and that the run's TMPDIR is empty and its
    /// scratch directory gone; `Err` says what was left.
    fn left_behind(&self) -> Result<(), String> {
        self.records.all_gone()?;
        let files: Vec<_> = std::fs::read_dir(self.root.join("tmp"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        if !files.is_empty() {
            return Err(format!("left behind in TMPDIR: {files:?}"));
        }
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.records.kill_running();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `text` quoted for `sh`.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
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

/// A started run whose output is collected as it comes. Dropping it kills segloss if it still
/// runs (after a failed test).
struct Running {
    child: Child,
    started: Instant,
    output: Option<(JoinHandle<String>, JoinHandle<String>)>,
}

impl Running {
    fn start(command: &mut Command) -> Running {
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
            output: Some((stdout, stderr)),
        }
    }

    /// Waits for the run to end; past [`DEADLINE`] the test fails.
    fn finish(mut self) -> Finished {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                self.started.elapsed() < DEADLINE,
                "segloss still ran after {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let (stdout, stderr) = self.output.take().unwrap();
        Finished {
            status,
            elapsed: self.started.elapsed(),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
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
        (
            "header-bomb",
            2,
            OnlyCaseFails("the header claims 1099511627776 float64"),
        ),
        (
            "fifo",
            1,
            OnlyCaseFails("loss.npy: is a FIFO, not a regular file"),
        ),
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
            "garbage-hello",
            0,
            StartFails("does not speak segloss-certify version 1 or 2: hello?"),
        ),
    ];
    // The runs spend most of their time waiting on timeouts: all at once keeps the test short.
    let runs: Vec<_> = table
        .into_iter()
        .map(|(mode, seq, expect)| {
            let sandbox = Sandbox::new(mode);
            let running = Running::start(&mut sandbox.certify(mode, seq, THREE_CASES));
            // Dropped in this order after a failure: segloss first, then what it left.
            (Hostile { mode, seq, expect }, running, sandbox)
        })
        .collect();
    let mut problems = Vec::new();
    for (hostile, running, sandbox) in runs {
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
fn an_adapter_that_never_says_hello_fails_to_start_within_the_hello_timeout() {
    let sandbox = Sandbox::new("no-hello");
    let started = Instant::now();
    let command = sandbox.adapter_command("no-hello", 0);
    let error = CommandAdapter::start(&command, Duration::from_secs(TIMEOUT), HELLO)
        .err()
        .expect("the adapter never says hello");
    assert!(started.elapsed() < HELLO * 3, "{:?}", started.elapsed());
    assert!(
        error
            .to_string()
            .contains("no hello: no answer within 1.0 s"),
        "{error}"
    );
    // On a busy machine the adapter may have been stopped before it could record itself.
    if !sandbox.records.pids().is_empty() {
        sandbox.records.all_gone().unwrap();
    }
}

#[test]
fn an_adapter_that_fails_its_hello_twice_is_abandoned_quickly() {
    let sandbox = Sandbox::new("abandoned");
    let fixtures =
        Fixtures::open(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))).unwrap();
    // The adapter exits on the second case, and the restarted adapters never say hello.
    let command = sandbox.adapter_command("no-hello-after-restart", 1);
    // Starting is not what is tested here: on a busy machine the first hello may be late.
    let adapter = (0..5)
        .find_map(|_| CommandAdapter::start(&command, Duration::from_secs(TIMEOUT), HELLO).ok())
        .expect("the adapter starts");
    let started = Instant::now();
    let selected = |entry: &segloss::corpus::CaseSpec| entry.id.starts_with("nll_loss/f64/N4C3/");
    let results = certify(
        &Corpus::fixtures(Arc::new(fixtures.clone())),
        &adapter,
        Tier::Strict,
        selected,
        |_, _| {},
    );
    let elapsed = started.elapsed();
    let abandoned = adapter.abandoned().expect("the adapter is abandoned");
    drop(adapter);
    sandbox.left_behind().unwrap();
    assert!(
        abandoned.contains("failed its hello 2 times in a row")
            && abandoned.contains("no hello: no answer within 1.0 s"),
        "{abandoned}"
    );
    // Two hello timeouts (and start-ups on a busy machine), not one for each of the dozens of
    // remaining cases.
    assert!(elapsed < HELLO * 8, "took {elapsed:?}");
    let mut cases: Vec<(&str, Vec<&Verdict>)> = Vec::new();
    for result in &results {
        if cases.last().is_none_or(|(case, _)| *case != result.case_id) {
            cases.push((&result.case_id, Vec::new()));
        }
        if let Some((_, verdicts)) = cases.last_mut() {
            verdicts.push(&result.verdict);
        }
    }
    // Cases 2 and 3 fail their restarts; a runner may stop there or go on with the rest unasked.
    assert!(cases.len() >= 4, "{cases:?}");
    let failed_with = |verdict: &Verdict, text: &str| matches!(verdict, Verdict::Failed(failure) if failure.detail.contains(text));
    assert!(cases[0]
        .1
        .iter()
        .all(|verdict| matches!(verdict, Verdict::Passed(_))));
    assert!(cases[1]
        .1
        .iter()
        .all(|verdict| failed_with(verdict, "deliberate exit on case 1")));
    for (_, verdicts) in &cases[2..4] {
        assert!(verdicts.iter().all(|verdict| failed_with(
            verdict,
            "could not be restarted: no hello: no answer within 1.0 s"
        )));
    }
    for (_, verdicts) in cases.iter().skip(4) {
        assert!(verdicts
            .iter()
            .all(|verdict| failed_with(verdict, "not asked: the adapter failed its hello")));
    }
}

#[test]
fn any_timeout_is_accepted_without_panicking() {
    let sandbox = Sandbox::new("timeouts");
    let fixtures =
        Fixtures::open(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))).unwrap();
    let one_case =
        |entry: &segloss::corpus::CaseSpec| entry.id == "nll_loss/f64/N4C3/sum/ignore_index=5";
    // The adapter never misbehaves (there is no case 99).
    let command = sandbox.adapter_command("sleep", 99);
    let error = CommandAdapter::start(&command, Duration::MAX, Duration::ZERO)
        .err()
        .expect("no hello within no time");
    assert!(
        error.to_string().contains("no answer within 0.0 s"),
        "{error}"
    );
    let verdicts = |timeout: Duration| {
        let adapter = CommandAdapter::start(&command, timeout, Duration::MAX).unwrap();
        certify(
            &Corpus::fixtures(Arc::new(fixtures.clone())),
            &adapter,
            Tier::Strict,
            one_case,
            |_, _| {},
        )
        .into_iter()
        .map(|result| result.verdict)
        .collect::<Vec<_>>()
    };
    assert!(verdicts(Duration::MAX)
        .iter()
        .all(|verdict| matches!(verdict, Verdict::Passed(_))));
    assert!(verdicts(Duration::ZERO).iter().all(|verdict| {
        matches!(verdict, Verdict::Failed(failure) if failure.detail.contains("no answer within 0.0 s"))
    }));
    sandbox.left_behind().unwrap();
}

#[test]
fn a_tmpdir_that_is_not_utf8_is_refused_with_a_clear_error() {
    use std::os::unix::ffi::OsStrExt;
    let sandbox = Sandbox::new("non-utf8");
    let mut command = sandbox.certify("sleep", 99, THREE_CASES);
    let tmpdir = sandbox.root.join(std::ffi::OsStr::from_bytes(b"tmp-\xff"));
    std::fs::create_dir(&tmpdir).unwrap();
    let run = Running::start(command.env("TMPDIR", &tmpdir)).finish();
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("is not valid UTF-8") && run.stderr.contains("set TMPDIR"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_dir(&tmpdir).unwrap().count(), 0);
}

/// Starts a run on an adapter that sleeps on the first case, sends `signal` to segloss once the
/// adapter sleeps, and checks that segloss exits with `128 + signal`, leaving nothing behind.
fn interrupted_by(signal: i32) {
    let sandbox = Sandbox::new(&format!("signal-{signal}"));
    let running = Running::start(&mut sandbox.certify("sleep", 0, THREE_CASES));
    let give_up = Instant::now() + DEADLINE;
    while !sandbox
        .records
        .pids()
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

#[test]
fn sighup_stops_the_adapters_and_removes_the_scratch_directory() {
    interrupted_by(libc::SIGHUP);
}
