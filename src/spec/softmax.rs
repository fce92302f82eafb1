//! Softmax and log-softmax over one axis (the class axis), with the log-softmax backward (from
//! the log-probabilities, or more accurately from the logits they came from).

use ndarray::{Array, ArrayView1, Axis, Dimension, Zip};

use super::binary::two_sum;
use super::compensated_sum;

/// log softmax(x)_c = (x_c − m) − log1p(S), with m = x_a = max_k x_k at the first arg-max a and
/// S = Σ_{k≠a} exp(x_k − m), each term with the rounding of x_k − m corrected (`shifted_exp`).
///
/// Subtracting the maximum keeps exp from overflowing, so logits of ±1e4 are exact; taking the
/// arg-max's term (exactly 1) out of the sum lets log1p keep the digits of a small S, so a dominant
/// class's log p_a = −log1p(S) is accurate to the last bit where log(1 + S) would round S away. As
/// in PyTorch: a lane holding +inf or NaN becomes all NaN (m = +inf gives inf − inf), an all −inf
/// lane is NaN, and a single −inf entry stays −inf while the others remain finite.
pub fn log_softmax<D: Dimension>(logits: &Array<f64, D>, axis: usize) -> Array<f64, D> {
    let mut log_probs = logits.clone();
    for mut lane in log_probs.lanes_mut(Axis(axis)) {
        let arg_max = arg_max(lane.view());
        let max = lane.get(arg_max).copied().unwrap_or(f64::NAN);
        if !max.is_finite() || lane.iter().any(|value| value.is_nan()) {
            lane.fill(f64::NAN);
            continue;
        }
        let others = compensated_sum(
            lane.iter()
                .enumerate()
                .filter(|&(index, _)| index != arg_max)
                .map(|(_, &value)| shifted_exp(value, max)),
        );
        let log_sum_exp = others.ln_1p();
        lane.mapv_inplace(|value| (value - max) - log_sum_exp);
    }
    log_probs
}

/// The index of the first largest value of a lane (0 for an empty or all-NaN lane).
fn arg_max(lane: ArrayView1<f64>) -> usize {
    lane.iter()
        .copied()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (index, value)| {
            if value > best.1 {
                (index, value)
            } else {
                best
            }
        })
        .0
}

/// exp(x − m) with the rounding of x − m folded back in: x − m = d + δ exactly, and
/// exp(d + δ) = exp(d)·(1 + δ) to first order. x − m rounds by up to ½ ulp(m), an absolute error
/// that exp turns into a relative one (16 ulp of exp(−40.5) when m = 40).
fn shifted_exp(x: f64, m: f64) -> f64 {
    let (d, delta) = two_sum(x, -m);
    let e = d.exp();
    if delta.is_finite() {
        e.mul_add(delta, e)
    } else {
        e
    }
}

/// softmax(x)_c = exp(log softmax(x)_c).
pub fn softmax<D: Dimension>(logits: &Array<f64, D>, axis: usize) -> Array<f64, D> {
    log_softmax(logits, axis).mapv(f64::exp)
}

/// The log-softmax vector-Jacobian product: given g = ∂L/∂(log p), returns
///
/// ```text
/// ∂L/∂x_c = g_c − p_c·Σ_k g_k = g_c·(1 − p_c) − p_c·Σ_{k≠c} g_k,   1 − p_c = −expm1(log p_c) for p_c > ½
/// ```
///
/// The right-hand form does not cancel where p_c ≈ 1 and g is concentrated on c (a confident
/// correct class): 1 − p_c comes from log p_c without subtraction, and Σ_{k≠c} g_k is the sum
/// carried as hi + lo (a compensated sum and its residual) minus g_c, exact where g has no other
/// entries. Where Σ g is not finite the left-hand form is evaluated literally, as PyTorch does. A
/// lane whose g is all zero (an ignored position) has the exact gradient 0 and is not read, so a
/// NaN logit there stays out of the gradient (PyTorch's backward returns a NaN row there: the
/// anchor artefact `ignored-nan-logits`).
pub fn log_softmax_backward<D: Dimension>(
    log_probs: &Array<f64, D>,
    grad_log_probs: &Array<f64, D>,
    axis: usize,
) -> Array<f64, D> {
    backward(log_probs, None, grad_log_probs, axis)
}

/// [`log_softmax_backward`] with p_c = exp(x_c − x_a)·p_a, a the arg-max, p_a = exp(log p_a)
/// (`shifted_exp`): exp(log p_c) carries log p_c's rounding multiplied by |log p_c| (20 ulp at
/// log p = −40), this form only |log p_a| ≤ |log p_c| times it.
pub fn log_softmax_backward_from_logits<D: Dimension>(
    logits: &Array<f64, D>,
    log_probs: &Array<f64, D>,
    grad_log_probs: &Array<f64, D>,
    axis: usize,
) -> Array<f64, D> {
    backward(log_probs, Some(logits), grad_log_probs, axis)
}

/// The log-softmax backward of [`log_softmax_backward`], with p from the logits when given.
fn backward<D: Dimension>(
    log_probs: &Array<f64, D>,
    logits: Option<&Array<f64, D>>,
    grad_log_probs: &Array<f64, D>,
    axis: usize,
) -> Array<f64, D> {
    let mut grad_logits = grad_log_probs.clone();
    Zip::from(grad_logits.lanes_mut(Axis(axis)))
        .and(log_probs.lanes(Axis(axis)))
        .and(logits.unwrap_or(log_probs).lanes(Axis(axis)))
        .for_each(|mut grad_lane, log_prob_lane, logit_lane| {
            if grad_lane.iter().all(|&grad| grad == 0.0) {
                grad_lane.fill(0.0);
                return;
            }
            let arg_max = arg_max(log_prob_lane);
            let max = logit_lane.get(arg_max).copied().unwrap_or(f64::NAN);
            let p_max = log_prob_lane.get(arg_max).map_or(f64::NAN, |lp| lp.exp());
            let probability = |logit: f64, log_prob: f64| match logits {
                Some(_) => shifted_exp(logit, max) * p_max,
                None => log_prob.exp(),
            };
            let grad_sum = compensated_sum(grad_lane.iter().copied());
            let grad_sum_lo = compensated_sum(grad_lane.iter().copied().chain([-grad_sum]));
            Zip::from(&mut grad_lane)
                .and(&log_prob_lane)
                .and(&logit_lane)
                .for_each(|grad, &log_prob, &logit| {
                    let p = probability(logit, log_prob);
                    if !grad_sum.is_finite() {
                        *grad -= p * grad_sum;
                        return;
                    }
                    let (rest, rest_lo) = two_sum(grad_sum, -*grad);
                    let others = rest + (rest_lo + grad_sum_lo);
                    // Only where p > ½ does 1 − p cancel.
                    let complement = if p > 0.5 { -log_prob.exp_m1() } else { 1.0 - p };
                    *grad = *grad * complement - p * others;
                });
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
        let grad = log_softmax_backward_from_logits(
            &arr1(&[40.0, 0.1]).into_dyn(),
            &log_probs,
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
