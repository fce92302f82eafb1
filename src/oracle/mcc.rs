//! smp's `MCCLoss`, exactly: 1 − the Matthews correlation of soft confusion counts pooled over the
//! whole batch.
//!
//! With B = y_true.shape[0], both tensors are read as `(B, 1, −1)` and paired with broadcasting
//! (equal lengths per image, or one of them 1). Over every pair (p, t), with ε added to each count:
//!
//! ```text
//! tp = Σ p·t + ε          fp = Σ p·(1 − t) + ε
//! fn = Σ (1 − p)·t + ε    tn = Σ (1 − p)·(1 − t) + ε
//! A = tp + fp, B = tp + fn, C = tn + fp, D = tn + fn,   Π = A·B·C·D,   den = √Π
//! num = tp·tn − fp·fn,   mcc = num/den,   loss = 1 − mcc
//! ```
//!
//! Where num ≥ 0, 1 − mcc is formed as (Π − num²)/(den·(den + num)), with
//! Π − num² = X·(tp + tn)·(fp + fn) + (tp·fn + fp·tn)·(tp·fp + fn·tn) + 4·tp·tn·fp·fn and
//! X = tp·tn + fp·fn (expand A·D = X + tp·fn + fp·tn and B·C = X + tp·fp + fn·tn), a sum of
//! non-negative terms, so a near-perfect prediction keeps its small loss; where num < 0 there is
//! nothing to cancel and 1 − num/den is used.
//!
//! Gradient: ∂mcc/∂q = (∂num/∂q)/den − (mcc/2)·(∂Π/∂q)/Π for each count q, with
//! ∂Π/∂tp = Π(1/A + 1/B), ∂Π/∂fp = Π(1/A + 1/C), ∂Π/∂tn = Π(1/C + 1/D), ∂Π/∂fn = Π(1/B + 1/D), and
//! ∂tp/∂p = t, ∂fp/∂p = 1 − t, ∂tn/∂p = −(1 − t), ∂fn/∂p = −t, so
//!
//! ```text
//! ∂loss/∂p = −[t·(mcc_tp − mcc_fn) + (1 − t)·(mcc_fp − mcc_tn)]
//! mcc_tp − mcc_fn = C/den − (mcc/2)(1/A − 1/D),   mcc_fp − mcc_tn = −B/den − (mcc/2)(1/A − 1/D)
//! ```
//!
//! summed over the pairs a broadcast p covers.

use ndarray::ArrayD;

use super::real::{sum, Real};
use super::{number, prediction, Exact, LossCall};

/// smp's default ε.
const DEFAULT_EPS: f64 = 1e-5;

/// `smp.MCCLoss(eps)(y_pred, y_true)`.
pub(super) fn smp_mcc(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let x = prediction(call, "y_pred", at)?;
    let y = call.tensors.get("y_true")?;
    let batch = *y.shape().first()?;
    let eps = Real::from_f64(number(call, "eps", DEFAULT_EPS)?);
    let predictions: Vec<Real> = x.iter().cloned().collect();
    let labels: Vec<Real> = y
        .to_f64()
        .as_standard_layout()
        .iter()
        .map(|&t| Real::from_f64(t))
        .collect();
    if batch == 0 || predictions.is_empty() || labels.is_empty() {
        return None;
    }
    if !predictions.len().is_multiple_of(batch) || !labels.len().is_multiple_of(batch) {
        return None;
    }
    let (pred_run, true_run) = (predictions.len() / batch, labels.len() / batch);
    if pred_run != true_run && pred_run != 1 && true_run != 1 {
        return None;
    }
    let run = pred_run.max(true_run);
    let at_run = |image: usize, offset: usize, length: usize| {
        image * length + if length == 1 { 0 } else { offset }
    };
    let one = Real::one();
    // (index of p, p, 1 − p, t, 1 − t) of every pair.
    let pairs: Vec<(usize, &Real, Real, &Real, Real)> = (0..batch)
        .flat_map(|image| (0..run).map(move |offset| (image, offset)))
        .map(|(image, offset)| {
            let index = at_run(image, offset, pred_run);
            let (p, t) = (
                &predictions[index],
                &labels[at_run(image, offset, true_run)],
            );
            (index, p, &one - p, t, &one - t)
        })
        .collect();
    let count = |term: &dyn Fn(&Real, &Real, &Real, &Real) -> Real| {
        let terms: Vec<Real> = pairs
            .iter()
            .map(|(_, p, q, t, u)| term(p, q, t, u))
            .collect();
        sum(&terms) + &eps
    };
    let tp = count(&|p, _, t, _| p * t);
    let fp = count(&|p, _, _, u| p * u);
    let fn_ = count(&|_, q, t, _| q * t);
    let tn = count(&|_, q, _, u| q * u);
    let (a, b, c, d) = (&tp + &fp, &tp + &fn_, &tn + &fp, &tn + &fn_);
    let product = &(&a * &b) * &(&c * &d);
    let den = product.powf(0.5);
    let num = &tp * &tn - &fp * &fn_;
    let mcc = &num / &den;
    let loss = if num.is_negative() {
        &one - &mcc
    } else {
        let x = &tp * &tn + &fp * &fn_;
        let four = Real::from_f64(4.0);
        let excess = &x * &(&tp + &tn) * &(&fp + &fn_)
            + &(&tp * &fn_ + &fp * &tn) * &(&tp * &fp + &fn_ * &tn)
            + &four * &tp * &tn * &fp * &fn_;
        excess / (&den * &(&den + &num))
    };
    let half_mcc = &mcc / &Real::from_f64(2.0);
    let skew = &half_mcc * &(&one / &a - &one / &d);
    let by_positive = &c / &den - &skew;
    let by_negative = -(&b / &den) - &skew;
    let scale = match &call.grad_output {
        None => Real::one(),
        Some(given) if given.ndim() == 0 => Real::from_f64(*given.iter().next()?),
        Some(_) => return None,
    };
    let mut grad = vec![Real::zero(); predictions.len()];
    for (index, _, _, t, u) in &pairs {
        let slope = -(*t * &by_positive + u * &by_negative);
        grad[*index] = &grad[*index] + &(&scale * &slope);
    }
    Some(Exact {
        loss: ArrayD::from_elem(vec![], loss),
        grad_input: ArrayD::from_shape_vec(x.shape(), grad).ok()?,
    })
}
