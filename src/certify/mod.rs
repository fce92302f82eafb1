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
pub mod grade;
pub mod kinds;
pub mod known;
#[cfg(any(feature = "impl-candle", feature = "impl-burn"))]
mod library;
pub mod report;
pub mod reproduce;

use known::{KnownFailures, Status};
use reproduce::minimal_failure;

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::{Completion, Failed, Trial};
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::catalog::artefacts::{artefacts_for, AnchorArtefact};
/// The call an implementation computes, as the catalog describes it.
pub use crate::catalog::LossCall;
use crate::compare::{assert_close, tolerance_for, Agreement, Check, Mismatch, Tier, Tolerance};
use crate::corpus::{CaseSpec, Corpus};
use crate::fixtures::{Case, CaseEntry, Defect, Expected, ExpectedEntry};
use crate::oracle;
/// What an implementation returns for a call: the loss and the gradient with respect to the
/// prediction.
pub use crate::spec::LossOutput;
use crate::tensor::Tensor;

/// What an implementation did with a loss call.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It computed the loss and the gradient with respect to the prediction.
    Computed(LossOutput),
    /// It computed them by emulating an option it lacks natively (how, in words).
    Emulated(LossOutput, String),
    /// It computed the loss but has no gradient (a forward-only runtime): the forward check is
    /// judged, the gradient check is unsupported.
    ForwardOnly {
        /// The loss.
        loss: ArrayD<f64>,
        /// Why there is no gradient.
        no_gradient: String,
        /// How it emulated an option it lacks, if it did.
        emulated: Option<String>,
    },
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

/// A call an implementation says it makes for a catalog loss, as its users write it: the Rosetta
/// lists it beside the anchors' calls, with what certification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredCall {
    /// The catalog loss id it computes.
    pub loss: String,
    /// The implementation's call, e.g. `keras.losses.Dice(axis=(1, 2))`.
    pub call: String,
    /// For which cases of the loss, when not all (`class indices`, `probability targets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

impl DeclaredCall {
    /// A call for every case of `loss`.
    pub fn new(loss: &str, call: &str) -> DeclaredCall {
        DeclaredCall {
            loss: loss.to_string(),
            call: call.to_string(),
            when: None,
        }
    }
}

/// A loss implementation that can be certified against the fixtures.
pub trait Implementation: Send + Sync {
    /// A short name for reports.
    fn name(&self) -> &str;
    /// The calls it makes for the catalog losses it implements (none declared by default).
    fn calls(&self) -> Vec<DeclaredCall> {
        Vec::new()
    }
    /// Computes a call: the loss and gradient for the call's grad_output, or a rejection.
    fn compute(&self, call: &LossCall) -> Outcome;
    /// The implementation can no longer answer any case, and why (an adapter that cannot be
    /// restarted); a run stops there.
    fn abandoned(&self) -> Option<String> {
        None
    }
    /// For an implementation in another process: the time spent so far waiting for its answers,
    /// from sending a case to reading the answer (the rest of a case's time is segloss's).
    fn waited(&self) -> Option<std::time::Duration> {
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
            ExpectedEntry::Values { .. } => CaseCheck::VALUES,
            ExpectedEntry::Error { .. } => CaseCheck::REJECTION,
        }
    }

    /// The checks a loaded case asks for.
    pub fn for_expected(expected: &Expected) -> &'static [CaseCheck] {
        match expected {
            Expected::Values { .. } => CaseCheck::VALUES,
            Expected::Error { .. } => CaseCheck::REJECTION,
        }
    }

    /// The checks of a case whose outcome is values.
    pub const VALUES: &'static [CaseCheck] = &[
        CaseCheck::Values(Check::Forward),
        CaseCheck::Values(Check::Gradient),
    ];

    /// The check of a case whose outcome is a rejection.
    pub const REJECTION: &'static [CaseCheck] = &[CaseCheck::Rejection];
}

/// The judgement of one check.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Within tolerance (or rejected for the anchor's reason), with the worst differences seen.
    Passed(Agreement),
    /// Not the anchor's outcome, but one accepted instead: the exact value where the anchor's is a
    /// listed artefact, or the corrected outcome of an upstream defect the case shows.
    Accepted {
        /// The worst differences from the accepted value.
        agreement: Agreement,
        /// What the accepted value is.
        alternative: Alternative,
    },
    /// Not, with the kind of failure and the reason.
    Failed(Failure),
    /// The implementation does not support the case.
    Unsupported(String),
}

/// An outcome accepted instead of the anchor's.
#[derive(Debug, Clone, PartialEq)]
pub enum Alternative {
    /// The exact value, where the anchor's is a listed artefact.
    Exact(&'static AnchorArtefact),
    /// The corrected outcome of an upstream defect the case shows.
    Corrected(Arc<Defect>),
}

impl Alternative {
    /// Why the anchor's outcome is not the one to hold an implementation to.
    pub fn reason(&self) -> String {
        match self {
            Alternative::Exact(artefact) => artefact.reason.to_string(),
            Alternative::Corrected(defect) => {
                format!("the anchor's outcome is a defect: {}", defect.anchor_does)
            }
        }
    }

    /// What was accepted, in a line.
    pub fn label(&self) -> String {
        match self {
            Alternative::Exact(artefact) => artefact.label(),
            Alternative::Corrected(defect) => format!(
                "the corrected outcome of upstream defect {}: {}",
                defect.name(),
                defect.accepted
            ),
        }
    }
}

/// Why a check failed: the kind (what known-failure lists match on) and the detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What went wrong, in one word.
    pub kind: FailureKind,
    /// The full reason, as reports print it.
    pub detail: String,
    /// For values beyond the tolerance: the comparison's figures and what was allowed.
    pub comparison: Option<Box<ValueComparison>>,
}

/// A failed value comparison: the mismatch and the tolerance it was held to, with the reason for
/// that tolerance (the policy's, worded for any implementation).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueComparison {
    /// How the values differ.
    pub mismatch: Mismatch,
    /// What was allowed.
    pub tolerance: Tolerance,
    /// Why that much.
    pub reason: &'static str,
}

/// The kinds of failure a check can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Values (or their shape) differ beyond the tolerance.
    Mismatch,
    /// The implementation computed a result for an input the anchor rejects.
    AcceptsRejectedInput,
    /// The implementation rejected an input the anchor accepts.
    RejectsValidInput,
    /// The implementation rejected an input the anchor rejects, but not for the anchor's reason.
    WrongRejection,
    /// No usable answer: a crash, a hang, a panic, garbage.
    NoAnswer,
    /// The fixture itself could not be loaded.
    FixtureUnusable,
}

impl FailureKind {
    /// The snake_case name, as known-failure lists and reports write it.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Mismatch => "mismatch",
            FailureKind::AcceptsRejectedInput => "accepts_rejected_input",
            FailureKind::RejectsValidInput => "rejects_valid_input",
            FailureKind::WrongRejection => "wrong_rejection",
            FailureKind::NoAnswer => "no_answer",
            FailureKind::FixtureUnusable => "fixture_unusable",
        }
    }
}

impl Verdict {
    /// Whether the check passed, against the anchor's value or an accepted alternative.
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Passed(_) | Verdict::Accepted { .. })
    }

    /// The worst differences of a passed check (from the anchor's value, or from the accepted
    /// alternative).
    pub fn agreement(&self) -> Option<Agreement> {
        match self {
            Verdict::Passed(agreement) | Verdict::Accepted { agreement, .. } => Some(*agreement),
            Verdict::Failed(_) | Verdict::Unsupported(_) => None,
        }
    }

    /// A failed verdict.
    pub fn failed(kind: FailureKind, detail: impl Into<String>) -> Verdict {
        Verdict::Failed(Failure {
            kind,
            detail: detail.into(),
            comparison: None,
        })
    }
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
    /// The upstream defects the case shows: a passed check gave the anchor's (defective)
    /// outcome, an accepted one the corrected outcome.
    pub defects: Vec<Arc<Defect>>,
    /// How long the implementation took to answer the case (shared by its checks; zero where
    /// the case could not be prepared).
    pub elapsed: Duration,
}

/// The call a case describes, with the grad_output its expected gradient was computed for.
pub fn call_for(case: &Case) -> LossCall {
    LossCall {
        loss: case.loss.clone(),
        params: case.params.clone(),
        tensors: case.tensors.clone(),
        // An implementation that computes where the anchor raises is held to a corrected
        // outcome, if the case has one, for its grad_output.
        grad_output: match &case.expected {
            Expected::Values { grad_output, .. } => Some(grad_output),
            Expected::Error { .. } => case
                .corrected
                .first()
                .map(|corrected| &corrected.grad_output),
        }
        .map(Tensor::to_f64),
    }
}

/// Judges an implementation's outcome on a case at a tolerance tier, one verdict per check.
///
/// A rejection passes only for the anchor's reason: the kind the implementation states must be
/// the anchor's, and without a stated kind its message must match the anchor's kind in the
/// error-kind table the generator uses ([`kinds`]).
pub fn judge(case: &Case, outcome: &Outcome, tier: Tier) -> Vec<(CaseCheck, Verdict)> {
    let every_check = |verdict: Verdict| {
        CaseCheck::for_expected(&case.expected)
            .iter()
            .map(|&check| (check, verdict.clone()))
            .collect()
    };
    match (outcome, &case.expected) {
        (Outcome::Unsupported(reason), _) => every_check(Verdict::Unsupported(reason.clone())),
        (Outcome::Broken(reason), _) => every_check(Verdict::failed(
            FailureKind::NoAnswer,
            format!("no usable answer: {reason}"),
        )),
        (
            Outcome::Computed(output) | Outcome::Emulated(output, _),
            Expected::Values {
                loss, grad_input, ..
            },
        ) => {
            // The exact value, evaluated once for the case and only if a check needs it.
            let exact = OnceCell::new();
            vec![
                (
                    CaseCheck::Values(Check::Forward),
                    value_verdict(case, &exact, Check::Forward, &output.loss, loss, tier),
                ),
                (
                    CaseCheck::Values(Check::Gradient),
                    value_verdict(
                        case,
                        &exact,
                        Check::Gradient,
                        &output.grad_input,
                        grad_input,
                        tier,
                    ),
                ),
            ]
        }
        (
            Outcome::ForwardOnly {
                loss: actual,
                no_gradient,
                ..
            },
            Expected::Values { loss, .. },
        ) => vec![
            (
                CaseCheck::Values(Check::Forward),
                value_verdict(case, &OnceCell::new(), Check::Forward, actual, loss, tier),
            ),
            (
                CaseCheck::Values(Check::Gradient),
                Verdict::Unsupported(format!("no gradient: {no_gradient}")),
            ),
        ],
        (
            Outcome::Computed(_) | Outcome::Emulated(..) | Outcome::ForwardOnly { .. },
            Expected::Error { kind, anchor_said },
        ) => every_check(corrected_answer(case, outcome, tier).unwrap_or_else(|| {
            Verdict::failed(
                FailureKind::AcceptsRejectedInput,
                format!("accepted an input the anchor rejects as {kind} ({anchor_said})"),
            )
        })),
        (Outcome::Rejected { message, .. }, Expected::Values { .. }) => {
            every_check(Verdict::failed(
                FailureKind::RejectsValidInput,
                format!("rejected an input the anchor accepts: {message}"),
            ))
        }
        (Outcome::Rejected { kind: got, message }, Expected::Error { kind, anchor_said }) => {
            every_check(judge_rejection(got.as_deref(), message, kind, anchor_said))
        }
    }
}

/// The verdict on one value check: within tolerance of the expected value, or of the exact one
/// where an artefact rule accepts it (`exact`: the case's exact value, evaluated on first need
/// and shared by its checks).
fn value_verdict(
    case: &Case,
    exact: &OnceCell<Option<oracle::Exact>>,
    check: Check,
    actual: &ArrayD<f64>,
    expected: &crate::tensor::Tensor,
    tier: Tier,
) -> Verdict {
    let (tolerance, reason) = tolerance_for(&case.id, case.input_dtype(), check, tier);
    match assert_close(actual, &expected.to_f64(), tolerance) {
        Ok(agreement) => Verdict::Passed(agreement),
        Err(mismatch) => accepted_alternative(case, exact, check, actual, tolerance)
            .or_else(|| accepted_correction(case, check, actual, tolerance))
            .unwrap_or_else(|| {
                Verdict::Failed(Failure {
                    kind: FailureKind::Mismatch,
                    detail: mismatch.to_string(),
                    comparison: Some(Box::new(ValueComparison {
                        mismatch: *mismatch,
                        tolerance,
                        reason,
                    })),
                })
            }),
    }
}

/// The verdict on a value that misses the anchor's: accepted when an artefact rule covers the
/// case's check and the value is within `tolerance` of the exact one (`exact`: the case's exact
/// value, evaluated on first need and shared by its checks).
fn accepted_alternative(
    case: &Case,
    exact: &OnceCell<Option<oracle::Exact>>,
    check: Check,
    actual: &ArrayD<f64>,
    tolerance: Tolerance,
) -> Option<Verdict> {
    let artefact = artefacts_for(&case.id, check).next()?;
    let exact = exact
        .get_or_init(|| oracle::evaluate(&call_for(case)))
        .as_ref()?;
    let exact = match check {
        Check::Forward => exact.loss_f64(),
        Check::Gradient => exact.grad_input_f64(),
    };
    let agreement = assert_close(actual, &exact, tolerance).ok()?;
    Some(Verdict::Accepted {
        agreement,
        alternative: Alternative::Exact(artefact),
    })
}

/// The verdict on a value that misses the anchor's: accepted when it is within `tolerance` of the
/// corrected outcome of an upstream defect the case shows.
fn accepted_correction(
    case: &Case,
    check: Check,
    actual: &ArrayD<f64>,
    tolerance: Tolerance,
) -> Option<Verdict> {
    case.corrected.iter().find_map(|corrected| {
        let value = match check {
            Check::Forward => &corrected.loss,
            Check::Gradient => &corrected.grad_input,
        };
        let agreement = assert_close(actual, &value.to_f64(), tolerance).ok()?;
        Some(Verdict::Accepted {
            agreement,
            alternative: Alternative::Corrected(corrected.defect.clone()),
        })
    })
}

/// The verdict on values computed where the anchor raises: accepted when the loss and the
/// gradient (the loss alone, from a forward-only implementation) are within tolerance of the
/// corrected outcome of an upstream defect the case shows; `None` otherwise.
fn corrected_answer(case: &Case, outcome: &Outcome, tier: Tier) -> Option<Verdict> {
    let (loss, grad_input) = match outcome {
        Outcome::Computed(output) | Outcome::Emulated(output, _) => {
            (&output.loss, Some(&output.grad_input))
        }
        Outcome::ForwardOnly { loss, .. } => (loss, None),
        Outcome::Rejected { .. } | Outcome::Unsupported(_) | Outcome::Broken(_) => return None,
    };
    let within = |check: Check, actual: &ArrayD<f64>| {
        let (tolerance, _) = tolerance_for(&case.id, case.input_dtype(), check, tier);
        accepted_correction(case, check, actual, tolerance)
    };
    let forward = within(Check::Forward, loss)?;
    let Some(grad_input) = grad_input else {
        return Some(forward);
    };
    match (forward, within(Check::Gradient, grad_input)?) {
        (
            Verdict::Accepted {
                agreement: loss_agreement,
                alternative,
            },
            Verdict::Accepted {
                agreement: gradient_agreement,
                alternative: gradient_alternative,
            },
        ) if alternative == gradient_alternative => Some(Verdict::Accepted {
            agreement: loss_agreement.worst(gradient_agreement),
            alternative,
        }),
        _ => None,
    }
}

/// A rejection of an input the anchor rejects as `kind`: passed only for the anchor's reason.
fn judge_rejection(stated: Option<&str>, message: &str, kind: &str, anchor_said: &str) -> Verdict {
    let wrong = |why: String| {
        Verdict::failed(
            FailureKind::WrongRejection,
            format!("rejected, but not for the anchor's reason: {why}; the anchor raised {kind} ({anchor_said})"),
        )
    };
    match stated {
        Some(stated) if stated == kind => Verdict::Passed(Agreement::default()),
        Some(stated) => wrong(format!("rejected as {stated} ({message})")),
        None => match kinds::message_shows_kind(kind, message) {
            Some(true) => Verdict::Passed(Agreement::default()),
            Some(false) => wrong(format!(
                "{message:?} states no kind and does not match the {kind} patterns"
            )),
            None => wrong(format!(
                "{message:?} states no kind, and the error-kind table has no {kind} to match it against"
            )),
        },
    }
}

/// Runs an implementation on a call; a panic is an answer too: no usable one.
pub fn compute_guarded(implementation: &dyn Implementation, call: &LossCall) -> Outcome {
    catch_unwind(AssertUnwindSafe(|| implementation.compute(call))).unwrap_or_else(|payload| {
        Outcome::Broken(format!(
            "the implementation panicked: {}",
            panic_message(payload.as_ref())
        ))
    })
}

/// The message a panic carried (`panic!` with a literal or a formatted string).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Loads (or makes) one case of `corpus`, runs the implementation on it and judges every check at
/// `tier`. A case that cannot be loaded (checksum, missing file, a generated case the reference
/// rejects) fails every check with the reason. A generated case's expected values are computed
/// only when the implementation answers with values.
pub fn run_case(
    corpus: &Corpus,
    spec: &CaseSpec,
    implementation: &dyn Implementation,
    tier: Tier,
) -> Vec<CheckResult> {
    let unusable = |error: crate::Error| {
        spec.checks
            .iter()
            .map(|&check| {
                (
                    check,
                    Verdict::failed(
                        FailureKind::FixtureUnusable,
                        format!("fixture unusable: {error}"),
                    ),
                )
            })
            .collect()
    };
    let mut elapsed = Duration::ZERO;
    let (verdicts, emulated) = match corpus.prepare(spec) {
        Ok(prepared) => {
            let started = Instant::now();
            let outcome = compute_guarded(implementation, &prepared.call());
            elapsed = started.elapsed();
            let emulated = match &outcome {
                Outcome::Emulated(_, how)
                | Outcome::ForwardOnly {
                    emulated: Some(how),
                    ..
                } => Some(how.clone()),
                _ => None,
            };
            let verdicts = match (&outcome, prepared) {
                (Outcome::Unsupported(reason), _) => spec
                    .checks
                    .iter()
                    .map(|&check| (check, Verdict::Unsupported(reason.clone())))
                    .collect(),
                (_, prepared) => match prepared.finish() {
                    Ok(case) => judge(&case, &outcome, tier),
                    Err(error) => unusable(error),
                },
            };
            (verdicts, emulated)
        }
        Err(error) => (unusable(error), None),
    };
    verdicts
        .into_iter()
        .map(|(check, verdict)| CheckResult {
            case_id: spec.id.clone(),
            loss: spec.loss.clone(),
            check,
            verdict,
            emulated: emulated.clone(),
            defects: spec.defects.clone(),
            elapsed,
        })
        .collect()
}

/// Runs the selected cases of the corpus in order, calling `progress(done, total)` after each
/// case. The run stops early when the implementation is [abandoned](Implementation::abandoned).
pub fn certify(
    corpus: &Corpus,
    implementation: &dyn Implementation,
    tier: Tier,
    selected: impl Fn(&CaseSpec) -> bool,
    progress: impl FnMut(usize, usize),
) -> Vec<CheckResult> {
    certify_jobs(corpus, implementation, tier, selected, progress, 1)
}

/// [`certify`] on `jobs` threads that each ask the implementation for one case at a time (a
/// [`CommandPool`](command::CommandPool) answers them side by side); the results come back in the
/// corpus's order whatever the jobs.
pub fn certify_jobs(
    corpus: &Corpus,
    implementation: &dyn Implementation,
    tier: Tier,
    selected: impl Fn(&CaseSpec) -> bool,
    mut progress: impl FnMut(usize, usize),
    jobs: usize,
) -> Vec<CheckResult> {
    let specs: Vec<&CaseSpec> = corpus.cases.iter().filter(|spec| selected(spec)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Option<Vec<CheckResult>>> = vec![None; specs.len()];
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::channel();
        for _ in 0..jobs.clamp(1, specs.len().max(1)) {
            let (sender, next, specs) = (sender.clone(), &next, &specs);
            // The main thread's stack size: a case runs as it would on the main thread.
            let worker = std::thread::Builder::new()
                .stack_size(8 << 20)
                .spawn_scoped(scope, move || loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if index >= specs.len() || implementation.abandoned().is_some() {
                        break;
                    }
                    let results = run_case(corpus, specs[index], implementation, tier);
                    if sender.send((index, results)).is_err() {
                        break;
                    }
                });
            if worker.is_err() {
                // No thread to be had: the jobs that started run every case.
                break;
            }
        }
        drop(sender);
        for (done, (index, results)) in receiver.iter().enumerate() {
            slots[index] = Some(results);
            progress(done + 1, specs.len());
        }
    });
    slots.into_iter().flatten().flatten().collect()
}

/// Every check of the corpus by trial name (`<case id>/<check>`).
pub fn corpus_checks(corpus: &Corpus) -> BTreeSet<String> {
    corpus
        .cases
        .iter()
        .flat_map(|spec| {
            spec.checks
                .iter()
                .map(move |check| format!("{}/{}", spec.id, check.name()))
        })
        .collect()
}

/// Where a run stands for libtest: a check passes, is ignored with the reason (unsupported, or a
/// known failure that failed as listed), or fails with the reason.
fn trial_outcome(result: &CheckResult, status: Status) -> Result<Completion, Failed> {
    match (status, &result.verdict) {
        (Status::Passed, _) => Ok(Completion::Completed),
        (Status::Unsupported, Verdict::Unsupported(reason)) => {
            Ok(Completion::ignored_with(format!("unsupported: {reason}")))
        }
        (Status::KnownFailure(reason), _) => {
            Ok(Completion::ignored_with(format!("known failure: {reason}")))
        }
        (Status::UnexpectedPass(reason), _) => Err(Failed::from(format!(
            "passes, but is listed as a known failure ({reason}): remove it with segloss certify --promote"
        ))),
        (Status::FailsDifferently { listed, reason }, Verdict::Failed(failure)) => {
            Err(Failed::from(format!(
                "listed as a known failure ({}: {reason}), but fails as {}: {}",
                listed.name(),
                failure.kind.name(),
                failure.detail
            )))
        }
        (_, Verdict::Failed(failure)) => Err(Failed::from(&failure.detail)),
        (status, verdict) => Err(Failed::from(format!(
            "inconsistent judgement: status {} for verdict {verdict:?}",
            status.label()
        ))),
    }
}

/// One libtest-mimic trial per case and check, named `<case id>/<check>` and sorted, so that
/// `cargo test -- cross_entropy/f32` filters and `--list` shows the inventory; then two run-level
/// trials, `run/known_failures_not_stale` and `run/certified_something`.
/// The checks of a case share one run of the implementation. An unsupported check and a known
/// failure are ignored trials with the reason; a listed check that passes, or fails another way
/// than listed, fails.
pub fn trials(
    corpus: Arc<Corpus>,
    implementation: Arc<dyn Implementation>,
    tier: Tier,
    known: Arc<KnownFailures>,
) -> Vec<Trial> {
    let mut trials = Vec::new();
    let mut every_case = Vec::new();
    for spec in &corpus.cases {
        let results: Arc<OnceLock<Vec<CheckResult>>> = Arc::new(OnceLock::new());
        every_case.push((spec.clone(), results.clone()));
        for &check in spec.checks {
            let (corpus, implementation, results, spec, known) = (
                corpus.clone(),
                implementation.clone(),
                results.clone(),
                spec.clone(),
                known.clone(),
            );
            let name = format!("{}/{}", spec.id, check.name());
            trials.push(
                Trial::ignorable_test(name, move || {
                    let results = results
                        .get_or_init(|| run_case(&corpus, &spec, implementation.as_ref(), tier));
                    let result = results
                        .iter()
                        .find(|result| result.check == check)
                        .ok_or_else(|| {
                            Failed::from("the implementation produced no verdict for this check")
                        })?;
                    trial_outcome(result, known.status(result)).map_err(|failed| {
                        match minimal_failure(&corpus, &spec, implementation.as_ref(), tier, None) {
                            Some(reproducer) => Failed::from(format!(
                                "{}\n{}",
                                failed.message().unwrap_or_default(),
                                reproducer.describe()
                            )),
                            None => failed,
                        }
                    })
                })
                .with_kind(check.name()),
            );
        }
    }
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    trials.extend(run_trials(corpus, implementation, tier, known, every_case));
    trials
}

/// The whole `main` of a downstream crate's conformance test (a `[[test]]` with
/// `harness = false`): certifies `implementation` at `tier` against the fixtures
/// [`crate::fixtures::locate`] finds (`$SEGLOSS_FIXTURES`, else the segloss checkout this crate
/// depends on), one libtest trial per case and check, with `known` its known failures. Command-line
/// arguments are libtest's (`cargo test --test conformance -- cross_entropy/f32`).
pub fn run_conformance(
    implementation: Arc<dyn Implementation>,
    known: KnownFailures,
    tier: Tier,
) -> std::process::ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    let fixtures = match crate::fixtures::Fixtures::open_located() {
        Ok(fixtures) => Arc::new(fixtures),
        Err(error) => {
            eprintln!("segloss: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let corpus = Arc::new(Corpus::fixtures(fixtures));
    let all = trials(corpus, implementation, tier, Arc::new(known));
    run_trials_filtered(&args, all).exit_code()
}

/// Runs libtest-mimic trials as [`libtest_mimic::run`] does, with the case-selection syntax of
/// [`crate::compare::filter_matches`] for the positional FILTER and `--skip` instead of libtest's substrings, so
/// that `cargo test --test golden -- cross_entropy/f32` runs the float32 `cross_entropy` trials
/// and no `binary_cross_entropy` one. With `--exact`, names are matched exactly, as libtest does.
/// The runner of every `harness = false` target that runs [`trials`].
pub fn run_trials_filtered(
    args: &libtest_mimic::Arguments,
    trials: Vec<Trial>,
) -> libtest_mimic::Conclusion {
    use crate::compare::filter_matches;
    if args.exact || (args.filter.is_none() && args.skip.is_empty()) {
        return libtest_mimic::run(args, trials);
    }
    let selected = |name: &str| {
        args.filter
            .as_deref()
            .is_none_or(|filter| filter_matches(name, filter))
            && !args.skip.iter().any(|skip| filter_matches(name, skip))
    };
    // libtest-mimic's own filter is a substring: it gets the trials left out as exact `--skip`
    // names instead, so that its summary still counts them as filtered out.
    let args = libtest_mimic::Arguments {
        filter: None,
        exact: true,
        skip: trials
            .iter()
            .map(Trial::name)
            .filter(|name| !selected(name))
            .map(str::to_string)
            .collect(),
        ..args.clone()
    };
    libtest_mimic::run(&args, trials)
}

/// The run-level trials: the known-failure list names only checks of the corpus, and the run
/// certified something (at least one check passed), so that a CI gate over an implementation
/// that supports nothing fails instead of passing vacuously.
fn run_trials(
    corpus: Arc<Corpus>,
    implementation: Arc<dyn Implementation>,
    tier: Tier,
    known: Arc<KnownFailures>,
    every_case: Vec<(CaseSpec, Arc<OnceLock<Vec<CheckResult>>>)>,
) -> Vec<Trial> {
    let stale = known.stale_entries(&corpus_checks(&corpus));
    vec![
        Trial::test("run/known_failures_not_stale", move || {
            if stale.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} known-failure entries name no check of the corpus (remove them with segloss certify --promote):\n  {}",
                    stale.len(),
                    stale.join("\n  ")
                )
                .into())
            }
        })
        .with_kind("run"),
        Trial::test("run/certified_something", move || {
            let mut checks = 0;
            for (spec, results) in &every_case {
                let results = results
                    .get_or_init(|| run_case(&corpus, spec, implementation.as_ref(), tier));
                checks += results.len();
                if results
                    .iter()
                    .any(|result| known.status(result) == Status::Passed)
                {
                    return Ok(());
                }
            }
            Err(format!(
                "nothing certified: none of the corpus's {checks} checks passed (each is unsupported, a known failure or failed)"
            )
            .into())
        })
        .with_kind("run"),
    ]
}

impl CheckResult {
    /// `<case id>/<check>`, as trials and known-failure lists name it.
    pub fn trial_name(&self) -> String {
        format!("{}/{}", self.case_id, self.check.name())
    }
}
