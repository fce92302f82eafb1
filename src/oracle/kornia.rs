//! kornia's focal losses, exactly: `binary_focal_loss_with_logits` and `focal_loss`, on (B, C, *)
//! predictions. Per-class tensors (`weight`, `pos_weight`) hold C values along axis 1, and the
//! mean divides by every element of the (B, C, *) loss map, ignored ones included. The default
//! reduction is `none`, the default ignore_index −100.
//!
//! With σ(x) = 1/(1 + e^−x): d ln σ(x)/dx = σ(−x), d ln σ(−x)/dx = −σ(x), and the powers
//! σ(∓x)^γ are exp(γ·ln σ(∓x)), which hold where σ itself underflows.

use ndarray::ArrayD;

use super::binary::{elementwise, Logistic};
use super::cross_entropy::{from_lanes, lanes, Softmax};
use super::options::{optional_integer, optional_number};
use super::real::Real;
use super::{float_tensor, number, prediction, reduce, reduction, Exact, LossCall, Reduce};

/// kornia's default `ignore_index`.
const DEFAULT_IGNORE_INDEX: i64 = -100;

/// y^γ as exp(γ·ln y) from ln y, exactly 1 for γ = 0.
pub(super) fn power_from_log(log: &Real, gamma: f64) -> Real {
    if gamma == 0.0 {
        Real::one()
    } else {
        (&Real::from_f64(gamma) * log).exp()
    }
}

/// A per-class tensor of kornia: C values along axis 1 (its first axis has C entries and it has C
/// elements); ones when absent, `None` when it does not fit.
fn per_class_tensor(call: &LossCall, name: &str, classes: usize) -> Option<Vec<Real>> {
    if !call.tensors.contains_key(name) {
        return Some(vec![Real::one(); classes]);
    }
    let values = float_tensor(call, name)?;
    (values.shape().first() == Some(&classes) && values.len() == classes)
        .then(|| values.iter().map(|&value| Real::from_f64(value)).collect())
}

/// `binary_focal_loss_with_logits(pred, target, alpha=0.25, gamma=2, reduction='none',
/// pos_weight=None, weight=None, ignore_index=-100)`: the focal losses of t = 1 and t = 0 mixed
/// linearly by a soft target t, with α₊ = α, α₋ = 1 − α (both 1 when α is `None`), pw_c and w_c
/// per class, and k = [t ≠ ignore_index]:
///
/// ```text
/// A  = σ(−x)^γ·(−ln σ(x))            A′ = σ(−x)^γ·[γ·σ(x)·ln σ(x) − σ(−x)]
/// B  = σ(x)^γ·(−ln σ(−x))            B′ = σ(x)^γ·[σ(x) − γ·σ(−x)·ln σ(−x)]
/// l  = k·w_c·[α₊·pw_c·t·A + α₋·(1 − t)·B]
/// ∂l/∂x = k·w_c·[α₊·pw_c·t·A′ + α₋·(1 − t)·B′]
/// ```
///
/// (A′: dσ(−x)^γ/dx = −γ·σ(−x)^γ·σ(x); B′ likewise. Each bracket is a sum of terms of one sign.)
/// An ignored element has t read as 0 and its loss multiplied by 0.
pub(super) fn binary_focal_loss_with_logits(
    call: &LossCall,
    at: Option<&ArrayD<Real>>,
) -> Option<Exact> {
    let x = prediction(call, "pred", at)?;
    let t = call.tensors.get("target")?.to_f64();
    if x.ndim() < 2 || x.shape() != t.shape() {
        return None;
    }
    let alpha = optional_number(call, "alpha", Some(0.25))?;
    let gamma = number(call, "gamma", 2.0)?;
    let reduction = reduction(call, Reduce::None)?;
    let ignore_index = optional_integer(call, "ignore_index", Some(DEFAULT_IGNORE_INDEX))?;
    let classes = x.shape()[1];
    let pos_weight = per_class_tensor(call, "pos_weight", classes)?;
    let weight = per_class_tensor(call, "weight", classes)?;
    let (alpha_positive, alpha_negative) = match alpha {
        Some(alpha) => (Real::from_f64(alpha), Real::one() - Real::from_f64(alpha)),
        None => (Real::one(), Real::one()),
    };
    let g = Real::from_f64(gamma);
    let mut loss = ArrayD::from_elem(x.shape(), Real::zero());
    let mut slope = loss.clone();
    for (index, x) in x.indexed_iter() {
        let c = index[1];
        let t = t[&index];
        let kept = ignore_index.is_none_or(|ignored| t != ignored as f64);
        let t = if kept {
            Real::from_f64(t)
        } else {
            Real::zero()
        };
        let k = Real::from_f64(f64::from(u8::from(kept)));
        let l = Logistic::new(x);
        let (s, s_minus) = (&l.sigmoid, &l.sigmoid_of_minus);
        let positive = &alpha_positive * &pos_weight[c] * &t;
        let negative = &alpha_negative * &(Real::one() - &t);
        // A term whose factor is 0 is 0 at a finite logit: its powers are not evaluated.
        let needed = |factor: &Real| !factor.is_zero() || !matches!(x, Real::Finite(_));
        let (mut value, mut derivative) = (Real::zero(), Real::zero());
        if needed(&positive) {
            let m = power_from_log(&l.log_sigmoid_of_minus, gamma);
            let a = -(&m * &l.log_sigmoid);
            let a_slope = &m * &(&g * s * &l.log_sigmoid - s_minus);
            value = &positive * &a;
            derivative = &positive * &a_slope;
        }
        if needed(&negative) {
            let m = power_from_log(&l.log_sigmoid, gamma);
            let b = -(&m * &l.log_sigmoid_of_minus);
            let b_slope = &m * &(s - &(&g * s_minus * &l.log_sigmoid_of_minus));
            value = value + &negative * &b;
            derivative = derivative + &negative * &b_slope;
        }
        let scale = &k * &weight[c];
        loss[&index] = &scale * &value;
        slope[&index] = &scale * &derivative;
    }
    elementwise(call, reduction, loss, slope)
}

/// `focal_loss(pred, target, alpha, gamma=2, reduction='none', weight=None, ignore_index=-100)`:
/// the softmax focal loss over the class axis with class-index targets y, p = softmax(x),
/// q_c = 1 − p_c (formed from the other classes' sum), k_c = α_c·w_c with α_0 = 1 − α and α_c = α
/// for c > 0 (all 1 when α is `None`). The loss map has the prediction's shape:
///
/// ```text
/// l[b, c] = −k_c·q_c^γ·ln p_c·[c = y]
/// ∂l[b, y]/∂ln p_y = −k_y·[q_y^γ − γ·q_y^(γ−1)·p_y·ln p_y]      (dq/d ln p = −p; both terms ≥ 0)
/// ```
///
/// then through log-softmax ([`Softmax::backward`]). kornia sets the logits of an ignored
/// position to 0 before the softmax, so they are never read: loss 0, gradient 0. The
/// second term is written γ·(q^γ/q)·p·ln p, and taken as its limit 0 where q = 0.
pub(super) fn focal_loss(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let x = prediction(call, "pred", at)?;
    if x.ndim() < 2 {
        return None;
    }
    let classes = x.shape()[1];
    let mut positions = x.shape().to_vec();
    positions.remove(1);
    let target = call.tensors.get("target")?;
    if target.shape() != positions.as_slice() {
        return None;
    }
    let labels = target.class_indices()?;
    let alpha = optional_number(call, "alpha", None)?;
    let gamma = number(call, "gamma", 2.0)?;
    let reduction = reduction(call, Reduce::None)?;
    let ignore_index = optional_integer(call, "ignore_index", Some(DEFAULT_IGNORE_INDEX))?;
    let weight = per_class_tensor(call, "weight", classes)?;
    let class_weight: Vec<Real> = (0..classes)
        .map(|c| {
            let alpha = match alpha {
                None => Real::one(),
                Some(alpha) if c == 0 => Real::one() - Real::from_f64(alpha),
                Some(alpha) => Real::from_f64(alpha),
            };
            alpha * &weight[c]
        })
        .collect();
    let labels = labels
        .as_standard_layout()
        .iter()
        .map(|&label| {
            if Some(label) == ignore_index {
                Some(None)
            } else {
                usize::try_from(label)
                    .ok()
                    .filter(|&c| c < classes)
                    .map(Some)
            }
        })
        .collect::<Option<Vec<Option<usize>>>>()?;
    let rows = lanes(&x, 1);
    let mut loss_rows = Vec::with_capacity(rows.len());
    let mut slopes = Vec::with_capacity(rows.len());
    for (logits, label) in rows.iter().zip(&labels) {
        let mut loss_row = vec![Real::zero(); classes];
        let Some(y) = *label else {
            loss_rows.push(loss_row);
            slopes.push(None);
            continue;
        };
        let softmax = Softmax::new(logits);
        let (p, q, log_p) = (&softmax.p[y], &softmax.q[y], &softmax.log_p[y]);
        let modulation = q.powf(gamma);
        loss_row[y] = -(&class_weight[y] * &modulation * log_p);
        let mut bracket = modulation.clone();
        if gamma != 0.0 && q.is_positive() {
            let lower = &modulation / q;
            bracket = bracket - Real::from_f64(gamma) * lower * p * log_p;
        }
        loss_rows.push(loss_row);
        slopes.push(Some((y, softmax, -(&class_weight[y] * &bracket))));
    }
    let map = from_lanes(x.shape(), 1, loss_rows);
    let count = Real::from_f64(map.len() as f64);
    let (loss, upstream) = reduce(call, reduction, map, &count)?;
    let upstream_rows = lanes(&upstream, 1);
    let grad_rows = slopes
        .into_iter()
        .zip(upstream_rows)
        .map(|(slope, u)| match slope {
            Some((y, softmax, a_y)) => {
                let mut a = vec![Real::zero(); classes];
                a[y] = a_y * &u[y];
                softmax.backward(&a)
            }
            None => vec![Real::zero(); classes],
        })
        .collect();
    Some(Exact {
        loss,
        grad_input: from_lanes(x.shape(), 1, grad_rows),
    })
}
