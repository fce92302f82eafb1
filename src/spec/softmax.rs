//! Softmax and log-softmax over one axis (the class axis), lane by lane, and the log-softmax
//! backward.

use ndarray::{Array, ArrayView1, Axis, Dimension, Zip};

use super::binary::two_sum;
use super::compensated_sum;

/// One lane's log-softmax, around the arg-max a (m = x_a, the first largest logit):
///
/// ```text
/// S = Σ_{c≠a} e^(x_c − m),   log p_c = (x_c − m) − log1p(S),   p_c = e^(x_c − m)·p_a,   p_a = e^(−log1p(S))
/// ```
///
/// each e^(x_c − m) with the rounding of x_c − m folded back in ([`shifted_exp`]). Subtracting the
/// maximum keeps exp from overflowing, so logits of ±1e4 are exact; taking the arg-max's term
/// (exactly 1) out of the sum lets log1p keep the digits of a small S, so a dominant class's
/// log p_a = −log1p(S) is accurate to the last bit where log(1 + S) would round S away. p_c from
/// the shifted exponential carries only |log p_a| ≤ |log p_c| times log p's rounding, where
/// exp(log p_c) would carry |log p_c| times it (20 ulp at log p = −40). As in PyTorch, a lane
/// holding +∞ or NaN, or all −∞, has no log-softmax (every output there is NaN), and a single −∞
/// entry stays −∞ while the others remain finite.
pub(crate) struct SoftmaxLane {
    arg_max: usize,
    max: f64,
    log_sum: f64,
    p_max: f64,
}

impl SoftmaxLane {
    /// The lane of `logits`, writing e^(x_c − m) into `exps` (1 at the arg-max); `None` for a lane
    /// without a log-softmax.
    pub(crate) fn new(logits: &[f64], exps: &mut [f64]) -> Option<SoftmaxLane> {
        let (arg_max, max) = logits.iter().copied().enumerate().fold(
            (0, f64::NEG_INFINITY),
            |best, (class, value)| if value > best.1 { (class, value) } else { best },
        );
        let max = logits.get(arg_max).copied().unwrap_or(max);
        if !max.is_finite() || logits.iter().any(|value| value.is_nan()) {
            return None;
        }
        for (exp, &logit) in exps.iter_mut().zip(logits) {
            *exp = shifted_exp(logit, max);
        }
        exps[arg_max] = 0.0;
        let others = compensated_sum(exps.iter().copied());
        exps[arg_max] = 1.0;
        let log_sum = others.ln_1p();
        Some(SoftmaxLane {
            arg_max,
            max,
            log_sum,
            p_max: (-log_sum).exp(),
        })
    }

    /// log p_c, for the logit x_c.
    #[inline]
    pub(crate) fn log_prob(&self, logit: f64) -> f64 {
        (logit - self.max) - self.log_sum
    }

    /// p_c and 1 − p_c at class c (logit x_c, `exp` its e^(x_c − m)):
    ///
    /// ```text
    /// p_c = e^(x_c − m)·p_a,   1 − p_c = −expm1(log p_c) for p_c > ½, else 1 − p_c
    /// ```
    ///
    /// Only where p_c > ½ does 1 − p_c cancel; there it comes from log p_c without subtraction.
    #[inline]
    pub(crate) fn prob(&self, class: usize, logit: f64, exp: f64) -> (f64, f64) {
        let p = if class == self.arg_max {
            self.p_max
        } else {
            exp * self.p_max
        };
        let complement = if p > 0.5 {
            -self.log_prob(logit).exp_m1()
        } else {
            1.0 - p
        };
        (p, complement)
    }

    /// The vector-Jacobian product at class c (logit x_c, `exp` its e^(x_c − m)), for
    /// g = ∂L/∂(log p):
    ///
    /// ```text
    /// ∂L/∂x_c = g_c − p_c·Σ_k g_k = g_c·(1 − p_c) − p_c·Σ_{k≠c} g_k
    /// ```
    ///
    /// `others` is Σ_{k≠c} g_k and `total` Σ_k g_k. The right-hand form does not cancel where
    /// p_c ≈ 1 and g is concentrated on c (a confident correct class): 1 − p_c comes from log p_c
    /// without subtraction ([`SoftmaxLane::prob`]). Where Σ g is not finite the left-hand form is
    /// evaluated literally, as PyTorch does.
    #[inline]
    pub(crate) fn backward(
        &self,
        class: usize,
        logit: f64,
        exp: f64,
        g: f64,
        others: f64,
        total: f64,
    ) -> f64 {
        let (p, complement) = self.prob(class, logit, exp);
        if !total.is_finite() {
            return g - p * total;
        }
        g * complement - p * others
    }

    /// The lane's vector-Jacobian product in place: `grads` holds g = ∂L/∂(log p) and receives
    /// ∂L/∂x, [`SoftmaxLane::backward`] at each class (`logits` and `exps` as [`SoftmaxLane::new`]
    /// left them). Σ_{k≠c} g_k is the compensated sum of g carried as hi + lo, minus g_c, exact
    /// where g has no other entries (and then not summed at all: one nonzero g_k is its own
    /// exact sum, as a class-index target's g is).
    pub(crate) fn backward_lane(&self, logits: &[f64], exps: &[f64], grads: &mut [f64]) {
        let mut nonzero = grads.iter().copied().filter(|&grad| grad != 0.0);
        let (total, total_lo) = match (nonzero.next(), nonzero.next()) {
            (Some(only), None) => (only, 0.0),
            _ => {
                let total = compensated_sum(grads.iter().copied());
                (
                    total,
                    compensated_sum(grads.iter().copied().chain([-total])),
                )
            }
        };
        for (class, grad) in grads.iter_mut().enumerate() {
            let (rest, rest_lo) = two_sum(total, -*grad);
            let others = rest + (rest_lo + total_lo);
            *grad = self.backward(class, logits[class], exps[class], *grad, others, total);
        }
    }
}

/// log softmax(x) over `axis`, lane by lane ([`SoftmaxLane`]).
pub fn log_softmax<D: Dimension>(logits: &Array<f64, D>, axis: usize) -> Array<f64, D> {
    let mut log_probs = logits.clone();
    let mut scratch = Vec::new();
    for mut lane in log_probs.lanes_mut(Axis(axis)) {
        let (values, exps) = lane_scratch(&mut scratch, lane.view());
        match SoftmaxLane::new(values, exps) {
            Some(softmax) => lane.mapv_inplace(|logit| softmax.log_prob(logit)),
            None => lane.fill(f64::NAN),
        }
    }
    log_probs
}

/// The lane's values copied to the front of `scratch`, and as much room again after them.
fn lane_scratch<'s>(
    scratch: &'s mut Vec<f64>,
    lane: ArrayView1<f64>,
) -> (&'s mut [f64], &'s mut [f64]) {
    scratch.clear();
    scratch.extend(lane.iter().copied());
    scratch.resize(2 * lane.len(), 0.0);
    scratch.split_at_mut(lane.len())
}

/// exp(x − m) with the rounding of x − m folded back in: x − m = d + δ exactly, and
/// exp(d + δ) = exp(d)·(1 + δ) to first order. x − m rounds by up to ½ ulp(m), an absolute error
/// that exp turns into a relative one (16 ulp of exp(−40.5) when m = 40).
fn shifted_exp(x: f64, m: f64) -> f64 {
    let (d, delta) = two_sum(x, -m);
    let e = d.exp();
    if delta.is_finite() {
        e + e * delta
    } else {
        e
    }
}

/// softmax(x)_c = exp(log softmax(x)_c).
pub fn softmax<D: Dimension>(logits: &Array<f64, D>, axis: usize) -> Array<f64, D> {
    log_softmax(logits, axis).mapv(f64::exp)
}

/// The log-softmax vector-Jacobian product: given g = ∂L/∂(log p), the lane backward of
/// [`SoftmaxLane::backward`]. `lanes` holds the logits, or their log-probabilities (log_softmax of
/// log p is log p): the logits give p_c to the last bit, the log-probabilities carry their own
/// rounding (|log p_c| times an ulp); each lane's product is `SoftmaxLane::backward_lane`. A lane
/// whose g is all zero (an ignored position) has the exact gradient 0 and is not read, so a NaN
/// there stays out of the gradient (PyTorch's backward returns a NaN row there: the anchor
/// artefact `ignored-nan-logits`).
pub fn log_softmax_backward<D: Dimension>(
    lanes: &Array<f64, D>,
    grad_log_probs: &Array<f64, D>,
    axis: usize,
) -> Array<f64, D> {
    let mut grad_logits = grad_log_probs.clone();
    let (mut scratch, mut grads) = (Vec::new(), Vec::new());
    Zip::from(grad_logits.lanes_mut(Axis(axis)))
        .and(lanes.lanes(Axis(axis)))
        .for_each(|mut grad_lane, lane| {
            if grad_lane.iter().all(|&grad| grad == 0.0) {
                grad_lane.fill(0.0);
                return;
            }
            let (values, exps) = lane_scratch(&mut scratch, lane);
            let Some(softmax) = SoftmaxLane::new(values, exps) else {
                grad_lane.fill(f64::NAN);
                return;
            };
            grads.clear();
            grads.extend(grad_lane.iter().copied());
            softmax.backward_lane(values, exps, &mut grads);
            grad_lane.assign(&ArrayView1::from(&grads[..]));
        });
    grad_logits
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, ArrayD};

    #[test]
    fn large_logits_are_exact() {
        let log_probs = log_softmax(&arr1(&[1e4, 0.0, -1e4]).into_dyn(), 0);
        assert_eq!(log_probs.as_slice().unwrap(), &[0.0, -1e4, -2e4]);
    }

    #[test]
    fn a_dominant_class_keeps_its_digits() {
        // x = (40, 0): log p_0 = −log1p(e^−40) = −4.24835425529158898630…e-18 and
        // ∂(−log p_0)/∂x = (−σ(−40), σ(−40)), σ(−40) = 4.24835425529158897728…e-18 (mpmath, 50
        // digits). log(1 + e^−40) rounds to 0, and 1 − p_0 formed by subtraction is 0.
        let log_probs = log_softmax(&arr1(&[40.0, 0.0]).into_dyn(), 0);
        assert_eq!(
            log_probs.as_slice().unwrap(),
            &[-4.248354255291589e-18, -40.0]
        );
        let grad = log_softmax_backward(&log_probs, &arr1(&[-1.0, 0.0]).into_dyn(), 0);
        assert_eq!(
            grad.as_slice().unwrap(),
            &[-4.248354255291589e-18, 4.248354255291589e-18]
        );
    }

    #[test]
    fn the_shift_by_the_maximum_does_not_round_the_exponent() {
        // x = (40, 0.1): log p_0 = −log1p(e^(0.1 − 40)) = −4.695157572631189691459…e-18 (mpmath,
        // with 0.1 the float64 nearest it). 0.1 − 40 rounds by 3.5e-15, which exp turns into a
        // relative error of 15 ulp (−4.6951575726311964e-18).
        let log_probs = log_softmax(&arr1(&[40.0, 0.1]).into_dyn(), 0);
        assert_eq!(log_probs[0], -4.6951575726311895e-18);
        // p_1 = e^(0.1 − 40)/(1 + e^(0.1 − 40)) = 4.695157572631189680437…e-18, and the gradient
        // of −log p_0 is (−p_1, p_1); exp(log p_1) would be 15 ulp off for the same reason
        // (4.6951575726311964e-18).
        let grad = log_softmax_backward(
            &arr1(&[40.0, 0.1]).into_dyn(),
            &arr1(&[-1.0, 0.0]).into_dyn(),
            0,
        );
        assert_eq!(
            grad.as_slice().unwrap(),
            &[-4.6951575726311895e-18, 4.6951575726311895e-18]
        );
    }

    #[test]
    fn non_finite_lanes_follow_pytorch() {
        let with_neg_inf = log_softmax(&arr1(&[0.0, f64::NEG_INFINITY]).into_dyn(), 0);
        assert_eq!(with_neg_inf.as_slice().unwrap(), &[0.0, f64::NEG_INFINITY]);
        assert!(log_softmax(&arr1(&[0.0, f64::INFINITY]).into_dyn(), 0)
            .iter()
            .all(|v| v.is_nan()));
        assert!(log_softmax(&arr1(&[1.0, f64::NAN]).into_dyn(), 0)
            .iter()
            .all(|v| v.is_nan()));
        assert!(log_softmax(&arr1(&[f64::NEG_INFINITY; 2]).into_dyn(), 0)
            .iter()
            .all(|v| v.is_nan()));
    }

    #[test]
    fn softmax_sums_to_one_along_the_axis() {
        let logits =
            ArrayD::from_shape_vec(vec![2, 3], vec![0.5, -1.0, 2.0, 3.0, 3.0, -7.0]).unwrap();
        for row in softmax(&logits, 1).rows() {
            assert!((row.sum() - 1.0).abs() < 1e-15);
        }
    }
}
