//! Accuracy regressions of the binary cross-entropy and focal losses: inputs where a textbook form
//! of the formula cancels or underflows. Every expected value was evaluated at 60 significant
//! digits with mpmath from the literal formula (independently of the reference) and is given
//! with the digits that fix its float64 rounding; the reference must return that rounding (or
//! within the stated ulps of the exact value).

use ndarray::ArrayD;
use segloss::spec::binary::{binary_cross_entropy, binary_cross_entropy_with_logits};
use segloss::spec::focal::smp::{self, SmpFocalOptions, SmpReduction};
use segloss::spec::focal::torchvision;
use segloss::spec::smp::SmpMode;
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

/// (γ, exact loss, exact ∂l/∂x) of the focal loss α_t·(1 − p_t)^γ·BCE at x = 30, t = 1, α = ¼,
/// where torchvision's p_t = p·t + (1 − p)(1 − t) and smp's p_t = exp(−BCE) agree: 1 − p_t = σ(−30)
/// ≈ 9.4e-14, which 1 − σ(30) holds to 3 digits only (a 2e-3 relative error in both outputs).
/// mpmath, ¼·softplus(−30)·σ(−30)^γ and its derivative by mp.diff, rounded to float64 here:
/// γ = 2: 2.048503155997149629585669506098665e-40, −6.145509467990969660752401048779381e-40;
/// γ = 5: 1.678546072052034404161992763928090e-79, −1.007127643231134252890166168173403e-78.
const SATURATING_FOCAL: [(f64, f64, f64); 2] = [
    (2.0, 2.0485031559971495e-40, -6.14550946799097e-40),
    (5.0, 1.6785460720520343e-79, -1.0071276432311342e-78),
];

#[test]
fn torchvision_focal_keeps_the_digits_of_one_minus_p_t_at_large_logits() {
    for (gamma, loss, gradient) in SATURATING_FOCAL {
        let output =
            torchvision::loss(&one(30.0), &one(1.0), 0.25, gamma, Reduction::None, None).unwrap();
        assert!(ulps(only(&output.loss), loss) <= 2.0, "γ = {gamma}");
        assert!(
            ulps(only(&output.grad_input), gradient) <= 2.0,
            "γ = {gamma}"
        );
    }
}

#[test]
fn smp_focal_keeps_the_digits_of_one_minus_p_t_at_large_logits() {
    for (gamma, loss, gradient) in SATURATING_FOCAL {
        let options = SmpFocalOptions {
            mode: SmpMode::Binary,
            alpha: Some(0.25),
            gamma,
            ignore_index: None,
            from_logits: true,
            eps: 1e-7,
            reduction: SmpReduction::Sum,
            normalized: false,
            reduced_threshold: None,
            class_weights: None,
        };
        let output = smp::loss(&one(30.0), &one(1.0), &options, None).unwrap();
        assert!(ulps(only(&output.loss), loss) <= 2.0, "γ = {gamma}");
        assert!(
            ulps(only(&output.grad_input), gradient) <= 2.0,
            "γ = {gamma}"
        );
    }
}
