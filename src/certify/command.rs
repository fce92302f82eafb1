//! Certifying an implementation in another process, in any language, through the protocol of
//! `docs/certify-protocol.md`: JSON lines over the adapter's stdin and stdout, arrays as `.npy`
//! files in a scratch directory.
//!
//! The adapter is started once and kept. A case it crashes on, hangs on (past the per-case
//! timeout) or answers with garbage fails with the reason; the adapter is stopped with every
//! process it started, and the next case starts a new one. An adapter that fails its hello twice
//! in a row is abandoned: see [`CommandAdapter::abandoned`](Implementation::abandoned).

mod live;
mod process;
mod protocol;
mod results;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{DeclaredCall, Implementation, Outcome};
use crate::catalog::{self, LossCall};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use live::Scratch;
use process::Process;
pub use process::MAX_LINE_BYTES;
use protocol::Hello;
pub use protocol::{parse_answer, Answer, PROTOCOL, PROTOCOL_VERSION};

/// The usual bound on the hello exchange: interpreters and frameworks (a deep-learning library's
/// import, a GPU's initialisation) can take many seconds to start on a loaded machine, whatever
/// the per-case timeout is.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// How many failed hellos in a row abandon an adapter.
pub const HELLO_ATTEMPTS: u32 = 2;

/// An implementation behind a command that speaks the certification protocol.
pub struct CommandAdapter {
    command: String,
    timeout: Duration,
    hello_timeout: Duration,
    name: String,
    calls: Vec<DeclaredCall>,
    // Declared before `scratch`: the process is stopped before its directory is removed.
    state: Mutex<State>,
    scratch: Scratch,
    sequence: AtomicU64,
}

/// The adapter's process and hello record, under one lock.
struct State {
    process: Option<Process>,
    failed_hellos: u32,
    abandoned: Option<String>,
}

/// Why an exchange failed.
enum Failure {
    /// The process cannot be trusted with another case (it hung, exited or spoke garbage).
    Process(String),
    /// Only this case failed (bad result files); the process answers the next one.
    Case(String),
}

impl CommandAdapter {
    /// Starts `command` (run by `sh -c` in a process group of its own) and performs the hello
    /// exchange, so that an adapter that cannot start at all is reported once, up front.
    /// `timeout` bounds every case's answer, `hello_timeout` every hello answer (the first and
    /// those of restarts; [`DEFAULT_HELLO_TIMEOUT`] unless the user says otherwise). Any
    /// durations are accepted; zero fails every exchange.
    pub fn start(
        command: &str,
        timeout: Duration,
        hello_timeout: Duration,
    ) -> Result<CommandAdapter> {
        let adapter_error = |reason| Error::Adapter {
            command: command.to_string(),
            reason,
        };
        let scratch = Scratch::create().map_err(adapter_error)?;
        let (process, hello) = start_process(command, hello_timeout).map_err(adapter_error)?;
        Ok(CommandAdapter {
            command: command.to_string(),
            timeout,
            hello_timeout,
            name: hello.name.unwrap_or_else(|| command.to_string()),
            calls: hello.calls,
            state: Mutex::new(State {
                process: Some(process),
                failed_hellos: 0,
                abandoned: None,
            }),
            scratch,
            sequence: AtomicU64::new(0),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A process ready for the next case: the current one if it can still answer, else a new
    /// one. `Err` is why the case cannot be asked.
    fn ready_process(&self, state: &mut State) -> std::result::Result<Process, String> {
        if let Some(reason) = &state.abandoned {
            return Err(format!("not asked: {reason}"));
        }
        if let Some(mut process) = state.process.take() {
            // Lines written after the last answer belong to no case.
            if process.discard_pending() {
                return Ok(process);
            }
        }
        match start_process(&self.command, self.hello_timeout) {
            Ok((process, _)) => {
                state.failed_hellos = 0;
                Ok(process)
            }
            Err(reason) => {
                state.failed_hellos += 1;
                let reason = format!("the adapter could not be restarted: {reason}");
                if state.failed_hellos >= HELLO_ATTEMPTS {
                    state.abandoned = Some(format!(
                        "the adapter failed its hello {HELLO_ATTEMPTS} times in a row ({reason})"
                    ));
                }
                Err(reason)
            }
        }
    }

    /// Runs one exchange in `dir`, the case's scratch directory.
    fn exchange(
        &self,
        process: &mut Process,
        call: &LossCall,
        sequence: u64,
        dir: &Path,
    ) -> std::result::Result<Outcome, Failure> {
        let out = dir.join("out");
        std::fs::create_dir_all(&out)
            .map_err(|error| Failure::Case(format!("cannot create {}: {error}", out.display())))?;
        let write = |name: &str, tensor: &Tensor| {
            // Names become file names: nothing but a plain identifier may leave the directory.
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Failure::Case(format!(
                    "tensor name {name:?} is not a plain identifier"
                )));
            }
            let path = dir.join(format!("{name}.npy"));
            tensor
                .write_npy(&path)
                .map_err(|error| Failure::Case(error.to_string()))?;
            Ok(json_path(&path))
        };
        let mut tensors = serde_json::Map::new();
        for (name, tensor) in &call.tensors {
            tensors.insert(name.clone(), write(name, tensor)?);
        }
        let grad_output = match &call.grad_output {
            Some(grad_output) => write("grad_output", &Tensor::Float64(grad_output.clone()))?,
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
            "out": json_path(&out),
        });
        let started = Instant::now();
        process
            .send(&request.to_string(), started, self.timeout)
            .map_err(Failure::Process)?;
        loop {
            let line = process
                .receive(started, self.timeout)
                .map_err(Failure::Process)?;
            return Ok(
                match parse_answer(&line, sequence).map_err(Failure::Process)? {
                    Answer::Stale { .. } => continue,
                    Answer::Ok {
                        emulated,
                        no_gradient: Some(no_gradient),
                    } => Outcome::ForwardOnly {
                        loss: results::read_loss(&out, call)
                            .map_err(|reason| Failure::Case(format!("status ok, but {reason}")))?,
                        no_gradient,
                        emulated,
                    },
                    Answer::Ok {
                        emulated,
                        no_gradient: None,
                    } => {
                        let output = results::read_results(&out, call, prediction)
                            .map_err(|reason| Failure::Case(format!("status ok, but {reason}")))?;
                        match emulated {
                            Some(how) => Outcome::Emulated(output, how),
                            None => Outcome::Computed(output),
                        }
                    }
                    Answer::Error { kind, message } => Outcome::Rejected { kind, message },
                    Answer::Unsupported { reason } => Outcome::Unsupported(reason),
                },
            );
        }
    }
}

impl Implementation for CommandAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn calls(&self) -> Vec<DeclaredCall> {
        self.calls.clone()
    }

    fn compute(&self, call: &LossCall) -> Outcome {
        let mut state = self.state();
        let mut process = match self.ready_process(&mut state) {
            Ok(process) => process,
            Err(reason) => return Outcome::Broken(reason),
        };
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let dir = self.scratch.path().join(sequence.to_string());
        let outcome = match self.exchange(&mut process, call, sequence, &dir) {
            Ok(outcome) => {
                state.process = Some(process);
                outcome
            }
            Err(Failure::Case(reason)) => {
                state.process = Some(process);
                Outcome::Broken(reason)
            }
            Err(Failure::Process(reason)) => {
                drop(process);
                Outcome::Broken(format!(
                    "{reason}\nThe adapter was stopped with its process group and is started \
                     again for the next case."
                ))
            }
        };
        // The adapter is done with the case's files (or stopped).
        let _ = std::fs::remove_dir_all(&dir);
        outcome
    }

    fn abandoned(&self) -> Option<String> {
        self.state().abandoned.clone()
    }
}

/// Starts the adapter and does the hello exchange; returns the process and what the adapter said
/// of itself.
fn start_process(
    command: &str,
    hello_timeout: Duration,
) -> std::result::Result<(Process, Hello), String> {
    let mut process = Process::spawn(command)?;
    let started = Instant::now();
    let line = process
        .send(&protocol::hello_request(), started, hello_timeout)
        .and_then(|()| process.receive(started, hello_timeout))
        .map_err(|reason| format!("no hello: {reason}"))?;
    let hello = protocol::parse_hello(&line)?;
    Ok((process, hello))
}

/// A scratch path as a JSON string: exact, because scratch paths are UTF-8 by construction.
fn json_path(path: &Path) -> Value {
    Value::String(path.to_string_lossy().into_owned())
}
