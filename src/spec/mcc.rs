//! The Matthews-correlation loss of smp (`smp.losses.MCCLoss`): 1 − MCC of soft confusion counts
//! pooled over the whole batch. It is not a Lovász loss and shares nothing with that family but the
//! binary targets, so it has its own small file.

use ndarray::ArrayD;

use super::{compensated_sum, grad_output_or_ones, scalar, LossOutput};
use crate::error::Rejection;
use crate::spec::Result;
use crate::tensor::{DType, Tensor};

/// smp's default `eps`.
pub const DEFAULT_EPS: f64 = 1e-5;

/// `smp.losses.MCCLoss(eps)(y_pred, y_true)`: y_pred holds probabilities (no activation is
/// applied), y_true labels read as numbers (neither is checked).
///
/// Pairing: with B = `y_true.shape[0]`, both are reshaped to `(B, 1, −1)` and multiplied with
/// broadcasting, so their per-image lengths must be equal or one of them 1 (one label per image
/// is broadcast over its pixels). Over every pair (p_i, t_i) of the whole batch:
///
/// ```text
/// tp = Σ p·t + ε        fp = Σ p·(1 − t) + ε
/// fn = Σ (1 − p)·t + ε  tn = Σ (1 − p)·(1 − t) + ε
/// num = tp·tn − fp·fn,  den = sqrt((tp + fp)(tp + fn)(tn + fp)(tn + fn))
/// loss = 1 − num / den
/// ```
///
/// 1 − num/den cancels where the prediction is near perfect (num/den near 1), so where
/// num/den > ½ the loss is formed as [`one_minus_mcc`] does, without the subtraction (below ½ the
/// subtraction loses at most a bit and takes fewer roundings).
///
/// Gradient, with A..D the four factors of den², mcc = num/den and ∂den/∂A = B·C·D / (2·den)
/// (PyTorch's sqrt backward, literal, so a zero den gives inf/NaN as in PyTorch):
///
/// ```text
/// ∂mcc/∂tp = tn/den − (num/den²)·(∂den/∂A + ∂den/∂B)      ∂tp/∂p_i = t_i
/// ∂mcc/∂tn = tp/den − (num/den²)·(∂den/∂C + ∂den/∂D)      ∂tn/∂p_i = −(1 − t_i)
/// ∂mcc/∂fp = −fn/den − (num/den²)·(∂den/∂A + ∂den/∂C)     ∂fp/∂p_i = 1 − t_i
/// ∂mcc/∂fn = −fp/den − (num/den²)·(∂den/∂B + ∂den/∂D)     ∂fn/∂p_i = −t_i
/// ∂loss/∂p_i = −Σ_q ∂mcc/∂q·∂q/∂p_i   (summed over the pixels a broadcast p_i covers)
/// ```
///
/// There is no kink: the formula is smooth wherever den > 0, which ε guarantees for p, t in [0, 1].
/// Checks, in smp's order: y_true has a batch axis, neither tensor is empty (reshaping with an
/// inferred axis), y_pred splits into B images, the lengths broadcast, and neither is bool (smp
/// computes 1 − y_pred and 1 − y_true).
pub fn smp_mcc(
    y_pred: &Tensor,
    y_true: &Tensor,
    eps: f64,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let Some(&batch) = y_true.shape().first() else {
        return Err(Rejection::UnexpectedShape {
            argument: "y_true",
            expected: "(N, …)",
            got: vec![],
        });
    };
    let empty = |argument, tensor: &Tensor| Rejection::EmptyReshape {
        argument,
        shape: tensor.shape().to_vec(),
    };
    let predictions: Vec<f64> = y_pred.to_f64().iter().copied().collect();
    let labels: Vec<f64> = y_true.to_f64().iter().copied().collect();
    if labels.is_empty() {
        return Err(empty("y_true", y_true));
    }
    if predictions.is_empty() {
        return Err(empty("y_pred", y_pred));
    }
    let mismatch = Rejection::PairingMismatch {
        prediction: y_pred.shape().to_vec(),
        target: y_true.shape().to_vec(),
    };
    if !predictions.len().is_multiple_of(batch) {
        return Err(mismatch);
    }
    let (pred_run, true_run) = (predictions.len() / batch, labels.len() / batch);
    if pred_run != true_run && pred_run != 1 && true_run != 1 {
        return Err(mismatch);
    }
    for (argument, tensor) in [("y_pred", y_pred), ("y_true", y_true)] {
        if tensor.dtype() == DType::Bool {
            return Err(Rejection::BoolSubtraction { argument });
        }
    }

    let run = pred_run.max(true_run);
    let at = |image: usize, offset: usize, length: usize| {
        image * length + if length == 1 { 0 } else { offset }
    };
    let pairs: Vec<(usize, f64, f64)> = (0..batch)
        .flat_map(|image| (0..run).map(move |offset| (image, offset)))
        .map(|(image, offset)| {
            let index = at(image, offset, pred_run);
            (
                index,
                predictions[index],
                labels[at(image, offset, true_run)],
            )
        })
        .collect();
    let count = |f: fn(f64, f64) -> f64| {
        compensated_sum(pairs.iter().map(|&(_, p, t)| f(p, t)).chain([eps]))
    };
    let tp = count(|p, t| p * t);
    let tn = count(|p, t| (1.0 - p) * (1.0 - t));
    let fp = count(|p, t| p * (1.0 - t));
    let fn_ = count(|p, t| (1.0 - p) * t);
    let [a, b, c, d] = [tp + fp, tp + fn_, tn + fp, tn + fn_];
    let den = (a * b * c * d).sqrt();
    let num = tp * tn - fp * fn_;
    let mcc = num / den;
    let loss = if mcc > 0.5 {
        one_minus_mcc([tp, fp, fn_, tn], num)
    } else {
        1.0 - mcc
    };
    let [den_a, den_b, den_c, den_d] =
        [b * c * d, a * c * d, a * b * d, a * b * c].map(|x| x / (2.0 * den));
    let mcc_den = -num / (den * den);
    let mcc_tp = tn / den + mcc_den * (den_a + den_b);
    let mcc_tn = tp / den + mcc_den * (den_c + den_d);
    let mcc_fp = -fn_ / den + mcc_den * (den_a + den_c);
    let mcc_fn = -fp / den + mcc_den * (den_b + den_d);

    let upstream = scalar(&grad_output_or_ones(grad_output, &[])?);
    let mut flat = vec![0.0; predictions.len()];
    for &(index, _, t) in &pairs {
        let grad_mcc = mcc_tp * t - mcc_tn * (1.0 - t) + mcc_fp * (1.0 - t) - mcc_fn * t;
        if let Some(slot) = flat.get_mut(index) {
            *slot -= upstream * grad_mcc;
        }
    }
    let mut grad = ArrayD::<f64>::zeros(y_pred.shape());
    for (slot, value) in grad.iter_mut().zip(flat) {
        *slot = value;
    }
    Ok(LossOutput {
        loss: ArrayD::from_elem(vec![], loss),
        grad_input: grad,
    })
}

/// 1 − num/den for num ≥ 0 from the counts, without cancellation:
///
/// ```text
/// 1 − num/den = (den² − num²) / (den² + den·num)
/// den² = (A·D)·(B·C),   A·D = X + Y,   B·C = X + Z
/// den² − num² = X·(Y + Z) + Y·Z + 4·tp·tn·fp·fn
/// X = tp·tn + fp·fn,   Y = tp·fn + fp·tn,   Z = tp·fp + fn·tn,   Y + Z = (tp + tn)·(fp + fn)
/// ```
///
/// using num² = (tp·tn − fp·fn)² = X² − 4·tp·tn·fp·fn. For counts of probabilities and labels in
/// [0, 1] every term is non-negative, so nothing cancels however close the prediction is to
/// perfect. den² is formed from X, Y, Z (fewer roundings than A·B·C·D).
fn one_minus_mcc([tp, fp, fn_, tn]: [f64; 4], num: f64) -> f64 {
    let x = tp.mul_add(tn, fp * fn_);
    let y = tp.mul_add(fn_, fp * tn);
    let z = tp.mul_add(fp, fn_ * tn);
    let excess = compensated_sum([
        x * ((tp + tn) * (fp + fn_)),
        y * z,
        4.0 * (tp * tn) * (fp * fn_),
    ]);
    let den_squared = (x + y) * (x + z);
    excess / den_squared.sqrt().mul_add(num, den_squared)
}
