//! Grading in ulps: the normwise error of a computed tensor against the exact one,
//!
//! ```text
//! err(y) = max_j |y_j − exact_j| / ulp(max_j |exact_j|)
//! ```
//!
//! with ulp(a) = 2^(⌊log₂ a⌋ − 52), never below 2⁻¹⁰⁷⁴ (the spacing of the f64 subnormals; so
//! ulp(0) = 2⁻¹⁰⁷⁴, and an all-zero exact tensor must be reproduced exactly). The maximum runs over
//! the finite exact values. Where the exact value is NaN, NaN scores 0 and anything else is an
//! infinite error; where it is ±∞, the same infinity scores 0; where it is finite, NaN or ±∞ is an
//! infinite error. A shape differing from the exact one is an infinite error.

use ndarray::ArrayD;

use super::real::Real;
use super::{evaluate, LossCall};
use crate::spec::LossOutput;

/// The normwise errors of one loss call's outputs, in ulps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grades {
    /// The error of the loss.
    pub forward: f64,
    /// The error of the gradient with respect to the input.
    pub gradient: f64,
}

/// The ulps by which `output` misses the exact loss and gradient of `call`; `None` when the oracle
/// does not evaluate the call (see [`evaluate`]).
pub fn grade(call: &LossCall, output: &LossOutput) -> Option<Grades> {
    let exact = evaluate(call)?;
    Some(Grades {
        forward: ulps(&output.loss, &exact.loss),
        gradient: ulps(&output.grad_input, &exact.grad_input),
    })
}

/// 2^k as an f64, for k in [−1074, 1023].
fn power_of_two(k: isize) -> f64 {
    let k = k.clamp(-1074, 1023);
    if k >= -1022 {
        f64::from_bits(((k + 1023) as u64) << 52)
    } else {
        f64::from_bits(1_u64 << (k + 1074))
    }
}

/// The normwise error of `computed` against `exact`, in ulps of the largest finite exact value.
pub fn ulps(computed: &ArrayD<f64>, exact: &ArrayD<Real>) -> f64 {
    if computed.shape() != exact.shape() {
        return f64::INFINITY;
    }
    let mut largest = Real::zero();
    for value in exact {
        if matches!(value, Real::Finite(_)) {
            largest = largest.max(&value.abs());
        }
    }
    let exponent = largest.exponent().map_or(-1074, |e| e - 52);
    let ulp = Real::from_f64(power_of_two(exponent));
    let mut worst = 0.0_f64;
    for (&y, exact) in computed.iter().zip(exact) {
        let error = match exact {
            Real::Nan if y.is_nan() => 0.0,
            Real::PosInf if y == f64::INFINITY => 0.0,
            Real::NegInf if y == f64::NEG_INFINITY => 0.0,
            Real::Finite(_) if y.is_finite() => ((Real::from_f64(y) - exact).abs() / &ulp).to_f64(),
            _ => f64::INFINITY,
        };
        worst = worst.max(error);
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(values: &[f64]) -> ArrayD<Real> {
        ArrayD::from_shape_vec(
            vec![values.len()],
            values.iter().map(|&v| Real::from_f64(v)).collect(),
        )
        .unwrap()
    }

    fn computed(values: &[f64]) -> ArrayD<f64> {
        ArrayD::from_shape_vec(vec![values.len()], values.to_vec()).unwrap()
    }

    #[test]
    fn errors_are_in_ulps_of_the_largest_exact_value() {
        let next = f64::from_bits(1.0_f64.to_bits() + 1);
        assert_eq!(ulps(&computed(&[next, 0.5]), &exact(&[1.0, 0.5])), 1.0);
        // An error of one ulp of 1.0 on the small element is still one ulp normwise.
        assert_eq!(
            ulps(&computed(&[1.0, 1e-3 + f64::EPSILON]), &exact(&[1.0, 1e-3])),
            1.0
        );
        assert_eq!(ulps(&computed(&[1.75]), &exact(&[1.5])), 2.0_f64.powi(50));
        assert_eq!(power_of_two(-1074), 5e-324);
        assert_eq!(power_of_two(-1022), f64::MIN_POSITIVE);
    }

    #[test]
    fn zeros_nan_and_infinities() {
        assert_eq!(ulps(&computed(&[0.0]), &exact(&[0.0])), 0.0);
        assert_eq!(ulps(&computed(&[5e-324]), &exact(&[0.0])), 1.0);
        assert_eq!(ulps(&computed(&[f64::NAN]), &exact(&[f64::NAN])), 0.0);
        assert_eq!(ulps(&computed(&[1.0]), &exact(&[f64::NAN])), f64::INFINITY);
        assert_eq!(ulps(&computed(&[f64::NAN]), &exact(&[1.0])), f64::INFINITY);
        assert_eq!(
            ulps(&computed(&[f64::INFINITY]), &exact(&[1.0])),
            f64::INFINITY
        );
        let infinite = exact(&[f64::INFINITY, 2.0]);
        assert_eq!(ulps(&computed(&[f64::INFINITY, 2.0]), &infinite), 0.0);
        assert_eq!(
            ulps(&computed(&[f64::NEG_INFINITY, 2.0]), &infinite),
            f64::INFINITY
        );
        assert_eq!(ulps(&computed(&[1.0, 2.0]), &exact(&[1.0])), f64::INFINITY);
    }
}
