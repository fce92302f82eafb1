//! MONAI's `FocalLoss`, exactly, on (B, C, *) logits: sigmoid per element or softmax over the
//! channels, per-class α and weights, `to_onehot_y`, `include_background`, `ignore_index`.
//!
//! MONAI casts input, target, mask, α and weights to float32 (`.float()`) whatever their dtype.
//! The cast is part of the loss's definition, so the oracle rounds those values to float32 —
//! once, from their exact values — and evaluates everything after the cast exactly. The cast's
//! backward is the identity, so it is modelled as a constant offset: the prediction x enters as
//! x' = x·k + [f32(x₀·k) − x₀·k], where x₀ is the call's own input and k the mask. At x = x₀ that is
//! f32(x₀·k) exactly, and ∂x'/∂x = k (what PyTorch's backward through `x * mask` and `.float()`
//! gives); the offset also keeps x' differentiable for the finite-difference check.
//!
//! The steps, in MONAI's order:
//!
//! 1. `to_onehot_y` (C > 1): a (B, 1, *) label target (trailing axes of size 1 added below two axes)
//!    becomes one-hot; labels are truncated, a label equal to an ignore_index outside [0, C) becomes
//!    0, any other label outside [0, C) cannot be evaluated.
//! 2. `include_background=False` (C > 1) drops channel 0 of input and target.
//! 3. With ignore_index, a mask k of shape (B, 1, *) from the original target: [t ≠ ii] for one
//!    channel; 1 − t_ii for several channels when 0 ≤ ii < C_t; [Σ_c t_c > 0] otherwise; rounded to
//!    float32. Input and target are multiplied by k (and cast: x', t').
//! 4. Sigmoid, with z = x'·(1 − 2t'):
//!
//!    ```text
//!    BCE = −t'·ln σ(x') − (1 − t')·ln σ(−x')     (MONAI's x − x·t − ln σ(x), the same value)
//!    m   = σ(z)^γ = exp(γ·ln σ(z))
//!    l   = w_c·α_t·m·BCE·k
//!    ∂l/∂x' = w_c·α_t·k·[m·BCE′ + BCE·m′]
//!    BCE′ = (1 − t')·σ(x') − t'·σ(−x')          m′ = γ·m·σ(−z)·(1 − 2t')
//!    ```
//!
//!    α_t = α·t' + (1 − α)·(1 − t') for a scalar α; α_c where t' = 1 (exactly) and 1 elsewhere for
//!    a sequence; 1 without α.
//!
//!    Softmax, per channel c (not summed over classes), with p = softmax(x'), q_c = 1 − p_c:
//!
//!    ```text
//!    l_c = −κ_c·q_c^γ·ln p_c·t'_c·k            κ_c = α_c·w_c
//!    ∂l_c/∂ln p_c = −κ_c·t'_c·k·[q_c^γ − γ·q_c^(γ−1)·p_c·ln p_c]
//!    ```
//!
//!    then through log-softmax; a scalar α gives α_0 = 1 − α and α_c = α for c > 0, and is dropped
//!    when include_background is false; a sequence gives α_c.
//! 5. Weights w_c (scalar or one per channel, non-negative) multiply the map.
//! 6. `none`: the (B, C, *) map. `mean`: Σ l / (B·C·spatial), or Σ l / max(Σ k, ε) with
//!    ignore_index (ε the float32 epsilon; the mask has one entry per position, not per class).
//!    `sum`: Σ_{b,c} of spatial means, Σ_sp l / d_b with d_b the spatial count, or
//!    max(Σ_sp k_b, ε) with ignore_index. The gradient of ∂x'/∂x = k multiplies once more.
//!
//! Where MONAI's own float32 1 − p_c rounds to 0 with γ < 1 its softmax gradient is NaN; the
//! exact gradient is finite there (an anchor artefact).

use ndarray::{ArrayD, Axis, Dimension, IxDyn};

use super::binary::Logistic;
use super::cross_entropy::{from_lanes, lanes, Softmax};
use super::kornia::power_from_log;
use super::options::{flag, optional_integer, per_class, PerClass};
use super::real::{sum, Real};
use super::{float_tensor, number, prediction, reduce, reduction, Exact, LossCall, Reduce};

/// The float32 machine epsilon MONAI clamps its mask sums at.
const EPSILON: f32 = f32::EPSILON;

/// How α weights an element.
enum Alpha {
    /// No α.
    None,
    /// α·t + (1 − α)·(1 − t) (sigmoid, scalar α).
    Balanced(Real),
    /// α_c where t = 1, else 1 (sigmoid, a sequence).
    Positives(Vec<Real>),
    /// α_c (softmax).
    PerClass(Vec<Real>),
}

/// A value rounded to float32.
fn f32_of(value: f64) -> Real {
    Real::from_f64(value).round_to_f32()
}

/// The one-hot (B, C, *) target of a (B, 1, *) label target; `None` for another shape or a label
/// outside [0, C) that is not the ignore_index sentinel.
pub(super) fn one_hot(
    target: &ArrayD<f64>,
    classes: usize,
    ignore_index: Option<i64>,
) -> Option<ArrayD<f64>> {
    if target.shape().get(1) != Some(&1) {
        return None;
    }
    let sentinel = ignore_index.filter(|&ii| ii < 0 || ii >= classes as i64);
    let labels = target.map(|&value| {
        let label = value.trunc() as i64;
        let label = if Some(label) == sentinel { 0 } else { label };
        usize::try_from(label).ok().filter(|&c| c < classes)
    });
    if labels.iter().any(Option::is_none) {
        return None;
    }
    let mut shape = target.shape().to_vec();
    shape[1] = classes;
    Some(ArrayD::from_shape_fn(IxDyn(&shape), |index| {
        let mut position = index.slice().to_vec();
        let class = std::mem::replace(&mut position[1], 0);
        f64::from(u8::from(labels[IxDyn(&position)] == Some(class)))
    }))
}

/// MONAI's ignore mask (B, 1, *) of the original target, rounded to float32 (step 3).
fn ignore_mask(target: &ArrayD<f64>, ignore_index: i64) -> Option<ArrayD<Real>> {
    let channels = *target.shape().get(1)?;
    let indicator = |holds: bool| Real::from_f64(f64::from(u8::from(holds)));
    let mask = if channels == 1 {
        target.map(|&label| indicator(label != ignore_index as f64))
    } else if (0..channels as i64).contains(&ignore_index) {
        target
            .index_axis(Axis(1), ignore_index as usize)
            .map(|&value| (Real::one() - Real::from_f64(value)).round_to_f32())
            .insert_axis(Axis(1))
    } else {
        let values: Vec<Real> = target
            .lanes(Axis(1))
            .into_iter()
            .map(|lane| {
                let lane: Vec<Real> = lane.iter().map(|&value| Real::from_f64(value)).collect();
                indicator(sum(&lane).is_positive())
            })
            .collect();
        let mut positions = target.shape().to_vec();
        positions[1] = 1;
        ArrayD::from_shape_vec(positions, values).ok()?
    };
    Some(mask)
}

/// MONAI's α for `classes` channels (after slicing), rounded to float32.
fn alpha_of(
    alpha: Option<PerClass>,
    classes: usize,
    use_softmax: bool,
    include_background: bool,
) -> Option<Alpha> {
    Some(match alpha {
        None => Alpha::None,
        Some(PerClass::Scalar(_)) if use_softmax && !include_background => Alpha::None,
        Some(PerClass::Scalar(alpha)) if use_softmax => {
            let alpha = f32_of(alpha);
            let background = Real::one() - &alpha;
            Alpha::PerClass(
                (0..classes)
                    .map(|c| {
                        if c == 0 {
                            background.clone()
                        } else {
                            alpha.clone()
                        }
                    })
                    .collect(),
            )
        }
        Some(PerClass::Scalar(alpha)) => Alpha::Balanced(f32_of(alpha)),
        Some(PerClass::List(alphas)) => {
            if alphas.len() != classes {
                return None;
            }
            let alphas = alphas.into_iter().map(f32_of).collect();
            if use_softmax {
                Alpha::PerClass(alphas)
            } else {
                Alpha::Positives(alphas)
            }
        }
    })
}

/// MONAI's class weights for `classes` channels, rounded to float32 (ones without weight).
fn weights_of(weight: Option<PerClass>, classes: usize) -> Option<Vec<Real>> {
    let weights = match weight {
        None => return Some(vec![Real::one(); classes]),
        Some(PerClass::Scalar(weight)) => vec![weight; classes],
        Some(PerClass::List(weights)) => {
            if classes == 1 || weights.len() != classes {
                return None;
            }
            weights
        }
    };
    if weights.iter().any(|&weight| weight < 0.0) {
        return None;
    }
    Some(weights.into_iter().map(f32_of).collect())
}

/// `monai.losses.FocalLoss(include_background=True, to_onehot_y=False, gamma=2, alpha=None,
/// weight=None, reduction='mean', use_softmax=False, ignore_index=None)(input, target)`; see the
/// module documentation.
pub(super) fn focal_loss(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let include_background = flag(call, "include_background", true)?;
    let to_onehot_y = flag(call, "to_onehot_y", false)?;
    let gamma = number(call, "gamma", 2.0)?;
    let alpha = per_class(call, "alpha")?;
    let weight = per_class(call, "weight")?;
    let reduction = reduction(call, Reduce::Mean)?;
    let use_softmax = flag(call, "use_softmax", false)?;
    let ignore_index = optional_integer(call, "ignore_index", None)?;

    let given = float_tensor(call, "input")?;
    let x = prediction(call, "input", at)?;
    if x.ndim() < 2 {
        return None;
    }
    let full_shape = x.shape().to_vec();
    let channels = full_shape[1];
    let original = call.tensors.get("target")?.to_f64();
    let mut t = original.clone();
    if to_onehot_y && channels > 1 {
        while t.ndim() < 2 {
            t.insert_axis_inplace(Axis(t.ndim()));
        }
        t = one_hot(&t, channels, ignore_index)?;
    }
    let first = usize::from(!include_background && channels > 1);
    if first == 1 && t.ndim() < 2 {
        return None;
    }
    let mask = match ignore_index {
        Some(ignored) => Some(ignore_mask(&original, ignored)?),
        None => None,
    };
    let x = x.slice_axis(Axis(1), (first..).into()).to_owned();
    let given = given.slice_axis(Axis(1), (first..).into()).to_owned();
    let t = if first == 1 {
        let start = first.min(t.shape()[1]);
        t.slice_axis(Axis(1), (start..).into()).to_owned()
    } else {
        t
    };
    if t.shape() != x.shape() {
        return None;
    }
    let kept = match &mask {
        Some(mask) => mask.broadcast(x.raw_dim())?.to_owned(),
        None => ArrayD::from_elem(x.raw_dim(), Real::one()),
    };
    // The float32 casts of step 3, the input's as a constant offset (see the module docs).
    let mut x_cast = x.clone();
    let mut t_cast = ArrayD::from_elem(x.raw_dim(), Real::zero());
    for (index, k) in kept.indexed_iter() {
        let masked = Real::from_f64(given[&index]) * k;
        x_cast[&index] = &x[&index] * k + (masked.round_to_f32() - &masked);
        t_cast[&index] = (Real::from_f64(t[&index]) * k).round_to_f32();
    }
    let classes = x.shape()[1];
    let alpha = alpha_of(alpha, classes, use_softmax, include_background)?;
    let weights = weights_of(weight, classes)?;

    let (map, slope_of) = if use_softmax {
        softmax_map(&x_cast, &t_cast, &kept, &alpha, &weights, gamma)
    } else {
        sigmoid_map(&x_cast, &t_cast, &kept, &alpha, &weights, gamma)
    };
    let (loss, upstream) = aggregate(call, reduction, map, mask.as_ref())?;
    let grad = slope_of(&upstream);
    let mut grad_input = ArrayD::from_elem(full_shape, Real::zero());
    for (index, value) in grad.indexed_iter() {
        let mut full = index.slice().to_vec();
        full[1] += first;
        grad_input[IxDyn(&full)] = value * &kept[&index];
    }
    Some(Exact { loss, grad_input })
}

/// The gradient of a loss map with respect to x' for the upstream gradient on each map element.
type Backward = Box<dyn Fn(&ArrayD<Real>) -> ArrayD<Real>>;

/// The sigmoid loss map (step 4) and its backward.
fn sigmoid_map(
    x: &ArrayD<Real>,
    t: &ArrayD<Real>,
    kept: &ArrayD<Real>,
    alpha: &Alpha,
    weights: &[Real],
    gamma: f64,
) -> (ArrayD<Real>, Backward) {
    let g = Real::from_f64(gamma);
    let mut map = ArrayD::from_elem(x.raw_dim(), Real::zero());
    let mut slope = map.clone();
    for (index, x) in x.indexed_iter() {
        let c = index[1];
        let t = &t[&index];
        let l = Logistic::new(x);
        let negative = Real::one() - t;
        let bce = -(t * &l.log_sigmoid) - &negative * &l.log_sigmoid_of_minus;
        let bce_slope = &negative * &l.sigmoid - t * &l.sigmoid_of_minus;
        // ln σ(z) and σ(−z) for z = x·(1 − 2t): known already for a hard target.
        let sign = Real::one() - Real::from_f64(2.0) * t;
        let (log_base, sigmoid_minus_z) = if *t == Real::one() {
            (l.log_sigmoid_of_minus.clone(), l.sigmoid.clone())
        } else if t.is_zero() {
            (l.log_sigmoid.clone(), l.sigmoid_of_minus.clone())
        } else {
            let z = Logistic::new(&(x * &sign));
            (z.log_sigmoid, z.sigmoid_of_minus)
        };
        let m = power_from_log(&log_base, gamma);
        let m_slope = if gamma == 0.0 {
            Real::zero()
        } else {
            &g * &m * &sigmoid_minus_z * &sign
        };
        let alpha_t = match alpha {
            Alpha::None | Alpha::PerClass(_) => Real::one(),
            Alpha::Balanced(alpha) => alpha * t + (Real::one() - alpha) * &negative,
            Alpha::Positives(alphas) if *t == Real::one() => alphas[c].clone(),
            Alpha::Positives(_) => Real::one(),
        };
        let scale = &weights[c] * &alpha_t * &kept[&index];
        map[&index] = &scale * &m * &bce;
        slope[&index] = scale * (&m * &bce_slope + &bce * &m_slope);
    }
    let backward = move |upstream: &ArrayD<Real>| {
        ndarray::Zip::from(upstream)
            .and(&slope)
            .map_collect(|u, slope| u * slope)
    };
    (map, Box::new(backward))
}

/// The softmax loss map (step 4) and its backward.
fn softmax_map(
    x: &ArrayD<Real>,
    t: &ArrayD<Real>,
    kept: &ArrayD<Real>,
    alpha: &Alpha,
    weights: &[Real],
    gamma: f64,
) -> (ArrayD<Real>, Backward) {
    let classes = x.shape()[1];
    let kappa: Vec<Real> = (0..classes)
        .map(|c| match alpha {
            Alpha::PerClass(alphas) => &alphas[c] * &weights[c],
            _ => weights[c].clone(),
        })
        .collect();
    let shape = x.shape().to_vec();
    let mut loss_rows = Vec::new();
    let mut slope_rows = Vec::new();
    for ((logits, targets), kept) in lanes(x, 1).iter().zip(lanes(t, 1)).zip(lanes(kept, 1)) {
        let softmax = Softmax::new(logits);
        let mut loss = vec![Real::zero(); classes];
        let mut slope = vec![Real::zero(); classes];
        for c in 0..classes {
            if targets[c].is_zero() {
                continue;
            }
            let (p, q, log_p) = (&softmax.p[c], &softmax.q[c], &softmax.log_p[c]);
            let modulation = q.powf(gamma);
            let scale = &kappa[c] * &targets[c] * &kept[c];
            loss[c] = -(&scale * &modulation * log_p);
            let mut bracket = modulation.clone();
            if gamma != 0.0 && q.is_positive() {
                let lower = &modulation / q;
                bracket = bracket - Real::from_f64(gamma) * lower * p * log_p;
            }
            slope[c] = -(scale * bracket);
        }
        loss_rows.push(loss);
        slope_rows.push((softmax, slope));
    }
    let map = from_lanes(&shape, 1, loss_rows);
    let backward = move |upstream: &ArrayD<Real>| {
        let rows = slope_rows
            .iter()
            .zip(lanes(upstream, 1))
            .map(|((softmax, slope), u)| {
                let a: Vec<Real> = slope.iter().zip(&u).map(|(s, u)| s * u).collect();
                softmax.backward(&a)
            })
            .collect();
        from_lanes(&shape, 1, rows)
    };
    (map, Box::new(backward))
}

/// Reduces the loss map (step 6); returns the loss and the upstream gradient on every element.
fn aggregate(
    call: &LossCall,
    reduction: Reduce,
    map: ArrayD<Real>,
    mask: Option<&ArrayD<Real>>,
) -> Option<(ArrayD<Real>, ArrayD<Real>)> {
    let epsilon = Real::from_f64(f64::from(EPSILON));
    match reduction {
        Reduce::None => reduce(call, reduction, map, &Real::one()),
        Reduce::Mean => {
            let denominator = match mask {
                Some(mask) => sum(mask).max(&epsilon),
                None => Real::from_f64(map.len() as f64),
            };
            reduce(call, reduction, map, &denominator)
        }
        Reduce::Sum => {
            let batches = map.shape()[0];
            let spatial: usize = map.shape()[2..].iter().product();
            let per_batch: Vec<Real> = (0..batches)
                .map(|b| match mask {
                    Some(mask) => sum(mask.index_axis(Axis(0), b).iter()).max(&epsilon),
                    None => Real::from_f64(spatial as f64),
                })
                .collect();
            let g = match &call.grad_output {
                Some(given) if !given.shape().is_empty() => return None,
                Some(given) => Real::from_f64(given.iter().copied().next()?),
                None => Real::one(),
            };
            let scaled: Vec<Real> = map
                .indexed_iter()
                .map(|(index, value)| value / &per_batch[index[0]])
                .collect();
            let upstream = ArrayD::from_shape_fn(map.raw_dim(), |index| &g / &per_batch[index[0]]);
            Some((ArrayD::from_elem(vec![], sum(&scaled)), upstream))
        }
    }
}
