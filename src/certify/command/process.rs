//! An adapter process that segloss owns: the leader of its own process group, read through
//! bounded lines, and stopped with all its descendants (stdin closed first, a short grace, then
//! SIGKILL to the group, then reaped).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::live;

/// The longest stdout line an adapter may write (its answers are short JSON objects); a longer one
/// is a garbage answer.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// How many trailing stderr lines of the adapter a failure report quotes.
const STDERR_TAIL_LINES: usize = 12;

/// How much of one stderr line a failure report quotes.
const STDERR_LINE_BYTES: usize = 1000;

/// How long a stopped adapter gets to exit by itself after its stdin is closed, and how long a
/// line written just before the adapter exited may take to arrive.
const GRACE: Duration = Duration::from_millis(250);

/// How often a waiting exchange checks whether the adapter has exited.
const POLL: Duration = Duration::from_millis(20);

/// What the stdout reader passes on.
enum Received {
    /// A complete line, without its newline.
    Line(Vec<u8>),
    /// A line longer than [`MAX_LINE_BYTES`]; the reader stopped there.
    TooLong,
}

/// A running adapter process.
pub(super) struct Process {
    child: Child,
    group: i32,
    stdin: Option<ChildStdin>,
    lines: Receiver<Received>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl Process {
    /// Starts `sh -c command` in a new process group, with threads reading its stdout (bounded
    /// lines) and the tail of its stderr.
    pub(super) fn spawn(command: &str) -> Result<Process, String> {
        let mut child = live::spawn_group(
            Command::new("sh")
                .arg("-c")
                .arg(command)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .map_err(|error| format!("cannot run sh -c {command:?}: {error}"))?;
        let group = live::group_of(&child);
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        if let Some(stdin) = &stdin {
            set_nonblocking(stdin);
        }
        let (sender, lines) = mpsc::channel();
        let mut process = Process {
            child,
            group,
            stdin,
            lines,
            stderr_tail: Arc::default(),
        };
        let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
            process.stop();
            return Err("the adapter's output pipes were not opened".to_string());
        };
        // Neither reader is ever joined: a descendant that escaped the group and holds a pipe
        // blocks only its reader, never the run.
        let stdout_reader = std::thread::Builder::new().spawn(move || {
            let mut stdout = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                let received = match read_bounded_line(&mut stdout, &mut line, MAX_LINE_BYTES) {
                    LineEnd::Complete => Received::Line(line),
                    LineEnd::TooLong => Received::TooLong,
                    LineEnd::End if !line.is_empty() => Received::Line(line),
                    LineEnd::End => break,
                };
                let stop = matches!(received, Received::TooLong);
                if sender.send(received).is_err() || stop {
                    break;
                }
            }
        });
        let tail = process.stderr_tail.clone();
        let stderr_reader =
            std::thread::Builder::new().spawn(move || keep_tail(BufReader::new(stderr), &tail));
        if let Err(error) = stdout_reader.and(stderr_reader) {
            process.stop();
            return Err(format!(
                "cannot start a thread reading the adapter: {error}"
            ));
        }
        Ok(process)
    }

    /// Sends one line, failing if the adapter does not take it before `timeout` has passed since
    /// `started` (an adapter that stops reading its input cannot block the run).
    pub(super) fn send(
        &mut self,
        line: &str,
        started: Instant,
        timeout: Duration,
    ) -> Result<(), String> {
        let line = format!("{line}\n");
        let mut rest = line.as_bytes();
        let failed = loop {
            let Some(stdin) = self.stdin.as_mut() else {
                break std::io::Error::from(std::io::ErrorKind::BrokenPipe);
            };
            match stdin.write(rest) {
                Ok(0) => break std::io::Error::from(std::io::ErrorKind::WriteZero),
                Ok(written) if written == rest.len() => return Ok(()),
                Ok(written) => rest = &rest[written..],
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    if started.elapsed() >= timeout {
                        return Err(format!(
                            "the adapter did not read its input within {:.1} s",
                            timeout.as_secs_f64()
                        ));
                    }
                    std::thread::sleep(POLL / 4);
                }
                Err(error) => break error,
            }
        };
        Err(format!(
            "cannot write to the adapter: {failed}{}",
            self.exit_report()
        ))
    }

    /// Discards the lines that arrived since the last exchange; `false` if the process can no
    /// longer answer (it exited, closed its output, or wrote an overlong line).
    pub(super) fn discard_pending(&mut self) -> bool {
        loop {
            match self.lines.try_recv() {
                Ok(Received::Line(_)) => {}
                Ok(Received::TooLong) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return self.exit_status().is_none(),
            }
        }
    }

    /// Waits for the next line until `timeout` has passed since `started`. An adapter that exits
    /// without answering is reported as soon as that is seen, not at the timeout.
    pub(super) fn receive(
        &mut self,
        started: Instant,
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let mut exited: Option<(Instant, String)> = None;
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            match self.lines.recv_timeout(left.min(POLL)) {
                Ok(Received::Line(line)) => return Ok(line),
                Ok(Received::TooLong) => {
                    return Err(format!(
                        "garbage answer (a line longer than {MAX_LINE_BYTES} bytes)"
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "the adapter closed its output{}",
                        self.exit_report()
                    ))
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if left.is_zero() {
                return Err(format!("no answer within {:.1} s", timeout.as_secs_f64()));
            }
            match &exited {
                None => exited = self.exit_status().map(|status| (Instant::now(), status)),
                Some((at, status)) if at.elapsed() >= GRACE => {
                    return Err(format!(
                        "the adapter exited ({status}) without answering, and a process it \
                         started still holds its output{}",
                        self.stderr_report()
                    ))
                }
                Some(_) => {}
            }
        }
    }

    /// How the group leader ended, if it has (without reaping it, so that its process group id
    /// stays reserved until the group is killed).
    fn exit_status(&self) -> Option<String> {
        // SAFETY: an all-zero siginfo_t is a valid value; waitid writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid siginfo_t to write to; WNOWAIT leaves the child waitable.
        let found = unsafe {
            libc::waitid(
                libc::P_PID,
                self.group as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid filled `info` for a child that changed state (si_pid is 0 otherwise).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if found != 0 || pid == 0 {
            return None;
        }
        Some(match info.si_code {
            libc::CLD_EXITED => format!("exit status: {status}"),
            _ => format!("killed by signal {status}"),
        })
    }

    /// The exit status (waiting briefly for it) and the tail of stderr, for failure reports.
    fn exit_report(&self) -> String {
        let give_up = Instant::now() + GRACE;
        let mut status = self.exit_status();
        while status.is_none() && Instant::now() < give_up {
            std::thread::sleep(POLL / 4);
            status = self.exit_status();
        }
        format!(
            " ({}){}",
            status.as_deref().unwrap_or("still running"),
            self.stderr_report()
        )
    }

    /// The tail of stderr, if any, introduced for a failure report.
    fn stderr_report(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if tail.is_empty() {
            String::new()
        } else {
            format!(
                "; its stderr ended with:\n{}",
                Vec::from(tail.clone()).join("\n")
            )
        }
    }

    /// Closes stdin, gives the adapter [`GRACE`] to exit, kills its whole group and reaps it.
    fn stop(&mut self) {
        drop(self.stdin.take());
        let give_up = Instant::now() + GRACE;
        while self.exit_status().is_none() && Instant::now() < give_up {
            std::thread::sleep(POLL / 4);
        }
        // Even after the leader exited: what it started may still run.
        live::kill_group(self.group);
        live::forget_group(self.group);
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Makes writes to the adapter's stdin return `WouldBlock` instead of waiting while the pipe is
/// full (the adapter's end of the pipe is unaffected).
fn set_nonblocking(stdin: &ChildStdin) {
    let fd = stdin.as_raw_fd();
    // SAFETY: fcntl on a descriptor this process owns; F_GETFL/F_SETFL touch only its flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// Keeps the last [`STDERR_TAIL_LINES`] lines of `stderr`, each cut to [`STDERR_LINE_BYTES`].
fn keep_tail(mut stderr: impl BufRead, tail: &Mutex<VecDeque<String>>) {
    loop {
        let mut line = Vec::new();
        let end = read_bounded_line(&mut stderr, &mut line, STDERR_LINE_BYTES);
        if matches!(end, LineEnd::End) && line.is_empty() {
            return;
        }
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if matches!(end, LineEnd::TooLong) {
            text.push_str(" …");
            let mut rest = Vec::new();
            while let LineEnd::TooLong =
                read_bounded_line(&mut stderr, &mut rest, STDERR_LINE_BYTES)
            {
                rest.clear();
            }
        }
        let mut tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
}

/// How [`read_bounded_line`] stopped.
#[derive(Debug, PartialEq)]
enum LineEnd {
    /// At a newline (consumed, not kept).
    Complete,
    /// At `max` bytes, before any newline; the rest of the line is unread.
    TooLong,
    /// At the end of the input (or a read error).
    End,
}

/// Appends the next line of `reader` to `line`, without its newline, keeping `line` at most
/// `max` bytes long.
fn read_bounded_line(reader: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> LineEnd {
    loop {
        let buffer = match reader.fill_buf() {
            Ok([]) => return LineEnd::End,
            Ok(buffer) => buffer,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return LineEnd::End,
        };
        let newline = buffer.iter().position(|&byte| byte == b'\n');
        let chunk = newline.unwrap_or(buffer.len());
        let room = max.saturating_sub(line.len());
        if chunk > room {
            line.extend_from_slice(&buffer[..room]);
            reader.consume(room);
            return LineEnd::TooLong;
        }
        line.extend_from_slice(&buffer[..chunk]);
        match newline {
            Some(_) => {
                reader.consume(chunk + 1);
                return LineEnd::Complete;
            }
            None => reader.consume(chunk),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(Vec<u8>, LineEnd)> {
        let mut reader = BufReader::with_capacity(3, input);
        let mut found = Vec::new();
        loop {
            let mut line = Vec::new();
            let end = read_bounded_line(&mut reader, &mut line, max);
            let done = end == LineEnd::End;
            found.push((line, end));
            if done {
                return found;
            }
        }
    }

    #[test]
    fn an_adapter_that_does_not_read_cannot_block_a_send() {
        let mut process = Process::spawn("exec sleep 30").unwrap();
        let line = "x".repeat(4 << 20);
        let started = Instant::now();
        let timeout = Duration::from_millis(300);
        let error = process.send(&line, started, timeout).unwrap_err();
        assert!(
            error.contains("did not read its input within 0.3 s"),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn lines_are_split_at_newlines_across_buffer_refills() {
        assert_eq!(
            lines(b"abcd\n\nxy", 4),
            [
                (b"abcd".to_vec(), LineEnd::Complete),
                (Vec::new(), LineEnd::Complete),
                (b"xy".to_vec(), LineEnd::End),
            ]
        );
    }

    /// A reader that is interrupted once, then gives `text`, then fails.
    struct Flaky {
        calls: usize,
        text: &'static [u8],
    }

    impl std::io::Read for Flaky {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            match self.calls {
                1 => Err(std::io::ErrorKind::Interrupted.into()),
                2 => {
                    buffer[..self.text.len()].copy_from_slice(self.text);
                    Ok(self.text.len())
                }
                _ => Err(std::io::Error::other("the pipe broke")),
            }
        }
    }

    #[test]
    fn an_interrupted_read_is_retried_and_a_failed_one_ends_the_input() {
        let mut reader = BufReader::new(Flaky {
            calls: 0,
            text: b"ok\npartial",
        });
        let mut line = Vec::new();
        assert_eq!(
            read_bounded_line(&mut reader, &mut line, 64),
            LineEnd::Complete
        );
        assert_eq!(line, b"ok");
        line.clear();
        assert_eq!(read_bounded_line(&mut reader, &mut line, 64), LineEnd::End);
        assert_eq!(line, b"partial");
    }

    #[test]
    fn an_overlong_line_stops_at_the_limit() {
        let found = lines(b"abcdefgh\nok\n", 5);
        assert_eq!(found[0], (b"abcde".to_vec(), LineEnd::TooLong));
        assert_eq!(found[1], (b"fgh".to_vec(), LineEnd::Complete));
    }

    #[test]
    fn the_stderr_tail_keeps_the_last_lines_cut_short() {
        let long = "x".repeat(3 * STDERR_LINE_BYTES);
        let input = format!("{long}\n{}", "line\n".repeat(STDERR_TAIL_LINES));
        let tail = Mutex::new(VecDeque::new());
        keep_tail(input.as_bytes(), &tail);
        let tail = tail.into_inner().unwrap();
        assert_eq!(tail.len(), STDERR_TAIL_LINES);
        assert!(tail.iter().all(|line| line == "line"));
        let tail = Mutex::new(VecDeque::new());
        keep_tail(format!("{long}\nlast").as_bytes(), &tail);
        let tail = tail.into_inner().unwrap();
        assert_eq!(tail[0].len(), STDERR_LINE_BYTES + " …".len());
        assert_eq!(tail[1], "last");
    }
}
