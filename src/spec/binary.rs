//! The binary cross-entropy family: `binary_cross_entropy` (probabilities in),
//! `binary_cross_entropy_with_logits` (logits in), smp's `SoftBCEWithLogitsLoss`, and the
//! log-sigmoid and broadcasting helpers the focal losses share.
//!
//! These losses are elementwise: the target has the input's shape and every element is a
//! position. `weight` and `pos_weight` broadcast against the input with PyTorch's right-aligned
//! rule, so a `(C,)` tensor aligns with the *last* axis and `(C, 1, 1)` with the channel axis.

use ndarray::{ArrayD, IxDyn, Zip};

use super::cross_entropy::float_input;
use super::{reshaped, LossOutput, Reduction};
use crate::error::Rejection;
use crate::spec::Result;
use crate::tensor::{DType, Tensor};

/// σ(x) = 1 / (1 + exp(−x)).
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// σ(x) as an unevaluated sum hi + lo, for callers that raise it to a power (which multiplies
/// its relative error): 1 + e^{−x} is formed exactly by a two-sum and its reciprocal refined by
/// one Newton step, so the only error left is exp's (½ ulp of e^{−x}, moving σ(x) by at most
/// σ(−x)·½ ulp) and about 2^−104 of rounding. (0, 0) where σ(x) underflows.
pub(crate) fn sigmoid_wide(x: f64) -> (f64, f64) {
    let e = (-x).exp();
    if e.is_infinite() {
        return (0.0, 0.0);
    }
    let (s, s_lo) = two_sum(1.0, e);
    let q = 1.0 / s;
    let residual = (-q).mul_add(s, 1.0) - q * s_lo;
    (q, q * residual)
}

/// a + b = s + e exactly, s the rounded sum (Knuth's two-sum).
pub(crate) fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let b_virtual = s - a;
    let a_virtual = s - b_virtual;
    (s, (a - a_virtual) + (b - b_virtual))
}

/// a·b = p + e exactly, p the rounded product (the error by a fused multiply-add).
pub(crate) fn two_product(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

/// log σ(x) = min(x, 0) − log1p(exp(−|x|)), exact for logits of any size (PyTorch's kernel).
pub fn log_sigmoid(x: f64) -> f64 {
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

/// `tensor` broadcast to `shape` by PyTorch's right-aligned rule: the tensor's axes align with the
/// last axes of `shape`, and each must be 1 or equal to the axis it meets. A tensor with more axes
/// than `shape`, or whose broadcast would be larger than `shape`, is rejected (PyTorch computes
/// these losses in place on the input's shape).
pub fn broadcast_to(name: &str, tensor: &Tensor, shape: &[usize]) -> Result<ArrayD<f64>> {
    let error = || Rejection::BroadcastShape {
        name: name.to_string(),
        shape: tensor.shape().to_vec(),
        to: shape.to_vec(),
    };
    let own = tensor.shape();
    if own.len() > shape.len() {
        return Err(error());
    }
    let offset = shape.len() - own.len();
    let fits = own
        .iter()
        .zip(&shape[offset..])
        .all(|(&size, &target)| size == 1 || size == target);
    if !fits {
        return Err(error());
    }
    let mut aligned = vec![1; offset];
    aligned.extend_from_slice(own);
    let values = reshaped(tensor.to_f64(), IxDyn(&aligned)).ok_or_else(error)?;
    values
        .broadcast(IxDyn(shape))
        .map(|view| view.to_owned())
        .ok_or_else(error)
}

/// Rejects a target whose shape is not the input's.
pub(crate) fn check_same_shape(input: &Tensor, target: &Tensor) -> Result<()> {
    if input.shape() == target.shape() {
        Ok(())
    } else {
        Err(Rejection::TargetShapeMismatch {
            expected: input.shape().to_vec(),
            got: target.shape().to_vec(),
        })
    }
}

/// Reduces an elementwise loss map `loss` whose element i has derivative `derivative[i]` with
/// respect to its own input element: `none` → l, `sum` → Σ l, `mean` → Σ l / (number of
/// elements); the gradient is upstream_i · derivative_i.
pub(crate) fn reduce_elementwise(
    loss: ArrayD<f64>,
    derivative: ArrayD<f64>,
    reduction: Reduction,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let denominator = loss.len() as f64;
    let mut grad_input = reduction.upstream(grad_output, loss.shape(), denominator)?;
    grad_input.zip_mut_with(&derivative, |upstream, &slope| *upstream *= slope);
    Ok(LossOutput {
        loss: reduction.reduce(loss, denominator),
        grad_input,
    })
}

/// `binary_cross_entropy(input, target, weight, reduction)` on probabilities p and targets t:
///
/// ```text
/// l = −w·[t·max(log p, −100) + (1 − t)·max(log1p(−p), −100)]      mean = Σ l / (number of elements)
/// ∂l/∂p = w·[(p − t) / max(p·(1 − p), ε)],   ε = 1e-12 as a float32 (9.99999996e-13)
/// ```
///
/// Both log terms are ≤ 0, so the forward does not cancel. The gradient divides before it
/// multiplies by w: w·(p − t) underflows for p = 1e-300, w = 3e-16 where the quotient does not.
///
/// The gradient is PyTorch's own backward, not the derivative of the clamped forward: at p = 0,
/// t = 1 the loss is 100 and the gradient −1/ε ≈ −1.000000004e12 (PyTorch's ε is a `float`
/// constant even in the double kernel). Input and target must both lie in [0, 1] (NaN
/// fails the check) and share the input's dtype; the weight is not normalised by the mean.
pub fn binary_cross_entropy(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    reduction: Reduction,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    check_same_shape(input, target)?;
    if target.dtype() != input.dtype() {
        return Err(Rejection::TargetDtypeMismatch {
            expected: input.dtype(),
            got: target.dtype(),
        });
    }
    let p = float_input(input)?;
    let t = target.to_f64();
    let w = match weight {
        Some(weight) => broadcast_to("weight", weight, input.shape())?,
        None => ArrayD::ones(input.shape()),
    };
    for (argument, values) in [("input", &p), ("target", &t)] {
        if let Some(&value) = values.iter().find(|value| !(0.0..=1.0).contains(*value)) {
            return Err(Rejection::ProbabilityOutOfRange {
                argument: argument.to_string(),
                value,
            });
        }
    }
    let loss = Zip::from(&p).and(&t).and(&w).map_collect(|&p, &t, &w| {
        -w * (t * p.ln().max(-100.0) + (1.0 - t) * (-p).ln_1p().max(-100.0))
    });
    let derivative = Zip::from(&p)
        .and(&t)
        .and(&w)
        .map_collect(|&p, &t, &w| w * ((p - t) / ((1.0 - p) * p).max(f64::from(1e-12_f32))));
    reduce_elementwise(loss, derivative, reduction, grad_output)
}

/// One element of BCE-with-logits: logit x, target t and its complement t̄ = 1 − t (passed
/// separately so that a caller forming t̄ from other quantities need not round 1 − t), weight w and
/// positive weight pw (PyTorch's `Loss.cpp`, rewritten through softplus):
///
/// ```text
/// softplus(x) = log(1 + eˣ) = −log σ(−x)
/// l     = w·[(1 − t)·x − (1 + (pw − 1)·t)·log σ(x)] = w·[pw·t·softplus(−x) + t̄·softplus(x)]
/// ∂l/∂x = w·[(pw·t + 1 − t)·σ(x) − pw·t]           = w·[t̄·σ(x) − pw·t·σ(−x)]
/// ```
///
/// For t ∈ [0, 1] and pw ≥ 0 both forms on the right are sums of same-signed terms: the loss of a
/// confident-correct logit does not cancel x against log σ(x), and the gradient does not subtract
/// pw·t from a σ(x) that rounds to 1. One exp and one log1p serve all four functions of x: with
/// e = exp(−|x|) and L = log1p(e), softplus(±x) = max(±x, 0) + L, and σ(|x|) = 1/(1 + e),
/// σ(−|x|) = e/(1 + e). Returns (l, ∂l/∂x).
pub(crate) fn bce_with_logits_element(x: f64, t: f64, t_bar: f64, w: f64, pw: f64) -> (f64, f64) {
    let e = (-x.abs()).exp();
    let log_term = e.ln_1p();
    let (softplus_x, softplus_neg) = (x.max(0.0) + log_term, (-x).max(0.0) + log_term);
    let (near, far) = (1.0 / (1.0 + e), e / (1.0 + e));
    let (sigmoid_x, sigmoid_neg) = if x >= 0.0 { (near, far) } else { (far, near) };
    let loss = w * (pw * t * softplus_neg + t_bar * softplus_x);
    let slope = w * (t_bar * sigmoid_x - pw * t * sigmoid_neg);
    (loss, slope)
}

/// [`bce_with_logits_element`] over arrays x, t, w, pw of one shape, each target read as the pair
/// (t, t̄) `targets` makes of it: the loss map and ∂l/∂x. The targets are not validated (t = −100
/// is accepted).
fn bce_with_logits_elements(
    x: &ArrayD<f64>,
    t: &ArrayD<f64>,
    w: &ArrayD<f64>,
    pw: &ArrayD<f64>,
    targets: impl Fn(f64) -> (f64, f64),
) -> (ArrayD<f64>, ArrayD<f64>) {
    let mut loss = ArrayD::zeros(x.raw_dim());
    let mut derivative = ArrayD::zeros(x.raw_dim());
    Zip::from(&mut loss)
        .and(&mut derivative)
        .and(x)
        .and(t)
        .and(w)
        .and(pw)
        .for_each(|loss, derivative, &x, &t, &w, &pw| {
            let (t, t_bar) = targets(t);
            (*loss, *derivative) = bce_with_logits_element(x, t, t_bar, w, pw);
        });
    (loss, derivative)
}

/// The checked arguments of a BCE-with-logits call: logits, targets, and the broadcast weight and
/// pos_weight (ones when absent).
struct LogitsCall {
    x: ArrayD<f64>,
    t: ArrayD<f64>,
    w: ArrayD<f64>,
    pw: ArrayD<f64>,
}

/// PyTorch's checks of `binary_cross_entropy_with_logits`: same shapes, a floating-point target
/// (the result is written into a tensor of the target's dtype), weights that broadcast.
fn check_logits_call(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    pos_weight: Option<&Tensor>,
) -> Result<LogitsCall> {
    check_same_shape(input, target)?;
    if !target.dtype().is_floating() {
        return Err(Rejection::TargetDtypeMismatch {
            expected: input.dtype(),
            got: target.dtype(),
        });
    }
    let broadcast = |name: &str, tensor: Option<&Tensor>| match tensor {
        Some(tensor) => broadcast_to(name, tensor, input.shape()),
        None => Ok(ArrayD::ones(input.shape())),
    };
    Ok(LogitsCall {
        x: float_input(input)?,
        t: target.to_f64(),
        w: broadcast("weight", weight)?,
        pw: broadcast("pos_weight", pos_weight)?,
    })
}

/// `binary_cross_entropy_with_logits(input, target, weight, reduction, pos_weight)`: with weights
/// w and positive weights pw broadcast to the input,
///
/// ```text
/// l     = w·[pw·t·softplus(−x) + (1 − t)·softplus(x)]      mean = Σ l / (number of elements)
/// ∂l/∂x = w·[(1 − t)·σ(x) − pw·t·σ(−x)]
/// ```
///
/// (PyTorch's (1 − t)·x − (1 + (pw − 1)·t)·log σ(x) and (pw·t + 1 − t)·σ(x) − pw·t, in forms that
/// do not cancel; `bce_with_logits_element`).
///
/// Stable for logits of any size (±1e4 gives 1e4 exactly). An infinite logit gives NaN where a
/// zero-weighted softplus is infinite (x = +inf, t = 1 and x = −inf, t = 0, as PyTorch, though
/// the limit is 0); at x = −inf, t = 1 the loss is +inf, the limit, where PyTorch's
/// (1 − t)·x gives 0·(−inf) = NaN.
pub fn binary_cross_entropy_with_logits(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    pos_weight: Option<&Tensor>,
    reduction: Reduction,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let call = check_logits_call(input, target, weight, pos_weight)?;
    let (loss, derivative) =
        bce_with_logits_elements(&call.x, &call.t, &call.w, &call.pw, |t| (t, 1.0 - t));
    reduce_elementwise(loss, derivative, reduction, grad_output)
}

/// smp's `SoftBCEWithLogitsLoss(weight, ignore_index, reduction, smooth_factor, pos_weight)`.
///
/// With s = smooth_factor (no smoothing when `None`) and m = [t ≠ ignore_index] (1 everywhere when
/// ignore_index is `None`):
///
/// ```text
/// t' = (1 − t)·s + t·(1 − s)                      ({0, 1} → {s, 1 − s}, not ε/C)
/// 1 − t' = t·s + (1 − t)·(1 − s)                  (formed directly: 1 − 0.9 would round)
/// l  = BCE_with_logits(x, t', w, pw) · m
/// mean = Σ l / (number of elements)               (ignored elements stay in the denominator)
/// ```
///
/// smp reduces only `mean` and `sum`; any other reduction string returns the map unreduced.
///
/// Integer labels with a smooth_factor are smoothed the way PyTorch computes an integer tensor
/// times a Python float, in float32 — t' = f32(f32(1 − t)·f32(s) + f32(t)·f32(1 − s)) — and the
/// loss then takes those float32 soft targets (smp rejects integer targets only when there is no
/// smoothing to turn them into floats); bool labels fail at 1 − t, as in PyTorch.
pub fn smp_soft_bce_with_logits(
    y_pred: &Tensor,
    y_true: &Tensor,
    weight: Option<&Tensor>,
    pos_weight: Option<&Tensor>,
    options: &SoftBceOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    // The ignore mask compares the labels as given, before any smoothing.
    let labels = y_true.to_f64();
    let labels_smoothed_in_float32;
    let (y_true, smooth_factor) = match (options.smooth_factor, y_true.dtype()) {
        (Some(_), DType::Bool) => return Err(Rejection::BoolSubtraction { argument: "y_true" }),
        (Some(s), dtype) if !dtype.is_floating() => {
            labels_smoothed_in_float32 = smooth_labels_in_float32(y_true, s);
            (&labels_smoothed_in_float32, None)
        }
        (smooth_factor, _) => (y_true, smooth_factor),
    };
    let call = check_logits_call(y_pred, y_true, weight, pos_weight)?;
    let kept = labels.mapv(|t| match options.ignore_index {
        Some(ignored) if t == ignored as f64 => 0.0,
        _ => 1.0,
    });
    let smoothed = |t: f64| match smooth_factor {
        Some(s) => ((1.0 - t) * s + t * (1.0 - s), t * s + (1.0 - t) * (1.0 - s)),
        None => (t, 1.0 - t),
    };
    let (mut loss, mut derivative) =
        bce_with_logits_elements(&call.x, &call.t, &call.w, &call.pw, smoothed);
    loss *= &kept;
    derivative *= &kept;
    reduce_elementwise(loss, derivative, options.reduction, grad_output)
}

/// Integer labels t smoothed as PyTorch computes `(1 − t)·s + t·(1 − s)` for an integer tensor:
/// every operation in float32.
fn smooth_labels_in_float32(labels: &Tensor, s: f64) -> Tensor {
    let (s, complement) = (s as f32, (1.0 - s) as f32);
    Tensor::Float32(labels.to_f64().mapv(|t| {
        let t = t as f32;
        (1.0 - t) * s + t * complement
    }))
}

/// The non-tensor arguments of smp's `SoftBCEWithLogitsLoss`, with smp's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftBceOptions {
    /// Targets equal to this contribute 0 but stay in the mean; `None` ignores nothing.
    pub ignore_index: Option<i64>,
    /// mean / sum; any other string is unreduced ([`Reduction::None`]).
    pub reduction: Reduction,
    /// s: targets become (1 − t)·s + t·(1 − s); `None` leaves them.
    pub smooth_factor: Option<f64>,
}

impl Default for SoftBceOptions {
    fn default() -> Self {
        SoftBceOptions {
            ignore_index: Some(-100),
            reduction: Reduction::Mean,
            smooth_factor: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sigmoid_is_exact_at_large_logits() {
        assert_eq!(log_sigmoid(1e4), 0.0);
        assert_eq!(log_sigmoid(-1e4), -1e4);
        assert!((log_sigmoid(0.0) + std::f64::consts::LN_2).abs() < 1e-16);
    }

    #[test]
    fn wide_sigmoid_is_exact_at_zero_and_vanishes_past_the_exponent_range() {
        assert_eq!(sigmoid_wide(0.0), (0.5, 0.0));
        assert_eq!(sigmoid_wide(-800.0), (0.0, 0.0));
        // Given e = fl(e^−1) = 0.36787944117144233, 1/(1 + e) = 0.73105857863000487260865353503981…
        // (mpmath) = 0.7310585786300049 − 2.3439779703280473e-17 to 2^−108: hi + lo must match it
        // to 2^−100, far beyond the 2^−55 of one float64.
        assert_eq!((-1f64).exp(), 0.36787944117144233);
        let (hi, lo) = sigmoid_wide(1.0);
        assert_eq!(hi, 0.7310585786300049);
        let error = (hi - 0.7310585786300049) + (lo + 2.3439779703280473e-17);
        assert!(error.abs() <= 2f64.powi(-100), "{error:e}");
    }

    #[test]
    fn two_sum_and_two_product_are_exact() {
        assert_eq!(two_sum(1.0, 1e-20), (1.0, 1e-20));
        let third = 1.0 / 3.0;
        let (p, e) = two_product(third, 3.0);
        assert_eq!(p, 1.0);
        assert_eq!(e, third.mul_add(3.0, -1.0));
        assert_eq!(e, -f64::EPSILON / 4.0);
    }

    #[test]
    fn broadcasting_is_right_aligned() {
        let per_last = Tensor::Float64(ArrayD::from_shape_vec(vec![2], vec![1.0, 2.0]).unwrap());
        let spread = broadcast_to("w", &per_last, &[3, 2]).unwrap();
        assert_eq!(
            spread
                .index_axis(ndarray::Axis(0), 2)
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![1.0, 2.0]
        );
        assert_eq!(
            broadcast_to("w", &per_last, &[2, 3]).unwrap_err().kind(),
            "broadcast_shape"
        );
        let larger = Tensor::Float64(ArrayD::zeros(vec![4, 3, 2]));
        assert!(broadcast_to("w", &larger, &[3, 2]).is_err());
    }
}
