//! The certification protocol's answer reader on arbitrary bytes: an answer or a one-line garbage
//! reason, never a panic. The first byte picks the seq the answer is read for (255: `u64::MAX`),
//! the rest is the line. An answer is only ever one for that seq or, as `Stale`, an earlier one;
//! a garbage reason quotes a bounded excerpt with no control character.

#![no_main]

use libfuzzer_sys::fuzz_target;
use segloss::certify::command::{parse_answer, Answer};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&first, line)) = data.split_first() else {
        return;
    };
    let seq = if first == u8::MAX {
        u64::MAX
    } else {
        u64::from(first)
    };
    match parse_answer(line, seq) {
        Ok(answer) => {
            let value: Value = serde_json::from_slice(line).expect("an answer is JSON");
            assert_eq!(value["type"], "result");
            let got = value["seq"].as_u64().expect("an answer has a seq");
            match answer {
                Answer::Stale { seq: stale } => assert!(stale == got && stale < seq),
                _ => assert_eq!(got, seq),
            }
        }
        Err(reason) => {
            assert!(reason.starts_with("garbage answer ("), "{reason}");
            assert!(!reason.contains(char::is_control), "{reason}");
            // 200 quoted characters, each at most 10 once escaped, after a short preamble.
            assert!(reason.chars().count() < 2100, "{} characters", reason.len());
        }
    }
});
