//! The messages of the certification protocol (`docs/certify-protocol.md`), read from the raw
//! bytes of one line: pure functions, whatever the bytes are.

use serde_json::{Map, Value};

use crate::catalog;
use crate::certify::DeclaredCall;

/// The protocol's name and version, sent and expected in the hello exchange.
pub const PROTOCOL: &str = "segloss-certify";
/// The protocol version a hello request names, for adapters written for version 1.
pub const PROTOCOL_VERSION: u64 = 1;
/// The versions this build speaks, offered in the hello request; the adapter answers with the one
/// it speaks. Version 2 carries small arrays inline in the messages.
pub const PROTOCOL_VERSIONS: [u64; 2] = [1, 2];

/// How many characters of a bad line a failure report quotes.
const EXCERPT_CHARS: usize = 200;

/// Said after a line that is not JSON at all, most often an adapter printing to stdout.
const STDOUT_HINT: &str = "stdout carries protocol lines only: an adapter's logs and prints \
     belong on stderr (segloss_adapter.serve sends them there)";

/// What a well-formed result line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `ok`: the results are in the case's `out` directory; `emulated` says how an option the
    /// implementation lacks was emulated, when it was.
    Ok {
        /// How the implementation emulated an option it lacks, if it did.
        emulated: Option<String>,
        /// Why the implementation wrote no gradient, when it has none (a forward-only runtime).
        no_gradient: Option<String>,
        /// The results the answer carries inline (version 2); the others are files.
        inline: Inline,
    },
    /// `error`: the implementation rejected the input.
    Error {
        /// The segloss error kind, when the adapter states it.
        kind: Option<String>,
        /// The implementation's message.
        message: String,
    },
    /// `unsupported`: the implementation does not have this loss or option.
    Unsupported {
        /// Why, in words.
        reason: String,
    },
    /// A result for an earlier case (`seq` below the current one), arriving late: it is ignored.
    Stale {
        /// The earlier case's sequence number.
        seq: u64,
    },
}

/// Results carried in an answer (version 2): each the base64 of its `.npy` bytes, as
/// `{"npy": "…"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inline {
    /// The loss.
    pub loss: Option<String>,
    /// The gradient with respect to the prediction.
    pub grad_input: Option<String>,
}

/// Reads one answer line to the case numbered `seq`. `Err` is the reason the line is garbage.
pub fn parse_answer(line: &[u8], seq: u64) -> Result<Answer, String> {
    let garbage = |why: &str| format!("garbage answer ({why}): {}", excerpt(line));
    let answer =
        json_object(line).ok_or_else(|| format!("{}{}", garbage("not JSON"), hint(line)))?;
    if answer.get("type").and_then(Value::as_str) != Some("result") {
        return Err(garbage("type is not \"result\""));
    }
    match answer.get("seq").and_then(Value::as_u64) {
        Some(got) if got < seq => return Ok(Answer::Stale { seq: got }),
        Some(got) if got == seq => {}
        _ => return Err(garbage(&format!("seq is not {seq}"))),
    }
    let text = |key: &str| answer.get(key).and_then(Value::as_str).map(str::to_string);
    match text("status").as_deref() {
        Some("ok") => {
            let inline = |key: &str| -> Result<Option<String>, String> {
                match answer.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(value) => value
                        .get("npy")
                        .and_then(Value::as_str)
                        .map(|npy| Some(npy.to_string()))
                        .ok_or_else(|| garbage(&format!("{key} is not {{\"npy\": base64}}"))),
                }
            };
            Ok(Answer::Ok {
                emulated: text("emulated"),
                no_gradient: text("no_gradient"),
                inline: Inline {
                    loss: inline("loss")?,
                    grad_input: inline("grad_input")?,
                },
            })
        }
        Some("error") => Ok(Answer::Error {
            kind: text("kind"),
            message: text("message").unwrap_or_default(),
        }),
        Some("unsupported") => Ok(Answer::Unsupported {
            reason: text("reason").unwrap_or_default(),
        }),
        _ => Err(garbage("status is not ok, error or unsupported")),
    }
}

/// The hello request line.
pub(super) fn hello_request() -> String {
    serde_json::json!({"type": "hello", "protocol": PROTOCOL, "version": PROTOCOL_VERSION,
                       "versions": PROTOCOL_VERSIONS})
    .to_string()
}

/// What an adapter says of itself in its hello answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version it speaks (one of [`PROTOCOL_VERSIONS`]).
    pub version: u64,
    /// The name it gives itself, if any.
    pub name: Option<String>,
    /// The calls it declares (`calls`), checked against the catalog.
    pub calls: Vec<DeclaredCall>,
}

/// At most this many declared calls in a hello.
const MAX_CALLS: usize = 500;
/// At most this many characters in a declared call's text.
const MAX_CALL_CHARS: usize = 400;

/// Reads the hello answer. `Err` says why the line is not a hello of this protocol version, or
/// which declared call is malformed.
pub(super) fn parse_hello(line: &[u8]) -> Result<Hello, String> {
    let hello = json_object(line).filter(|hello| {
        hello.get("protocol").and_then(Value::as_str) == Some(PROTOCOL)
            && hello
                .get("version")
                .and_then(Value::as_u64)
                .is_some_and(|version| PROTOCOL_VERSIONS.contains(&version))
    });
    let Some(hello) = hello else {
        return Err(format!(
            "the hello answer does not speak {PROTOCOL} version 1 or 2: {}{}",
            excerpt(line),
            hint(line)
        ));
    };
    let calls = match hello.get("calls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) if calls.len() <= MAX_CALLS => calls
            .iter()
            .enumerate()
            .map(|(index, call)| {
                declared_call(call).map_err(|why| format!("hello: calls[{index}] {why}"))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Array(_)) => {
            return Err(format!("hello: more than {MAX_CALLS} calls declared"));
        }
        Some(_) => return Err("hello: calls is not a list".to_string()),
    };
    Ok(Hello {
        version: hello.get("version").and_then(Value::as_u64).unwrap_or(1),
        name: hello
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string),
        calls,
    })
}

/// One declared call: `{"loss": catalog id, "call": text, "when": text (optional)}`.
fn declared_call(value: &Value) -> Result<DeclaredCall, String> {
    let object = value
        .as_object()
        .ok_or("is not an object with loss, call and optional when")?;
    let text = |key: &str, required: bool| -> Result<Option<String>, String> {
        match object.get(key) {
            None | Some(Value::Null) if !required => Ok(None),
            Some(Value::String(text))
                if !text.is_empty()
                    && text.chars().count() <= MAX_CALL_CHARS
                    && !text.chars().any(char::is_control) =>
            {
                Ok(Some(text.clone()))
            }
            _ => Err(format!(
                "has no {key} of 1 to {MAX_CALL_CHARS} printable characters"
            )),
        }
    };
    let loss = text("loss", true)?.unwrap_or_default();
    if catalog::find(&loss).is_err() {
        return Err(format!(
            "names {loss:?}, which is not a catalog loss id (the first segment of a case id \
             in `segloss list`)"
        ));
    }
    Ok(DeclaredCall {
        loss,
        call: text("call", true)?.unwrap_or_default(),
        when: text("when", false)?,
    })
}

/// Where logs belong, after a line that is not JSON at all (and nothing after JSON of the wrong
/// shape, which is no stray print).
fn hint(line: &[u8]) -> String {
    match serde_json::from_slice::<Value>(line) {
        Ok(_) => String::new(),
        Err(_) => format!("; {STDOUT_HINT}"),
    }
}

/// The line as a JSON object, if it is one.
fn json_object(line: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(line) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// The start of a line for a report: invalid UTF-8 replaced and control characters escaped, so
/// that nothing an adapter prints can drive a terminal.
fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut shown: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_answers_are_read() {
        let ok = br#"{"type": "result", "seq": 3, "status": "ok", "emulated": "how"}"#;
        assert_eq!(
            parse_answer(ok, 3),
            Ok(Answer::Ok {
                emulated: Some("how".into()),
                no_gradient: None,
                inline: Inline::default(),
            })
        );
        let inline = br#"{"type": "result", "seq": 3, "status": "ok", "loss": {"npy": "AAA="}, "grad_input": null}"#;
        assert_eq!(
            parse_answer(inline, 3),
            Ok(Answer::Ok {
                emulated: None,
                no_gradient: None,
                inline: Inline {
                    loss: Some("AAA=".into()),
                    grad_input: None
                },
            })
        );
        for malformed in [r#""AAA=""#, r#"{"npy": 3}"#, r#"{"path": "x"}"#] {
            let line = format!(
                r#"{{"type": "result", "seq": 3, "status": "ok", "grad_input": {malformed}}}"#
            );
            let garbage = parse_answer(line.as_bytes(), 3).unwrap_err();
            assert!(
                garbage.contains("grad_input is not {\"npy\": base64}"),
                "{garbage}"
            );
        }
        let error =
            br#"{"type": "result", "seq": 3, "status": "error", "message": "m", "kind": "k"}"#;
        assert_eq!(
            parse_answer(error, 3),
            Ok(Answer::Error {
                kind: Some("k".into()),
                message: "m".into()
            })
        );
        let unsupported =
            br#"{"type": "result", "seq": 3, "status": "unsupported", "reason": "r"}"#;
        assert_eq!(
            parse_answer(unsupported, 3),
            Ok(Answer::Unsupported { reason: "r".into() })
        );
        assert_eq!(parse_answer(ok, 4), Ok(Answer::Stale { seq: 3 }));
    }

    #[test]
    fn garbage_says_why() {
        let cases: [(&[u8], &str); 6] = [
            (b"not json", "not JSON"),
            (b"[1, 2]", "not JSON"),
            (br#"{"type": "hello", "seq": 3}"#, "type is not \"result\""),
            (
                br#"{"type": "result", "seq": 4, "status": "ok"}"#,
                "seq is not 3",
            ),
            (
                br#"{"type": "result", "seq": -1, "status": "ok"}"#,
                "seq is not 3",
            ),
            (
                br#"{"type": "result", "seq": 3, "status": "fine"}"#,
                "status is not",
            ),
        ];
        for (line, why) in cases {
            let reason = parse_answer(line, 3).unwrap_err();
            assert!(
                reason.starts_with("garbage answer (") && reason.contains(why),
                "{reason}"
            );
        }
    }

    #[test]
    fn excerpts_escape_control_characters_and_stop_early() {
        let reason = parse_answer(b"\x1b[31mred\xff", 0).unwrap_err();
        assert!(reason.contains(r": \u{1b}[31mred�; "), "{reason}");
        let long = "y".repeat(EXCERPT_CHARS + 1);
        let reason = parse_answer(long.as_bytes(), 0).unwrap_err();
        assert!(reason.contains(&format!(" {}…; ", &long[1..])), "{reason}");
    }

    #[test]
    fn a_hello_must_name_protocol_and_version() {
        let hello =
            br#"{"type": "hello", "protocol": "segloss-certify", "version": 1, "name": "x"}"#;
        assert_eq!(
            parse_hello(hello).map(|hello| hello.name),
            Ok(Some("x".into()))
        );
        assert_eq!(parse_hello(hello).map(|hello| hello.version), Ok(1));
        let v2 = br#"{"type": "hello", "protocol": "segloss-certify", "version": 2}"#;
        assert_eq!(parse_hello(v2).map(|hello| hello.version), Ok(2));
        let v3 = br#"{"type": "hello", "protocol": "segloss-certify", "version": 3}"#;
        assert!(parse_hello(v3).unwrap_err().contains("version 1 or 2"));
        let offered: Value = serde_json::from_str(&hello_request()).unwrap();
        assert_eq!(offered["version"], 1);
        assert_eq!(offered["versions"], serde_json::json!([1, 2]));
        let old = br#"{"type": "hello", "protocol": "segloss-certify", "version": 0}"#;
        assert!(parse_hello(old).unwrap_err().contains("version 1 or 2"));
        assert!(parse_hello(b"hi").is_err());
    }

    #[test]
    fn a_hello_may_declare_calls_of_catalog_losses() {
        let hello = br#"{"protocol": "segloss-certify", "version": 1, "calls": [
            {"loss": "cross_entropy", "call": "keras.losses.SparseCategoricalCrossentropy(from_logits=True)", "when": "class indices"},
            {"loss": "kornia.dice_loss", "call": "keras.losses.Dice()", "when": null}]}"#;
        let calls = parse_hello(hello).unwrap().calls;
        assert_eq!(
            calls,
            vec![
                DeclaredCall {
                    loss: "cross_entropy".into(),
                    call: "keras.losses.SparseCategoricalCrossentropy(from_logits=True)".into(),
                    when: Some("class indices".into()),
                },
                DeclaredCall {
                    loss: "kornia.dice_loss".into(),
                    call: "keras.losses.Dice()".into(),
                    when: None,
                },
            ]
        );
        let with = |calls: &str| {
            parse_hello(
                format!(r#"{{"protocol": "segloss-certify", "version": 1, "calls": {calls}}}"#)
                    .as_bytes(),
            )
        };
        assert_eq!(with("null").unwrap().calls, vec![]);
        let refused = [
            (r#"{"loss": "cross_entropy"}"#, "calls is not a list"),
            (
                r#"[{"loss": "no_such_loss", "call": "f()"}]"#,
                "calls[0] names \"no_such_loss\"",
            ),
            (
                r#"[{"loss": "cross_entropy", "call": ""}]"#,
                "calls[0] has no call",
            ),
            (
                r#"[{"loss": "cross_entropy", "call": "f(\u001b[2J)"}]"#,
                "calls[0] has no call",
            ),
            (
                r#"[{"loss": "cross_entropy", "call": "f()", "when": 3}]"#,
                "calls[0] has no when",
            ),
            (r#"[{"call": "f()"}]"#, "calls[0] has no loss"),
            (r#"["cross_entropy"]"#, "calls[0] is not an object"),
        ];
        for (calls, why) in refused {
            let error = with(calls).unwrap_err();
            assert!(error.contains(why), "{calls}: {error}");
        }
        let long = format!(
            r#"[{{"loss": "cross_entropy", "call": "{}"}}]"#,
            "f".repeat(MAX_CALL_CHARS + 1)
        );
        assert!(with(&long).unwrap_err().contains("calls[0] has no call"));
        let many = format!(
            "[{}]",
            vec![r#"{"loss": "cross_entropy", "call": "f()"}"#; MAX_CALLS + 1].join(",")
        );
        assert!(with(&many).unwrap_err().contains("more than 500 calls"));
    }

    #[test]
    fn a_line_that_is_not_json_says_where_logs_belong() {
        let garbage = parse_answer(b"loading the model...", 3).unwrap_err();
        assert_eq!(
            garbage,
            format!("garbage answer (not JSON): loading the model...; {STDOUT_HINT}")
        );
        let hello = parse_hello(b"loading the model...").unwrap_err();
        assert!(
            hello.ends_with(&format!("loading the model...; {STDOUT_HINT}")),
            "{hello}"
        );
        // JSON of the wrong shape is not a stray print: no hint.
        let wrong = parse_answer(br#"{"type": "hello", "seq": 3}"#, 3).unwrap_err();
        assert!(!wrong.contains("stderr"), "{wrong}");
        let old = parse_hello(br#"{"type": "hello", "version": 0}"#).unwrap_err();
        assert!(!old.contains("stderr"), "{old}");
    }
}
