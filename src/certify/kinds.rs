//! The error-kind table shared with the fixture generator (`scripts/segloss_gen/error_kinds.json`):
//! for each segloss error kind, the patterns an anchor's `"<exception type>: <message>"` matches.
//!
//! The generator declares a case's kind only when the anchor's error matches that kind's pattern;
//! certification uses the same table to judge a rejection whose implementation states no kind: it
//! is a rejection for the anchor's reason only when its message matches the anchor's kind.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;

/// The table's JSON, compiled into the binary so certification never depends on the scripts.
const TABLE: &str = include_str!("../../scripts/segloss_gen/error_kinds.json");

#[derive(Deserialize)]
struct Table {
    kinds: BTreeMap<String, Vec<String>>,
}

/// Every kind with its compiled pattern (the alternatives joined).
fn patterns() -> &'static BTreeMap<String, Regex> {
    static PATTERNS: OnceLock<BTreeMap<String, Regex>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let table: Table =
            serde_json::from_str(TABLE).expect("the bundled error-kind table is JSON");
        table
            .kinds
            .into_iter()
            .map(|(kind, alternatives)| {
                let pattern = Regex::new(&alternatives.join("|"))
                    .unwrap_or_else(|error| panic!("bundled pattern of {kind}: {error}"));
                (kind, pattern)
            })
            .collect()
    })
}

/// Whether `message` (an error's `"<type>: <message>"`) shows the error kind `kind`; `None` when
/// the table has no such kind.
pub fn message_shows_kind(kind: &str, message: &str) -> Option<bool> {
    patterns()
        .get(kind)
        .map(|pattern| pattern.is_match(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_table_compiles_and_matches_anchor_messages() {
        assert!(patterns().len() > 20);
        assert_eq!(
            message_shows_kind(
                "target_out_of_bounds",
                "IndexError: Target 7 is out of bounds."
            ),
            Some(true)
        );
        assert_eq!(
            message_shows_kind("target_out_of_bounds", "KeyError: 'weights'"),
            Some(false)
        );
        assert_eq!(
            message_shows_kind("batch_size_mismatch", "AssertionError: "),
            Some(true)
        );
        assert_eq!(message_shows_kind("no_such_kind", "anything"), None);
    }
}
