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

use base64::Engine as _;
use serde_json::{json, Value};

use super::{DeclaredCall, Implementation, Outcome};
use crate::catalog::{self, LossCall};
use crate::error::{Error, Result};
use crate::npy;
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

/// In protocol version 2, a tensor of at most this many `.npy` bytes travels inline in the
/// message (base64), and the adapter may answer as inline the results of at most this size.
pub const INLINE_BYTES: usize = 1 << 16;

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
    /// Nanoseconds spent waiting for answers, from sending a case to reading its answer line.
    waited: AtomicU64,
}

/// The adapter's process and hello record, under one lock.
struct State {
    process: Option<Process>,
    /// The protocol version the current process spoke in its hello.
    version: u64,
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
                version: hello.version,
                process: Some(process),
                failed_hellos: 0,
                abandoned: None,
            }),
            scratch,
            sequence: AtomicU64::new(0),
            waited: AtomicU64::new(0),
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
            Ok((process, hello)) => {
                state.failed_hellos = 0;
                state.version = hello.version;
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

    /// Runs one exchange in `dir`, the case's scratch directory, in protocol `version`.
    fn exchange(
        &self,
        process: &mut Process,
        version: u64,
        call: &LossCall,
        sequence: u64,
        dir: &Path,
    ) -> std::result::Result<Outcome, Failure> {
        // Names become file names: nothing but a plain identifier may leave the directory.
        let mut tensors = Vec::with_capacity(call.tensors.len());
        for (name, tensor) in &call.tensors {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Failure::Case(format!(
                    "tensor name {name:?} is not a plain identifier"
                )));
            }
            tensors.push((name.as_str(), npy::to_npy_bytes(tensor)));
        }
        let grad_output = call
            .grad_output
            .as_ref()
            .map(|grad_output| npy::to_npy_bytes(&Tensor::Float64(grad_output.clone())));
        let travels_inline = |bytes: &[u8]| version >= 2 && bytes.len() <= INLINE_BYTES;
        // In version 2 a request whose arrays all travel inline needs no directory of its own:
        // the adapter's results, if it writes files, go to the shared `out`, emptied after.
        let out = if tensors
            .iter()
            .map(|(_, bytes)| bytes)
            .chain(&grad_output)
            .all(|bytes| travels_inline(bytes))
        {
            self.scratch.path().join("out")
        } else {
            dir.join("out")
        };
        std::fs::create_dir_all(&out)
            .map_err(|error| Failure::Case(format!("cannot create {}: {error}", out.display())))?;
        let reference = |name: &str, bytes: Vec<u8>| {
            if travels_inline(&bytes) {
                return Ok(json!({"npy": base64::engine::general_purpose::STANDARD.encode(bytes)}));
            }
            let path = dir.join(format!("{name}.npy"));
            std::fs::write(&path, bytes).map_err(|error| {
                Failure::Case(format!("cannot write {}: {error}", path.display()))
            })?;
            Ok(json_path(&path))
        };
        let tensors = tensors
            .into_iter()
            .map(|(name, bytes)| Ok((name.to_string(), reference(name, bytes)?)))
            .collect::<std::result::Result<serde_json::Map<_, _>, Failure>>()?;
        let grad_output = match grad_output {
            Some(bytes) => reference("grad_output", bytes)?,
            None => Value::Null,
        };
        let prediction = catalog::find(&call.loss).map_or("input", |loss| loss.prediction());
        let mut request = json!({
            "type": "case",
            "seq": sequence,
            "loss": call.loss,
            "params": call.params,
            "tensors": tensors,
            "prediction": prediction,
            "grad_output": grad_output,
            "out": json_path(&out),
        });
        if version >= 2 {
            request["inline_bytes"] = json!(INLINE_BYTES);
        }
        let started = Instant::now();
        let waited = || {
            let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.waited.fetch_add(nanos, Ordering::Relaxed);
        };
        process
            .send(&request.to_string(), started, self.timeout)
            .inspect_err(|_| waited())
            .map_err(Failure::Process)?;
        loop {
            let line = process
                .receive(started, self.timeout)
                .inspect_err(|_| waited())
                .map_err(Failure::Process)?;
            waited();
            return Ok(
                match parse_answer(&line, sequence).map_err(Failure::Process)? {
                    Answer::Stale { .. } => continue,
                    Answer::Ok {
                        emulated,
                        no_gradient: Some(no_gradient),
                        inline,
                    } => Outcome::ForwardOnly {
                        loss: results::read_loss(&out, &inline, call)
                            .map_err(|reason| Failure::Case(format!("status ok, but {reason}")))?,
                        no_gradient,
                        emulated,
                    },
                    Answer::Ok {
                        emulated,
                        no_gradient: None,
                        inline,
                    } => {
                        let output = results::read_results(&out, &inline, call, prediction)
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
        let outcome = match self.exchange(&mut process, state.version, call, sequence, &dir) {
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
        if state.version >= 2 {
            empty(&self.scratch.path().join("out"));
        }
        outcome
    }

    fn abandoned(&self) -> Option<String> {
        self.state().abandoned.clone()
    }

    fn waited(&self) -> Option<Duration> {
        Some(Duration::from_nanos(self.waited.load(Ordering::Relaxed)))
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

/// Removes whatever a directory holds (nothing, usually), so that no file of one case is read as
/// another's result.
fn empty(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
    }
}

/// A scratch path as a JSON string: exact, because scratch paths are UTF-8 by construction.
fn json_path(path: &Path) -> Value {
    Value::String(path.to_string_lossy().into_owned())
}

/// Several processes of one adapter command (`segloss certify --jobs N`), each answering one case
/// at a time, so that the cases of a run are answered N at once; each process is a
/// [`CommandAdapter`] of its own, with its own restarts and scratch directory.
pub struct CommandPool {
    adapters: Vec<CommandAdapter>,
    idle: Mutex<Vec<usize>>,
    freed: std::sync::Condvar,
}

impl CommandPool {
    /// Starts `jobs` (at least one) processes of `command`, their start-ups side by side; `Err`
    /// is the first that could not start. `timeout` and `hello_timeout` as
    /// [`CommandAdapter::start`].
    pub fn start(
        command: &str,
        jobs: usize,
        timeout: Duration,
        hello_timeout: Duration,
    ) -> Result<CommandPool> {
        let started: Vec<Result<CommandAdapter>> = std::thread::scope(|scope| {
            let starting: Vec<_> = (0..jobs.max(1))
                .map(|_| {
                    scope.spawn(move || CommandAdapter::start(command, timeout, hello_timeout))
                })
                .collect();
            starting
                .into_iter()
                .map(|start| {
                    start.join().unwrap_or_else(|_| {
                        Err(Error::Adapter {
                            command: command.to_string(),
                            reason: "starting the adapter panicked".to_string(),
                        })
                    })
                })
                .collect()
        });
        let adapters = started.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(CommandPool {
            idle: Mutex::new((0..adapters.len()).collect()),
            adapters,
            freed: std::sync::Condvar::new(),
        })
    }

    fn idle(&self) -> MutexGuard<'_, Vec<usize>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Implementation for CommandPool {
    fn name(&self) -> &str {
        self.adapters[0].name()
    }

    fn calls(&self) -> Vec<DeclaredCall> {
        self.adapters[0].calls()
    }

    fn compute(&self, call: &LossCall) -> Outcome {
        let mut idle = self.idle();
        let adapter = loop {
            match idle.pop() {
                Some(adapter) => break adapter,
                None => {
                    idle = self
                        .freed
                        .wait(idle)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                }
            }
        };
        drop(idle);
        let outcome = self.adapters[adapter].compute(call);
        self.idle().push(adapter);
        self.freed.notify_one();
        outcome
    }

    fn abandoned(&self) -> Option<String> {
        self.adapters.iter().find_map(CommandAdapter::abandoned)
    }

    fn waited(&self) -> Option<Duration> {
        self.adapters.iter().map(CommandAdapter::waited).sum()
    }
}
