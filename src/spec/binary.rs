//! The binary cross-entropy family: `binary_cross_entropy` (probabilities in),
//! `binary_cross_entropy_with_logits` (logits in), smp's `SoftBCEWithLogitsLoss`, and the
//! log-sigmoid and broadcasting helpers the focal losses share.
//!
//! These losses are elementwise: the target has the input's shape and every element is a
//! position. `weight` and `pos_weight` broadcast against the input with PyTorch's right-aligned
//! rule, so a `(C,)` tensor aligns with the *last* axis and `(C, 1, 1)` with the channel axis.

use ndarray::ArrayD;

use super::cross_entropy::check_float_input;
use super::positions::{sweep_blocks, Layout, Upstream, Values};
use super::trace::{self, number, Fact};
use super::{LossOutput, Reduction};
use crate::error::Rejection;
use crate::spec::Result;
use crate::tensor::{DType, Tensor};

/// σ(x) = 1 / (1 + exp(−x)).
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
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

/// The axes `tensor` has once aligned with the last axes of `shape` (PyTorch's right-aligned rule:
/// leading axes of 1 added), checked to broadcast: each must be 1 or equal to the axis it meets.
/// A tensor with more axes than `shape`, or whose broadcast would be larger than `shape`, is
/// rejected (PyTorch computes these losses in place on the input's shape).
fn aligned_shape(name: &str, tensor: &Tensor, shape: &[usize]) -> Result<Vec<usize>> {
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
    Ok(aligned)
}

/// An optional tensor broadcast to a shape without copying it out: element i of the broadcast
/// reads the tensor's own element Σ_k ((i / inner_k) mod size_k)·stride_k over the axes k the
/// tensor does not broadcast along. Absent, it is 1 everywhere.
pub(crate) struct Broadcast<'a> {
    values: Option<Values<'a>>,
    /// (inner_k, size_k, stride_k): the element count inside axis k of the broadcast shape, the
    /// axis's size, and the tensor's own row-major stride there.
    axes: Vec<(usize, usize, usize)>,
}

impl<'a> Broadcast<'a> {
    /// `tensor` broadcast to `shape`, or ones when absent; rejected as [`aligned_shape`] says.
    pub(crate) fn new(name: &str, tensor: Option<&'a Tensor>, shape: &[usize]) -> Result<Self> {
        let Some(tensor) = tensor else {
            return Ok(Broadcast {
                values: None,
                axes: Vec::new(),
            });
        };
        let aligned = aligned_shape(name, tensor, shape)?;
        let mut axes = Vec::new();
        let (mut inner, mut stride) = (1, 1);
        for (&size, &own) in shape.iter().zip(&aligned).rev() {
            if own != 1 {
                axes.push((inner, size, stride));
            }
            inner *= size;
            stride *= own;
        }
        Ok(Broadcast {
            values: Some(Values::read(tensor)),
            axes,
        })
    }

    /// The broadcast's element `index`.
    #[inline]
    pub(crate) fn at(&self, index: usize) -> f64 {
        match &self.values {
            None => 1.0,
            Some(values) => values.at(self
                .axes
                .iter()
                .map(|&(inner, size, stride)| (index / inner) % size * stride)
                .sum()),
        }
    }
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

/// An elementwise loss over `shape`: `kernel(i)` returns element i's loss l_i and its derivative
/// with respect to its own input element. `none` → l, `sum` → Σ l, `mean` → Σ l / (number of
/// elements); the gradient is upstream_i·∂l_i/∂x_i.
pub(crate) fn elementwise(
    shape: &[usize],
    reduction: Reduction,
    grad_output: Option<&ArrayD<f64>>,
    kernel: impl Fn(usize) -> (f64, f64) + Sync,
) -> Result<LossOutput> {
    let count: usize = shape.iter().product();
    let denominator = count as f64;
    let upstream = Upstream::new(reduction, grad_output, shape, denominator)?;
    let layout = Layout {
        batch: 1,
        classes: 1,
        spatial: count,
    };
    let want_losses = reduction == Reduction::None;
    let swept = sweep_blocks(layout, want_losses, |block, lanes, _: &mut (), losses| {
        for (j, (loss, gradient)) in losses.iter_mut().zip(lanes.run(0)).enumerate() {
            let position = block.position(j);
            let (value, slope) = kernel(position.index);
            *gradient = upstream.at(position) * slope;
            *loss = (value, 0.0);
        }
    });
    Ok(swept.output(reduction, shape, denominator, shape))
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
    check_float_input(input)?;
    let (p, t) = (Values::read(input), Values::read(target));
    let w = Broadcast::new("weight", weight, input.shape())?;
    for (argument, values) in [("input", &p), ("target", &t)] {
        if let Some(value) = values.iter().find(|value| !(0.0..=1.0).contains(value)) {
            return Err(Rejection::ProbabilityOutOfRange {
                argument: argument.to_string(),
                value,
            });
        }
    }
    elementwise(input.shape(), reduction, grad_output, |i| {
        let (p, t, w) = (p.at(i), t.at(i), w.at(i));
        // A log term whose factor is 0 is 0·(a finite log ≤ 0) = −0, the sum's identity: it is
        // not formed (a hard target has one).
        let positive = if t == 0.0 {
            -0.0
        } else {
            t * p.ln().max(-100.0)
        };
        let negative = if t == 1.0 {
            -0.0
        } else {
            (1.0 - t) * (-p).ln_1p().max(-100.0)
        };
        let loss = -w * (positive + negative);
        let slope = w * ((p - t) / ((1.0 - p) * p).max(f64::from(1e-12_f32)));
        (loss, slope)
    })
}

/// A value carried as an unevaluated sum hi + lo.
pub(crate) type Wide = (f64, f64);

/// The functions of a logit x that BCE-with-logits and the sigmoid focal losses read, from one
/// exp and one log1p: with e = exp(−|x|) and L = log1p(e),
///
/// ```text
/// softplus(±x) = log(1 + e^(±x)) = −log σ(∓x) = max(±x, 0) + L
/// σ(|x|) = 1/(1 + e),   σ(−|x|) = e/(1 + e)
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Logit {
    /// Whether x ≥ 0 (σ(x) is then the near one, 1/(1 + e)).
    nonnegative: bool,
    /// e = exp(−|x|).
    pub(crate) e: f64,
    /// softplus(x) = −log σ(−x).
    pub(crate) softplus: f64,
    /// softplus(−x) = −log σ(x).
    pub(crate) softplus_neg: f64,
    /// σ(x).
    pub(crate) sigmoid: f64,
    /// σ(−x).
    pub(crate) sigmoid_neg: f64,
}

impl Logit {
    /// The functions of x.
    pub(crate) fn new(x: f64) -> Logit {
        let e = (-x.abs()).exp();
        let log_term = e.ln_1p();
        let (near, far) = (1.0 / (1.0 + e), e / (1.0 + e));
        let nonnegative = x >= 0.0;
        let (sigmoid, sigmoid_neg) = if nonnegative {
            (near, far)
        } else {
            (far, near)
        };
        Logit {
            nonnegative,
            e,
            softplus: x.max(0.0) + log_term,
            softplus_neg: (-x).max(0.0) + log_term,
            sigmoid,
            sigmoid_neg,
        }
    }

    /// The functions of −x: the same e, softplus(±x) and σ(±x) swapped.
    pub(crate) fn mirrored(&self) -> Logit {
        Logit {
            nonnegative: !self.nonnegative,
            e: self.e,
            softplus: self.softplus_neg,
            softplus_neg: self.softplus,
            sigmoid: self.sigmoid_neg,
            sigmoid_neg: self.sigmoid,
        }
    }

    /// (σ(x), σ(−x)), each as an unevaluated sum hi + lo, for callers that raise them to a power
    /// (which multiplies the relative error): 1 + e is formed exactly by a two-sum, its reciprocal
    /// 1/(1 + e) refined by one Newton step, and e/(1 + e) is e times it, the product exact. The
    /// only error left is exp's (½ ulp of e, moving either σ by at most ½ ulp) and about 2^−104 of
    /// rounding. σ(−|x|) is (0, 0) where e underflows.
    pub(crate) fn sigmoid_wide(&self) -> (Wide, Wide) {
        let (s, s_lo) = two_sum(1.0, self.e);
        let q = 1.0 / s;
        let near = (q, q * ((-q).mul_add(s, 1.0) - q * s_lo));
        let (p, p_lo) = two_product(self.e, q);
        let far = (p, p_lo + self.e * near.1);
        if self.nonnegative {
            (near, far)
        } else {
            (far, near)
        }
    }

    /// These functions with σ(x) and σ(−x) rounded from their wide forms, which are returned
    /// beside them ([`Logit::sigmoid_wide`]): each within ½ ulp of σ at e, where the plain quotient
    /// e/(1 + e) carries the rounding of 1 + e (up to an ulp of σ(−|x|)).
    pub(crate) fn widened(self) -> (Logit, (Wide, Wide)) {
        let wide = self.sigmoid_wide();
        let ((p, p_lo), (q, q_lo)) = wide;
        let logit = Logit {
            sigmoid: p + p_lo,
            sigmoid_neg: q + q_lo,
            ..self
        };
        (logit, wide)
    }

    /// One element of BCE-with-logits: target t and its complement t̄ = 1 − t (passed separately
    /// so that a caller forming t̄ from other quantities need not round 1 − t), weight w and
    /// positive weight pw (PyTorch's `Loss.cpp`, rewritten through softplus):
    ///
    /// ```text
    /// l     = w·[(1 − t)·x − (1 + (pw − 1)·t)·log σ(x)] = w·[pw·t·softplus(−x) + t̄·softplus(x)]
    /// ∂l/∂x = w·[(pw·t + 1 − t)·σ(x) − pw·t]           = w·[t̄·σ(x) − pw·t·σ(−x)]
    /// ```
    ///
    /// For t ∈ [0, 1] and pw ≥ 0 both forms on the right are sums of same-signed terms: the loss
    /// of a confident-correct logit does not cancel x against log σ(x), and the gradient does not
    /// subtract pw·t from a σ(x) that rounds to 1. Returns (l, ∂l/∂x).
    pub(crate) fn bce(&self, t: f64, t_bar: f64, w: f64, pw: f64) -> (f64, f64) {
        let loss = w * (pw * t * self.softplus_neg + t_bar * self.softplus);
        let slope = w * (t_bar * self.sigmoid - pw * t * self.sigmoid_neg);
        (loss, slope)
    }
}

/// The checked arguments of a BCE-with-logits call: logits, targets, and the broadcast weight and
/// pos_weight (ones when absent).
struct LogitsCall<'a> {
    x: Values<'a>,
    t: Values<'a>,
    w: Broadcast<'a>,
    pw: Broadcast<'a>,
}

impl LogitsCall<'_> {
    /// [`Logit::bce`] at element i, the target read as the pair (t, t̄) `targets` makes of it.
    /// The targets are not validated (t = −100 is accepted).
    #[inline]
    fn element(&self, i: usize, targets: impl Fn(f64) -> (f64, f64)) -> (f64, f64) {
        let (t, t_bar) = targets(self.t.at(i));
        Logit::new(self.x.at(i)).bce(t, t_bar, self.w.at(i), self.pw.at(i))
    }
}

/// PyTorch's checks of `binary_cross_entropy_with_logits`: same shapes, a floating-point target
/// (the result is written into a tensor of the target's dtype), weights that broadcast.
fn check_logits_call<'a>(
    input: &'a Tensor,
    target: &'a Tensor,
    weight: Option<&'a Tensor>,
    pos_weight: Option<&'a Tensor>,
) -> Result<LogitsCall<'a>> {
    check_same_shape(input, target)?;
    if !target.dtype().is_floating() {
        return Err(Rejection::TargetDtypeMismatch {
            expected: input.dtype(),
            got: target.dtype(),
        });
    }
    check_float_input(input)?;
    let w = Broadcast::new("weight", weight, input.shape())?;
    let pw = Broadcast::new("pos_weight", pos_weight, input.shape())?;
    Ok(LogitsCall {
        x: Values::read(input),
        t: Values::read(target),
        w,
        pw,
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
/// do not cancel; `Logit::bce`).
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
    record_logits_facts(weight, pos_weight, "none", None, reduction);
    elementwise(input.shape(), reduction, grad_output, |i| {
        call.element(i, |t| (t, 1.0 - t))
    })
}

/// Records the conventions of a BCE over logits: its weights, label smoothing (in words), ignored
/// label, and reduction (the mean dividing by every element, ignored ones included).
fn record_logits_facts(
    weight: Option<&Tensor>,
    pos_weight: Option<&Tensor>,
    smoothing: &str,
    ignore_index: Option<i64>,
    reduction: Reduction,
) {
    trace::record(|| {
        let given = |tensor: Option<&Tensor>| {
            if tensor.is_some() {
                "given, broadcast over the elements"
            } else {
                "none"
            }
        };
        vec![
            Fact::new("prediction", "logits, sigmoid of each element"),
            Fact::new("target", "one value per class (one-hot or soft)"),
            Fact::new("class weights", given(weight)),
            Fact::new("pos_weight", given(pos_weight)),
            Fact::new("label smoothing", smoothing),
            Fact::new(
                "ignored",
                ignore_index.map_or("nothing".to_string(), |index| {
                    format!("elements labelled {index} add 0")
                }),
            ),
            Fact::new(
                "reduction",
                match reduction {
                    Reduction::Mean if ignore_index.is_some() => {
                        "mean: Σl / (number of elements, ignored ones included)".to_string()
                    }
                    Reduction::Mean => "mean: Σl / (number of elements)".to_string(),
                    other => other.to_string(),
                },
            ),
        ]
    });
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
    let labels = Values::read(y_true);
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
    let smoothing = options.smooth_factor.map_or("none".to_string(), |s| {
        format!("t·(1 − s) + (1 − t)·s, s = {}", number(s))
    });
    record_logits_facts(
        weight,
        pos_weight,
        &smoothing,
        options.ignore_index,
        options.reduction,
    );
    let smoothed = |t: f64| match smooth_factor {
        Some(s) => ((1.0 - t) * s + t * (1.0 - s), t * s + (1.0 - t) * (1.0 - s)),
        None => (t, 1.0 - t),
    };
    elementwise(y_pred.shape(), options.reduction, grad_output, |i| {
        let kept = match options.ignore_index {
            Some(ignored) if labels.at(i) == ignored as f64 => 0.0,
            _ => 1.0,
        };
        let (loss, slope) = call.element(i, smoothed);
        (loss * kept, slope * kept)
    })
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
    fn widened_sigmoids_are_their_exact_values_at_e_rounded_once() {
        // σ = 1/(1 + e) and e/(1 + e) for the e each x gives, rounded once by the oracle; the
        // plain quotients miss some of them by an ulp, the widened values none.
        use crate::oracle::Real;
        let one = Real::one();
        let mut plain_misses = 0;
        for i in 0..2000 {
            let x = -35.0 + 70.0 * ((f64::from(i) * 0.618_033_988_749_895) % 1.0);
            let logit = Logit::new(x);
            let (widened, _) = logit.widened();
            let e = Real::from_f64(logit.e);
            let near = (&one / &(&one + &e)).to_f64();
            let far = (&e / &(&one + &e)).to_f64();
            let exact = if x >= 0.0 { (near, far) } else { (far, near) };
            assert_eq!((widened.sigmoid, widened.sigmoid_neg), exact, "x = {x}");
            plain_misses += usize::from((logit.sigmoid, logit.sigmoid_neg) != exact);
        }
        assert!(plain_misses > 100, "{plain_misses}");
    }

    #[test]
    fn wide_sigmoid_is_exact_at_zero_and_vanishes_past_the_exponent_range() {
        assert_eq!(Logit::new(0.0).sigmoid_wide(), ((0.5, 0.0), (0.5, 0.0)));
        assert_eq!(Logit::new(-800.0).sigmoid_wide(), ((0.0, 0.0), (1.0, 0.0)));
        // Given e = fl(e^−1) = 0.36787944117144233, 1/(1 + e) = 0.73105857863000487260865353503981…
        // (mpmath) = 0.7310585786300049 − 2.3439779703280473e-17 to 2^−108: hi + lo must match it
        // to 2^−100, far beyond the 2^−55 of one float64.
        assert_eq!((-1f64).exp(), 0.36787944117144233);
        let ((hi, lo), _) = Logit::new(1.0).sigmoid_wide();
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
        let spread = Broadcast::new("w", Some(&per_last), &[3, 2]).unwrap();
        let read: Vec<f64> = (0..6).map(|i| spread.at(i)).collect();
        assert_eq!(read, [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);

        let per_channel =
            Tensor::Float64(ArrayD::from_shape_vec(vec![3, 1], vec![1.0, 2.0, 3.0]).unwrap());
        let spread = Broadcast::new("w", Some(&per_channel), &[2, 3, 2]).unwrap();
        let read: Vec<f64> = (0..12).map(|i| spread.at(i)).collect();
        assert_eq!(
            read,
            [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
        );
        assert_eq!(Broadcast::new("w", None, &[2]).unwrap().at(1), 1.0);
        let error = Broadcast::new("w", Some(&per_last), &[2, 3]).err().unwrap();
        assert_eq!(error.kind(), "broadcast_shape");
        let larger = Tensor::Float64(ArrayD::zeros(vec![4, 3, 2]));
        assert!(Broadcast::new("w", Some(&larger), &[3, 2]).is_err());
    }
}
