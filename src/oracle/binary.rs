//! The elementwise losses, exactly: `binary_cross_entropy`, `binary_cross_entropy_with_logits` and
//! torchvision's `sigmoid_focal_loss`. Every element is a position; `weight` and `pos_weight`
//! broadcast right-aligned (NumPy's rule); `mean` divides by the number of elements.
//!
//! With σ(x) = 1/(1 + e^−x): ln σ(x) = −ln1p(e^−x), ln σ(−x) = −ln1p(e^x),
//! d ln σ(x)/dx = σ(−x) and d ln σ(−x)/dx = −σ(x).

use ndarray::{ArrayD, IxDyn, Zip};

use super::real::Real;
use super::{float_tensor, number, prediction, reduce, reduction, Exact, LossCall, Reduce};

/// PyTorch's ε in BCE's backward: the float32 nearest 1e-12, as the double kernel uses it.
const BCE_EPSILON: f32 = 1e-12;

/// σ(x), σ(−x), ln σ(x) and ln σ(−x) from one exponential: with a = |x| and E = e^−a ≤ 1,
/// σ(a) = 1/(1 + E), σ(−a) = E/(1 + E), ln σ(a) = −ln1p(E), ln σ(−a) = −a − ln1p(E)
/// (sums of terms of one sign: nothing cancels).
pub(super) struct Logistic {
    pub(super) sigmoid: Real,
    pub(super) sigmoid_of_minus: Real,
    pub(super) log_sigmoid: Real,
    pub(super) log_sigmoid_of_minus: Real,
}

impl Logistic {
    pub(super) fn new(x: &Real) -> Logistic {
        let a = x.abs();
        let e = (-&a).exp();
        let one_plus = Real::one() + &e;
        let log1p = e.ln_1p();
        let (near, far) = (Real::one() / &one_plus, e / one_plus);
        let (log_near, log_far) = (-&log1p, -a - log1p);
        if x.is_negative() {
            Logistic {
                sigmoid: far,
                sigmoid_of_minus: near,
                log_sigmoid: log_far,
                log_sigmoid_of_minus: log_near,
            }
        } else {
            Logistic {
                sigmoid: near,
                sigmoid_of_minus: far,
                log_sigmoid: log_near,
                log_sigmoid_of_minus: log_far,
            }
        }
    }
}

/// An optional tensor broadcast to `shape` (ones when absent); `None` when it does not broadcast.
pub(super) fn broadcast(call: &LossCall, name: &str, shape: &[usize]) -> Option<ArrayD<f64>> {
    if !call.tensors.contains_key(name) {
        return Some(ArrayD::ones(shape));
    }
    let values = float_tensor(call, name)?;
    if values.ndim() > shape.len() {
        return None;
    }
    values.broadcast(IxDyn(shape)).map(|view| view.to_owned())
}

/// The prediction and target (same shape), as named by the loss.
fn pair(
    call: &LossCall,
    at: Option<&ArrayD<Real>>,
    [input, target]: [&str; 2],
) -> Option<(ArrayD<Real>, ArrayD<f64>)> {
    let x = prediction(call, input, at)?;
    let t = call.tensors.get(target)?.to_f64();
    (x.shape() == t.shape()).then_some((x, t))
}

/// Reduces an elementwise loss map whose element i has derivative `slope[i]`; the gradient is
/// upstream_i·slope_i.
pub(super) fn elementwise(
    call: &LossCall,
    reduction: Reduce,
    loss: ArrayD<Real>,
    slope: ArrayD<Real>,
) -> Option<Exact> {
    let count = Real::from_f64(loss.len() as f64);
    let (loss, upstream) = reduce(call, reduction, loss, &count)?;
    let grad_input = Zip::from(&upstream)
        .and(&slope)
        .map_collect(|u, slope| u * slope);
    Some(Exact { loss, grad_input })
}

/// `binary_cross_entropy` on probabilities p, targets t, weight w:
///
/// ```text
/// l = −w·[t·max(ln p, −100) + (1 − t)·max(ln(1 − p), −100)]
/// ∂l/∂p = w·(p − t) / max(p·(1 − p), ε)        (PyTorch's backward, ε = 1e-12 as a float32)
/// ```
pub(super) fn binary_cross_entropy(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let (p, t) = pair(call, at, ["input", "target"])?;
    let w = broadcast(call, "weight", p.shape())?;
    let reduction = reduction(call, Reduce::Mean)?;
    let floor = Real::from_f64(-100.0);
    let epsilon = Real::from_f64(f64::from(BCE_EPSILON));
    let loss = Zip::from(&p).and(&t).and(&w).map_collect(|p, &t, &w| {
        let (t, w) = (Real::from_f64(t), Real::from_f64(w));
        // A clamped log is finite, so a zero factor makes its term 0 without taking the log.
        let term = |factor: &Real, log: &dyn Fn() -> Real| {
            if factor.is_zero() && !p.is_nan() {
                Real::zero()
            } else {
                factor * &log().max(&floor)
            }
        };
        let positive = term(&t, &|| p.ln());
        let negative = term(&(Real::one() - &t), &|| (-p).ln_1p());
        -(w * (positive + negative))
    });
    let slope = Zip::from(&p).and(&t).and(&w).map_collect(|p, &t, &w| {
        let (t, w) = (Real::from_f64(t), Real::from_f64(w));
        let variance = p * &(Real::one() - p);
        w * (p - &t) / variance.max(&epsilon)
    });
    elementwise(call, reduction, loss, slope)
}

/// `binary_cross_entropy_with_logits` on logits x, targets t, weight w, pos_weight pw:
///
/// ```text
/// l = w·[−pw·t·ln σ(x) − (1 − t)·ln σ(−x)]
/// ∂l/∂x = w·[(1 − t)·σ(x) − pw·t·σ(−x)]
/// ```
pub(super) fn binary_cross_entropy_with_logits(
    call: &LossCall,
    at: Option<&ArrayD<Real>>,
) -> Option<Exact> {
    let (x, t) = pair(call, at, ["input", "target"])?;
    let w = broadcast(call, "weight", x.shape())?;
    let pw = broadcast(call, "pos_weight", x.shape())?;
    let reduction = reduction(call, Reduce::Mean)?;
    let mut loss = ArrayD::from_elem(x.shape(), Real::zero());
    let mut slope = loss.clone();
    Zip::from(&mut loss)
        .and(&mut slope)
        .and(&x)
        .and(&t)
        .and(&w)
        .and(&pw)
        .for_each(|loss, slope, x, &t, &w, &pw| {
            let [t, w, pw] = [t, w, pw].map(Real::from_f64);
            (*loss, *slope) = bce_with_logits_element(x, &t, &w, &pw);
        });
    elementwise(call, reduction, loss, slope)
}

/// One element of BCE with logits, (l, ∂l/∂x), as documented on
/// [`binary_cross_entropy_with_logits`].
pub(super) fn bce_with_logits_element(x: &Real, t: &Real, w: &Real, pw: &Real) -> (Real, Real) {
    let positive = pw * t;
    let negative = Real::one() - t;
    let l = Logistic::new(x);
    let loss = w * &(-(&positive * &l.log_sigmoid) - &negative * &l.log_sigmoid_of_minus);
    let slope = w * &(&negative * &l.sigmoid - &positive * &l.sigmoid_of_minus);
    (loss, slope)
}

/// torchvision's `sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction="none")`:
///
/// ```text
/// ce  = −t·ln σ(x) − (1 − t)·ln σ(−x)
/// q   = 1 − p_t = 1 − [σ(x)·t + σ(−x)·(1 − t)] = t·σ(−x) + (1 − t)·σ(x)
/// α_t = α·t + (1 − α)·(1 − t), or 1 when α < 0
/// l   = α_t·ce·q^γ
/// ∂l/∂x = α_t·[ce′·q^γ + ce·γ·q^(γ−1)·q′]     (the second term absent for γ = 0)
/// ce′ = (1 − t)·σ(x) − t·σ(−x)      q′ = (1 − 2t)·σ(x)·σ(−x)
/// ```
pub(super) fn sigmoid_focal_loss(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let (x, t) = pair(call, at, ["inputs", "targets"])?;
    let alpha = number(call, "alpha", 0.25)?;
    let gamma = number(call, "gamma", 2.0)?;
    let reduction = reduction(call, Reduce::None)?;
    let mut loss = ArrayD::from_elem(x.shape(), Real::zero());
    let mut slope = loss.clone();
    Zip::from(&mut loss)
        .and(&mut slope)
        .and(&x)
        .and(&t)
        .for_each(|loss, slope, x, &t| {
            let t = Real::from_f64(t);
            let negative = Real::one() - &t;
            let l = Logistic::new(x);
            let (s, s_minus) = (&l.sigmoid, &l.sigmoid_of_minus);
            let ce = -(&t * &l.log_sigmoid) - &negative * &l.log_sigmoid_of_minus;
            let ce_slope = &negative * s - &t * s_minus;
            let q = &t * s_minus + &negative * s;
            let alpha_t = if alpha < 0.0 {
                Real::one()
            } else {
                let alpha = Real::from_f64(alpha);
                &alpha * &t + (Real::one() - &alpha) * &negative
            };
            // For a hard target ln q is ln σ(∓x), known already: q^γ = exp(γ·ln q) then costs no log.
            let power_of = |log_q: &Real| (&Real::from_f64(gamma) * log_q).exp();
            let modulation = match t.to_f64() {
                _ if gamma == 0.0 => Real::one(),
                1.0 => power_of(&l.log_sigmoid_of_minus),
                0.0 => power_of(&l.log_sigmoid),
                _ => q.powf(gamma),
            };
            let mut d = &ce_slope * &modulation;
            if gamma != 0.0 {
                // q^(γ−1) as q^γ/q where q > 0, saving a second power.
                let lower = if q.is_positive() {
                    &modulation / &q
                } else {
                    q.powf(gamma - 1.0)
                };
                let q_slope = (Real::one() - Real::from_f64(2.0) * &t) * s * s_minus;
                d = d + &ce * &Real::from_f64(gamma) * &lower * &q_slope;
            }
            *loss = &alpha_t * &ce * &modulation;
            *slope = alpha_t * d;
        });
    elementwise(call, reduction, loss, slope)
}
