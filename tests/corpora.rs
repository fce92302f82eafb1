//! The corpora beyond the fixtures, tested by making them fail: implementations with bugs that
//! only realistic sizes show pass every bundled case of their loss and fail the `large` corpus's
//! (here at the smallest sizes that still show the bug), and a wrong implementation's random
//! failure shrinks to a case of a handful of elements.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use ndarray::ArrayD;
use segloss::certify::reproduce::shrink_failure;
use segloss::certify::{
    certify, CaseCheck, Implementation, LossCall, LossOutput, Outcome, Reference, Verdict,
};
use segloss::compare::{Check, Tier};
use segloss::corpus::large;
use segloss::corpus::{make, Corpus, CorpusKind, Labels, Recipe, ValueStyle};
use segloss::fixtures::Fixtures;
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

/// A deliberately wrong cross entropy.
#[derive(Clone, Copy)]
enum Bug {
    /// Accumulates the per-position losses of a float32 `mean` or `sum` one after another in a
    /// float32 accumulator (the gradient is right).
    SequentialFloat32Sum,
    /// Skips the last position of every block of 65,536, as a tiled kernel with an off-by-one
    /// bound would: those positions neither count nor get a gradient.
    DropsBlockEnds,
    /// Scales every loss by 1.01.
    ScaledLoss,
}

/// The positions a block-tiled kernel of [`Bug::DropsBlockEnds`] skips: the last of each 65,536.
const BLOCK: usize = 65_536;

struct Buggy(Bug);

impl Implementation for Buggy {
    fn name(&self) -> &str {
        "deliberately wrong cross entropy"
    }

    fn compute(&self, call: &LossCall) -> Outcome {
        if call.loss != "cross_entropy" {
            return Outcome::Unsupported("only cross_entropy".into());
        }
        match self.0 {
            Bug::SequentialFloat32Sum => sequential_sum(call),
            Bug::DropsBlockEnds => dropping_block_ends(call),
            Bug::ScaledLoss => match Reference.compute(call) {
                Outcome::Computed(output) => Outcome::Computed(LossOutput {
                    loss: output.loss.mapv(|value| value * 1.01),
                    ..output
                }),
                other => other,
            },
        }
    }
}

/// [`Bug::SequentialFloat32Sum`]: the reference's per-position losses (`none`), added in order in
/// float32, over the reference's own denominator.
fn sequential_sum(call: &LossCall) -> Outcome {
    let reduction = call
        .params
        .get("reduction")
        .and_then(Value::as_str)
        .unwrap_or("mean");
    let float32 = matches!(call.tensors.get("input"), Some(Tensor::Float32(_)));
    let Outcome::Computed(output) = Reference.compute(call) else {
        return Reference.compute(call);
    };
    if !float32 || reduction == "none" {
        return Outcome::Computed(output);
    }
    let mut unreduced = call.clone();
    unreduced
        .params
        .insert("reduction".into(), Value::from("none"));
    unreduced.grad_output = None;
    let Outcome::Computed(per_position) = Reference.compute(&unreduced) else {
        return Outcome::Computed(output);
    };
    let exact_sum: f64 = per_position.loss.iter().sum();
    let float32_sum = per_position
        .loss
        .iter()
        .fold(0.0_f32, |sum, &loss| sum + loss as f32);
    let loss = if reduction == "sum" {
        f64::from(float32_sum)
    } else {
        f64::from(float32_sum) * (output.loss[[]] / exact_sum)
    };
    Outcome::Computed(LossOutput {
        loss: ArrayD::from_elem(vec![], loss),
        ..output
    })
}

/// [`Bug::DropsBlockEnds`]: the reference with the skipped positions' targets ignored.
fn dropping_block_ends(call: &LossCall) -> Outcome {
    let mut dropped = call.clone();
    let ignore = call
        .params
        .get("ignore_index")
        .and_then(Value::as_i64)
        .unwrap_or(-100);
    if let Some(Tensor::Int64(target)) = dropped.tensors.get_mut("target") {
        if let Some(flat) = target.as_slice_mut() {
            for position in (BLOCK - 1..flat.len()).step_by(BLOCK) {
                flat[position] = ignore;
            }
        }
    }
    Reference.compute(&dropped)
}

/// The failing checks of a run of `bug` over `corpus`.
fn failing(corpus: &Corpus, bug: Bug) -> Vec<(String, CaseCheck)> {
    certify(corpus, &Buggy(bug), Tier::Strict, |_| true, |_, _| {})
        .into_iter()
        .filter(|result| matches!(result.verdict, Verdict::Failed(_)))
        .map(|result| (result.case_id, result.check))
        .collect()
}

/// The bundled cross_entropy cases.
fn cross_entropy_fixtures() -> Corpus {
    let mut corpus = Corpus::fixtures(fixtures());
    corpus.cases.retain(|case| case.loss == "cross_entropy");
    assert!(corpus.cases.len() > 300);
    corpus
}

/// A `large`-style corpus of one recipe per template, at `shape`.
fn sized(templates: &[&str], shape: &[usize]) -> Corpus {
    let recipes = templates
        .iter()
        .map(|template| Recipe {
            template: template.to_string(),
            params: BTreeMap::new(),
            shape: shape.to_vec(),
            labels: Labels::Uniform,
            values: ValueStyle::Uniform,
            seed: 7,
            tag: None,
        })
        .collect();
    Corpus::generated(CorpusKind::Large, fixtures(), recipes).unwrap()
}

#[test]
fn a_sequential_float32_mean_passes_the_fixtures_and_fails_at_size() {
    assert_eq!(
        failing(&cross_entropy_fixtures(), Bug::SequentialFloat32Sum),
        vec![]
    );
    // 2²¹ positions, as many as (8, 21, 512, 512) has; two classes keep the case small.
    let corpus = sized(
        &[
            "cross_entropy/f32/N2C3H3W4/mean/default",
            "cross_entropy/f32/N2C3H3W4/sum/default",
            "cross_entropy/f64/N2C3H3W4/mean/default",
        ],
        &[8, 2, 512, 512],
    );
    let ids: Vec<String> = corpus.cases.iter().map(|case| case.id.clone()).collect();
    assert_eq!(
        failing(&corpus, Bug::SequentialFloat32Sum),
        vec![
            (ids[0].clone(), CaseCheck::Values(Check::Forward)),
            (ids[1].clone(), CaseCheck::Values(Check::Forward)),
        ]
    );
}

#[test]
fn dropping_a_position_per_block_passes_the_fixtures_and_fails_at_size() {
    assert_eq!(
        failing(&cross_entropy_fixtures(), Bug::DropsBlockEnds),
        vec![]
    );
    // 2¹⁸ positions: four blocks, four dropped positions.
    let corpus = sized(
        &[
            "cross_entropy/f32/N2C3H3W4/mean/default",
            "cross_entropy/f64/N2C3H3W4/sum/default",
        ],
        &[4, 3, 256, 256],
    );
    let ids: Vec<String> = corpus.cases.iter().map(|case| case.id.clone()).collect();
    let failures = failing(&corpus, Bug::DropsBlockEnds);
    // The skipped positions' gradient is 0 instead of about the largest entry's size; the float64
    // sum also misses their losses by far more than its bound.
    assert!(failures.contains(&(ids[0].clone(), CaseCheck::Values(Check::Gradient))));
    assert!(failures.contains(&(ids[1].clone(), CaseCheck::Values(Check::Gradient))));
    assert!(failures.contains(&(ids[1].clone(), CaseCheck::Values(Check::Forward))));
}

#[test]
fn a_random_failure_shrinks_to_a_handful_of_elements() {
    let corpus = Corpus::open(
        CorpusKind::Random {
            cases: 300,
            seed: 11,
        },
        fixtures(),
    )
    .unwrap();
    let failures = failing(&corpus, Bug::ScaledLoss);
    let (id, _) = failures.first().expect("a random cross_entropy case fails");
    let spec = corpus.find(id).unwrap();
    let original = spec.recipe.as_ref().unwrap().elements();
    let reproducer = shrink_failure(&corpus, spec, &Buggy(Bug::ScaledLoss), Tier::Strict).unwrap();
    assert!(reproducer.elements <= 8, "{}", reproducer.describe());
    assert!(reproducer.elements <= original);
    let command = reproducer.command();
    assert!(
        command.starts_with("segloss eval cross_entropy --input DIR/input.npy"),
        "{command}"
    );
    // The minimal case still fails.
    let minimal = &reproducer.case;
    let call = segloss::certify::call_for(minimal);
    let outcome = Buggy(Bug::ScaledLoss).compute(&call);
    assert!(segloss::certify::judge(minimal, &outcome, Tier::Strict)
        .iter()
        .any(|(_, verdict)| matches!(verdict, Verdict::Failed(_))));
}

#[test]
fn the_reference_passes_its_own_random_corpus_and_draws_it_again_alike() {
    let kind = CorpusKind::Random {
        cases: 400,
        seed: 3,
    };
    let corpus = Corpus::open(kind, fixtures()).unwrap();
    assert_eq!(corpus.cases.len(), 400);
    let again = Corpus::open(kind, fixtures()).unwrap();
    let ids = |corpus: &Corpus| {
        corpus
            .cases
            .iter()
            .map(|case| case.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&corpus), ids(&again));
    let losses: std::collections::BTreeSet<_> =
        corpus.cases.iter().map(|case| &case.loss).collect();
    assert!(losses.len() >= 20, "{losses:?}");
    let results = certify(&corpus, &Reference, Tier::Strict, |_| true, |_, _| {});
    let failed: Vec<_> = results
        .iter()
        .filter(|result| !result.verdict.passed())
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn every_large_recipe_makes_a_valid_call() {
    // At a few elements per axis, so that the test stays fast: the templates, parameters and
    // kinds of tensors are what can go wrong.
    for recipe in large::recipes() {
        let small = Recipe {
            shape: recipe
                .shape
                .iter()
                .enumerate()
                .map(|(axis, &size)| if axis == 1 { size } else { size.min(9) })
                .collect(),
            ..recipe.clone()
        };
        let entry = fixtures()
            .manifest
            .cases
            .iter()
            .find(|entry| entry.id == recipe.template)
            .unwrap_or_else(|| panic!("no template {}", recipe.template))
            .clone();
        let template = fixtures().load(&entry).unwrap();
        let case = make(&template, &small).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(case.dtype, entry.dtype);
    }
    let ids: std::collections::BTreeSet<_> = large::recipes().iter().map(Recipe::id).collect();
    assert_eq!(
        ids.len(),
        large::recipes().len(),
        "large case ids are unique"
    );
}
