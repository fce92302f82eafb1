//! The cross-entropy family: `nll_loss` and `cross_entropy` (class-index and probability targets).
//!
//! Shapes follow PyTorch: the input is `(C)` (unbatched, 0-d target), `(N, C)` or
//! `(N, C, d1, …, dk)`; a class-index target has the input's shape without the class axis, a
//! probability target has the input's shape. A *position* is one element of the target's shape.

use ndarray::{Array1, ArrayD, Dimension, IxDyn};

use super::binary::two_product;
use super::softmax::{log_softmax, log_softmax_backward_from_logits};
use super::{compensated_sum, reshaped, LossOutput, Reduction};
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
    let log_probs = input.to_f64();
    let (loss, grad_input) = class_index_loss(
        &log_probs,
        &checked,
        Some(options.ignore_index),
        0.0,
        MeanOver::TargetWeights,
        options.reduction,
        grad_output,
    )?;
    Ok(LossOutput { loss, grad_input })
}

/// `cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)`.
///
/// A target with the input's shape is a probability target (see [`probability_loss`]); any other
/// target holds class indices (see [`class_index_loss`]), and the loss is
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
        let logits = float_input(input)?;
        let log_probs = log_softmax(&logits, axis);
        let (loss, grad_log_probs) = probability_loss(
            &log_probs,
            axis,
            &target.to_f64(),
            &weights,
            epsilon,
            options.reduction,
            grad_output,
        )?;
        return Ok(LossOutput {
            loss,
            grad_input: log_softmax_backward_from_logits(
                &logits,
                &log_probs,
                &grad_log_probs,
                axis,
            ),
        });
    }
    check_label_smoothing(epsilon)?;
    let logits = float_input(input)?;
    let checked = check_class_index_call(input, target, weight)?;
    let log_probs = log_softmax(&logits, checked.class_axis);
    let (loss, grad_log_probs) = class_index_loss(
        &log_probs,
        &checked,
        Some(options.ignore_index),
        epsilon.max(0.0),
        MeanOver::TargetWeights,
        options.reduction,
        grad_output,
    )?;
    Ok(LossOutput {
        loss,
        grad_input: log_softmax_backward_from_logits(
            &logits,
            &log_probs,
            &grad_log_probs,
            checked.class_axis,
        ),
    })
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

/// What the `mean` of a class-index loss divides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MeanOver {
    /// Σ_{n: y_n ≠ ii} w_{y_n}: PyTorch's weighted mean, ignored positions excluded.
    TargetWeights,
    /// The number of positions, ignored ones included (smp's `SoftCrossEntropyLoss`).
    Positions,
}

/// Class-index path, for log-probabilities log p (the input of `nll_loss`, or log_softmax of the
/// logits). With w ≡ 1 without weight, ε = label_smoothing (0 meaning none; PyTorch's callers
/// pass max(ε, 0)) and C classes, at each position n with y_n ≠ ignore_index:
///
/// ```text
/// l_n = (1 − ε)·w_{y_n}·(−log p_{n,y_n}) + (ε/C)·Σ_c w_c·(−log p_{n,c})
/// mean = Σ_n l_n / Σ_{n: y_n ≠ ii} w_{y_n}          (MeanOver::TargetWeights; NaN when all ignored)
/// mean = Σ_n l_n / (number of positions)           (MeanOver::Positions)
/// ∂l_n/∂log p_{n,c} = −(1 − ε)·w_{y_n}·[c = y_n] − (ε/C)·w_c
/// ```
///
/// and l_n = 0 with a zero gradient where y_n = ignore_index (`None`: nothing is ignored). The
/// smoothing term uses every class weight, yet the weighted mean still divides by Σ w_{y_n}. Without
/// smoothing only log p_{n,y_n} is read, so a −inf log-probability elsewhere does not reach the
/// loss; with smoothing it makes the loss inf.
pub(crate) fn class_index_loss(
    log_probs: &ArrayD<f64>,
    call: &ClassIndexCall,
    ignore_index: Option<i64>,
    smoothing: f64,
    mean_over: MeanOver,
    reduction: Reduction,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<(ArrayD<f64>, ArrayD<f64>)> {
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
    let denominator = match mean_over {
        MeanOver::TargetWeights => compensated_sum(
            call.targets
                .iter()
                .filter(|&&target| counted(target))
                .map(|&target| call.weights[target as usize]),
        ),
        MeanOver::Positions => call.targets.len() as f64,
    };

    let mut per_position = ArrayD::<f64>::zeros(call.targets.raw_dim());
    let mut residuals = Vec::new();
    for (position, &target) in call.targets.indexed_iter() {
        if !counted(target) {
            continue;
        }
        let log_prob_of =
            |class: usize| log_probs[at_class(position.slice(), call.class_axis, class)];
        let target = target as usize;
        let (mut loss, residual) = two_product(call.weights[target], -log_prob_of(target));
        if smoothing == 0.0 {
            residuals.push(residual);
        } else {
            loss *= 1.0 - smoothing;
            let smoothing_sum = compensated_sum(
                (0..classes).map(|class| call.weights[class] * -log_prob_of(class)),
            );
            loss += smoothing / classes as f64 * smoothing_sum;
        }
        per_position[&position] = loss;
    }

    let upstream = reduction.upstream(grad_output, call.targets.shape(), denominator)?;
    let mut grad_log_probs = ArrayD::<f64>::zeros(log_probs.raw_dim());
    for (position, &target) in call.targets.indexed_iter() {
        if !counted(target) {
            continue;
        }
        let scale = upstream[&position];
        let target = target as usize;
        grad_log_probs[at_class(position.slice(), call.class_axis, target)] -=
            (1.0 - smoothing) * call.weights[target] * scale;
        if smoothing != 0.0 {
            for class in 0..classes {
                grad_log_probs[at_class(position.slice(), call.class_axis, class)] -=
                    smoothing / classes as f64 * call.weights[class] * scale;
            }
        }
    }
    Ok((
        reduction.reduce_wide(per_position, &residuals, denominator),
        grad_log_probs,
    ))
}

/// Probability-target path: with t'_{n,c} = (1 − ε)·t_{n,c} + ε/C when ε > 0 (t' = t otherwise),
///
/// ```text
/// l_n = −Σ_c w_c·t'_{n,c}·log p_{n,c}
/// mean = Σ_n l_n / (number of positions)          (not Σ w: weights do not normalise here)
/// ∂l_n/∂log p_{n,c} = −w_c·t'_{n,c}
/// ```
///
/// Targets are not validated: they need not sum to 1 and may be negative. A zero target at a −inf
/// log-probability gives 0·(−inf) = NaN, as in PyTorch.
fn probability_loss(
    log_probs: &ArrayD<f64>,
    class_axis: usize,
    targets: &ArrayD<f64>,
    weights: &Array1<f64>,
    label_smoothing: f64,
    reduction: Reduction,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<(ArrayD<f64>, ArrayD<f64>)> {
    let classes = weights.len();
    let smoothed = |target: f64| {
        if label_smoothing > 0.0 {
            target * (1.0 - label_smoothing) + label_smoothing / classes as f64
        } else {
            target
        }
    };
    let mut positions_shape = log_probs.shape().to_vec();
    positions_shape.remove(class_axis);
    let positions = ArrayD::<()>::from_elem(positions_shape.clone(), ());

    let mut per_position = ArrayD::<f64>::zeros(positions_shape.clone());
    for (position, ()) in positions.indexed_iter() {
        let index = |class: usize| at_class(position.slice(), class_axis, class);
        per_position[&position] = -compensated_sum((0..classes).map(|class| {
            log_probs[index(class)] * smoothed(targets[index(class)]) * weights[class]
        }));
    }

    let denominator = positions.len() as f64;
    let upstream = reduction.upstream(grad_output, &positions_shape, denominator)?;
    let mut grad_log_probs = ArrayD::<f64>::zeros(log_probs.raw_dim());
    for (position, ()) in positions.indexed_iter() {
        for class in 0..classes {
            let index = at_class(position.slice(), class_axis, class);
            grad_log_probs[&index] =
                -weights[class] * smoothed(targets[&index]) * upstream[&position];
        }
    }
    Ok((reduction.reduce(per_position, denominator), grad_log_probs))
}

/// The input index of `class` at a target position: the position with the class axis inserted.
fn at_class(position: &[usize], class_axis: usize, class: usize) -> IxDyn {
    let mut index = position.to_vec();
    index.insert(class_axis, class);
    IxDyn(&index)
}

/// The class axis PyTorch uses: 0 for a 1-D (unbatched) input, else 1.
fn class_axis(rank: usize) -> usize {
    if rank == 1 {
        0
    } else {
        1
    }
}

/// The input as f64, rejecting non-float inputs as log_softmax does.
pub(crate) fn float_input(input: &Tensor) -> Result<ArrayD<f64>> {
    if input.dtype().is_floating() {
        Ok(input.to_f64())
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
    float_input(input)?;
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
