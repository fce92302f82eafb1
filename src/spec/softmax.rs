//! Softmax and log-softmax over one axis (the class axis), with the log-softmax backward.

use ndarray::{Array, ArrayD, Axis, Dimension, Zip};

use super::compensated_sum;

/// log softmax(x)_c = (x_c − m) − log Σ_k exp(x_k − m), with m = max_k x_k.
///
/// Subtracting the maximum keeps exp from overflowing, so logits of ±1e4 are exact. As in PyTorch:
/// a lane holding +inf or NaN becomes all NaN (m = +inf gives inf − inf), an all −inf lane is NaN,
/// and a single −inf entry stays −inf while the others remain finite.
pub fn log_softmax<D: Dimension>(logits: &Array<f64, D>, axis: usize) -> Array<f64, D> {
    let mut log_probs = logits.clone();
    for mut lane in log_probs.lanes_mut(Axis(axis)) {
        let max = lane.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let max = if lane.iter().any(|value| value.is_nan()) {
            f64::NAN
        } else {
            max
        };
        let log_sum_exp = compensated_sum(lane.iter().map(|&value| (value - max).exp())).ln();
        lane.mapv_inplace(|value| (value - max) - log_sum_exp);
    }
    log_probs
}

/// softmax(x)_c = exp(log softmax(x)_c).
pub fn softmax(logits: &ArrayD<f64>, axis: usize) -> ArrayD<f64> {
    log_softmax(logits, axis).mapv(f64::exp)
}

/// The log-softmax vector-Jacobian product: given g = ∂L/∂(log p), returns
/// ∂L/∂x_c = g_c − p_c · Σ_k g_k, with p = exp(log p).
///
/// Evaluated literally, so a lane whose log p is NaN yields NaN even where g is zero (PyTorch's
/// backward does the same).
pub fn log_softmax_backward<D: Dimension>(
    log_probs: &Array<f64, D>,
    grad_log_probs: &Array<f64, D>,
    axis: usize,
) -> Array<f64, D> {
    let mut grad_logits = grad_log_probs.clone();
    Zip::from(grad_logits.lanes_mut(Axis(axis)))
        .and(log_probs.lanes(Axis(axis)))
        .for_each(|mut grad_lane, log_prob_lane| {
            let grad_sum = compensated_sum(grad_lane.iter().copied());
            Zip::from(&mut grad_lane)
                .and(&log_prob_lane)
                .for_each(|grad, &log_prob| *grad -= log_prob.exp() * grad_sum);
        });
    grad_logits
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

    #[test]
    fn large_logits_are_exact() {
        let log_probs = log_softmax(&arr1(&[1e4, 0.0, -1e4]).into_dyn(), 0);
        assert_eq!(log_probs.as_slice().unwrap(), &[0.0, -1e4, -2e4]);
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
