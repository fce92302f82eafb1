//! Certification: run an implementation on the fixture cases and judge every check.
//!
//! The reference spec is certified exactly like any other implementation: [`Reference`] is the
//! first [`Implementation`], the golden test runner is [`trials`] over it, and `segloss certify`
//! is [`certify`] with a summary.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use libtest_mimic::{Failed, Trial};

use crate::catalog::{self, LossCall};
use crate::compare::{assert_close, tolerance_for, Agreement, Check};
use crate::fixtures::{Case, CaseEntry, Expected, ExpectedEntry, Fixtures};
use crate::spec::LossOutput;

/// What an implementation did with a loss call.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It computed the loss and the gradient with respect to `input`.
    Computed(LossOutput),
    /// It rejected the input; `kind` is the segloss error kind when the implementation knows it.
    Rejected {
        /// The segloss error kind, if known.
        kind: Option<String>,
        /// Its message.
        message: String,
    },
    /// It does not implement this loss or option.
    Unsupported(String),
}

/// A loss implementation that can be certified against the fixtures.
pub trait Implementation: Send + Sync {
    /// A short name for reports.
    fn name(&self) -> &str;
    /// Computes a call: the loss and gradient for the call's grad_output, or a rejection.
    fn compute(&self, call: &LossCall) -> Outcome;
}

/// The reference spec as an implementation.
pub struct Reference;

impl Implementation for Reference {
    fn name(&self) -> &str {
        "segloss reference"
    }

    fn compute(&self, call: &LossCall) -> Outcome {
        match catalog::evaluate(call) {
            Ok(output) => Outcome::Computed(output),
            Err(error) => Outcome::Rejected {
                kind: Some(error.kind().to_string()),
                message: error.to_string(),
            },
        }
    }
}

/// What a case is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaseCheck {
    /// A value comparison (forward or gradient).
    Values(Check),
    /// The input must be rejected with the anchor's error kind.
    Rejection,
}

impl CaseCheck {
    /// `forward`, `gradient` or `error`, as trial names use it.
    pub fn name(self) -> &'static str {
        match self {
            CaseCheck::Values(check) => check.name(),
            CaseCheck::Rejection => "error",
        }
    }

    /// The checks a manifest entry asks for.
    pub fn for_entry(entry: &CaseEntry) -> &'static [CaseCheck] {
        match entry.expected {
            ExpectedEntry::Values { .. } => &[
                CaseCheck::Values(Check::Forward),
                CaseCheck::Values(Check::Gradient),
            ],
            ExpectedEntry::Error { .. } => &[CaseCheck::Rejection],
        }
    }
}

/// The judgement of one check.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Within tolerance (or rejected as the anchor rejects), with the worst differences seen.
    Passed(Agreement),
    /// Not, with the reason.
    Failed(String),
    /// The implementation does not support the case.
    Unsupported(String),
}

/// One check of one case, judged.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// The case id.
    pub case_id: String,
    /// The loss id.
    pub loss: String,
    /// Which check.
    pub check: CaseCheck,
    /// The judgement.
    pub verdict: Verdict,
}

/// The call a case describes, with the grad_output its expected gradient was computed for.
pub fn call_for(case: &Case) -> LossCall {
    LossCall {
        loss: case.entry.loss.clone(),
        params: case.entry.params.clone(),
        tensors: case.tensors.clone(),
        grad_output: match &case.expected {
            Expected::Values { grad_output, .. } => Some(grad_output.to_f64()),
            Expected::Error { .. } => None,
        },
    }
}

/// Judges an implementation's outcome on a case, one verdict per check.
pub fn judge(case: &Case, outcome: &Outcome) -> Vec<(CaseCheck, Verdict)> {
    match (&case.expected, outcome) {
        (
            Expected::Values {
                loss, grad_input, ..
            },
            Outcome::Computed(output),
        ) => [
            (Check::Forward, &output.loss, loss),
            (Check::Gradient, &output.grad_input, grad_input),
        ]
        .into_iter()
        .map(|(check, actual, expected)| {
            let (tolerance, reason) = tolerance_for(&case.entry.id, case.input_dtype(), check);
            let verdict = match assert_close(actual, &expected.to_f64(), tolerance) {
                Ok(agreement) => Verdict::Passed(agreement),
                Err(mismatch) => Verdict::Failed(format!("{mismatch}\nTolerance reason: {reason}")),
            };
            (CaseCheck::Values(check), verdict)
        })
        .collect(),
        (Expected::Values { .. }, Outcome::Rejected { message, .. }) => {
            let verdict =
                Verdict::Failed(format!("rejected an input the anchor accepts: {message}"));
            CaseCheck::for_entry(&case.entry)
                .iter()
                .map(|&check| (check, verdict.clone()))
                .collect()
        }
        (Expected::Error { kind, anchor_said }, Outcome::Rejected { kind: got, message }) => {
            let verdict = match got {
                Some(got) if got != kind => Verdict::Failed(format!(
                    "rejected as {got} ({message}); the anchor raised {kind} ({anchor_said})"
                )),
                _ => Verdict::Passed(Agreement::default()),
            };
            vec![(CaseCheck::Rejection, verdict)]
        }
        (Expected::Error { kind, anchor_said }, Outcome::Computed(_)) => vec![(
            CaseCheck::Rejection,
            Verdict::Failed(format!(
                "accepted an input the anchor rejects as {kind} ({anchor_said})"
            )),
        )],
        (_, Outcome::Unsupported(reason)) => CaseCheck::for_entry(&case.entry)
            .iter()
            .map(|&check| (check, Verdict::Unsupported(reason.clone())))
            .collect(),
    }
}

/// Loads one case, runs the implementation on it and judges every check. A case that cannot be
/// loaded (checksum, missing file) fails every check with the reason.
pub fn run_case(
    fixtures: &Fixtures,
    entry: &CaseEntry,
    implementation: &dyn Implementation,
) -> Vec<CheckResult> {
    let verdicts = match fixtures.load(entry) {
        Ok(case) => judge(&case, &implementation.compute(&call_for(&case))),
        Err(error) => CaseCheck::for_entry(entry)
            .iter()
            .map(|&check| (check, Verdict::Failed(format!("fixture unusable: {error}"))))
            .collect(),
    };
    verdicts
        .into_iter()
        .map(|(check, verdict)| CheckResult {
            case_id: entry.id.clone(),
            loss: entry.loss.clone(),
            check,
            verdict,
        })
        .collect()
}

/// Runs every case of the corpus, in manifest order.
pub fn certify(fixtures: &Fixtures, implementation: &dyn Implementation) -> Vec<CheckResult> {
    fixtures
        .manifest
        .cases
        .iter()
        .flat_map(|entry| run_case(fixtures, entry, implementation))
        .collect()
}

/// One libtest-mimic trial per case and check, named `<case id>/<check>` and sorted, so that
/// `cargo test -- cross_entropy/f32` filters and `--list` shows the inventory. The checks of a
/// case share one run of the implementation.
pub fn trials(fixtures: Arc<Fixtures>, implementation: Arc<dyn Implementation>) -> Vec<Trial> {
    let mut trials = Vec::new();
    for entry in fixtures.manifest.cases.iter().cloned() {
        let results: Arc<OnceLock<Vec<CheckResult>>> = Arc::new(OnceLock::new());
        for &check in CaseCheck::for_entry(&entry) {
            let (fixtures, implementation, results, entry) = (
                fixtures.clone(),
                implementation.clone(),
                results.clone(),
                entry.clone(),
            );
            let name = format!("{}/{}", entry.id, check.name());
            trials.push(
                Trial::test(name, move || {
                    let results = results
                        .get_or_init(|| run_case(&fixtures, &entry, implementation.as_ref()));
                    match results
                        .iter()
                        .find(|result| result.check == check)
                        .map(|result| &result.verdict)
                    {
                        Some(Verdict::Passed(_)) => Ok(()),
                        Some(Verdict::Failed(reason)) => Err(Failed::from(reason)),
                        Some(Verdict::Unsupported(reason)) => {
                            Err(Failed::from(format!("unsupported: {reason}")))
                        }
                        None => Err(Failed::from(
                            "the implementation produced no verdict for this check",
                        )),
                    }
                })
                .with_kind(check.name()),
            );
        }
    }
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    trials
}

/// Per-loss totals of a certification run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossSummary {
    /// Cases run.
    pub cases: usize,
    /// Checks passed.
    pub passed: usize,
    /// Checks failed.
    pub failed: usize,
    /// Checks unsupported.
    pub unsupported: usize,
    /// The worst differences over passed value checks.
    pub worst: Agreement,
}

/// Totals per loss id, sorted by loss.
pub fn summarize(results: &[CheckResult]) -> BTreeMap<String, LossSummary> {
    let mut summaries: BTreeMap<String, LossSummary> = BTreeMap::new();
    let mut previous_case: Option<&str> = None;
    for result in results {
        let summary = summaries.entry(result.loss.clone()).or_default();
        if previous_case != Some(result.case_id.as_str()) {
            summary.cases += 1;
            previous_case = Some(result.case_id.as_str());
        }
        match &result.verdict {
            Verdict::Passed(agreement) => {
                summary.passed += 1;
                summary.worst.max_abs = summary.worst.max_abs.max(agreement.max_abs);
                summary.worst.max_rel = summary.worst.max_rel.max(agreement.max_rel);
            }
            Verdict::Failed(_) => summary.failed += 1,
            Verdict::Unsupported(_) => summary.unsupported += 1,
        }
    }
    summaries
}
