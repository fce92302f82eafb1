//! `burn` 0.22.1 as a certifiable implementation, behind the `impl-burn` feature: the Flex backend
//! (burn's pure-Rust CPU backend) with autodiff, `burn::nn::loss::CrossEntropyLoss` (weights,
//! smoothing, pad tokens) and `BinaryCrossEntropyLoss` with `logits = true`, gradients from burn's
//! own autodiff (`require_grad`, `backward`, `grad`).
//!
//! burn computes in its default float dtype, float32, whatever the input's dtype (its weights and
//! smoothing are `f32` in the config): certify it at `--tier float32`.
//!
//! Native: the batch mean of an `(N, C)` input against `(N)` integer targets (PyTorch's
//! `(N, C, d1, …)` and unbatched layouts are laid out as rows of classes first), class weights,
//! label smoothing, and `ignore_index` within `[0, C)` as a pad token. Emulated, and reported so:
//!
//! * `nll_loss`: burn has no loss on log-probabilities, so `CrossEntropyLoss` with
//!   `logits = false` (probabilities) is given `exp(input)`;
//! * `ignore_index` outside `[0, C)` (when some target equals it): pad tokens are class indices
//!   that burn gathers before masking, so the ignored positions are removed (`select`) first;
//! * `reduction="sum"`: burn's mean times its denominator (the summed weights of the kept
//!   positions' target classes, or their count).
//!
//! Unsupported: `reduction="none"`, probability targets, and inputs, targets or weights whose
//! dtype burn's API does not take (Float input, Int target, `f32` weights).
//!
//! burn validates by panicking. The documented checks (weights positive, smoothing in `[0, 1]`,
//! a `[batch_size]` target) are made before the call and reported as burn's rejection, quoting
//! burn's assertion; any other panic is caught and reported as broken.

use burn::nn::loss::{BinaryCrossEntropyLossConfig, CrossEntropyLossConfig};
use burn::tensor::{Device, Int, Tensor as BurnTensor, TensorData};
use ndarray::ArrayD;

use super::library::{array, finish, guarded, kept_positions, unsupported, Layout, Loss, Request};
use super::{DeclaredCall, Implementation, Outcome};
use crate::catalog::LossCall;
use crate::spec::Reduction;
use crate::tensor::Tensor;

/// burn's losses on the Flex CPU backend with autodiff.
pub struct Burn;

impl Implementation for Burn {
    fn name(&self) -> &str {
        "burn 0.22.1 (burn-nn losses, Flex CPU backend + autodiff)"
    }

    fn calls(&self) -> Vec<DeclaredCall> {
        vec![
            DeclaredCall::new(
                "cross_entropy",
                "CrossEntropyLossConfig::new().with_weights(weight).with_smoothing(ε).with_pad_tokens([ignore_index]) on rows of classes",
            ),
            DeclaredCall::new(
                "nll_loss",
                "CrossEntropyLossConfig::new().with_logits(false) on exp(input), rows of classes",
            ),
            DeclaredCall::new(
                "binary_cross_entropy_with_logits",
                "BinaryCrossEntropyLossConfig::new().with_logits(true) on flattened elements",
            ),
        ]
    }

    fn compute(&self, call: &LossCall) -> Outcome {
        let outcome = Request::parse_reduced(call, "burn").and_then(|request| {
            if !request.input.dtype().is_floating() {
                return Err(unsupported(format!(
                    "burn's losses take a Float input tensor, not {}; the adapter does not cast it",
                    request.input.dtype()
                )));
            }
            match request.loss {
                Loss::BceWithLogits => binary_cross_entropy(&request),
                Loss::CrossEntropy | Loss::Nll => class_index(&request),
            }
        });
        outcome.unwrap_or_else(|outcome| outcome)
    }
}

/// `cross_entropy` / `nll_loss` through `CrossEntropyLoss`.
fn class_index(request: &Request) -> Result<Outcome, Outcome> {
    if request.loss == Loss::CrossEntropy && request.probability_target() {
        return Err(unsupported(
            "burn's CrossEntropyLoss takes class indices only, no probability targets".into(),
        ));
    }
    let targets = int_values(request.target, "CrossEntropyLoss")?;
    let layout = Layout::of(request.input.shape(), request.target.shape()).ok_or_else(|| {
        unsupported(format!(
            "burn's CrossEntropyLoss takes a [batch_size, num_classes] input with [batch_size] targets; a target of shape {:?} does not lay out against an input of shape {:?}",
            request.target.shape(),
            request.input.shape()
        ))
    })?;
    let rows = layout.input_rows(request.input);
    let target_rows = layout.target_rows(request.target);
    let (&[batch, classes], &[target_batch]) = (rows.shape(), target_rows.shape()) else {
        return Err(unsupported(format!(
            "burn's CrossEntropyLoss takes a rank-2 input and rank-1 targets, not {:?} and {:?}",
            request.input.shape(),
            request.target.shape()
        )));
    };
    if target_batch != batch {
        return Err(rejected(
            Some("batch_size_mismatch"),
            format!(
                "Expected shape [{batch}] for targets, got [{target_batch}] (burn's assert_shape! in CrossEntropyLoss::forward)"
            ),
        ));
    }
    let weights = weights(request.weight)?;
    let mut config = CrossEntropyLossConfig::new().with_weights(weights.clone());
    if request.label_smoothing > 0.0 {
        let alpha = request.label_smoothing as f32;
        if !(0.0..=1.0).contains(&alpha) {
            return Err(rejected(
                Some("label_smoothing_range"),
                format!("Alpha of Cross-entropy loss with smoothed labels should be in interval [0, 1]. Got {alpha}"),
            ));
        }
        config = config.with_smoothing(Some(alpha));
    }
    let mut emulated = Vec::new();
    if request.loss == Loss::Nll {
        config = config.with_logits(false);
        emulated.push("nll_loss: burn has no loss on log-probabilities; CrossEntropyLoss with logits = false on exp(input)".to_string());
    }
    let ignored = request.ignored_positions();
    let mut kept: Vec<usize> = (0..batch).collect();
    if !ignored.is_empty() {
        match usize::try_from(request.ignore_index) {
            Ok(pad) if pad < classes => config = config.with_pad_tokens(Some(vec![pad])),
            _ => {
                kept = kept_positions(batch, &ignored);
                emulated.push(format!(
                    "ignore_index={} (outside the classes, so not a pad token): the ignored positions removed (select) before burn's mean",
                    request.ignore_index
                ));
            }
        }
    }
    // The mean's denominator, for the sum: Σ w_y over the positions neither removed nor padded.
    let pad = config.pad_tokens.clone().unwrap_or_default();
    let denominator: f64 = kept
        .iter()
        .map(|&position| targets[position])
        .filter(|&target| usize::try_from(target).map_or(true, |target| !pad.contains(&target)))
        .map(|target| match (&weights, usize::try_from(target)) {
            (Some(weights), Ok(target)) => weights.get(target).map_or(f64::NAN, |&w| f64::from(w)),
            (Some(_), Err(_)) => f64::NAN,
            (None, _) => 1.0,
        })
        .sum();
    let outcome = guarded(|| {
        let device = Device::flex().autodiff();
        let input = float_leaf(&rows, &device);
        let kept_count = kept.len();
        let kept_index = BurnTensor::<1, Int>::from_data(
            TensorData::new(
                kept.iter().map(|&p| p as i64).collect::<Vec<_>>(),
                [kept_count],
            ),
            &device,
        );
        let logits = input.clone().select(0, kept_index.clone());
        let logits = if request.loss == Loss::Nll {
            logits.exp()
        } else {
            logits
        };
        let targets = BurnTensor::<1, Int>::from_data(
            TensorData::new(targets.clone(), [target_batch]),
            &device,
        )
        .select(0, kept_index);
        let loss = config.init(&device).forward(logits, targets);
        let grad = reduce_and_differentiate(request, loss, &input, denominator, &mut emulated);
        let (value, grad) = grad;
        finish(value, layout.unrows(grad), emulated)
    });
    Ok(outcome)
}

/// `binary_cross_entropy_with_logits` through `BinaryCrossEntropyLoss` with `logits = true`, the
/// input flattened (the mean over elements does not depend on the layout).
fn binary_cross_entropy(request: &Request) -> Result<Outcome, Outcome> {
    if request.target.shape() != request.input.shape() {
        return Err(rejected(
            Some("target_shape_mismatch"),
            format!(
                "Shape of targets ({:?}) should correspond to outer shape of logits ({:?}).",
                request.target.shape(),
                request.input.shape()
            ),
        ));
    }
    let targets: Vec<i64> = match request.target {
        target if target.dtype().is_floating() => {
            let values = target.to_f64();
            if values.iter().any(|&value| value != 0.0 && value != 1.0) {
                return Err(unsupported(
                    "burn's BinaryCrossEntropyLoss takes Int (hard 0/1) targets, no soft targets"
                        .into(),
                ));
            }
            values.iter().map(|&value| value as i64).collect()
        }
        target => int_values(target, "BinaryCrossEntropyLoss")?,
    };
    let shape = request.input.shape().to_vec();
    let count = targets.len();
    let flat = Tensor::Float64(
        request
            .input
            .to_f64()
            .into_shape_with_order(count)
            .unwrap()
            .into_dyn(),
    );
    Ok(guarded(|| {
        let device = Device::flex().autodiff();
        let input = float_leaf(&flat, &device);
        let target = BurnTensor::<1, Int>::from_data(TensorData::new(targets, [count]), &device);
        let loss = BinaryCrossEntropyLossConfig::new()
            .with_logits(true)
            .init(&device)
            .forward(input.clone(), target);
        let mut emulated = Vec::new();
        let (value, grad) =
            reduce_and_differentiate(request, loss, &input, count as f64, &mut emulated);
        finish(value, grad.into_shape_with_order(shape).unwrap(), emulated)
    }))
}

/// Applies the reduction to burn's mean (emulating the sum as the mean times `denominator`), then
/// backpropagates `grad_output · loss`: the loss value and the gradient with respect to `input`.
fn reduce_and_differentiate<const D: usize>(
    request: &Request,
    mean: BurnTensor<1>,
    input: &BurnTensor<D>,
    denominator: f64,
    emulated: &mut Vec<String>,
) -> (f64, ArrayD<f64>) {
    let loss = if request.reduction == Reduction::Sum {
        emulated.push("reduction='sum': burn's mean times its denominator".into());
        mean.mul_scalar(denominator)
    } else {
        mean
    };
    let grads = loss
        .clone()
        .mul_scalar(request.grad_output.unwrap_or(1.0))
        .sum()
        .backward();
    let grad = match input.grad(&grads) {
        Some(grad) => to_ndarray(grad),
        None => ArrayD::zeros(input.dims().to_vec()),
    };
    (to_ndarray(loss)[0], grad)
}

/// A float tensor on `device` that keeps its gradient (burn converts it to its float dtype).
fn float_leaf<const D: usize>(tensor: &Tensor, device: &Device) -> BurnTensor<D> {
    let values: Vec<f64> = tensor.to_f64().iter().copied().collect();
    let shape: [usize; D] = tensor
        .shape()
        .try_into()
        .expect("the caller checked the rank");
    BurnTensor::<D>::from_data(TensorData::new(values, shape), device).require_grad()
}

/// A burn tensor's values as f64, in its shape.
fn to_ndarray<const D: usize>(tensor: BurnTensor<D>) -> ArrayD<f64> {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("converted to f64");
    array(&shape, values)
}

/// Integer targets as i64 (burn's Int tensors), or why burn's API cannot take them.
fn int_values(target: &Tensor, loss: &str) -> Result<Vec<i64>, Outcome> {
    match target {
        Tensor::Int64(_) | Tensor::Int32(_) | Tensor::Int16(_) | Tensor::UInt8(_) => {
            Ok(target.to_f64().iter().map(|&value| value as i64).collect())
        }
        other => Err(unsupported(format!(
            "burn's {loss} takes an Int target tensor; the adapter does not cast a {} target",
            other.dtype()
        ))),
    }
}

/// Class weights as the `f32` values burn's config takes, rejected as burn's config assertion
/// rejects them.
fn weights(weight: Option<&Tensor>) -> Result<Option<Vec<f32>>, Outcome> {
    let Some(weight) = weight else {
        return Ok(None);
    };
    if !weight.dtype().is_floating() {
        return Err(unsupported(format!(
            "burn's CrossEntropyLoss takes f32 weights; the adapter does not cast {} weights",
            weight.dtype()
        )));
    }
    let values: Vec<f32> = weight.to_f64().iter().map(|&value| value as f32).collect();
    if !values.iter().all(|&value| value > 0.0) {
        // PyTorch has no such rule, so the rejection has no segloss kind.
        return Err(rejected(
            None,
            "Weights of cross-entropy have to be positive. (burn's CrossEntropyLossConfig assertion)"
                .into(),
        ));
    }
    Ok(Some(values))
}

/// burn refusing an input (an assertion the adapter checks first, so that burn does not panic),
/// with the segloss kind of the assertion where PyTorch has the same rule.
fn rejected(kind: Option<&str>, message: String) -> Outcome {
    Outcome::Rejected {
        kind: kind.map(str::to_string),
        message,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn binary_cross_entropy_with_logits_matches_the_closed_form() {
        super::super::library::assert_binary_cross_entropy(&super::Burn);
    }
}
