//! Tests of the tester: deliberately wrong in-process implementations, run through `trials()` (as
//! libtest sees them) and `certify()` (as reports see them), fail exactly the checks they should,
//! for the reason they should. The expected sets are computed from the fixtures themselves, never
//! from the judge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use libtest_mimic::{Arguments, FormatSetting};
use ndarray::ArrayD;
use segloss::catalog::artefacts::{artefacts_for, ANCHOR_ARTEFACTS};
use segloss::certify::explain::explain;
use segloss::certify::known::{KnownFailures, KnownGroup};
use segloss::certify::report::Report;
use segloss::certify::{
    builtin, builtin_names, certify, trials, Alternative, CaseCheck, FailureKind, Implementation,
    LossCall, LossOutput, Outcome, Reference, Verdict,
};
use segloss::compare::{Check, Tier};
use segloss::corpus::Corpus;
use segloss::fixtures::{Expected, Fixtures};

/// The slice of the corpus these tests run on: value and error cases of one loss and shape.
const SLICE: &str = "nll_loss/f64/N4C3/";

/// The sliced fixtures as a corpus.
fn corpus() -> Corpus {
    Corpus::fixtures(Arc::new(fixtures()))
}

/// The bundled fixtures, cut down to [`SLICE`] (read once: the manifest is large).
fn fixtures() -> Fixtures {
    static SLICED: OnceLock<Fixtures> = OnceLock::new();
    SLICED
        .get_or_init(|| {
            let mut fixtures =
                Fixtures::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")).unwrap();
            fixtures
                .manifest
                .cases
                .retain(|case| case.id.starts_with(SLICE));
            assert!(fixtures.manifest.cases.len() > 30);
            fixtures
        })
        .clone()
}

/// How a deliberately wrong implementation deviates from the reference.
#[derive(Clone, Copy)]
enum Bug {
    /// Adds 1 to every loss element.
    ShiftLoss,
    /// Adds 1 to every gradient element.
    ShiftGradient,
    /// Rejects what the reference rejects, but states the kind `input_dtype`.
    WrongKind,
    /// Rejects every input with an unrelated error and no kind.
    RejectEverything,
    /// Returns zeros where the reference rejects.
    AcceptEverything,
    /// Panics on calls with a weight tensor.
    PanicOnWeight,
    /// Supports nothing.
    SupportNothing,
    /// Returns a 1-d loss where the reference's is 0-d.
    LossWithAnAxis,
}

struct Buggy(Bug);

impl Implementation for Buggy {
    fn name(&self) -> &str {
        "deliberately wrong"
    }

    fn compute(&self, call: &LossCall) -> Outcome {
        let reference = Reference.compute(call);
        let shift = |array: &ArrayD<f64>| array.mapv(|value| value + 1.0);
        match (self.0, reference) {
            (Bug::ShiftLoss, Outcome::Computed(output)) => Outcome::Computed(LossOutput {
                loss: shift(&output.loss),
                ..output
            }),
            (Bug::ShiftGradient, Outcome::Computed(output)) => Outcome::Computed(LossOutput {
                grad_input: shift(&output.grad_input),
                ..output
            }),
            (Bug::WrongKind, Outcome::Rejected { message, .. }) => Outcome::Rejected {
                kind: Some("input_dtype".into()),
                message,
            },
            (Bug::RejectEverything, _) => Outcome::Rejected {
                kind: None,
                message: "KeyError: 'weights'".into(),
            },
            (Bug::AcceptEverything, Outcome::Rejected { .. }) => {
                let input = call.tensors["input"].to_f64();
                Outcome::Computed(LossOutput {
                    loss: ArrayD::zeros(vec![]),
                    grad_input: ArrayD::zeros(input.shape()),
                })
            }
            (Bug::PanicOnWeight, _) if call.tensors.contains_key("weight") => {
                panic!("deliberate panic on a weighted call")
            }
            (Bug::SupportNothing, _) => Outcome::Unsupported("nothing is implemented".into()),
            (Bug::LossWithAnAxis, Outcome::Computed(output)) if output.loss.ndim() == 0 => {
                Outcome::Computed(LossOutput {
                    loss: output.loss.insert_axis(ndarray::Axis(0)),
                    ..output
                })
            }
            (_, reference) => reference,
        }
    }
}

/// The trial name of every check of the slice, by the kind of case.
fn checks_where(
    fixtures: &Fixtures,
    keep: impl Fn(&str, &Expected, Check) -> bool,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in &fixtures.manifest.cases {
        let case = fixtures.load(entry).unwrap();
        for check in CaseCheck::for_entry(entry) {
            let selected = match check {
                CaseCheck::Values(value_check) => keep(&entry.id, &case.expected, *value_check),
                CaseCheck::Rejection => keep(&entry.id, &case.expected, Check::Forward),
            };
            if selected {
                names.insert(format!("{}/{}", entry.id, check.name()));
            }
        }
    }
    names
}

/// Whether the expected tensor of a value check has a finite element (which a shift of 1 moves).
fn has_finite(expected: &Expected, check: Check) -> bool {
    match (expected, check) {
        (Expected::Values { loss, .. }, Check::Forward) => {
            loss.to_f64().iter().any(|v| v.is_finite())
        }
        (Expected::Values { grad_input, .. }, Check::Gradient) => {
            grad_input.to_f64().iter().any(|v| v.is_finite())
        }
        (Expected::Error { .. }, _) => false,
    }
}

fn is_error(expected: &Expected) -> bool {
    matches!(expected, Expected::Error { .. })
}

/// The failing checks of a `certify()` run, with their failure kinds.
fn certify_failures(bug: Bug) -> BTreeMap<String, FailureKind> {
    let fixtures = fixtures();
    certify(
        &Corpus::fixtures(Arc::new(fixtures.clone())),
        &Buggy(bug),
        Tier::Strict,
        |_| true,
        |_, _| {},
    )
    .into_iter()
    .filter_map(|result| match &result.verdict {
        Verdict::Failed(failure) => Some((result.trial_name(), failure.kind)),
        _ => None,
    })
    .collect()
}

/// What libtest made of one trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrialResult {
    Passed,
    Failed,
    Ignored,
}

/// Runs every trial of `trials()` over the slice, as libtest would, and returns what libtest
/// concluded for each (read from its log).
fn trial_results(bug: Bug, known: KnownFailures) -> BTreeMap<String, TrialResult> {
    let trials = trials(
        Arc::new(corpus()),
        Arc::new(Buggy(bug)),
        Tier::Strict,
        Arc::new(known),
    );
    let count = trials.len();
    let log = tempfile::NamedTempFile::new().unwrap();
    let arguments = Arguments {
        test_threads: Some(1),
        format: Some(FormatSetting::Pretty),
        logfile: Some(log.path().to_string_lossy().into_owned()),
        ..Arguments::default()
    };
    let conclusion = libtest_mimic::run(&arguments, trials);
    let text = std::fs::read_to_string(log.path()).unwrap();
    let results: BTreeMap<String, TrialResult> = text
        .lines()
        .filter_map(|line| line.strip_prefix("test ")?.split_once(" ... "))
        .map(|(label, outcome)| {
            // Pretty output reads `[kind] name<padding>`.
            let name = label.rsplit(']').next().unwrap_or(label).trim();
            let result = match outcome {
                "ok" => TrialResult::Passed,
                "FAILED" => TrialResult::Failed,
                _ if outcome.starts_with("ignored") => TrialResult::Ignored,
                other => panic!("{name}: unknown outcome {other:?}"),
            };
            (name.to_string(), result)
        })
        .collect();
    assert_eq!(results.len(), count, "{text}");
    assert_eq!(
        conclusion.num_failed as usize,
        with(&results, TrialResult::Failed).len()
    );
    results
}

fn with(results: &BTreeMap<String, TrialResult>, wanted: TrialResult) -> BTreeSet<String> {
    results
        .iter()
        .filter(|(_, result)| **result == wanted)
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn a_wrong_loss_fails_exactly_the_forward_checks_it_moves() {
    let fixtures = fixtures();
    let expected = checks_where(&fixtures, |id, expected, check| {
        check == Check::Forward
            && !is_error(expected)
            && has_finite(expected, check)
            && !id.is_empty()
    });
    let failures = certify_failures(Bug::ShiftLoss);
    assert_eq!(failures.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(failures.values().all(|kind| *kind == FailureKind::Mismatch));
    // The mean over nothing is NaN, which a shift cannot move: that forward check passes.
    assert!(!expected.contains("nll_loss/f64/N4C3/mean/ignore_index=1,all_ignored/forward"));
    let results = trial_results(Bug::ShiftLoss, KnownFailures::default());
    assert_eq!(with(&results, TrialResult::Failed), expected);
    assert!(with(&results, TrialResult::Ignored).is_empty());
    assert_eq!(results["run/certified_something"], TrialResult::Passed);
}

#[test]
fn a_wrong_gradient_fails_only_gradient_checks() {
    let fixtures = fixtures();
    let expected = checks_where(&fixtures, |_, expected, check| {
        check == Check::Gradient && !is_error(expected) && has_finite(expected, check)
    });
    assert!(expected.len() > 20);
    assert_eq!(
        certify_failures(Bug::ShiftGradient)
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        expected
    );
    let results = trial_results(Bug::ShiftGradient, KnownFailures::default());
    assert_eq!(with(&results, TrialResult::Failed), expected);
}

#[test]
fn a_rejection_of_the_wrong_kind_fails_every_error_check() {
    let fixtures = fixtures();
    let expected = checks_where(&fixtures, |_, expected, _| is_error(expected));
    assert_eq!(expected.len(), 7);
    let failures = certify_failures(Bug::WrongKind);
    assert_eq!(failures.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(failures
        .values()
        .all(|kind| *kind == FailureKind::WrongRejection));
}

#[test]
fn rejecting_everything_for_an_unrelated_reason_passes_no_check() {
    let fixtures = fixtures();
    let all = checks_where(&fixtures, |_, _, _| true);
    let failures = certify_failures(Bug::RejectEverything);
    assert_eq!(failures.keys().cloned().collect::<BTreeSet<_>>(), all);
    let error_checks = checks_where(&fixtures, |_, expected, _| is_error(expected));
    for (check, kind) in &failures {
        let wanted = if error_checks.contains(check) {
            FailureKind::WrongRejection
        } else {
            FailureKind::RejectsValidInput
        };
        assert_eq!(*kind, wanted, "{check}");
    }
    let report = Report::new(
        "unrelated",
        Tier::Strict,
        certify(
            &Corpus::fixtures(Arc::new(fixtures.clone())),
            &Buggy(Bug::RejectEverything),
            Tier::Strict,
            |_| true,
            |_, _| {},
        ),
        &KnownFailures::default(),
    );
    assert!(report.failed() && !report.certified_something());
    let results = trial_results(Bug::RejectEverything, KnownFailures::default());
    assert!(with(&results, TrialResult::Passed).contains("run/known_failures_not_stale"));
    assert_eq!(with(&results, TrialResult::Passed).len(), 1);
    assert_eq!(results["run/certified_something"], TrialResult::Failed);
}

#[test]
fn accepting_what_the_anchor_rejects_fails_the_error_checks() {
    let fixtures = fixtures();
    let expected = checks_where(&fixtures, |_, expected, _| is_error(expected));
    let failures = certify_failures(Bug::AcceptEverything);
    assert_eq!(failures.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(failures
        .values()
        .all(|kind| *kind == FailureKind::AcceptsRejectedInput));
}

#[test]
fn a_panic_fails_its_own_cases_and_the_run_goes_on() {
    let fixtures = fixtures();
    let weighted: BTreeSet<String> = fixtures
        .manifest
        .cases
        .iter()
        .filter(|case| case.tensors.contains_key("weight"))
        .flat_map(|case| {
            CaseCheck::for_entry(case)
                .iter()
                .map(move |check| format!("{}/{}", case.id, check.name()))
        })
        .collect();
    assert!(weighted.len() > 10);
    let failures = certify_failures(Bug::PanicOnWeight);
    assert_eq!(failures.keys().cloned().collect::<BTreeSet<_>>(), weighted);
    assert!(failures.values().all(|kind| *kind == FailureKind::NoAnswer));
}

#[test]
fn supporting_nothing_certifies_nothing() {
    let results = trial_results(Bug::SupportNothing, KnownFailures::default());
    let checks = checks_where(&fixtures(), |_, _, _| true);
    assert_eq!(with(&results, TrialResult::Ignored), checks);
    assert_eq!(results["run/certified_something"], TrialResult::Failed);
}

#[test]
fn known_failures_match_check_and_kind_and_stale_entries_fail() {
    let moved = "nll_loss/f64/N4C3/sum/default/forward";
    let still_right = "nll_loss/f64/N4C3/sum/default/gradient";
    let group = |fails_as, checks: &[&str]| KnownGroup {
        reason: "deliberately listed".into(),
        fails_as,
        checks: checks.iter().map(|check| check.to_string()).collect(),
    };
    let known = KnownFailures {
        implementation: "deliberately wrong".into(),
        groups: vec![group(FailureKind::Mismatch, &[moved, still_right])],
    };
    let results = trial_results(Bug::ShiftLoss, known);
    assert_eq!(results[moved], TrialResult::Ignored);
    assert_eq!(
        results[still_right],
        TrialResult::Failed,
        "an unexpected pass fails"
    );
    assert_eq!(results["run/known_failures_not_stale"], TrialResult::Passed);

    let listed_as_crash = KnownFailures {
        implementation: "deliberately wrong".into(),
        groups: vec![group(
            FailureKind::NoAnswer,
            &[moved, "nll_loss/f64/N4C3/no/such/forward"],
        )],
    };
    let results = trial_results(Bug::ShiftLoss, listed_as_crash);
    assert_eq!(
        results[moved],
        TrialResult::Failed,
        "it fails, but not as listed"
    );
    assert_eq!(results["run/known_failures_not_stale"], TrialResult::Failed);
}

#[test]
fn the_reference_passes_every_check_of_the_slice() {
    let results = trial_results(Bug::ShiftLoss, KnownFailures::default());
    assert_eq!(
        results.len(),
        checks_where(&fixtures(), |_, _, _| true).len() + 2
    );
    let failures = certify(&corpus(), &Reference, Tier::Strict, |_| true, |_, _| {});
    assert!(failures
        .iter()
        .all(|result| matches!(result.verdict, Verdict::Passed(_))));
}

#[test]
fn certify_reports_progress_after_each_case() {
    let fixtures = fixtures();
    let mut seen = Vec::new();
    certify(
        &Corpus::fixtures(Arc::new(fixtures.clone())),
        &Reference,
        Tier::Strict,
        |_| true,
        |done, total| seen.push((done, total)),
    );
    let total = fixtures.manifest.cases.len();
    assert_eq!(
        seen,
        (1..=total).map(|done| (done, total)).collect::<Vec<_>>()
    );
}

#[test]
fn builtin_implementations_are_found_by_name() {
    assert!(builtin_names().contains(&"reference"));
    let reference = builtin("reference").unwrap();
    assert_eq!(reference.name(), Reference.name());
    assert!(builtin("no such implementation").is_none());
    for name in builtin_names() {
        assert!(builtin(name).is_some(), "{name}");
    }
}

#[test]
fn explain_reports_a_failing_case_and_survives_a_loss_of_the_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let case = "nll_loss/f64/N4C3/mean/weight";
    let explanation = explain(
        &corpus(),
        &Buggy(Bug::LossWithAnAxis),
        case,
        Tier::Strict,
        dir.path(),
    )
    .unwrap();
    assert!(!explanation.passed);
    assert!(
        explanation.text.contains("forward: FAILED (mismatch)"),
        "{}",
        explanation.text
    );
    assert!(
        explanation.text.contains("gradient: passed"),
        "{}",
        explanation.text
    );
    assert_eq!(
        explanation.heatmaps.len(),
        2,
        "only the gradient has comparable shapes (and the target map)"
    );
    assert!(explanation.heatmaps[1]
        .to_string_lossy()
        .ends_with(".target.png"));
    // The gradient agrees (NLL's is 0 off the target classes): a heatmap of differences has no
    // black, non-finite cell — a ratio would (0/0).
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&explanation.heatmaps[0]).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    // Black above the legend (its last 25 rows, which write in black) would be a non-finite cell.
    let tiles = (info.height as usize - 25) * info.width as usize * 3;
    assert!(pixels[..tiles]
        .chunks_exact(3)
        .all(|pixel| pixel != [0, 0, 0]));
    let passing = explain(&corpus(), &Reference, case, Tier::Strict, dir.path()).unwrap();
    assert!(passing.passed, "{}", passing.text);
}

/// An implementation that returns the anchor's stored values for every case (what the fixture
/// holds, NaN rows included), or the exact value moved by `offset` in the gradient.
struct Replays {
    fixtures: Fixtures,
    gradient_offset: Option<f64>,
}

impl Implementation for Replays {
    fn name(&self) -> &str {
        "replays the anchor"
    }

    fn compute(&self, call: &LossCall) -> Outcome {
        let entry = self
            .fixtures
            .manifest
            .cases
            .iter()
            .find(|entry| entry.loss == call.loss && entry.params == call.params)
            .expect("the call is a case of the corpus");
        let case = self.fixtures.load(entry).unwrap();
        let Expected::Values {
            loss, grad_input, ..
        } = case.expected
        else {
            return Outcome::Unsupported("an error case".into());
        };
        let output = LossOutput {
            loss: loss.to_f64(),
            grad_input: grad_input.to_f64(),
        };
        match self.gradient_offset {
            None => Outcome::Computed(output),
            Some(offset) => {
                let exact = Reference.compute(call);
                let Outcome::Computed(exact) = exact else {
                    panic!("the reference computes {}", entry.id)
                };
                Outcome::Computed(LossOutput {
                    grad_input: exact.grad_input.mapv(|value| value + offset),
                    ..output
                })
            }
        }
    }
}

/// The corpus cut down to the cases an anchor-artefact rule covers, each of one reduction (the
/// replaying implementation finds its case by loss and parameters).
fn artefact_fixtures() -> Fixtures {
    let mut fixtures =
        Fixtures::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")).unwrap();
    fixtures.manifest.cases.retain(|case| {
        case.dtype == "f64"
            && case.reduction == "none"
            && ANCHOR_ARTEFACTS
                .iter()
                .any(|rule| artefacts_for(&case.id, rule.check).next().is_some())
    });
    fixtures
}

#[test]
fn an_anchor_artefact_accepts_the_anchor_value_or_the_exact_one_and_says_which() {
    let fixtures = artefact_fixtures();
    // Where a rule covers the gradient and the anchor's stored gradient holds a NaN, the exact
    // (finite) gradient cannot pass against it: those checks pass as accepted. (Where the anchor
    // returns 0 for a tiny exact value, both are within the tolerance: a plain pass.)
    let gradient_rules: Vec<_> = fixtures
        .manifest
        .cases
        .iter()
        .filter(|case| artefacts_for(&case.id, Check::Gradient).next().is_some())
        .filter(|case| {
            let Expected::Values { grad_input, .. } = fixtures.load(case).unwrap().expected else {
                return false;
            };
            grad_input.to_f64().iter().any(|value| value.is_nan())
        })
        .map(|case| case.id.clone())
        .collect();
    assert!(gradient_rules.len() >= 2, "{gradient_rules:?}");
    let everything = |_: &_| true;

    // The anchor's own values pass as plain passes.
    let anchor = Replays {
        fixtures: fixtures.clone(),
        gradient_offset: None,
    };
    let results = certify(
        &Corpus::fixtures(Arc::new(fixtures.clone())),
        &anchor,
        Tier::Strict,
        everything,
        |_, _| {},
    );
    assert!(results
        .iter()
        .all(|result| matches!(result.verdict, Verdict::Passed(_))));

    // The reference's exact gradients differ from the anchor's there, and are accepted, naming
    // the rule.
    let results = certify(
        &Corpus::fixtures(Arc::new(fixtures.clone())),
        &Reference,
        Tier::Strict,
        everything,
        |_, _| {},
    );
    let accepted: Vec<_> = results
        .iter()
        .filter_map(|result| match &result.verdict {
            Verdict::Accepted {
                alternative: Alternative::Exact(artefact),
                ..
            } => Some((result.case_id.clone(), artefact.id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        accepted
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>(),
        gradient_rules
    );
    assert!(results.iter().all(|result| result.verdict.passed()));
    let report = Report::new(
        "reference",
        Tier::Strict,
        results,
        &KnownFailures::default(),
    );
    assert!(report.terminal().contains("anchor artefact accepted"));
    let checks = report.json()["checks"].clone();
    let nan_rows = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|check| {
            check["check"].as_str().is_some_and(|name| {
                name.starts_with("cross_entropy/") && name.ends_with("/gradient")
            })
        })
        .unwrap();
    assert_eq!(
        nan_rows["detail"],
        "accepted: anchor artefact ignored-nan-logits: PyTorch returns NaN gradient rows at ignored positions"
    );

    // A gradient that is neither the anchor's nor the exact one fails as a mismatch.
    let wrong = Replays {
        fixtures: fixtures.clone(),
        gradient_offset: Some(1e-3),
    };
    let results = certify(
        &Corpus::fixtures(Arc::new(fixtures.clone())),
        &wrong,
        Tier::Strict,
        everything,
        |_, _| {},
    );
    for result in &results {
        let is_gradient = result.check == CaseCheck::Values(Check::Gradient);
        match &result.verdict {
            Verdict::Failed(failure) => {
                assert!(is_gradient, "{}", result.trial_name());
                assert_eq!(failure.kind, FailureKind::Mismatch);
            }
            verdict => assert!(!is_gradient, "{}: {verdict:?}", result.trial_name()),
        }
    }
}
