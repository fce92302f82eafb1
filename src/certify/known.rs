//! Known failures: one data file per certified implementation, listing the checks it is known to
//! fail, grouped under a reason. Strict both ways: an unlisted failure fails the run, and so does
//! a listed check that passes (`segloss certify --promote` removes such entries).

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{CheckResult, Verdict};
use crate::error::{Error, Result};
use crate::files::{read_regular_file, MAX_DOCUMENT_BYTES};

/// The known-failure list of one implementation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownFailures {
    /// The implementation the list is for.
    pub implementation: String,
    /// Checks grouped by the reason they fail.
    pub groups: Vec<KnownGroup>,
}

/// Checks that fail for one reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownGroup {
    /// Why these checks fail (a missing option, a different convention, …).
    pub reason: String,
    /// Trial names: `<case id>/<check>`.
    pub checks: Vec<String>,
}

/// How a check's verdict stands against the known-failure list.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Passed and not listed.
    Passed,
    /// Failed and not listed: the run fails.
    Failed,
    /// The implementation does not support the case (never fails the run).
    Unsupported,
    /// Failed and listed, with the listed reason.
    KnownFailure(String),
    /// Passed although listed: the run fails until the entry is removed.
    UnexpectedPass(String),
}

impl Status {
    /// Whether this status fails a run.
    pub fn fails_run(&self) -> bool {
        matches!(self, Status::Failed | Status::UnexpectedPass(_))
    }

    /// A short label for reports.
    pub fn label(&self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Unsupported => "unsupported",
            Status::KnownFailure(_) => "known failure",
            Status::UnexpectedPass(_) => "unexpected pass",
        }
    }
}

impl KnownFailures {
    /// Reads a list.
    pub fn load(path: &Path) -> Result<KnownFailures> {
        serde_json::from_slice(&read_regular_file(path, MAX_DOCUMENT_BYTES)?).map_err(|error| {
            Error::Manifest {
                path: path.to_path_buf(),
                message: format!("not a known-failure list: {error}"),
            }
        })
    }

    /// Writes the list as pretty JSON with a trailing newline.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("plain data serializes") + "\n";
        std::fs::write(path, text).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
    }

    /// The reason a check is listed for, if it is.
    pub fn reason_for(&self, check: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|group| group.checks.iter().any(|listed| listed == check))
            .map(|group| group.reason.as_str())
    }

    /// Where a judged check stands against the list.
    pub fn status(&self, result: &CheckResult) -> Status {
        let listed = self.reason_for(&result.trial_name()).map(str::to_string);
        match (&result.verdict, listed) {
            (Verdict::Unsupported(_), _) => Status::Unsupported,
            (Verdict::Passed(_), None) => Status::Passed,
            (Verdict::Passed(_), Some(reason)) => Status::UnexpectedPass(reason),
            (Verdict::Failed(_), None) => Status::Failed,
            (Verdict::Failed(_), Some(reason)) => Status::KnownFailure(reason),
        }
    }

    /// Removes the entries whose checks passed in `results` and the groups left empty; returns
    /// how many entries were removed.
    pub fn promote(&mut self, results: &[CheckResult]) -> usize {
        let passing: BTreeSet<String> = results
            .iter()
            .filter(|result| matches!(result.verdict, Verdict::Passed(_)))
            .map(CheckResult::trial_name)
            .collect();
        let before: usize = self.groups.iter().map(|group| group.checks.len()).sum();
        for group in &mut self.groups {
            group.checks.retain(|check| !passing.contains(check));
        }
        self.groups.retain(|group| !group.checks.is_empty());
        before
            - self
                .groups
                .iter()
                .map(|group| group.checks.len())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certify::CaseCheck;
    use crate::compare::{Agreement, Check};

    fn result(case_id: &str, verdict: Verdict) -> CheckResult {
        CheckResult {
            case_id: case_id.into(),
            loss: "cross_entropy".into(),
            check: CaseCheck::Values(Check::Forward),
            verdict,
            emulated: None,
        }
    }

    fn list() -> KnownFailures {
        KnownFailures {
            implementation: "example".into(),
            groups: vec![KnownGroup {
                reason: "no label smoothing".into(),
                checks: vec!["a/forward".into(), "b/forward".into()],
            }],
        }
    }

    #[test]
    fn listed_failures_are_known_and_listed_passes_are_unexpected() {
        let known = list();
        let failed = Verdict::Failed("mismatch".into());
        let passed = Verdict::Passed(Agreement::default());
        assert_eq!(
            known.status(&result("a", failed.clone())),
            Status::KnownFailure("no label smoothing".into())
        );
        assert!(known.status(&result("b", passed.clone())).fails_run());
        assert!(known.status(&result("c", failed)).fails_run());
        assert_eq!(known.status(&result("c", passed)), Status::Passed);
        assert_eq!(
            known.status(&result("a", Verdict::Unsupported("no".into()))),
            Status::Unsupported
        );
    }

    #[test]
    fn promote_removes_entries_that_pass_and_empty_groups() {
        let mut known = list();
        let removed = known.promote(&[
            result("a", Verdict::Passed(Agreement::default())),
            result("b", Verdict::Failed("x".into())),
        ]);
        assert_eq!(removed, 1);
        assert_eq!(known.groups[0].checks, ["b/forward"]);
        known.promote(&[result("b", Verdict::Passed(Agreement::default()))]);
        assert!(known.groups.is_empty());
    }
}
