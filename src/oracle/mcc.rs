//! `smp.MCCLoss`, exactly: 1 − the Matthews correlation of soft confusion counts pooled over the
//! batch. Over the pairs (p, t) of the batch (see [`smp_mcc`] for the pairing), with ε = `eps`:
//!
//! ```text
//! tp = Σ p·t + ε     fp = Σ p·(1 − t) + ε     fn = Σ (1 − p)·t + ε     tn = Σ (1 − p)·(1 − t) + ε
//! A = tp + fp = Σ p + 2ε     B = tp + fn = Σ t + 2ε     C = tn + fp = Σ (1 − t) + 2ε     D = tn + fn
//! num = tp·tn − fp·fn     den = √(A·B·C·D)     loss = 1 − num/den
//! ```
//!
//! **Forward without cancellation.** With X = tp·tn, Y = fp·fn, u = tp·fn + fp·tn and
//! v = tp·fp + fn·tn: A·D = X + Y + u and B·C = X + Y + v, so
//!
//! ```text
//! den² − num² = (X + Y + u)(X + Y + v) − (X − Y)² = 4XY + (X + Y)(u + v) + uv
//! loss = (den² − num²) / (den·(den + num))        where num > 0
//! ```
//!
//! a sum of non-negative terms for p, t in [0, 1]: a near-perfect prediction (num/den near 1)
//! keeps its loss, and a perfect one with ε = 0 gives exactly 0. Where num ≤ 0, 1 − num/den has
//! nothing to cancel and is used as it is.
//!
//! **Gradient.** For one pair, ∂tp/∂p = t, ∂fp/∂p = 1 − t, ∂fn/∂p = −t, ∂tn/∂p = −(1 − t); so
//! ∂A/∂p = 1, ∂D/∂p = −1, B and C are constant, ∂num/∂p = t·C − (1 − t)·B and
//! ∂den/∂p = (den/2)·(1/A − 1/D):
//!
//! ```text
//! ∂loss/∂p = −[t·C − (1 − t)·B]/den + (num/(2·den))·(1/A − 1/D)
//! ```
//!
//! summed over the pairs a (broadcast) prediction takes part in. There is no kink; den = 0 gives
//! IEEE 754's ±∞ and NaN on the exact values.

use ndarray::ArrayD;

use super::real::{sum, Real};
use super::{number, prediction, Exact, LossCall};

/// smp's default `eps`.
const DEFAULT_EPS: f64 = 1e-5;

/// √a for a ≥ 0 (NaN below 0, +∞ at +∞): e^(ln(a)/2), then one Newton step (s + a/s)/2, which
/// doubles the number of correct bits.
fn sqrt(a: &Real) -> Real {
    let first = (a.ln() / Real::from_f64(2.0)).exp();
    match &first {
        Real::Finite(_) if first.is_positive() && matches!(a, Real::Finite(_)) => {
            (&first + &(a / &first)) / Real::from_f64(2.0)
        }
        _ => first,
    }
}

/// `smp.losses.MCCLoss(eps)(y_pred, y_true)`: y_pred probabilities, y_true labels read as
/// numbers. With B = y_true.shape[0], both are read as B images of their per-image lengths, which
/// must be equal or one of them 1 (broadcast over the other's pixels); every pair of the batch
/// enters the counts.
pub(super) fn smp_mcc(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let p = prediction(call, "y_pred", at)?;
    let target = call.tensors.get("y_true")?;
    let batch = *target.shape().first()?;
    let labels: Vec<Real> = target.to_f64().iter().map(|&t| Real::from_f64(t)).collect();
    let eps = Real::from_f64(number(call, "eps", DEFAULT_EPS)?);
    let values: Vec<Real> = p.iter().cloned().collect();
    if values.is_empty() || labels.is_empty() || !values.len().is_multiple_of(batch) {
        return None;
    }
    let (pred_run, true_run) = (values.len() / batch, labels.len() / batch);
    if pred_run != true_run && pred_run != 1 && true_run != 1 {
        return None;
    }
    let run = pred_run.max(true_run);
    let at_pixel = |image: usize, pixel: usize, length: usize| {
        image * length + if length == 1 { 0 } else { pixel }
    };
    let pairs: Vec<(usize, &Real, &Real)> = (0..batch)
        .flat_map(|image| (0..run).map(move |pixel| (image, pixel)))
        .map(|(image, pixel)| {
            let index = at_pixel(image, pixel, pred_run);
            (
                index,
                &values[index],
                &labels[at_pixel(image, pixel, true_run)],
            )
        })
        .collect();

    let one = Real::one();
    let count = |f: &dyn Fn(&Real, &Real) -> Real| {
        let terms: Vec<Real> = pairs.iter().map(|&(_, p, t)| f(p, t)).collect();
        sum(&terms) + &eps
    };
    let tp = count(&|p, t| p * t);
    let fp = count(&|p, t| p * &(&one - t));
    let fn_ = count(&|p, t| (&one - p) * t);
    let tn = count(&|p, t| (&one - p) * &(&one - t));
    let (a, b, c, d) = (&tp + &fp, &tp + &fn_, &tn + &fp, &tn + &fn_);
    let (x, y) = (&tp * &tn, &fp * &fn_);
    let num = &x - &y;
    let den = sqrt(&(&(&a * &b) * &(&c * &d)));
    let loss = if num.is_positive() {
        let u = &tp * &fn_ + &fp * &tn;
        let v = &tp * &fp + &fn_ * &tn;
        let gap = Real::from_f64(4.0) * &x * &y + (&x + &y) * &(&u + &v) + &u * &v;
        gap / (&den * &(&den + &num))
    } else {
        &one - &(&num / &den)
    };

    let g = match &call.grad_output {
        Some(given) if !given.shape().is_empty() => return None,
        Some(given) => Real::from_f64(*given.iter().next()?),
        None => Real::one(),
    };
    let two = Real::from_f64(2.0);
    let through_den = &num / &(&two * &den) * &(&one / &a - &one / &d);
    let mut flat = vec![Vec::new(); values.len()];
    for &(index, _, t) in &pairs {
        let through_num = (t * &c - &(&one - t) * &b) / &den;
        flat[index].push(&through_den - &through_num);
    }
    let grad = flat.iter().map(|terms| sum(terms) * &g).collect();
    Some(Exact {
        loss: ArrayD::from_elem(vec![], loss),
        grad_input: ArrayD::from_shape_vec(p.shape(), grad).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_roots_are_correctly_rounded() {
        assert_eq!(sqrt(&Real::from_f64(2.0)).to_f64(), 2_f64.sqrt());
        assert_eq!(sqrt(&Real::from_f64(1e-300)).to_f64(), 1e-150);
        assert!(sqrt(&Real::zero()).is_zero());
        assert!(sqrt(&Real::from_f64(-1.0)).is_nan());
        assert_eq!(sqrt(&Real::PosInf), Real::PosInf);
    }
}
