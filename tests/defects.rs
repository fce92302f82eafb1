//! Upstream defects as accepted alternatives, tested by making them fail: the reference gives the
//! anchors' (defective) outcomes and is reported as reproducing each defect; an implementation
//! that gives the corrected outcomes passes every check and is reported as correcting them; one
//! that gets the correction slightly wrong fails exactly the checks of the defect cases. The
//! corrected outcomes the generator recorded are checked against what each defect says, through
//! the reference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use ndarray::ArrayD;
use regex::Regex;
use segloss::certify::report::Report;
use segloss::certify::{
    certify, Alternative, CheckResult, FailureKind, Implementation, LossCall, LossOutput, Outcome,
    Reference, Verdict,
};
use segloss::compare::{assert_close, tolerance_for, Check, Tier};
use segloss::corpus::Corpus;
use segloss::fixtures::{Case, Expected, Fixtures};
use segloss::tensor::Tensor;
use serde_json::Value;

fn fixtures() -> Arc<Fixtures> {
    static FIXTURES: OnceLock<Arc<Fixtures>> = OnceLock::new();
    FIXTURES
        .get_or_init(|| {
            Arc::new(
                Fixtures::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")).unwrap(),
            )
        })
        .clone()
}

/// Every fixture case that shows an upstream defect, loaded.
fn defect_cases() -> Vec<Case> {
    let fixtures = fixtures();
    fixtures
        .manifest
        .cases
        .iter()
        .filter(|entry| !entry.alternatives.is_empty())
        .map(|entry| fixtures.load(entry).unwrap())
        .collect()
}

/// A key for a call's arguments, to recognise a case's call.
fn call_key(
    loss: &str,
    params: &BTreeMap<String, Value>,
    tensors: &BTreeMap<String, Tensor>,
) -> String {
    format!("{loss} {params:?} {tensors:?}")
}

/// Gives each defect case's recorded corrected outcome times `factor`, and the reference's outcome
/// everywhere else: an implementation with the upstream fixes (`factor` 1), or with a slightly
/// wrong one.
struct Correcting {
    corrected: BTreeMap<String, LossOutput>,
    factor: f64,
}

impl Correcting {
    fn new(factor: f64) -> Correcting {
        let corrected = defect_cases()
            .into_iter()
            .map(|case| {
                let corrected = &case.corrected[0];
                let output = LossOutput {
                    loss: corrected.loss.to_f64(),
                    grad_input: corrected.grad_input.to_f64(),
                };
                (call_key(&case.loss, &case.params, &case.tensors), output)
            })
            .collect();
        Correcting { corrected, factor }
    }
}

impl Implementation for Correcting {
    fn name(&self) -> &str {
        "corrects the upstream defects"
    }

    fn compute(&self, call: &LossCall) -> Outcome {
        match self
            .corrected
            .get(&call_key(&call.loss, &call.params, &call.tensors))
        {
            Some(output) => Outcome::Computed(LossOutput {
                loss: output.loss.mapv(|value| value * self.factor),
                grad_input: output.grad_input.mapv(|value| value * self.factor),
            }),
            None => Reference.compute(call),
        }
    }
}

/// Certifies `implementation` on the fixture cases that show a defect.
fn certify_defect_cases(implementation: &dyn Implementation) -> Vec<CheckResult> {
    let ids: BTreeSet<String> = defect_cases().into_iter().map(|case| case.id).collect();
    certify(
        &Corpus::fixtures(fixtures()),
        implementation,
        Tier::Strict,
        |spec| ids.contains(&spec.id),
        |_, _| {},
    )
}

/// The defect cases' checks per defect id.
fn checks_per_defect(results: &[CheckResult]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for result in results {
        for defect in &result.defects {
            *counts.entry(defect.id.clone()).or_default() += 1;
        }
    }
    counts
}

#[test]
fn defect_cases_name_their_upstream_and_cover_every_declared_defect() {
    let upstream = Regex::new(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+#[0-9]+$").unwrap();
    let cases = defect_cases();
    let mut defects = BTreeSet::new();
    for case in &cases {
        for corrected in &case.corrected {
            assert!(
                upstream.is_match(&corrected.defect.upstream),
                "{}: {:?}",
                case.id,
                corrected.defect
            );
            defects.insert(corrected.defect.id.clone());
            if let Expected::Values {
                grad_output,
                loss,
                grad_input,
            } = &case.expected
            {
                assert_eq!(
                    corrected.grad_output.to_f64(),
                    grad_output.to_f64(),
                    "{}",
                    case.id
                );
                assert_eq!(corrected.loss.shape(), loss.shape(), "{}", case.id);
                assert_eq!(
                    corrected.grad_input.shape(),
                    grad_input.shape(),
                    "{}",
                    case.id
                );
            }
        }
    }
    let declared = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/segloss_gen/defects.py"),
    )
    .unwrap();
    let declared: BTreeSet<String> = Regex::new(r#"id="([a-z0-9-]+)""#)
        .unwrap()
        .captures_iter(&declared)
        .map(|capture| capture[1].to_string())
        .collect();
    assert_eq!(defects, declared);
}

#[test]
fn the_reference_gives_the_anchors_outcome_and_is_reported_as_reproducing_each_defect() {
    let results = certify_defect_cases(&Reference);
    assert!(!results.is_empty());
    for result in &results {
        assert!(
            matches!(result.verdict, Verdict::Passed(_)),
            "{}: {:?}",
            result.trial_name(),
            result.verdict
        );
    }
    let report = Report::new(
        "reference",
        Tier::Strict,
        results.clone(),
        &Default::default(),
    );
    let expected = checks_per_defect(&results);
    let counts = report.defect_counts();
    assert_eq!(counts.len(), expected.len());
    for count in counts {
        assert_eq!(
            (count.anchor, count.corrected),
            (expected[&count.defect], 0),
            "{}",
            count.defect
        );
    }
}

#[test]
fn corrected_outcomes_pass_and_are_reported_as_corrections() {
    let results = certify_defect_cases(&Correcting::new(1.0));
    for result in &results {
        match &result.verdict {
            Verdict::Accepted {
                alternative: Alternative::Corrected(defect),
                ..
            } => {
                assert!(result.defects.contains(defect), "{}", result.trial_name())
            }
            other => panic!("{}: {other:?}", result.trial_name()),
        }
    }
    let rejected_by_anchor = results
        .iter()
        .filter(|result| result.case_id.contains("/error="))
        .count();
    assert!(
        rejected_by_anchor > 0,
        "no defect case where the anchor raises"
    );
    let report = Report::new(
        "corrected",
        Tier::Strict,
        results.clone(),
        &Default::default(),
    );
    let expected = checks_per_defect(&results);
    for count in report.defect_counts() {
        assert_eq!(
            (count.anchor, count.corrected),
            (0, expected[&count.defect]),
            "{}",
            count.defect
        );
    }
    assert!(!report.failed());
    let terminal = report.terminal();
    assert!(terminal.contains("the corrected one"), "{terminal}");
    assert!(terminal.contains("upstream defect corrected"), "{terminal}");
    let corrected: usize = report
        .rows()
        .iter()
        .filter(|row| row.option == "all")
        .map(|row| row.corrected)
        .sum();
    assert_eq!(corrected, results.len());
}

#[test]
fn a_slightly_wrong_correction_fails_exactly_the_defect_cases_checks() {
    let results = certify_defect_cases(&Correcting::new(1.01));
    for result in &results {
        let expected_kind = if result.case_id.contains("/error=") {
            FailureKind::AcceptsRejectedInput
        } else {
            FailureKind::Mismatch
        };
        match &result.verdict {
            Verdict::Failed(failure) => {
                assert_eq!(failure.kind, expected_kind, "{}", result.trial_name())
            }
            other => panic!("{} should fail: {other:?}", result.trial_name()),
        }
    }
    // Everywhere else it is the reference, and passes.
    let results = certify(
        &Corpus::fixtures(fixtures()),
        &Correcting::new(1.01),
        Tier::Strict,
        |spec| spec.defects.is_empty() && spec.loss.starts_with("smp.Soft"),
        |_, _| {},
    );
    assert!(!results.is_empty());
    assert!(results.iter().all(|result| result.verdict.passed()));
}

/// The reference's loss and gradient for `case`'s call with `params` changed, at grad_output `g`.
fn reference(case: &Case, params: &[(&str, Value)], grad_output: &ArrayD<f64>) -> LossOutput {
    let mut call_params = case.params.clone();
    for (name, value) in params {
        call_params.insert(name.to_string(), value.clone());
    }
    let call = LossCall {
        loss: case.loss.clone(),
        params: call_params,
        tensors: case.tensors.clone(),
        grad_output: Some(grad_output.clone()),
    };
    match Reference.compute(&call) {
        Outcome::Computed(output) => output,
        other => panic!("{}: {other:?}", case.id),
    }
}

/// Asserts that `actual` is the corrected outcome of `case` within the case's tolerances.
fn assert_corrected(case: &Case, actual: &LossOutput) {
    let corrected = &case.corrected[0];
    for (check, got, want) in [
        (Check::Forward, &actual.loss, &corrected.loss),
        (Check::Gradient, &actual.grad_input, &corrected.grad_input),
    ] {
        let (tolerance, _) = tolerance_for(&case.id, case.input_dtype(), check, Tier::Strict);
        if let Err(mismatch) = assert_close(got, &want.to_f64(), tolerance) {
            panic!("{} {check:?}: {mismatch}", case.id);
        }
    }
}

#[test]
fn the_recorded_corrections_are_what_the_defects_say() {
    let mut checked = BTreeMap::<String, usize>::new();
    for case in defect_cases() {
        let defect = &case.corrected[0].defect.id;
        let grad_output = case.corrected[0].grad_output.to_f64();
        let scalar = |value: f64| ArrayD::from_elem(vec![], value);
        let corrected = match defect.as_str() {
            // The loss without smoothing.
            "smp-soft-ce-smooth-factor-unset" => {
                reference(&case, &[("smooth_factor", Value::from(0.0))], &grad_output)
            }
            // The sum over the elements divided by the number not ignored.
            "smp-soft-loss-ignored-in-mean" => {
                let ignore_index = case
                    .params
                    .get("ignore_index")
                    .and_then(Value::as_f64)
                    .unwrap_or(-100.0);
                let counted = case.tensors["y_true"]
                    .to_f64()
                    .iter()
                    .filter(|&&t| t != ignore_index)
                    .count() as f64;
                let sum = reference(
                    &case,
                    &[("reduction", Value::from("sum"))],
                    &(&grad_output / counted),
                );
                LossOutput {
                    loss: sum.loss / counted,
                    grad_input: sum.grad_input,
                }
            }
            // The mean over the classes of each class's loss (smp's loss restricted to it) raised
            // to gamma.
            "smp-tversky-gamma-on-mean" if !case.params.contains_key("class_weights") => {
                let classes = case.tensors["y_pred"].shape()[1];
                let g = grad_output.first().copied().unwrap();
                let mut total = LossOutput {
                    loss: scalar(0.0),
                    grad_input: ArrayD::zeros(case.tensors["y_pred"].shape()),
                };
                for class in 0..classes {
                    let one = reference(
                        &case,
                        &[("classes", Value::from(vec![class]))],
                        &scalar(g / classes as f64),
                    );
                    total.loss = total.loss + one.loss / classes as f64;
                    total.grad_input = total.grad_input + one.grad_input;
                }
                total
            }
            _ => continue,
        };
        assert_corrected(&case, &corrected);
        *checked.entry(defect.clone()).or_default() += 1;
    }
    let checked: Vec<&str> = checked.keys().map(String::as_str).collect();
    assert_eq!(
        checked,
        [
            "smp-soft-ce-smooth-factor-unset",
            "smp-soft-loss-ignored-in-mean",
            "smp-tversky-gamma-on-mean"
        ]
    );
}

#[test]
fn where_the_anchor_raises_loss_and_gradient_must_be_one_defects_correction() {
    let case = defect_cases()
        .into_iter()
        .find(|case| case.id.contains("/error="))
        .expect("a defect case where the anchor raises");
    let first = case.corrected[0].clone();
    // A second, made-up correction whose gradient differs from the first one's.
    let mut other = first.clone();
    other.defect = Arc::new(segloss::fixtures::Defect {
        id: "made-up".into(),
        ..(*first.defect).clone()
    });
    other.grad_input = Tensor::Float64(first.grad_input.to_f64().mapv(|value| value * 2.0 + 1.0));
    let mut two = case.clone();
    two.corrected.push(other.clone());
    let answer = |grad: &Tensor| {
        Outcome::Computed(LossOutput {
            loss: first.loss.to_f64(),
            grad_input: grad.to_f64(),
        })
    };
    let judged = |outcome: &Outcome| {
        segloss::certify::judge(&two, outcome, Tier::Strict)[0]
            .1
            .clone()
    };
    assert!(matches!(
        judged(&answer(&first.grad_input)),
        Verdict::Accepted { alternative: Alternative::Corrected(ref defect), .. } if *defect == first.defect
    ));
    // The first correction's loss with the other's gradient is neither correction.
    match judged(&answer(&other.grad_input)) {
        Verdict::Failed(failure) => assert_eq!(failure.kind, FailureKind::AcceptsRejectedInput),
        verdict => panic!("{verdict:?}"),
    }
}
