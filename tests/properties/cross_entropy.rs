//! Properties of `cross_entropy` and `nll_loss` on generated inputs.

use std::collections::BTreeMap;

use ndarray::{ArrayD, Axis};
use proptest::prelude::*;
use segloss::spec::softmax::log_softmax;
use segloss::tensor::Tensor;
use serde_json::json;

use crate::common::{array, check_gradient, config, nearly_equal, Call};

/// The losses this module holds properties for.
pub const LOSSES: &[&str] = &["cross_entropy", "nll_loss"];

/// A class-index problem: logits, targets with some positions ignored, options, grad_output.
#[derive(Debug, Clone)]
struct Problem {
    input_shape: Vec<usize>,
    logits: Vec<f64>,
    classes_at: Vec<i64>,
    ignored: Vec<bool>,
    ignore_index: i64,
    weight: Option<Vec<f64>>,
    reduction: &'static str,
    label_smoothing: f64,
    grad_output: Vec<f64>,
    grad_scalar: f64,
    direction: Vec<f64>,
    soft_targets: Vec<f64>,
    shift: Vec<f64>,
    permutation: Vec<usize>,
}

/// Problems with an unbatched `(C)`, `(N, C)` or `(N, C, d1..d3)` input, 1 to 4 classes, logits in
/// [−4, 4] (softmax stays away from saturation), non-negative weights, and ignore_index inside or
/// outside [0, C).
fn problems() -> impl Strategy<Value = Problem> {
    (
        prop::bool::weighted(0.15),
        1usize..=3,
        1usize..=4,
        prop::collection::vec(1usize..=3, 0..=3),
    )
        .prop_flat_map(|(unbatched, batch, classes, spatial)| {
            let input_shape: Vec<usize> = if unbatched {
                vec![classes]
            } else {
                [vec![batch, classes], spatial].concat()
            };
            let elements: usize = input_shape.iter().product();
            let positions = elements / classes;
            let ignore_choices = vec![-100, classes as i64 + 1, 0, classes as i64 - 1];
            (
                (
                    Just(input_shape),
                    prop::collection::vec(-4.0..4.0f64, elements),
                    prop::collection::vec(0..classes as i64, positions),
                    prop::collection::vec(prop::bool::weighted(0.25), positions),
                    prop::sample::select(ignore_choices),
                    prop::option::of(prop::collection::vec(0.1..2.0f64, classes)),
                    prop::sample::select(vec!["none", "mean", "sum"]),
                ),
                prop::sample::select(vec![0.0, 0.1, 0.45, 1.0]),
                prop::collection::vec(-1.0..1.0f64, positions),
                0.5..2.0f64,
                prop::collection::vec(-1.0..1.0f64, elements),
                prop::collection::vec(0.01..1.0f64, elements),
                prop::collection::vec(-3.0..3.0f64, positions),
                Just((0..classes).collect::<Vec<usize>>()).prop_shuffle(),
            )
        })
        .prop_map(
            |(
                (input_shape, logits, classes_at, ignored, ignore_index, weight, reduction),
                label_smoothing,
                grad_output,
                grad_scalar,
                direction,
                soft_targets,
                shift,
                permutation,
            )| Problem {
                input_shape,
                logits,
                classes_at,
                ignored,
                ignore_index,
                weight,
                reduction,
                label_smoothing,
                grad_output,
                grad_scalar,
                direction,
                soft_targets,
                shift,
                permutation,
            },
        )
}

impl Problem {
    fn class_axis(&self) -> usize {
        if self.input_shape.len() == 1 {
            0
        } else {
            1
        }
    }

    fn classes(&self) -> usize {
        self.input_shape[self.class_axis()]
    }

    fn positions_shape(&self) -> Vec<usize> {
        let mut shape = self.input_shape.clone();
        shape.remove(self.class_axis());
        shape
    }

    fn logits(&self) -> ArrayD<f64> {
        array(&self.input_shape, self.logits.clone())
    }

    /// Class indices with ignored positions set to ignore_index.
    fn targets(&self) -> ArrayD<i64> {
        let values = self
            .classes_at
            .iter()
            .zip(&self.ignored)
            .map(|(&class, &ignored)| if ignored { self.ignore_index } else { class })
            .collect();
        ArrayD::from_shape_vec(self.positions_shape(), values).unwrap()
    }

    fn is_ignored(&self) -> Vec<bool> {
        self.targets()
            .iter()
            .map(|&target| target == self.ignore_index)
            .collect()
    }

    fn grad_output(&self) -> ArrayD<f64> {
        if self.reduction == "none" {
            array(&self.positions_shape(), self.grad_output.clone())
        } else {
            ArrayD::from_elem(vec![], self.grad_scalar)
        }
    }

    /// The class-index call of `loss` (label smoothing only for cross_entropy).
    fn call(&self, loss: &'static str) -> Call {
        let mut params = BTreeMap::from([
            ("reduction".to_string(), json!(self.reduction)),
            ("ignore_index".to_string(), json!(self.ignore_index)),
        ]);
        if loss == "cross_entropy" {
            params.insert("label_smoothing".into(), json!(self.label_smoothing));
        }
        let mut tensors = BTreeMap::from([
            ("input".to_string(), Tensor::Float64(self.logits())),
            ("target".to_string(), Tensor::Int64(self.targets())),
        ]);
        if let Some(weight) = &self.weight {
            tensors.insert(
                "weight".into(),
                Tensor::Float64(array(&[weight.len()], weight.clone())),
            );
        }
        Call {
            loss,
            params,
            tensors,
            prediction: "input",
            grad_output: Some(self.grad_output()),
        }
    }

    /// The cross_entropy call with a probability target (ignore_index left at its default).
    fn probability_call(&self, target: ArrayD<f64>) -> Call {
        let mut call = self.call("cross_entropy");
        call.params.remove("ignore_index");
        call.tensors
            .insert("target".into(), Tensor::Float64(target));
        call
    }

    /// The one-hot encoding of the (unignored) class indices, in the input's shape.
    fn one_hot(&self) -> ArrayD<f64> {
        let axis = Axis(self.class_axis());
        let mut one_hot = ArrayD::zeros(self.input_shape.clone());
        let classes_at = array(
            &self.positions_shape(),
            self.classes_at.iter().map(|&c| c as f64).collect(),
        );
        for class in 0..self.classes() {
            one_hot
                .index_axis_mut(axis, class)
                .zip_mut_with(&classes_at, |slot, &target| {
                    *slot = f64::from(target as usize == class)
                });
        }
        one_hot
    }

    /// Positive soft targets normalised over the class axis.
    fn soft_targets(&self) -> ArrayD<f64> {
        let raw = array(&self.input_shape, self.soft_targets.clone());
        let totals = raw
            .sum_axis(Axis(self.class_axis()))
            .insert_axis(Axis(self.class_axis()));
        &raw / &totals
    }

    fn denominator(&self) -> f64 {
        self.targets()
            .iter()
            .filter(|&&target| target != self.ignore_index)
            .map(|&target| {
                self.weight
                    .as_ref()
                    .map_or(1.0, |weight| weight[target as usize])
            })
            .sum()
    }
}

fn no_ignored_positions(problem: &Problem) -> bool {
    problem.is_ignored().iter().all(|&ignored| !ignored)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn gradients_match_finite_differences(problem in problems()) {
        let direction = array(&problem.input_shape, problem.direction.clone());
        for call in [problem.call("cross_entropy"), problem.call("nll_loss"), problem.probability_call(problem.soft_targets())] {
            if let Err(report) = check_gradient(&call, std::slice::from_ref(&direction), 48) {
                return Err(TestCaseError::fail(format!("{}: {report}", call.loss)));
            }
        }
    }

    #[test]
    fn backward_is_bit_reproducible(problem in problems()) {
        for call in [problem.call("cross_entropy"), problem.call("nll_loss")] {
            let (first, second) = (call.run(), call.run());
            let bits = |values: &ArrayD<f64>| values.iter().map(|value| value.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&first.loss), bits(&second.loss));
            prop_assert_eq!(bits(&first.grad_input), bits(&second.grad_input));
        }
    }

    #[test]
    fn cross_entropy_is_non_negative(problem in problems()) {
        let mut problem = problem;
        problem.reduction = "none";
        let per_position = problem.call("cross_entropy").run().loss;
        prop_assert!(per_position.iter().all(|&loss| loss >= 0.0), "{per_position:?}");
        let soft = problem.probability_call(problem.soft_targets()).run().loss;
        prop_assert!(soft.iter().all(|&loss| loss >= 0.0), "{soft:?}");
    }

    #[test]
    fn softmax_shift_leaves_loss_and_gradient_unchanged(problem in problems()) {
        let axis = Axis(problem.class_axis());
        let shift = array(&problem.positions_shape(), problem.shift.clone()).insert_axis(axis);
        let call = problem.call("cross_entropy");
        let shifted = call.with_prediction(&call.prediction() + &shift);
        let (original, moved) = (call.run(), shifted.run());
        nearly_equal(&moved.loss, &original.loss).map_err(TestCaseError::fail)?;
        nearly_equal(&moved.grad_input, &original.grad_input).map_err(TestCaseError::fail)?;
        let class_sums = original.grad_input.sum_axis(axis);
        nearly_equal(&class_sums, &ArrayD::zeros(class_sums.raw_dim())).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn reductions_are_consistent(problem in problems()) {
        let with = |reduction: &'static str| {
            let mut problem = problem.clone();
            problem.reduction = reduction;
            problem
        };
        let unreduced = with("none").call("cross_entropy").run().loss;
        let sum = with("sum").call("cross_entropy").run().loss;
        let mean = with("mean").call("cross_entropy").run().loss;
        nearly_equal(&sum, &ArrayD::from_elem(vec![], unreduced.sum())).map_err(TestCaseError::fail)?;
        nearly_equal(&mean, &(&sum / problem.denominator())).map_err(TestCaseError::fail)?;

        let soft_unreduced = with("none").probability_call(problem.soft_targets()).run().loss;
        let soft_mean = with("mean").probability_call(problem.soft_targets()).run().loss;
        let positions = soft_unreduced.len() as f64;
        nearly_equal(&soft_mean, &ArrayD::from_elem(vec![], soft_unreduced.sum() / positions)).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn cross_entropy_is_nll_of_log_softmax(problem in problems()) {
        let mut problem = problem;
        problem.label_smoothing = 0.0;
        let cross_entropy = problem.call("cross_entropy").run();
        let log_probs = log_softmax(&problem.logits(), problem.class_axis());
        let nll = problem.call("nll_loss").with_prediction(log_probs).run();
        nearly_equal(&cross_entropy.loss, &nll.loss).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn probability_targets_agree_with_class_indices(problem in problems().prop_filter("nothing ignored", no_ignored_positions)) {
        let mut problem = problem;
        problem.weight = None;
        let epsilon = problem.label_smoothing;
        // One-hot equals the class index; ε-smoothed index targets equal (1 − ε)·onehot + ε/C.
        let smoothed = problem.one_hot() * (1.0 - epsilon) + epsilon / problem.classes() as f64;
        let index = problem.call("cross_entropy").run();
        let mut soft = problem.probability_call(smoothed);
        soft.params.remove("label_smoothing");
        let soft = soft.run();
        nearly_equal(&index.loss, &soft.loss).map_err(TestCaseError::fail)?;
        nearly_equal(&index.grad_input, &soft.grad_input).map_err(TestCaseError::fail)?;

        let mut unsmoothed = problem.call("cross_entropy");
        unsmoothed.params.insert("label_smoothing".into(), json!(0.0));
        let mut absent = unsmoothed.clone();
        absent.params.remove("label_smoothing");
        nearly_equal(&unsmoothed.run().loss, &absent.run().loss).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn ignored_positions_are_inert(problem in problems(), replacement in prop::sample::select(vec![7.5, -30.0, f64::NAN, f64::INFINITY])) {
        let axis = Axis(problem.class_axis());
        let ignored = array(&problem.positions_shape(), problem.is_ignored().iter().map(|&i| f64::from(u8::from(i))).collect());
        for loss in LOSSES {
            let call = problem.call(loss);
            let mut changed_logits = call.prediction();
            for mut class_slice in changed_logits.axis_iter_mut(axis) {
                class_slice.zip_mut_with(&ignored, |logit, &is_ignored| if is_ignored == 1.0 { *logit = replacement });
            }
            let (original, changed) = (call.run(), call.with_prediction(changed_logits).run());
            nearly_equal(&changed.loss, &original.loss).map_err(TestCaseError::fail)?;
            for (class_before, class_after) in original.grad_input.axis_iter(axis).zip(changed.grad_input.axis_iter(axis)) {
                for ((&before, &after), &is_ignored) in class_before.iter().zip(class_after.iter()).zip(ignored.iter()) {
                    if is_ignored == 1.0 {
                        // Zero gradient where the changed logits are finite; PyTorch's log-softmax
                        // backward turns a NaN/inf row into NaN there, and so does the reference.
                        prop_assert!(before == 0.0 && (after == 0.0 || !replacement.is_finite()), "{before} {after}");
                    } else {
                        prop_assert!(before == after || (before - after).abs() <= 1e-12 * (1.0 + before.abs()), "{before} {after}");
                    }
                }
            }
        }
    }

    #[test]
    fn permuting_classes_permutes_nothing_else(problem in problems()) {
        let axis = Axis(problem.class_axis());
        let permutation = &problem.permutation;
        let mut inverse = vec![0; permutation.len()];
        for (class, &image) in permutation.iter().enumerate() {
            inverse[image] = class;
        }
        let mut permuted = problem.clone();
        permuted.logits = problem.logits().select(axis, &inverse).iter().copied().collect();
        permuted.classes_at = problem.classes_at.iter().map(|&class| permutation[class as usize] as i64).collect();
        if (0..problem.classes() as i64).contains(&problem.ignore_index) {
            permuted.ignore_index = permutation[problem.ignore_index as usize] as i64;
        }
        permuted.weight = problem.weight.as_ref().map(|weight| inverse.iter().map(|&class| weight[class]).collect());
        for loss in LOSSES {
            let (original, moved) = (problem.call(loss).run(), permuted.call(loss).run());
            nearly_equal(&moved.loss, &original.loss).map_err(TestCaseError::fail)?;
            nearly_equal(&moved.grad_input, &original.grad_input.select(axis, &inverse)).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn summed_loss_is_additive_over_the_batch(problem in problems().prop_filter("batched", |problem| problem.input_shape.len() >= 2)) {
        let mut problem = problem;
        problem.reduction = "sum";
        let whole = problem.call("cross_entropy").run().loss.sum();
        let per_item = problem.logits.len() / problem.input_shape[0];
        let positions_per_item = problem.classes_at.len() / problem.input_shape[0];
        let mut parts = 0.0;
        for item in 0..problem.input_shape[0] {
            let mut part = problem.clone();
            part.input_shape[0] = 1;
            part.logits = problem.logits[item * per_item..(item + 1) * per_item].to_vec();
            let positions = item * positions_per_item..(item + 1) * positions_per_item;
            part.classes_at = problem.classes_at[positions.clone()].to_vec();
            part.ignored = problem.ignored[positions].to_vec();
            parts += part.call("cross_entropy").run().loss.sum();
        }
        prop_assert!((whole - parts).abs() <= 1e-12 * (1.0 + whole.abs()), "{whole} vs {parts}");
    }
}
