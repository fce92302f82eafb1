//! The cross-entropy family: `nll_loss` and `cross_entropy` (class-index and probability targets),
//! and smp's `SoftCrossEntropyLoss`, an instance of the class-index cross entropy.
//!
//! Shapes follow PyTorch: the input is `(C)` (unbatched, 0-d target), `(N, C)` or
//! `(N, C, d1, …, dk)`; a class-index target has the input's shape without the class axis, a
//! probability target has the input's shape. A *position* is one element of the target's shape.

use std::borrow::Cow;

use ndarray::{Array1, ArrayD, IxDyn};

use super::binary::{two_product, two_sum};
use super::positions::{sweep, sweep_blocks, Layout, Upstream, Values};
use super::smp::shape_error;
use super::softmax::{LogitsBlock, SoftmaxLane};
use super::trace::{self, number, Fact};
use super::{check_batched, compensated_sum, reshaped, LossOutput, Reduction};
use crate::error::Rejection;
use crate::spec::Result;
use crate::tensor::{DType, Tensor};

/// PyTorch's default `ignore_index`.
pub const DEFAULT_IGNORE_INDEX: i64 = -100;

/// The non-tensor arguments of `nll_loss`, with PyTorch's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NllOptions {
    /// Class-index targets equal to this contribute nothing, not even to the mean's denominator.
    pub ignore_index: i64,
    /// none / mean / sum.
    pub reduction: Reduction,
}

impl Default for NllOptions {
    fn default() -> Self {
        NllOptions {
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
        }
    }
}

/// The non-tensor arguments of `cross_entropy`, with PyTorch's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropyOptions {
    /// As for [`NllOptions::ignore_index`]; must be negative with probability targets.
    pub ignore_index: i64,
    /// none / mean / sum.
    pub reduction: Reduction,
    /// ε in [0, 1]; values ≤ 0 mean no smoothing, values > 1 are rejected.
    pub label_smoothing: f64,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions {
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            label_smoothing: 0.0,
        }
    }
}

/// `nll_loss(input, target, weight, ignore_index, reduction)`: the input is read as log-probabilities
/// (and, as in PyTorch, not checked to be any).
///
/// l_n = −w_{y_n}·input_{n,y_n}, or 0 where y_n = ignore_index; mean = Σ_n l_n / Σ_{n: y_n ≠ ii} w_{y_n}.
pub fn nll_loss(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    options: &NllOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let checked = check_class_index_call(input, target, weight)?;
    class_index_nll(
        input,
        &checked,
        options.ignore_index,
        options.reduction,
        grad_output,
    )
}

/// `cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)`.
///
/// A target with the input's shape is a probability target (see [`probability_cross_entropy`]);
/// any other target holds class indices (see [`class_index_cross_entropy`]), and the loss is
/// `nll_loss(log_softmax(input), target)` plus, when ε > 0, the label-smoothing term.
pub fn cross_entropy(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    options: &CrossEntropyOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let epsilon = options.label_smoothing;
    if input.shape() == target.shape() {
        if !target.dtype().is_floating() {
            return Err(Rejection::ProbabilityTargetDtype {
                got: target.dtype(),
            });
        }
        if options.ignore_index >= 0 {
            return Err(Rejection::IgnoreIndexWithProbabilities {
                value: options.ignore_index,
            });
        }
        // PyTorch's log_softmax over dim 1 fails for a 0-d input (an IndexError, not a loss check).
        if input.shape().is_empty() {
            return Err(Rejection::InputRank { got: 0, min: 1 });
        }
        let axis = class_axis(input.shape().len());
        let classes = input.shape().get(axis).copied().unwrap_or(1);
        let weights = class_weights(weight, classes, true)?;
        check_label_smoothing(epsilon)?;
        check_float_input(input)?;
        return probability_cross_entropy(
            input,
            axis,
            target,
            &weights,
            epsilon,
            options.reduction,
            grad_output,
        );
    }
    check_label_smoothing(epsilon)?;
    check_float_input(input)?;
    let checked = check_class_index_call(input, target, weight)?;
    class_index_cross_entropy(
        input,
        &checked,
        Some(options.ignore_index),
        epsilon.max(0.0),
        MeanOver::TargetWeights,
        options.reduction,
        grad_output,
    )
}

/// A class-index call that passed its loss's checks.
pub(crate) struct ClassIndexCall {
    /// The class indices, in the target's shape.
    pub(crate) targets: ArrayD<i64>,
    /// w_c for every class (ones without a weight).
    pub(crate) weights: Array1<f64>,
    /// Whether a weight was given.
    pub(crate) weighted: bool,
    /// The target's dtype (int64 or uint8).
    pub(crate) target_dtype: DType,
    /// 0 for an unbatched `(C)` input, else 1.
    pub(crate) class_axis: usize,
}

impl ClassIndexCall {
    /// The targets in row-major order, borrowed where they are held so.
    fn targets_in_order(&self) -> Cow<'_, [i64]> {
        self.targets.as_slice().map_or_else(
            || Cow::Owned(self.targets.iter().copied().collect()),
            Cow::Borrowed,
        )
    }
}

/// What the `mean` of a class-index loss divides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MeanOver {
    /// Σ_{n: y_n ≠ ii} w_{y_n}: PyTorch's weighted mean, ignored positions excluded.
    TargetWeights,
    /// The number of positions, ignored ones included (smp's `SoftCrossEntropyLoss`).
    Positions,
}

/// The class-index cross entropy over logits x (`cross_entropy`, smp's `SoftCrossEntropyLoss`):
/// with w ≡ 1 without weight, ε = label_smoothing (0 meaning none; PyTorch's callers pass
/// max(ε, 0)), C classes and log p = log_softmax(x) over the class axis ([`SoftmaxLane`]), at each
/// position n with y_n ≠ ignore_index:
///
/// ```text
/// l_n = (1 − ε)·w_{y_n}·(−log p_{n,y_n}) + (ε/C)·Σ_c w_c·(−log p_{n,c})
/// mean = Σ_n l_n / Σ_{n: y_n ≠ ii} w_{y_n}          (MeanOver::TargetWeights; NaN when all ignored)
/// mean = Σ_n l_n / (number of positions)           (MeanOver::Positions)
/// g_c = ∂l_n/∂log p_{n,c} = −u_n·[(1 − ε)·w_{y_n}·[c = y_n] + (ε/C)·w_c]
/// Σ_{k≠c} g_k = −u_n·[(1 − ε)·w_{y_n}·[c ≠ y_n] + (ε/C)·Σ_{k≠c} w_k]
/// ```
///
/// u_n the upstream gradient, and l_n = 0 with a zero gradient where y_n = ignore_index (`None`:
/// nothing is ignored): an ignored position's logits reach neither. The smoothing term uses every
/// class weight, yet the weighted mean still divides by Σ w_{y_n}. Without smoothing only
/// log p_{n,y_n} enters the loss, so a −∞ logit elsewhere does not reach it; with smoothing it
/// makes the loss ∞. w_{y_n}·(−log p_{n,y_n}) is an exact product whose rounding error joins the
/// sum, so a `sum` or `mean` that cancels keeps its digits.
pub(crate) fn class_index_cross_entropy(
    input: &Tensor,
    call: &ClassIndexCall,
    ignore_index: Option<i64>,
    smoothing: f64,
    mean_over: MeanOver,
    reduction: Reduction,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let denominator = class_index_checks(call, ignore_index, smoothing, mean_over, reduction)?;
    trace::record(|| {
        class_index_facts(
            "logits, log-softmax over the classes",
            call,
            ignore_index,
            smoothing,
            mean_over,
            reduction,
        )
    });
    let upstream = Upstream::new(reduction, grad_output, call.targets.shape(), denominator)?;
    let layout = Layout::of(input.shape(), call.class_axis);
    let classes = layout.classes;
    let targets = call.targets_in_order();
    let weights = call.weights.as_slice().unwrap_or_default();
    let weight_of_others: Vec<f64> = (0..classes)
        .map(|class| {
            compensated_sum(
                weights
                    .iter()
                    .enumerate()
                    .filter(|&(other, _)| other != class)
                    .map(|(_, &weight)| weight),
            )
        })
        .collect();
    let weight_total = compensated_sum(weights.iter().copied());
    let share = smoothing / classes as f64;
    let values = Values::read(input);
    let want_losses = reduction == Reduction::None;
    let swept = sweep_blocks(
        layout,
        want_losses,
        |block, lanes, scratch: &mut LogitsBlock, losses| {
            let width = block.width;
            let first = block.position(0).element(&layout, 0);
            scratch.read(&values, (first, layout.spatial), classes, width);
            let LogitsBlock {
                logits,
                exps,
                softmax,
                ..
            } = scratch;
            softmax.form(logits, width, exps);
            for (j, loss) in losses.iter_mut().enumerate() {
                let target = targets[block.index + j];
                if Some(target) == ignore_index {
                    *loss = (0.0, 0.0);
                    continue;
                }
                let target = target as usize;
                let u = upstream.at(block.position(j));
                let picked = (1.0 - smoothing) * weights[target];
                // Terms that are absent are not formed: u = ±∞ (a mean over weights summing to 0)
                // times an absent 0 would be NaN.
                let smoothing_part = |weight: f64| {
                    if smoothing == 0.0 {
                        0.0
                    } else {
                        -(share * weight * u)
                    }
                };
                let own = |present: bool| if present { -(picked * u) } else { 0.0 };
                let g = |class: usize| own(class == target) + smoothing_part(weights[class]);
                let others =
                    |class: usize| own(class != target) + smoothing_part(weight_of_others[class]);
                let total = own(true) + smoothing_part(weight_total);
                let silent = (0..classes).all(|class| g(class) == 0.0);
                let lane = softmax.lane(j);
                for class in 0..classes {
                    lanes.run(class)[j] = match lane {
                        _ if silent => 0.0,
                        None => f64::NAN,
                        Some(lane) => {
                            let exp = exps[class * width + j];
                            lane.backward(class, exp, g(class), others(class), total)
                        }
                    };
                }
                let Some(lane) = lane else {
                    *loss = (f64::NAN, 0.0);
                    continue;
                };
                let log_prob = |class: usize| lane.log_prob(logits[class * width + j]);
                let (picked_loss, residual) = two_product(weights[target], -log_prob(target));
                *loss = if smoothing == 0.0 {
                    (picked_loss, residual)
                } else {
                    let smoothing_sum = compensated_sum(
                        (0..classes).map(|class| weights[class] * -log_prob(class)),
                    );
                    (picked_loss * (1.0 - smoothing) + share * smoothing_sum, 0.0)
                };
            }
        },
    );
    Ok(swept.output(reduction, call.targets.shape(), denominator, input.shape()))
}

/// The conventions of a class-index cross entropy taking `prediction`, in words (for [`trace`]).
fn class_index_facts(
    prediction: &str,
    call: &ClassIndexCall,
    ignore_index: Option<i64>,
    smoothing: f64,
    mean_over: MeanOver,
    reduction: Reduction,
) -> Vec<Fact> {
    let mean = match (reduction, mean_over) {
        (Reduction::Mean, MeanOver::TargetWeights) if call.weighted => {
            "mean: Σl / Σ w_y over the positions not ignored".to_string()
        }
        (Reduction::Mean, MeanOver::TargetWeights) => {
            "mean: Σl / (number of positions not ignored)".to_string()
        }
        (Reduction::Mean, MeanOver::Positions) => {
            "mean: Σl / (number of positions, ignored ones included)".to_string()
        }
        (reduction, _) => reduction.to_string(),
    };
    vec![
        Fact::new("prediction", prediction),
        Fact::new("target", "class indices"),
        Fact::new(
            "ignored",
            ignore_index.map_or("nothing".to_string(), |index| {
                format!("positions labelled {index} add 0")
            }),
        ),
        Fact::new(
            "label smoothing",
            if smoothing > 0.0 {
                format!(
                    "(1 − ε)·(−log p_y) + (ε/C)·Σ_c(−log p_c), ε = {}",
                    number(smoothing)
                )
            } else {
                "none".to_string()
            },
        ),
        Fact::new(
            "class weights",
            if call.weighted {
                "w_y (and w_c in the smoothing term)"
            } else {
                "none"
            },
        ),
        Fact::new("reduction", mean),
    ]
}

/// The bounds and dtype checks a class-index loss makes before it computes, and the denominator
/// of its mean.
fn class_index_checks(
    call: &ClassIndexCall,
    ignore_index: Option<i64>,
    smoothing: f64,
    mean_over: MeanOver,
    reduction: Reduction,
) -> Result<f64> {
    let classes = call.weights.len();
    check_bounds(&call.targets, classes, ignore_index)?;
    let counted = |target: i64| Some(target) != ignore_index;
    // PyTorch divides the weighted smoothing term by weight.gather(targets), and gather refuses
    // uint8 indices (an empty selection slips through).
    if smoothing > 0.0
        && reduction == Reduction::Mean
        && call.weighted
        && call.target_dtype == DType::UInt8
        && call.targets.iter().any(|&target| counted(target))
    {
        return Err(Rejection::TargetDtype { got: DType::UInt8 });
    }
    Ok(match mean_over {
        MeanOver::TargetWeights => compensated_sum(
            call.targets
                .iter()
                .filter(|&&target| counted(target))
                .map(|&target| call.weights[target as usize]),
        ),
        MeanOver::Positions => call.targets.len() as f64,
    })
}

/// `nll_loss` over log-probabilities x: at each position n with y_n ≠ ignore_index,
///
/// ```text
/// l_n = −w_{y_n}·x_{n,y_n},   ∂l_n/∂x_{n,c} = −w_{y_n}·[c = y_n]
/// ```
///
/// and 0 where y_n = ignore_index; mean = Σ_n l_n / Σ_{n: y_n ≠ ii} w_{y_n}. The product is exact
/// and its rounding error joins the sum.
fn class_index_nll(
    input: &Tensor,
    call: &ClassIndexCall,
    ignore_index: i64,
    reduction: Reduction,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let denominator = class_index_checks(
        call,
        Some(ignore_index),
        0.0,
        MeanOver::TargetWeights,
        reduction,
    )?;
    trace::record(|| {
        class_index_facts(
            "log-probabilities, as given",
            call,
            Some(ignore_index),
            0.0,
            MeanOver::TargetWeights,
            reduction,
        )
    });
    let upstream = Upstream::new(reduction, grad_output, call.targets.shape(), denominator)?;
    let layout = Layout::of(input.shape(), call.class_axis);
    let targets = call.targets_in_order();
    let weights = call.weights.as_slice().unwrap_or_default();
    let values = Values::read(input);
    let swept = sweep(layout, reduction == Reduction::None, |position, lane, _| {
        let target = targets[position.index];
        if target == ignore_index {
            return (0.0, 0.0);
        }
        let weight = weights[target as usize];
        lane.set(target as usize, -(weight * upstream.at(position)));
        let log_prob = values.at(position.element(&layout, target as usize));
        two_product(weight, -log_prob)
    });
    Ok(swept.output(reduction, call.targets.shape(), denominator, input.shape()))
}

/// Probability targets: with t'_{n,c} = (1 − ε)·t_{n,c} + ε/C when ε > 0 (t' = t otherwise),
///
/// ```text
/// l_n = −Σ_c w_c·t'_{n,c}·log p_{n,c}
/// mean = Σ_n l_n / (number of positions)          (not Σ w: weights do not normalise here)
/// g_c = ∂l_n/∂log p_{n,c} = −u_n·w_c·t'_{n,c}
/// ```
///
/// then the log-softmax backward of [`SoftmaxLane`], Σ_{k≠c} g_k as Σ g (compensated) minus g_c
/// with the residual carried. Targets are not validated: they need not sum to 1 and may be
/// negative. A zero target at a −∞ logit gives 0·(−∞) = NaN, as in PyTorch.
fn probability_cross_entropy(
    input: &Tensor,
    class_axis: usize,
    target: &Tensor,
    weights: &Array1<f64>,
    label_smoothing: f64,
    reduction: Reduction,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    trace::record(|| {
        vec![
            Fact::new("prediction", "logits, log-softmax over the classes"),
            Fact::new("target", "one value per class (one-hot or soft)"),
            Fact::new("ignored", "nothing"),
            Fact::new(
                "label smoothing",
                if label_smoothing > 0.0 {
                    format!("t·(1 − ε) + ε/C, ε = {}", number(label_smoothing))
                } else {
                    "none".to_string()
                },
            ),
            Fact::new(
                "class weights",
                if weights.iter().all(|&w| w == 1.0) {
                    "none"
                } else {
                    "w_c on each class's term"
                },
            ),
            Fact::new(
                "reduction",
                match reduction {
                    Reduction::Mean => "mean: Σl / (number of positions)".to_string(),
                    other => other.to_string(),
                },
            ),
        ]
    });
    let layout = Layout::of(input.shape(), class_axis);
    let classes = layout.classes;
    let mut positions_shape = input.shape().to_vec();
    positions_shape.remove(class_axis);
    let denominator = layout.positions() as f64;
    let upstream = Upstream::new(reduction, grad_output, &positions_shape, denominator)?;
    let weights = weights.as_slice().unwrap_or_default();
    let smoothed = |t: f64| {
        if label_smoothing > 0.0 {
            t * (1.0 - label_smoothing) + label_smoothing / classes as f64
        } else {
            t
        }
    };
    let targets = Values::read(target);
    let values = Values::read(input);
    let swept = sweep(
        layout,
        reduction == Reduction::None,
        |position, lane, scratch| {
            scratch.resize(3 * classes, 0.0);
            let (logits, rest) = scratch.split_at_mut(classes);
            let (exps, g) = rest.split_at_mut(classes);
            let u = upstream.at(position);
            for class in 0..classes {
                let element = position.element(&layout, class);
                logits[class] = values.at(element);
                g[class] = -weights[class] * smoothed(targets.at(element)) * u;
            }
            let softmax = SoftmaxLane::new(logits, exps);
            let loss = -compensated_sum((0..classes).map(|class| {
                let log_prob = softmax
                    .as_ref()
                    .map_or(f64::NAN, |softmax| softmax.log_prob(logits[class]));
                let element = position.element(&layout, class);
                log_prob * smoothed(targets.at(element)) * weights[class]
            }));
            let total = compensated_sum(g.iter().copied());
            let total_lo = compensated_sum(g.iter().copied().chain([-total]));
            for class in 0..classes {
                let grad = match &softmax {
                    None => f64::NAN,
                    Some(softmax) => {
                        let (rest, rest_lo) = two_sum(total, -g[class]);
                        let others = rest + (rest_lo + total_lo);
                        softmax.backward(class, exps[class], g[class], others, total)
                    }
                };
                lane.set(class, grad);
            }
            (loss, 0.0)
        },
    );
    Ok(swept.output(reduction, &positions_shape, denominator, input.shape()))
}

/// The class axis PyTorch uses: 0 for a 1-D (unbatched) input, else 1.
fn class_axis(rank: usize) -> usize {
    if rank == 1 {
        0
    } else {
        1
    }
}

/// Rejects a non-float input as log_softmax does.
pub(crate) fn check_float_input(input: &Tensor) -> Result<()> {
    if input.dtype().is_floating() {
        Ok(())
    } else {
        Err(Rejection::InputDtype { got: input.dtype() })
    }
}

/// ε > 1 is rejected; ε ≤ 0 is accepted and means no smoothing.
fn check_label_smoothing(label_smoothing: f64) -> Result<()> {
    if label_smoothing > 1.0 {
        Err(Rejection::LabelSmoothingRange {
            value: label_smoothing,
        })
    } else {
        Ok(())
    }
}

/// The class weights as f64, or ones. `must_be_vector`: PyTorch's 1-D and 2-D paths require a
/// vector of length C; its spatial path only checks the element count.
fn class_weights(
    weight: Option<&Tensor>,
    classes: usize,
    must_be_vector: bool,
) -> Result<Array1<f64>> {
    let Some(weight) = weight else {
        return Ok(Array1::ones(classes));
    };
    let count: usize = weight.shape().iter().product();
    if count != classes || (must_be_vector && weight.shape().len() != 1) {
        return Err(Rejection::WeightLength {
            classes,
            got: weight.shape().to_vec(),
        });
    }
    Ok(weight.to_f64().into_iter().collect())
}

/// PyTorch's checks of a class-index call (`nll_loss_nd` and its kernels), in PyTorch's order:
/// input rank, batch size, target rank and shape, weight length, target dtype, input dtype, weight
/// dtype, then target bounds. Class indices are int64, or uint8 for `(C)` and `(N, C)` inputs.
fn check_class_index_call(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
) -> Result<ClassIndexCall> {
    let input_shape = input.shape();
    let target_shape = target.shape();
    let rank = input_shape.len();
    if rank == 0 {
        return Err(Rejection::InputRank { got: 0, min: 1 });
    }
    let class_axis = class_axis(rank);
    let classes = input_shape[class_axis];
    let mut expected_target_shape = input_shape.to_vec();
    expected_target_shape.remove(class_axis);
    let rank_error = || Rejection::TargetRank {
        got: target_shape.len(),
        expected: rank - 1,
        input: input_shape.to_vec(),
    };
    let shape_error = || Rejection::TargetShapeMismatch {
        expected: expected_target_shape.clone(),
        got: target_shape.to_vec(),
    };

    if rank >= 2 {
        match target_shape.first() {
            None => return Err(rank_error()),
            Some(&target_batch) if target_batch != input_shape[0] => {
                return Err(Rejection::BatchSizeMismatch {
                    input: input_shape[0],
                    target: target_batch,
                })
            }
            Some(_) => {}
        }
    }
    match rank {
        1 | 2 => {
            if target_shape.len() > 1 {
                return Err(rank_error());
            }
            if rank == 1 && target_shape.len() == 1 && target_shape[0] != 1 {
                return Err(Rejection::TargetShapeMismatch {
                    expected: vec![1],
                    got: target_shape.to_vec(),
                });
            }
        }
        4 => {
            if target_shape.len() != 3 {
                return Err(rank_error());
            }
        }
        _ => {
            if target_shape[1..] != input_shape[2..] {
                return Err(shape_error());
            }
        }
    }
    let weights = class_weights(weight, classes, rank <= 2)?;
    if rank == 4 && target_shape != expected_target_shape.as_slice() {
        return Err(shape_error());
    }

    // uint8 class indices are read only by the (C) and (N, C) kernels; the spatial one wants int64.
    let targets = target
        .class_indices()
        .filter(|_| rank <= 2 || target.dtype() == DType::Int64)
        .ok_or(Rejection::TargetDtype {
            got: target.dtype(),
        })?;
    check_float_input(input)?;
    if let Some(weight) = weight {
        if weight.dtype() != input.dtype() {
            return Err(Rejection::WeightDtype {
                expected: input.dtype(),
                got: weight.dtype(),
            });
        }
    }
    // A 1-element target beside an unbatched input is read as the 0-d target it stands for.
    let targets = if rank == 1 {
        reshaped(targets, IxDyn(&[])).ok_or_else(shape_error)?
    } else {
        targets
    };
    Ok(ClassIndexCall {
        targets,
        weights,
        weighted: weight.is_some(),
        target_dtype: target.dtype(),
        class_axis,
    })
}

/// Rejects the first target (in row-major order) outside [0, C) that is not ignore_index.
fn check_bounds(targets: &ArrayD<i64>, classes: usize, ignore_index: Option<i64>) -> Result<()> {
    match targets
        .iter()
        .find(|&&target| Some(target) != ignore_index && (target < 0 || target as usize >= classes))
    {
        Some(&value) => Err(Rejection::TargetOutOfBounds { value, classes }),
        None => Ok(()),
    }
}

// --- smp's SoftCrossEntropyLoss ------------------------------------------------------------------

/// The constructor arguments of `smp.losses.SoftCrossEntropyLoss` (`dim` is always 1 here).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftCrossEntropyOptions {
    /// none / mean / sum (smp reduces only mean and sum; anything else is none).
    pub reduction: Reduction,
    /// ε (smp's default `None` crashes; no range check, no clamp).
    pub smooth_factor: f64,
    /// Labels equal to this contribute 0 and stay in the mean (default −100); `None`: none.
    pub ignore_index: Option<i64>,
}

/// `segmentation_models_pytorch.losses.SoftCrossEntropyLoss(reduction, smooth_factor,
/// ignore_index)(y_pred, y_true)`: fairseq's label-smoothed NLL over log_softmax on axis 1, the
/// class-index cross entropy without weights (`class_index_cross_entropy`) with one change:
///
/// ```text
/// l_n = (1 − ε)·(−log p_{n,y_n}) + (ε/C)·Σ_c(−log p_{n,c}),  0 where y_n = ignore_index
/// mean = Σ_n l_n / (number of positions)          (ignored positions stay in the denominator)
/// ```
///
/// `none` returns (N, 1, *) when ignore_index is set and (N, *) when it is `None`. A label outside
/// [0, C) that is not ignored fails (PyTorch's gather). With ε = 0 the smoothing term is skipped
/// (smp would multiply an infinite term by 0 and give NaN for a −inf logit).
pub fn smp_soft_cross_entropy(
    y_pred: &Tensor,
    y_true: &Tensor,
    options: &SoftCrossEntropyOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    check_batched(y_pred)?;
    let classes = y_pred.shape()[1];
    let mut positions = y_pred.shape().to_vec();
    positions.remove(1);
    let mut unsqueezed = positions.clone();
    unsqueezed.insert(1, 1);
    let labels = match y_true {
        Tensor::Int64(labels) => labels,
        other => return Err(Rejection::ClassIndexDtype { got: other.dtype() }),
    };
    if labels.shape() != positions.as_slice() && labels.shape() != unsqueezed.as_slice() {
        return Err(Rejection::TargetShapeMismatch {
            expected: positions,
            got: labels.shape().to_vec(),
        });
    }
    let call = ClassIndexCall {
        targets: reshaped(labels.clone(), IxDyn(&positions))
            .ok_or_else(|| shape_error(y_pred, y_true))?,
        weights: ndarray::Array1::ones(classes),
        weighted: false,
        target_dtype: DType::Int64,
        class_axis: 1,
    };
    let output_shape = if options.ignore_index.is_some() && options.reduction == Reduction::None {
        unsqueezed
    } else {
        positions.clone()
    };
    let grad_output = match (grad_output, options.reduction) {
        (Some(given), Reduction::None) => {
            if given.shape() != output_shape.as_slice() {
                return Err(Rejection::GradOutputShape {
                    expected: output_shape,
                    got: given.shape().to_vec(),
                });
            }
            Some(
                reshaped(given.clone(), IxDyn(&positions))
                    .ok_or_else(|| shape_error(y_pred, y_true))?,
            )
        }
        (given, _) => given.cloned(),
    };
    check_float_input(y_pred)?;
    let LossOutput { loss, grad_input } = class_index_cross_entropy(
        y_pred,
        &call,
        options.ignore_index,
        options.smooth_factor,
        MeanOver::Positions,
        options.reduction,
        grad_output.as_ref(),
    )?;
    let loss = if options.reduction == Reduction::None {
        reshaped(loss, IxDyn(&output_shape)).ok_or_else(|| shape_error(y_pred, y_true))?
    } else {
        loss
    };
    Ok(LossOutput { loss, grad_input })
}
