//! Accuracy regressions of the binary cross-entropy and focal losses: inputs where a textbook form
//! of the formula cancels or underflows. Every expected value was evaluated at 60 significant
//! digits with mpmath from the literal formula (independently of the reference) and is given
//! with the digits that fix its float64 rounding; the reference must return that rounding (or
//! within the stated ulps of the exact value).

use ndarray::ArrayD;
use segloss::spec::binary::{binary_cross_entropy, binary_cross_entropy_with_logits};
use segloss::spec::Reduction;
use segloss::tensor::Tensor;

/// A one-element float64 tensor.
fn one(value: f64) -> Tensor {
    Tensor::Float64(ArrayD::from_elem(vec![1], value))
}

/// The single value of a one-element array.
fn only(values: &ArrayD<f64>) -> f64 {
    assert_eq!(values.len(), 1);
    values.iter().copied().next().unwrap_or(f64::NAN)
}

/// |got − exact| in units of the last place of `exact` (a float64 rounding of the exact value).
fn ulps(got: f64, exact: f64) -> f64 {
    let spacing = f64::from_bits(exact.abs().to_bits() + 1) - exact.abs();
    (got - exact).abs() / spacing
}

#[test]
fn bce_with_logits_gradient_of_a_saturated_soft_target_is_one_minus_t() {
    // ∂l/∂x = (1 − t)·σ(x) − t·σ(−x) at x = 6589.678249360908, t = 0.9922477219758844:
    // σ(−x) < e^−6589 is far below any float64 effect, so the exact gradient is
    // 0.00775227802411559974160581987234763801... whose float64 rounding is 1 − t itself (exact by
    // Sterbenz). PyTorch returns it; (t + 1 − t)·σ(x) − t gives 0.007752278024115489 (128 ulp).
    let output = binary_cross_entropy_with_logits(
        &one(6589.678249360908),
        &one(0.9922477219758844),
        None,
        None,
        Reduction::None,
        None,
    )
    .unwrap();
    assert_eq!(only(&output.grad_input), 0.0077522780241156);
}

#[test]
fn bce_with_logits_of_a_confident_correct_logit_does_not_cancel() {
    // l = t·softplus(−x) + (1 − t)·softplus(x) at x = −1e4, t = 1e-5 (the float64 nearest 1e-5):
    // softplus(−1e4) < e^−10000 vanishes, so l = 1e4·t = 0.100000000000000008180305391403130954...,
    // rounding to 0.1. (1 − t)·x − log σ(x) cancels 1e4 against 1e4 and gives 0.1000000000003638.
    let output =
        binary_cross_entropy_with_logits(&one(-1e4), &one(1e-5), None, None, Reduction::None, None)
            .unwrap();
    assert_eq!(only(&output.loss), 0.1);
    // ∂l/∂x = (1 − t)·σ(x) − t·σ(−x) = −t + O(e^−10000), rounding to −1e-5.
    assert_eq!(only(&output.grad_input), -1e-5);
}

#[test]
fn bce_gradient_divides_before_weighting_and_does_not_underflow() {
    // ∂l/∂p = w·(p − t)/max(p(1 − p), ε) with p = 1e-300, t = 0, w = 3.17e-16 and PyTorch's
    // ε = float32(1e-12) = 9.999999960041972e-13: p(1 − p) < ε, so the exact gradient is
    // w·p/ε = 3.17000001266669523975158186919901789561...e-304. w·p = 3.17e-316 is subnormal, so
    // forming it first loses 8 digits (3.169999997922913e-304).
    let output = binary_cross_entropy(
        &one(1e-300),
        &one(0.0),
        Some(&one(3.17e-16)),
        Reduction::None,
        None,
    )
    .unwrap();
    let exact = 3.170000012666695e-304;
    assert!(ulps(only(&output.grad_input), exact) <= 1.0);
}
