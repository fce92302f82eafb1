//! Certification: run an implementation on the fixture cases and judge every check.
//!
//! The reference spec is certified exactly like any other implementation: [`Reference`] is the
//! first [`Implementation`], the golden test runner is [`trials`] over it, and `segloss certify`
//! is [`certify`] with a summary.

#[cfg(feature = "impl-burn")]
pub mod burn;
#[cfg(feature = "impl-candle")]
pub mod candle;
pub mod command;
pub mod explain;
pub mod known;
#[cfg(any(feature = "impl-candle", feature = "impl-burn"))]
mod library;
pub mod report;

use known::{KnownFailures, Status};

use std::sync::{Arc, OnceLock};

use libtest_mimic::{Failed, Trial};

use crate::catalog::{self, LossCall};
use crate::compare::{assert_close, tolerance_for, Agreement, Check, Tier};
use crate::fixtures::{Case, CaseEntry, Expected, ExpectedEntry, Fixtures};
use crate::spec::LossOutput;

/// What an implementation did with a loss call.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It computed the loss and the gradient with respect to the prediction.
    Computed(LossOutput),
    /// It computed them by emulating an option it lacks natively (how, in words).
    Emulated(LossOutput, String),
    /// It rejected the input; `kind` is the segloss error kind when the implementation knows it.
    Rejected {
        /// The segloss error kind, if known.
        kind: Option<String>,
        /// Its message.
        message: String,
    },
    /// It does not implement this loss or option.
    Unsupported(String),
    /// It failed to answer: crashed, hung, or answered garbage.
    Broken(String),
}

/// A loss implementation that can be certified against the fixtures.
pub trait Implementation: Send + Sync {
    /// A short name for reports.
    fn name(&self) -> &str;
    /// Computes a call: the loss and gradient for the call's grad_output, or a rejection.
    fn compute(&self, call: &LossCall) -> Outcome;
    /// Why the implementation can no longer answer any case, once it cannot (an adapter that
    /// failed to start again); `None` while it can.
    fn abandoned(&self) -> Option<String> {
        None
    }
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

/// The in-process implementations compiled into this build, by the name `segloss certify
/// --implementation` takes. Optional ones sit behind cargo features so the default build stays lean.
pub fn builtin(name: &str) -> Option<Box<dyn Implementation>> {
    match name {
        "reference" => Some(Box::new(Reference)),
        #[cfg(feature = "impl-candle")]
        "candle" => Some(Box::new(candle::Candle)),
        #[cfg(feature = "impl-burn")]
        "burn" => Some(Box::new(burn::Burn)),
        _ => None,
    }
}

/// The names [`builtin`] knows in this build.
pub fn builtin_names() -> Vec<&'static str> {
    vec![
        "reference",
        #[cfg(feature = "impl-candle")]
        "candle",
        #[cfg(feature = "impl-burn")]
        "burn",
    ]
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
    /// How the implementation emulated an option it lacks, when it did.
    pub emulated: Option<String>,
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

/// Judges an implementation's outcome on a case at a tolerance tier, one verdict per check.
pub fn judge(case: &Case, outcome: &Outcome, tier: Tier) -> Vec<(CaseCheck, Verdict)> {
    let every_check = |verdict: Verdict| {
        CaseCheck::for_entry(&case.entry)
            .iter()
            .map(|&check| (check, verdict.clone()))
            .collect()
    };
    match (outcome, &case.expected) {
        (Outcome::Unsupported(reason), _) => every_check(Verdict::Unsupported(reason.clone())),
        (Outcome::Broken(reason), _) => {
            every_check(Verdict::Failed(format!("no usable answer: {reason}")))
        }
        (
            Outcome::Computed(output) | Outcome::Emulated(output, _),
            Expected::Values {
                loss, grad_input, ..
            },
        ) => [
            (Check::Forward, &output.loss, loss),
            (Check::Gradient, &output.grad_input, grad_input),
        ]
        .into_iter()
        .map(|(check, actual, expected)| {
            let (tolerance, reason) =
                tolerance_for(&case.entry.id, case.input_dtype(), check, tier);
            let verdict = match assert_close(actual, &expected.to_f64(), tolerance) {
                Ok(agreement) => Verdict::Passed(agreement),
                Err(mismatch) => Verdict::Failed(format!("{mismatch}\nTolerance reason: {reason}")),
            };
            (CaseCheck::Values(check), verdict)
        })
        .collect(),
        (Outcome::Computed(_) | Outcome::Emulated(..), Expected::Error { kind, anchor_said }) => {
            every_check(Verdict::Failed(format!(
                "accepted an input the anchor rejects as {kind} ({anchor_said})"
            )))
        }
        (Outcome::Rejected { message, .. }, Expected::Values { .. }) => every_check(
            Verdict::Failed(format!("rejected an input the anchor accepts: {message}")),
        ),
        (Outcome::Rejected { kind: got, message }, Expected::Error { kind, anchor_said }) => {
            every_check(match got {
                Some(got) if got != kind => Verdict::Failed(format!(
                    "rejected as {got} ({message}); the anchor raised {kind} ({anchor_said})"
                )),
                _ => Verdict::Passed(Agreement::default()),
            })
        }
    }
}

/// Loads one case, runs the implementation on it and judges every check at `tier`. A case that
/// cannot be loaded (checksum, missing file) fails every check with the reason.
pub fn run_case(
    fixtures: &Fixtures,
    entry: &CaseEntry,
    implementation: &dyn Implementation,
    tier: Tier,
) -> Vec<CheckResult> {
    let (verdicts, emulated) = match fixtures.load(entry) {
        Ok(case) => {
            let outcome = implementation.compute(&call_for(&case));
            let emulated = match &outcome {
                Outcome::Emulated(_, how) => Some(how.clone()),
                _ => None,
            };
            (judge(&case, &outcome, tier), emulated)
        }
        Err(error) => (
            CaseCheck::for_entry(entry)
                .iter()
                .map(|&check| (check, Verdict::Failed(format!("fixture unusable: {error}"))))
                .collect(),
            None,
        ),
    };
    verdicts
        .into_iter()
        .map(|(check, verdict)| CheckResult {
            case_id: entry.id.clone(),
            loss: entry.loss.clone(),
            check,
            verdict,
            emulated: emulated.clone(),
        })
        .collect()
}

/// Runs the selected cases of the corpus in manifest order, calling `progress(done, total)`
/// after each case.
pub fn certify(
    fixtures: &Fixtures,
    implementation: &dyn Implementation,
    tier: Tier,
    selected: impl Fn(&CaseEntry) -> bool,
    mut progress: impl FnMut(usize, usize),
) -> Vec<CheckResult> {
    let entries: Vec<&CaseEntry> = fixtures
        .manifest
        .cases
        .iter()
        .filter(|entry| selected(entry))
        .collect();
    let mut results = Vec::new();
    for (done, entry) in entries.iter().enumerate() {
        results.extend(run_case(fixtures, entry, implementation, tier));
        progress(done + 1, entries.len());
    }
    results
}

/// One libtest-mimic trial per case and check, named `<case id>/<check>` and sorted, so that
/// `cargo test -- cross_entropy/f32` filters and `--list` shows the inventory. The checks of a
/// case share one run of the implementation. A check listed in `known` passes when it fails and
/// fails when it passes; an unsupported check passes (the implementation said so).
pub fn trials(
    fixtures: Arc<Fixtures>,
    implementation: Arc<dyn Implementation>,
    tier: Tier,
    known: Arc<KnownFailures>,
) -> Vec<Trial> {
    let mut trials = Vec::new();
    for entry in &fixtures.manifest.cases {
        let results: Arc<OnceLock<Vec<CheckResult>>> = Arc::new(OnceLock::new());
        for &check in CaseCheck::for_entry(entry) {
            let (fixtures, implementation, results, entry, known) = (
                fixtures.clone(),
                implementation.clone(),
                results.clone(),
                entry.clone(),
                known.clone(),
            );
            let name = format!("{}/{}", entry.id, check.name());
            trials.push(
                Trial::test(name, move || {
                    let results = results.get_or_init(|| run_case(&fixtures, &entry, implementation.as_ref(), tier));
                    let result = results
                        .iter()
                        .find(|result| result.check == check)
                        .ok_or_else(|| Failed::from("the implementation produced no verdict for this check"))?;
                    match (known.status(result), &result.verdict) {
                        (Status::Failed, Verdict::Failed(reason)) => Err(Failed::from(reason)),
                        (Status::UnexpectedPass(reason), _) => Err(Failed::from(format!(
                            "passes, but is listed as a known failure ({reason}): remove it with segloss certify --promote"
                        ))),
                        _ => Ok(()),
                    }
                })
                .with_kind(check.name()),
            );
        }
    }
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    trials
}

impl CheckResult {
    /// `<case id>/<check>`, as trials and known-failure lists name it.
    pub fn trial_name(&self) -> String {
        format!("{}/{}", self.case_id, self.check.name())
    }
}
