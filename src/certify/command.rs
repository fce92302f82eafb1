//! Certifying an implementation in another process, in any language, through the protocol of
//! `docs/certify-protocol.md`: JSON lines over the adapter's stdin and stdout, arrays as `.npy`
//! files in a temporary directory.
//!
//! The adapter is started once and kept. A case it crashes on, hangs on (past the per-case
//! timeout) or answers with garbage fails with the reason, and the next case starts a new process.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::{Implementation, Outcome};
use crate::catalog::{self, LossCall};
use crate::error::{Error, Result};
use crate::spec::LossOutput;
use crate::tensor::Tensor;

/// The protocol's name and version, sent and expected in the hello exchange.
pub const PROTOCOL: &str = "segloss-certify";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// The least time an adapter gets to start and answer the hello (interpreters start slowly on a
/// loaded machine); the per-case timeout applies when it is longer.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How many trailing stderr lines of the adapter a failure report quotes.
const STDERR_TAIL_LINES: usize = 12;

/// An implementation behind a command that speaks the certification protocol.
pub struct CommandAdapter {
    command: String,
    timeout: Duration,
    name: String,
    scratch: tempfile::TempDir,
    process: Mutex<Option<Process>>,
    sequence: AtomicU64,
}

impl CommandAdapter {
    /// Starts `command` (run by `sh -c`) and performs the hello exchange, so that an adapter that
    /// cannot start at all is reported once, up front. `timeout` bounds every answer.
    pub fn start(command: &str, timeout: Duration) -> Result<CommandAdapter> {
        let scratch = tempfile::Builder::new()
            .prefix("segloss-certify-")
            .tempdir()
            .map_err(|error| Error::Io {
                path: std::env::temp_dir(),
                message: error.to_string(),
            })?;
        let (process, name) =
            Process::spawn(command, timeout).map_err(|reason| Error::Adapter {
                command: command.to_string(),
                reason,
            })?;
        Ok(CommandAdapter {
            command: command.to_string(),
            timeout,
            name,
            scratch,
            process: Mutex::new(Some(process)),
            sequence: AtomicU64::new(0),
        })
    }

    /// Runs one exchange; `Err` is the reason the adapter is broken for this case, and whether the
    /// process must be restarted.
    fn exchange(
        &self,
        process: &mut Process,
        call: &LossCall,
    ) -> std::result::Result<Outcome, (String, bool)> {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let dir = self.scratch.path().join(sequence.to_string());
        let out = dir.join("out");
        std::fs::create_dir_all(&out)
            .map_err(|error| (format!("cannot create {}: {error}", out.display()), false))?;
        let mut tensors = serde_json::Map::new();
        for (name, tensor) in &call.tensors {
            let path = dir.join(format!("{name}.npy"));
            tensor
                .write_npy(&path)
                .map_err(|error| (error.to_string(), false))?;
            tensors.insert(name.clone(), json!(path));
        }
        let grad_output = match &call.grad_output {
            Some(grad_output) => {
                let path = dir.join("grad_output.npy");
                Tensor::Float64(grad_output.clone())
                    .write_npy(&path)
                    .map_err(|error| (error.to_string(), false))?;
                json!(path)
            }
            None => Value::Null,
        };
        let prediction = catalog::find(&call.loss).map_or("input", |loss| loss.prediction());
        let request = json!({
            "type": "case",
            "seq": sequence,
            "loss": call.loss,
            "params": call.params,
            "tensors": tensors,
            "prediction": prediction,
            "grad_output": grad_output,
            "out": out,
        });
        let answer = process.request(&request.to_string(), self.timeout)?;
        let outcome = interpret(&answer, sequence, &out);
        // Scratch files are only needed during the exchange.
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    }
}

impl Implementation for CommandAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn compute(&self, call: &LossCall) -> Outcome {
        let mut slot = self
            .process
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            match Process::spawn(&self.command, self.timeout) {
                Ok((process, _)) => *slot = Some(process),
                Err(reason) => {
                    return Outcome::Broken(format!("the adapter could not be restarted: {reason}"))
                }
            }
        }
        let process = slot.as_mut().expect("started above");
        match self.exchange(process, call) {
            Ok(outcome) => outcome,
            Err((reason, restart)) => {
                if restart {
                    if let Some(mut process) = slot.take() {
                        process.stop();
                    }
                }
                Outcome::Broken(reason)
            }
        }
    }
}

/// Reads an answer line: `ok` (results in `out`), `error`, or `unsupported`.
fn interpret(
    answer: &str,
    sequence: u64,
    out: &Path,
) -> std::result::Result<Outcome, (String, bool)> {
    let garbage = |why: &str| {
        let shown: String = answer.chars().take(200).collect();
        (format!("garbage answer ({why}): {shown}"), true)
    };
    let answer: Value = serde_json::from_str(answer).map_err(|_| garbage("not JSON"))?;
    if answer.get("type").and_then(Value::as_str) != Some("result") {
        return Err(garbage("type is not \"result\""));
    }
    if answer.get("seq").and_then(Value::as_u64) != Some(sequence) {
        return Err(garbage(&format!("seq is not {sequence}")));
    }
    let text = |key: &str| answer.get(key).and_then(Value::as_str).map(str::to_string);
    match text("status").as_deref() {
        Some("ok") => {
            let read = |name: &str| {
                Tensor::read_npy(&out.join(name))
                    .map(|tensor| tensor.to_f64())
                    .map_err(|error| (format!("status ok, but {error}"), false))
            };
            let output = LossOutput {
                loss: read("loss.npy")?,
                grad_input: read("grad_input.npy")?,
            };
            Ok(match text("emulated") {
                Some(how) => Outcome::Emulated(output, how),
                None => Outcome::Computed(output),
            })
        }
        Some("error") => Ok(Outcome::Rejected {
            kind: text("kind"),
            message: text("message").unwrap_or_default(),
        }),
        Some("unsupported") => Ok(Outcome::Unsupported(text("reason").unwrap_or_default())),
        _ => Err(garbage("status is not ok, error or unsupported")),
    }
}

/// A running adapter process.
struct Process {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl Process {
    /// Starts the command and does the hello exchange; returns the process and the name the
    /// adapter gave.
    fn spawn(command: &str, timeout: Duration) -> std::result::Result<(Process, String), String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run sh -c {command:?}: {error}"))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
            {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr)
                .lines()
                .map_while(std::result::Result::ok)
            {
                let mut tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let mut process = Process {
            child,
            stdin,
            lines,
            stderr_tail,
        };
        let hello = json!({"type": "hello", "protocol": PROTOCOL, "version": PROTOCOL_VERSION});
        let answer = match process.request(&hello.to_string(), timeout.max(STARTUP_TIMEOUT)) {
            Ok(answer) => answer,
            Err((reason, _)) => {
                process.stop();
                return Err(format!("no hello: {reason}"));
            }
        };
        let answer: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        let speaks = answer.get("protocol").and_then(Value::as_str) == Some(PROTOCOL)
            && answer.get("version").and_then(Value::as_u64) == Some(PROTOCOL_VERSION);
        if !speaks {
            process.stop();
            return Err(format!(
                "the hello answer does not speak {PROTOCOL} version {PROTOCOL_VERSION}: {answer}"
            ));
        }
        let name = answer
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(command)
            .to_string();
        Ok((process, name))
    }

    /// Sends one line and waits for one line back.
    fn request(
        &mut self,
        line: &str,
        timeout: Duration,
    ) -> std::result::Result<String, (String, bool)> {
        if let Err(error) = writeln!(self.stdin, "{line}").and_then(|()| self.stdin.flush()) {
            return Err((
                format!("cannot write to the adapter: {error}{}", self.exit_report()),
                true,
            ));
        }
        match self.lines.recv_timeout(timeout) {
            Ok(answer) => Ok(answer),
            Err(RecvTimeoutError::Timeout) => Err((
                format!(
                    "no answer within {:.1} s; the adapter was stopped and is restarted for the next case",
                    timeout.as_secs_f64()
                ),
                true,
            )),
            Err(RecvTimeoutError::Disconnected) => Err((format!("the adapter closed its output{}", self.exit_report()), true)),
        }
    }

    /// The exit status (waiting briefly) and the tail of stderr, for failure reports.
    fn exit_report(&mut self) -> String {
        let mut status = None;
        for _ in 0..50 {
            if let Ok(Some(exited)) = self.child.try_wait() {
                status = Some(exited);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let status = status.map_or("still running".to_string(), |status| status.to_string());
        if tail.is_empty() {
            format!(" ({status})")
        } else {
            format!(
                " ({status}); its stderr ended with:\n{}",
                Vec::from(tail.clone()).join("\n")
            )
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}
