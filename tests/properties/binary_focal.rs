//! Properties of the binary cross-entropy and focal losses on generated inputs: gradients against
//! finite differences, reproducibility, and the identities that tie the anchors' conventions
//! together where they must agree (hard targets, γ = 0, no α).

use std::collections::BTreeMap;

use ndarray::ArrayD;
use proptest::prelude::*;
use segloss::tensor::Tensor;
use serde_json::{json, Value};

use crate::common::{array, check_gradient, config, nearly_equal, Call};

/// The losses this module holds properties for.
pub const LOSSES: &[&str] = &[
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "sigmoid_focal_loss",
    "smp.FocalLoss",
    "smp.SoftBCEWithLogitsLoss",
    "smp.SoftCrossEntropyLoss",
    "monai.FocalLoss",
    "kornia.focal_loss",
    "kornia.binary_focal_loss_with_logits",
];

/// A (N, C, spatial…) problem: logits in [−4, 4] on a 1/64 grid (exact in float32, which MONAI
/// casts to), hard and soft targets, class labels, options.
#[derive(Debug, Clone)]
struct Problem {
    shape: Vec<usize>,
    logits: Vec<f64>,
    hard: Vec<f64>,
    soft: Vec<f64>,
    labels: Vec<i64>,
    alpha: f64,
    gamma: f64,
    reduction: &'static str,
    direction: Vec<f64>,
}

fn problems() -> impl Strategy<Value = Problem> {
    (
        1usize..=2,
        1usize..=3,
        prop::collection::vec(1usize..=3, 1..=2),
    )
        .prop_flat_map(|(batch, classes, spatial)| {
            let shape = [vec![batch, classes], spatial].concat();
            let elements: usize = shape.iter().product();
            let positions = elements / classes;
            (
                Just(shape),
                prop::collection::vec(-256i32..=256, elements),
                prop::collection::vec(prop::bool::ANY, elements),
                prop::collection::vec(0.05..0.95f64, elements),
                prop::collection::vec(0..classes as i64, positions),
                prop::sample::select(vec![0.25, 0.5, 0.75]),
                prop::sample::select(vec![0.0, 1.0, 1.5, 2.0]),
                prop::sample::select(vec!["none", "mean", "sum"]),
                prop::collection::vec(-1.0..1.0f64, elements),
            )
        })
        .prop_map(
            |(shape, grid, hard, soft, labels, alpha, gamma, reduction, direction)| Problem {
                shape,
                logits: grid.iter().map(|&step| f64::from(step) / 64.0).collect(),
                hard: hard
                    .iter()
                    .map(|&positive| f64::from(u8::from(positive)))
                    .collect(),
                soft,
                labels,
                alpha,
                gamma,
                reduction,
                direction,
            },
        )
}

impl Problem {
    fn map(&self, values: &[f64]) -> Tensor {
        Tensor::Float64(array(&self.shape, values.to_vec()))
    }

    fn label_tensor(&self) -> Tensor {
        let mut positions = self.shape.clone();
        positions.remove(1);
        Tensor::Int64(ArrayD::from_shape_vec(positions, self.labels.clone()).unwrap())
    }

    /// A call of `loss` with the prediction and target under the anchor's names.
    fn call(
        &self,
        loss: &'static str,
        prediction: (&'static str, Tensor),
        target: (&str, Tensor),
        params: Value,
    ) -> Call {
        let params: BTreeMap<String, Value> = params
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Call::new(loss, prediction, target, params, None)
    }

    /// One call per loss of the family (MONAI's float32 rounding rules out finite differences
    /// for it, so it is left to the identities and the fixtures).
    fn differentiable_calls(&self) -> Vec<Call> {
        let (r, a, g) = (self.reduction, self.alpha, self.gamma);
        let logits = || self.map(&self.logits);
        let probabilities = self.map(
            &self
                .logits
                .iter()
                .map(|x| 0.05 + 0.9 / (1.0 + (-x).exp()))
                .collect::<Vec<_>>(),
        );
        vec![
            self.call("binary_cross_entropy", ("input", probabilities), ("target", self.map(&self.soft)), json!({"reduction": r})),
            self.call("binary_cross_entropy_with_logits", ("input", logits()), ("target", self.map(&self.soft)), json!({"reduction": r})),
            self.call("sigmoid_focal_loss", ("inputs", logits()), ("targets", self.map(&self.soft)), json!({"alpha": a, "gamma": g, "reduction": r})),
            self.call("smp.FocalLoss", ("y_pred", logits()), ("y_true", self.map(&self.soft)), json!({"mode": "multilabel", "alpha": a, "gamma": g, "normalized": true, "reduction": r})),
            self.call("smp.FocalLoss", ("y_pred", logits()), ("y_true", self.label_tensor()), json!({"mode": "multiclass", "gamma": g, "reduction": r})),
            self.call("smp.SoftBCEWithLogitsLoss", ("y_pred", logits()), ("y_true", self.map(&self.hard)), json!({"smooth_factor": 0.1, "reduction": r})),
            self.call("smp.SoftCrossEntropyLoss", ("y_pred", logits()), ("y_true", self.label_tensor()), json!({"smooth_factor": 0.1, "reduction": r})),
            self.call("kornia.focal_loss", ("pred", logits()), ("target", self.label_tensor()), json!({"alpha": a, "gamma": g, "reduction": r})),
            self.call("kornia.binary_focal_loss_with_logits", ("pred", logits()), ("target", self.map(&self.soft)), json!({"alpha": a, "gamma": g, "reduction": r})),
        ]
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn gradients_match_finite_differences(problem in problems()) {
        let direction = array(&problem.shape, problem.direction.clone());
        for call in problem.differentiable_calls() {
            if let Err(report) = check_gradient(&call, std::slice::from_ref(&direction), 24) {
                return Err(TestCaseError::fail(format!("{}: {report}", call.loss)));
            }
        }
    }

    #[test]
    fn backward_is_bit_reproducible(problem in problems()) {
        let bits = |values: &ArrayD<f64>| values.iter().map(|value| value.to_bits()).collect::<Vec<_>>();
        for call in problem.differentiable_calls() {
            let (first, second) = (call.run(), call.run());
            prop_assert_eq!(bits(&first.loss), bits(&second.loss));
            prop_assert_eq!(bits(&first.grad_input), bits(&second.grad_input));
        }
    }

    /// For hard targets every sigmoid convention is the same focal loss: torchvision, kornia's
    /// interpolated terms, MONAI's log-sigmoid factor and smp's geometric p_t.
    #[test]
    fn sigmoid_conventions_agree_on_hard_targets(problem in problems()) {
        let (a, g) = (problem.alpha, problem.gamma);
        let logits = || problem.map(&problem.logits);
        let hard = || problem.map(&problem.hard);
        let with = json!({"alpha": a, "gamma": g, "reduction": "none"});
        let torchvision = problem.call("sigmoid_focal_loss", ("inputs", logits()), ("targets", hard()), with.clone()).run();
        let kornia = problem.call("kornia.binary_focal_loss_with_logits", ("pred", logits()), ("target", hard()), with).run();
        nearly_equal(&kornia.loss, &torchvision.loss).map_err(TestCaseError::fail)?;
        nearly_equal(&kornia.grad_input, &torchvision.grad_input).map_err(TestCaseError::fail)?;
        let monai = problem.call("monai.FocalLoss", ("input", logits()), ("target", hard()), json!({"alpha": a, "gamma": g, "reduction": "none"})).run();
        nearly_equal(&monai.loss, &torchvision.loss).map_err(TestCaseError::fail)?;
        let smp = problem.call("smp.FocalLoss", ("y_pred", logits()), ("y_true", hard()), json!({"mode": "binary", "alpha": a, "gamma": g, "reduction": "none"})).run();
        let flat = torchvision.loss.iter().copied().collect::<Vec<_>>();
        nearly_equal(&smp.loss, &array(&[flat.len()], flat)).map_err(TestCaseError::fail)?;
    }

    /// Without α and γ the focal losses are cross entropies: torchvision's is BCE with logits and
    /// kornia's softmax mean is the cross-entropy mean divided by C.
    #[test]
    fn focal_without_focus_is_cross_entropy(problem in problems()) {
        let logits = || problem.map(&problem.logits);
        let bce = problem.call("binary_cross_entropy_with_logits", ("input", logits()), ("target", problem.map(&problem.soft)), json!({"reduction": "mean"})).run();
        let focal = problem.call("sigmoid_focal_loss", ("inputs", logits()), ("targets", problem.map(&problem.soft)), json!({"alpha": -1, "gamma": 0, "reduction": "mean"})).run();
        nearly_equal(&focal.loss, &bce.loss).map_err(TestCaseError::fail)?;
        nearly_equal(&focal.grad_input, &bce.grad_input).map_err(TestCaseError::fail)?;
        let ce = problem.call("cross_entropy", ("input", logits()), ("target", problem.label_tensor()), json!({"reduction": "mean"})).run();
        let kornia = problem.call("kornia.focal_loss", ("pred", logits()), ("target", problem.label_tensor()), json!({"alpha": null, "gamma": 0, "reduction": "mean"})).run();
        let classes = problem.shape[1] as f64;
        nearly_equal(&(&kornia.loss * classes), &ce.loss).map_err(TestCaseError::fail)?;
        nearly_equal(&(&kornia.grad_input * classes), &ce.grad_input).map_err(TestCaseError::fail)?;
        let soft_ce = problem.call("smp.SoftCrossEntropyLoss", ("y_pred", logits()), ("y_true", problem.label_tensor()), json!({"smooth_factor": 0.0, "reduction": "mean"})).run();
        nearly_equal(&soft_ce.loss, &ce.loss).map_err(TestCaseError::fail)?;
    }

    /// MONAI's `sum` is Σ over (batch, class) of spatial means: the `none` map's spatial mean summed.
    #[test]
    fn monai_sum_sums_spatial_means(problem in problems()) {
        let run = |reduction: &str| problem.call("monai.FocalLoss", ("input", problem.map(&problem.logits)), ("target", problem.map(&problem.hard)), json!({"gamma": problem.gamma, "reduction": reduction})).run().loss;
        let map = run("none");
        let spatial: usize = problem.shape[2..].iter().product();
        let expected = map.sum() / spatial as f64;
        let sum = run("sum");
        prop_assert!((sum[[]] - expected).abs() <= 1e-12 * (1.0 + expected.abs()), "{sum} vs {expected}");
    }

    /// Every focal loss is non-negative for targets in [0, 1].
    #[test]
    fn losses_are_non_negative(problem in problems()) {
        for call in problem.differentiable_calls() {
            let loss = call.run().loss;
            prop_assert!(loss.iter().all(|&value| value >= 0.0), "{}: {loss:?}", call.loss);
        }
    }
}
