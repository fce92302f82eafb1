//! `segloss.soft_dice` and `segloss.soft_iou`, exactly: per image n and class c over the spatial
//! positions of probabilities p and targets t `(N, C, …)`, with I = Σpt, P = Σp, T = Σt, smooth s
//! and E = P + T − 2I = Σ[p·(1 − t) + t·(1 − p)] (a sum of non-negative terms for p, t in [0, 1]):
//!
//! ```text
//! Dice: N = 2I + s,  D = P + T + s,           l = 1 − N/D = E/D
//!       ∂l/∂p_j = (N − 2t_j·D)/D² = [(1 − t_j)·N − t_j·(E + D)]/D²
//! IoU:  N = I + s,   U = Σ[p + t·(1 − p)] + s,  l = 1 − N/U = E/U
//!       ∂l/∂p_j = [(1 − t_j)·N − t_j·U]/U²
//! ```
//!
//! reduced over images and classes (`none` → `(N, C)`, `mean` over N·C, `sum`). The loss is taken
//! as E/D rather than 1 − N/D so that a near-perfect match (N/D within 2⁻²⁰⁰ of 1) stays exact.

use ndarray::{Array3, ArrayD, Axis};

use super::real::{sum, Real};
use super::{float_tensor, number, prediction, reduce, reduction, Exact, LossCall, Reduce};

/// Which ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ratio {
    /// 2I/(P + T).
    Dice,
    /// I/(P + T − I).
    Iou,
}

/// The loss and ∂l/∂p of one image and class.
fn one(ratio: Ratio, p: &[Real], t: &[Real], smooth: &Real) -> (Real, Vec<Real>) {
    let one = Real::one();
    let products: Vec<Real> = p.iter().zip(t).map(|(p, t)| p * t).collect();
    let intersection = sum(&products);
    let mismatch: Vec<Real> = p
        .iter()
        .zip(t)
        .map(|(p, t)| p * &(&one - t) + t * &(&one - p))
        .collect();
    let e = sum(&mismatch);
    let (numerator, denominator, beside) = match ratio {
        Ratio::Dice => {
            let d = sum(p) + sum(t) + smooth;
            (
                Real::from_f64(2.0) * &intersection + smooth,
                d.clone(),
                &e + &d,
            )
        }
        Ratio::Iou => {
            let union: Vec<Real> = p
                .iter()
                .zip(t)
                .map(|(p, t)| p + &(t * &(&one - p)))
                .collect();
            let u = sum(&union) + smooth;
            (intersection + smooth, u.clone(), u)
        }
    };
    let squared = &denominator * &denominator;
    let grad = t
        .iter()
        .map(|t| ((&one - t) * &numerator - t * &beside) / &squared)
        .collect();
    (e / denominator, grad)
}

/// The textbook soft Dice or IoU loss of the call.
pub(super) fn soft_overlap(
    call: &LossCall,
    at: Option<&ArrayD<Real>>,
    ratio: Ratio,
) -> Option<Exact> {
    let p = prediction(call, "input", at)?;
    let t = float_tensor(call, "target")?;
    if p.ndim() < 3 || p.shape() != t.shape() {
        return None;
    }
    let smooth = Real::from_f64(number(call, "smooth", 1.0)?);
    let reduction = reduction(call, Reduce::Mean)?;
    let (images, classes) = (p.shape()[0], p.shape()[1]);
    let spatial: usize = p.shape()[2..].iter().product();
    let cube = |values: ArrayD<Real>| {
        values
            .into_shape_with_order((images, classes, spatial))
            .ok()
    };
    let p3: Array3<Real> = cube(p.clone())?;
    let t3: Array3<Real> = cube(t.map(|&value| Real::from_f64(value)))?;
    let mut losses = Vec::with_capacity(images * classes);
    let mut slopes = Vec::with_capacity(images * classes);
    for (p_rows, t_rows) in p3.outer_iter().zip(t3.outer_iter()) {
        for (p_row, t_row) in p_rows.axis_iter(Axis(0)).zip(t_rows.axis_iter(Axis(0))) {
            let (loss, slope) = one(ratio, &p_row.to_vec(), &t_row.to_vec(), &smooth);
            losses.push(loss);
            slopes.push(slope);
        }
    }
    let per_pair = ArrayD::from_shape_vec(vec![images, classes], losses).ok()?;
    let count = Real::from_f64((images * classes) as f64);
    let (loss, upstream) = reduce(call, reduction, per_pair, &count)?;
    let grad: Vec<Real> = slopes
        .iter()
        .zip(upstream.iter())
        .flat_map(|(slope, u)| slope.iter().map(move |value| value * u))
        .collect();
    let grad_input = ArrayD::from_shape_vec(p.shape(), grad).ok()?;
    Some(Exact { loss, grad_input })
}
