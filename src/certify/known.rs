//! Known failures: one data file per certified implementation, listing the checks it is known to
//! fail, grouped under a reason and the kind of failure (`fails_as`). Strict every way: an
//! unlisted failure fails the run, and so do a listed check that passes, a listed check that fails
//! as another kind (it now fails for a different reason), and an entry naming no check of the
//! corpus (stale). `segloss certify --promote` removes passing and stale entries;
//! `segloss certify --write-known-failures` starts a list from a run's failures, with a
//! placeholder reason that [`KnownFailures::load`] refuses until it is replaced.
//! `docs/known-failures.md` documents the format.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{CheckResult, FailureKind, Verdict};
use crate::error::{Error, Result};
use crate::files::{read_regular_file, MAX_DOCUMENT_BYTES};

/// What every reason of a list written by [`KnownFailures::from_failures`] starts with; a list
/// with a reason that still contains it is refused by [`KnownFailures::load`].
pub const PLACEHOLDER_MARKER: &str = "REPLACE ME";

/// The reason [`KnownFailures::from_failures`] gives every group.
pub const PLACEHOLDER_REASON: &str = "REPLACE ME: why these checks fail (a missing option, \
    another convention, an upstream defect with its issue or pull request); segloss refuses the \
    list until every reason says why";

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
    /// How they fail: a listed check that fails as another kind is not this known failure.
    pub fails_as: FailureKind,
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
    /// Failed as listed, with the listed reason.
    KnownFailure(String),
    /// Listed, but failed as another kind than listed: the run fails.
    FailsDifferently {
        /// The kind the list gives.
        listed: FailureKind,
        /// The listed reason.
        reason: String,
    },
    /// Passed although listed: the run fails until the entry is removed.
    UnexpectedPass(String),
}

impl Status {
    /// Whether this status fails a run.
    pub fn fails_run(&self) -> bool {
        matches!(
            self,
            Status::Failed | Status::FailsDifferently { .. } | Status::UnexpectedPass(_)
        )
    }

    /// A short label for reports.
    pub fn label(&self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Unsupported => "unsupported",
            Status::KnownFailure(_) => "known failure",
            Status::FailsDifferently { .. } => "fails differently",
            Status::UnexpectedPass(_) => "unexpected pass",
        }
    }
}

impl KnownFailures {
    /// Reads a list, rejecting one that lists a check twice, gives a group no reason, or still
    /// has a placeholder reason ([`PLACEHOLDER_MARKER`]).
    pub fn load(path: &Path) -> Result<KnownFailures> {
        let invalid = |message: String| Error::Manifest {
            path: path.to_path_buf(),
            message: format!("not a known-failure list: {message}"),
        };
        let list: KnownFailures =
            serde_json::from_slice(&read_regular_file(path, MAX_DOCUMENT_BYTES)?)
                .map_err(|error| invalid(error.to_string()))?;
        let mut seen = BTreeSet::new();
        for group in &list.groups {
            if group.reason.trim().is_empty() {
                return Err(invalid("a group has no reason".into()));
            }
            if group.reason.contains(PLACEHOLDER_MARKER) {
                return Err(Error::Manifest {
                    path: path.to_path_buf(),
                    message: format!(
                        "known-failure list not ready: the group of {} {} checks still has the \
                         placeholder reason {PLACEHOLDER_MARKER:?}; replace every placeholder with \
                         why its checks fail, then certify again",
                        group.checks.len(),
                        group.fails_as.name()
                    ),
                });
            }
            if let Some(twice) = group.checks.iter().find(|check| !seen.insert(*check)) {
                return Err(invalid(format!("{twice} is listed twice")));
            }
        }
        Ok(list)
    }

    /// Writes the list as pretty JSON with a trailing newline.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.write(path, true)
    }

    /// Writes the list as [`save`](Self::save) does, to a new file: an existing one is replaced
    /// only when `overwrite` is set, and refused otherwise.
    pub fn write(&self, path: &Path, overwrite: bool) -> Result<()> {
        let io_error = |error: &dyn std::fmt::Display| Error::Io {
            path: path.to_path_buf(),
            message: error.to_string(),
        };
        let text = serde_json::to_string_pretty(self).map_err(|error| io_error(&error))? + "\n";
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        if overwrite {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        let mut file = options.open(path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                refuse_existing(path)
            } else {
                io_error(&error)
            }
        })?;
        file.write_all(text.as_bytes())
            .map_err(|error| io_error(&error))
    }

    /// Fails when `path` exists: a new list must not replace one unless asked (`--overwrite`).
    pub fn check_new(path: &Path) -> Result<()> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Err(refuse_existing(path)),
            Err(_) => Ok(()),
        }
    }

    /// A starting list from a run: every failed check of `results`, one group per failure kind
    /// (checks sorted), each with [`PLACEHOLDER_REASON`], so that the list cannot be used until
    /// a person has said why each group fails (and split the groups that fail for several
    /// reasons).
    pub fn from_failures(implementation: &str, results: &[CheckResult]) -> KnownFailures {
        let mut by_kind: BTreeMap<FailureKind, BTreeSet<String>> = BTreeMap::new();
        for result in results {
            if let Verdict::Failed(failure) = &result.verdict {
                by_kind
                    .entry(failure.kind)
                    .or_default()
                    .insert(result.trial_name());
            }
        }
        KnownFailures {
            implementation: implementation.to_string(),
            groups: by_kind
                .into_iter()
                .map(|(fails_as, checks)| KnownGroup {
                    reason: PLACEHOLDER_REASON.to_string(),
                    fails_as,
                    checks: checks.into_iter().collect(),
                })
                .collect(),
        }
    }

    /// The group a check is listed in, if it is.
    pub fn group_of(&self, check: &str) -> Option<&KnownGroup> {
        self.groups
            .iter()
            .find(|group| group.checks.iter().any(|listed| listed == check))
    }

    /// Where a judged check stands against the list.
    pub fn status(&self, result: &CheckResult) -> Status {
        let listed = self.group_of(&result.trial_name());
        match (&result.verdict, listed) {
            (Verdict::Unsupported(_), _) => Status::Unsupported,
            (Verdict::Passed(_) | Verdict::Accepted { .. }, None) => Status::Passed,
            (Verdict::Passed(_) | Verdict::Accepted { .. }, Some(group)) => {
                Status::UnexpectedPass(group.reason.clone())
            }
            (Verdict::Failed(_), None) => Status::Failed,
            (Verdict::Failed(failure), Some(group)) if failure.kind == group.fails_as => {
                Status::KnownFailure(group.reason.clone())
            }
            (Verdict::Failed(_), Some(group)) => Status::FailsDifferently {
                listed: group.fails_as,
                reason: group.reason.clone(),
            },
        }
    }

    /// The listed checks that name no check of the corpus (`corpus_checks`: every trial name).
    pub fn stale_entries(&self, corpus_checks: &BTreeSet<String>) -> Vec<String> {
        self.groups
            .iter()
            .flat_map(|group| &group.checks)
            .filter(|check| !corpus_checks.contains(*check))
            .cloned()
            .collect()
    }

    /// Removes the entries whose checks passed in `results`, the entries that name no check of
    /// the corpus, and the groups left empty; returns how many entries were removed.
    pub fn promote(&mut self, results: &[CheckResult], corpus_checks: &BTreeSet<String>) -> usize {
        let passing: BTreeSet<String> = results
            .iter()
            .filter(|result| result.verdict.passed())
            .map(CheckResult::trial_name)
            .collect();
        let before: usize = self.groups.iter().map(|group| group.checks.len()).sum();
        for group in &mut self.groups {
            group
                .checks
                .retain(|check| !passing.contains(check) && corpus_checks.contains(check));
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

/// The refusal to replace an existing file with a new list.
fn refuse_existing(path: &Path) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        message: "already exists; a new known-failure list does not replace it (pass --overwrite \
                  to replace it, or give another file)"
            .into(),
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
            defects: Vec::new(),
            elapsed: std::time::Duration::ZERO,
        }
    }

    fn list() -> KnownFailures {
        KnownFailures {
            implementation: "example".into(),
            groups: vec![KnownGroup {
                reason: "no label smoothing".into(),
                fails_as: FailureKind::Mismatch,
                checks: vec!["a/forward".into(), "b/forward".into()],
            }],
        }
    }

    fn mismatch() -> Verdict {
        Verdict::failed(FailureKind::Mismatch, "values differ")
    }

    #[test]
    fn listed_failures_are_known_and_listed_passes_are_unexpected() {
        let known = list();
        let passed = Verdict::Passed(Agreement::default());
        assert_eq!(
            known.status(&result("a", mismatch())),
            Status::KnownFailure("no label smoothing".into())
        );
        assert!(!known.status(&result("a", mismatch())).fails_run());
        assert_eq!(
            known.status(&result("b", passed.clone())),
            Status::UnexpectedPass("no label smoothing".into())
        );
        assert!(known.status(&result("b", passed.clone())).fails_run());
        assert_eq!(known.status(&result("c", mismatch())), Status::Failed);
        assert!(known.status(&result("c", mismatch())).fails_run());
        assert_eq!(known.status(&result("c", passed)), Status::Passed);
        assert!(!Status::Passed.fails_run());
        assert_eq!(
            known.status(&result("a", Verdict::Unsupported("no".into()))),
            Status::Unsupported
        );
        assert!(!Status::Unsupported.fails_run());
    }

    #[test]
    fn a_listed_check_failing_another_way_fails_the_run() {
        let status = list().status(&result(
            "a",
            Verdict::failed(FailureKind::NoAnswer, "crashed"),
        ));
        assert_eq!(
            status,
            Status::FailsDifferently {
                listed: FailureKind::Mismatch,
                reason: "no label smoothing".into()
            }
        );
        assert!(status.fails_run());
    }

    #[test]
    fn stale_entries_name_checks_outside_the_corpus() {
        let corpus: BTreeSet<String> = ["a/forward".to_string()].into();
        assert_eq!(list().stale_entries(&corpus), ["b/forward"]);
    }

    #[test]
    fn promote_removes_passing_and_stale_entries_and_empty_groups() {
        let corpus: BTreeSet<String> = ["a/forward", "b/forward", "c/forward"]
            .map(String::from)
            .into();
        let mut known = list();
        let removed = known.promote(
            &[
                result("a", Verdict::Passed(Agreement::default())),
                result("b", mismatch()),
            ],
            &corpus,
        );
        assert_eq!(removed, 1);
        assert_eq!(known.groups[0].checks, ["b/forward"]);
        let removed = known.promote(&[], &BTreeSet::new());
        assert_eq!(removed, 1);
        assert!(known.groups.is_empty());
    }

    #[test]
    fn a_list_from_failures_groups_by_kind_and_is_refused_until_its_reasons_are_given() {
        let results = [
            result("b", mismatch()),
            result("a", mismatch()),
            result("c", Verdict::failed(FailureKind::NoAnswer, "crashed")),
            result("d", Verdict::Passed(Agreement::default())),
            result("e", Verdict::Unsupported("no".into())),
        ];
        let mut written = KnownFailures::from_failures("example", &results);
        assert_eq!(written.implementation, "example");
        let groups: Vec<(FailureKind, &[String])> = written
            .groups
            .iter()
            .map(|group| (group.fails_as, group.checks.as_slice()))
            .collect();
        assert_eq!(
            groups,
            [
                (
                    FailureKind::Mismatch,
                    &["a/forward".to_string(), "b/forward".to_string()][..]
                ),
                (FailureKind::NoAnswer, &["c/forward".to_string()][..]),
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known.json");
        written.write(&path, false).unwrap();
        let error = written.write(&path, false).unwrap_err().to_string();
        assert!(error.contains("--overwrite"), "{error}");
        assert!(KnownFailures::check_new(&path).is_err());
        let error = KnownFailures::load(&path).unwrap_err().to_string();
        assert!(error.contains("placeholder"), "{error}");
        for group in &mut written.groups {
            group.reason = "a real reason".into();
        }
        written.write(&path, true).unwrap();
        assert_eq!(KnownFailures::load(&path).unwrap(), written);
        // All results known: nothing fails the run any more.
        assert!(results
            .iter()
            .all(|result| !written.status(result).fails_run()));
    }

    #[test]
    fn lists_round_trip_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known.json");
        list().save(&path).unwrap();
        assert_eq!(KnownFailures::load(&path).unwrap(), list());
        let mut twice = list();
        twice.groups.push(twice.groups[0].clone());
        twice.save(&path).unwrap();
        let error = KnownFailures::load(&path).unwrap_err().to_string();
        assert!(error.contains("a/forward is listed twice"), "{error}");
    }
}
