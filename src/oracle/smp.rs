//! segmentation_models_pytorch's losses, exactly: `FocalLoss`, `SoftBCEWithLogitsLoss` and
//! `SoftCrossEntropyLoss`. smp reads `reduction` itself: `mean` and `sum` reduce (and
//! `batchwise_mean` for the focal loss), any other string leaves the loss unreduced.
//!
//! With σ(x) = 1/(1 + e^−x): d ln σ(x)/dx = σ(−x), d ln σ(−x)/dx = −σ(x).

use ndarray::{ArrayD, Axis, Dimension, IxDyn};

use super::binary::{bce_with_logits_element, broadcast, elementwise, Logistic};
use super::cross_entropy::{lanes, scaled_lanes, Softmax};
use super::kornia::power_from_log;
use super::options::{flag, optional_integer, optional_number, text};
use super::real::{sum, Real};
use super::{number, prediction, reduce, Exact, LossCall, Reduce};
use crate::tensor::Tensor;

/// smp's default `ignore_index` for its BCE and CE.
const DEFAULT_IGNORE_INDEX: i64 = -100;

/// smp's reading of `reduction` for its BCE and CE (default `mean`).
fn smp_reduction(call: &LossCall) -> Option<Reduce> {
    Some(match text(call, "reduction", "mean")? {
        "mean" => Reduce::Mean,
        "sum" => Reduce::Sum,
        _ => Reduce::None,
    })
}

/// `SoftBCEWithLogitsLoss(weight=None, ignore_index=-100, reduction='mean', smooth_factor=None,
/// pos_weight=None)(y_pred, y_true)`: with s the smooth factor, k = [t ≠ ignore_index] (compared
/// on the labels as given) and w, pw broadcast right-aligned,
///
/// ```text
/// t' = (1 − t)·s + t·(1 − s)          (t' = t without smoothing)
/// l  = k·w·[−pw·t'·ln σ(x) − (1 − t')·ln σ(−x)]
/// ∂l/∂x = k·w·[(1 − t')·σ(x) − pw·t'·σ(−x)]
/// mean = Σ l / (number of elements)  (ignored elements stay in the denominator)
/// ```
///
/// Integer labels with a smooth factor: PyTorch multiplies an integer tensor by a Python float
/// in float32, so t' is that float32 tensor, f32(f32(f32(1 − t)·f32(s)) + f32(f32(t)·f32(1 − s)))
/// (with 1 − s a Python float); the dtype promotion is the loss's definition, so the oracle takes
/// t' as that float32 value and everything after exactly. Integer labels without smoothing and
/// bool labels with it are refused by smp (`None`).
pub(super) fn soft_bce_with_logits(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let x = prediction(call, "y_pred", at)?;
    let labels_tensor = call.tensors.get("y_true")?;
    if labels_tensor.shape() != x.shape() {
        return None;
    }
    let ignore_index = optional_integer(call, "ignore_index", Some(DEFAULT_IGNORE_INDEX))?;
    let reduction = smp_reduction(call)?;
    let smooth_factor = optional_number(call, "smooth_factor", None)?;
    let labels = labels_tensor.to_f64();
    let floating = labels_tensor.dtype().is_floating();
    let soft: ArrayD<Real> = match smooth_factor {
        None if !floating => return None,
        None => labels.map(|&t| Real::from_f64(t)),
        Some(_) if matches!(labels_tensor, Tensor::Bool(_)) => return None,
        Some(s) if !floating => {
            let (s32, complement) = (s as f32, (1.0 - s) as f32);
            labels.map(|&t| {
                let t = t as f32;
                Real::from_f64(f64::from((1.0 - t) * s32 + t * complement))
            })
        }
        Some(s) => {
            let s = Real::from_f64(s);
            let kept = Real::one() - &s;
            labels.map(|&t| {
                let t = Real::from_f64(t);
                (Real::one() - &t) * &s + t * &kept
            })
        }
    };
    let w = broadcast(call, "weight", x.shape())?;
    let pw = broadcast(call, "pos_weight", x.shape())?;
    let mut loss = ArrayD::from_elem(x.shape(), Real::zero());
    let mut slope = loss.clone();
    for (index, x) in x.indexed_iter() {
        let kept = ignore_index.is_none_or(|ignored| labels[&index] != ignored as f64);
        let k = Real::from_f64(f64::from(u8::from(kept)));
        let (w, pw) = (Real::from_f64(w[&index]), Real::from_f64(pw[&index]));
        let (l, d) = bce_with_logits_element(x, &soft[&index], &w, &pw);
        loss[&index] = &k * &l;
        slope[&index] = k * d;
    }
    elementwise(call, reduction, loss, slope)
}

/// `SoftCrossEntropyLoss(reduction='mean', smooth_factor, ignore_index=-100, dim=1)(y_pred,
/// y_true)`: fairseq's label-smoothed NLL over log-softmax on axis 1, with ε the smooth factor
/// over C classes and class-index targets y (int64, shape (N, *) or (N, 1, *)):
///
/// ```text
/// l_n = (1 − ε)·(−ln p_{n,y}) + (ε/C)·Σ_c(−ln p_{n,c})     (0 where y = ignore_index)
/// a_c = ∂l_n/∂ln p_c = −(1 − ε)·[c = y] − ε/C
/// mean = Σ_n l_n / (number of positions)                     (ignored positions included)
/// ```
///
/// then through log-softmax. `none` returns (N, 1, *) when ignore_index is set, (N, *) when it is
/// `None`. With ε = 0 the smoothing term is left out (its factor is 0). Ignored positions are never
/// read.
pub(super) fn soft_cross_entropy(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let x = prediction(call, "y_pred", at)?;
    if x.ndim() < 2 {
        return None;
    }
    let classes = x.shape()[1];
    let mut positions = x.shape().to_vec();
    positions.remove(1);
    let mut unsqueezed = positions.clone();
    unsqueezed.insert(1, 1);
    let Some(Tensor::Int64(labels)) = call.tensors.get("y_true") else {
        return None;
    };
    if labels.shape() != positions.as_slice() && labels.shape() != unsqueezed.as_slice() {
        return None;
    }
    let epsilon = optional_number(call, "smooth_factor", None)??;
    let ignore_index = optional_integer(call, "ignore_index", Some(DEFAULT_IGNORE_INDEX))?;
    let reduction = smp_reduction(call)?;
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
    let share = Real::from_f64(epsilon) / Real::from_f64(classes as f64);
    let kept = Real::one() - Real::from_f64(epsilon);
    let mut per_position = Vec::with_capacity(labels.len());
    let mut slopes = Vec::with_capacity(labels.len());
    for (logits, label) in lanes(&x, 1).iter().zip(&labels) {
        let Some(y) = *label else {
            per_position.push(Real::zero());
            slopes.push(None);
            continue;
        };
        let softmax = Softmax::new(logits);
        let mut loss = -(&kept * &softmax.log_p[y]);
        let mut a = vec![Real::zero(); classes];
        if epsilon != 0.0 {
            loss = loss - &share * &sum(&softmax.log_p);
            a = vec![-&share; classes];
        }
        a[y] = &a[y] - &kept;
        per_position.push(loss);
        slopes.push(Some(softmax.backward(&a)));
    }
    let output_shape = if ignore_index.is_some() && reduction == Reduce::None {
        unsqueezed
    } else {
        positions
    };
    let count = Real::from_f64(per_position.len() as f64);
    let per_position = ArrayD::from_shape_vec(output_shape, per_position).ok()?;
    let (loss, upstream) = reduce(call, reduction, per_position, &count)?;
    Some(Exact {
        loss,
        grad_input: scaled_lanes(x.shape(), 1, slopes, &upstream),
    })
}

/// smp's focal `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Binary,
    Multiclass,
    Multilabel,
}

/// smp's focal reductions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FocalReduction {
    /// Σ l / n.
    Mean,
    /// Σ l.
    Sum,
    /// Σ over axis 0.
    BatchwiseMean,
    /// Any other string: none.
    Unreduced,
}

/// The elements one call of smp's `focal_loss_with_logits` sees: their flat indices into y_pred,
/// their targets, and the shape of the tensor they form.
struct Group {
    indices: Vec<usize>,
    targets: Vec<f64>,
    shape: Vec<usize>,
}

/// The forward values of one focal element: the loss l = α_t·m·BCE, the modulating factor m, and
/// their derivatives with respect to the logit.
struct Element {
    loss: Real,
    modulation: Real,
    loss_slope: Real,
    modulation_slope: Real,
}

/// One element of smp's `focal_loss_with_logits` on logit x, target t:
///
/// ```text
/// BCE  = −t·ln σ(x) − (1 − t)·ln σ(−x)          BCE′ = (1 − t)·σ(x) − t·σ(−x)
/// p_t  = exp(−BCE)                                ∂p_t/∂x = −p_t·BCE′
/// 1 − p_t = σ(−x) for t = 1, σ(x) for t = 0, −expm1(−BCE) otherwise
/// m    = ((1 − p_t)/r)^γ, or 1 (a constant) where p_t < r      (r = 1 without a threshold)
/// m′   = γ·((1 − p_t)/r)^(γ−1)·p_t·BCE′/r
/// l    = α_t·m·BCE,   α_t = α·t + (1 − α)·(1 − t) (1 without α)
/// l′   = α_t·(m′·BCE + m·BCE′)
/// ```
fn focal_element(
    x: &Real,
    t: f64,
    alpha: Option<f64>,
    gamma: f64,
    threshold: Option<f64>,
) -> Element {
    let l = Logistic::new(x);
    let t_real = Real::from_f64(t);
    let negative = Real::one() - &t_real;
    let bce = -(&t_real * &l.log_sigmoid) - &negative * &l.log_sigmoid_of_minus;
    let bce_slope = &negative * &l.sigmoid - &t_real * &l.sigmoid_of_minus;
    // For a hard target p_t and 1 − p_t are σ(±x) and σ(∓x), whose logarithms are known.
    let (pt, complement) = if t == 1.0 {
        (
            l.sigmoid.clone(),
            Some((&l.sigmoid_of_minus, &l.log_sigmoid_of_minus)),
        )
    } else if t == 0.0 {
        (
            l.sigmoid_of_minus.clone(),
            Some((&l.sigmoid, &l.log_sigmoid)),
        )
    } else {
        ((-&bce).exp(), None)
    };
    let alpha_t = match alpha {
        Some(alpha) => {
            let alpha = Real::from_f64(alpha);
            &alpha * &t_real + (Real::one() - &alpha) * &negative
        }
        None => Real::one(),
    };
    let below = threshold.is_some_and(|r| (&pt - &Real::from_f64(r)).is_negative());
    let (modulation, modulation_slope) = if below || gamma == 0.0 {
        (Real::one(), Real::zero())
    } else {
        let r = Real::from_f64(threshold.unwrap_or(1.0));
        let (base, m) = match complement {
            Some((complement, log)) => {
                let log_base = if threshold.is_some() {
                    log - &r.ln()
                } else {
                    log.clone()
                };
                (complement / &r, power_from_log(&log_base, gamma))
            }
            None => {
                let base = -(-&bce).exp_m1() / &r;
                let m = base.powf(gamma);
                (base, m)
            }
        };
        let lower = if base.is_positive() {
            &m / &base
        } else {
            base.powf(gamma - 1.0)
        };
        let slope = Real::from_f64(gamma) * lower * &pt * &bce_slope / &r;
        (m, slope)
    };
    Element {
        loss: &alpha_t * &modulation * &bce,
        loss_slope: alpha_t * (&modulation_slope * &bce + &modulation * &bce_slope),
        modulation,
        modulation_slope,
    }
}

/// The groups of one smp focal call: binary, one group of every element (flattened, ignored
/// targets dropped, shape (kept,)); multiclass, group c is y_pred[:, c] against [y = c];
/// multilabel, y_pred[:, c] against y_true[:, c]. A multiclass group drops the ignored positions
/// and is then 1-D; otherwise it has the positions' shape.
fn groups(
    pred_shape: &[usize],
    target: &ArrayD<f64>,
    mode: Mode,
    ignore_index: Option<i64>,
) -> Option<Vec<Group>> {
    let kept = |label: f64| ignore_index.is_none_or(|ignored| label != ignored as f64);
    if mode == Mode::Binary {
        if target.len() != pred_shape.iter().product::<usize>() {
            return None;
        }
        let (indices, targets): (Vec<usize>, Vec<f64>) = target
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, label)| kept(label))
            .unzip();
        let shape = vec![targets.len()];
        return Some(vec![Group {
            indices,
            targets,
            shape,
        }]);
    }
    if pred_shape.len() < 2 || (mode == Mode::Multilabel && ignore_index.is_some()) {
        return None;
    }
    let mut position_shape = pred_shape.to_vec();
    position_shape.remove(1);
    let expected = if mode == Mode::Multilabel {
        pred_shape
    } else {
        position_shape.as_slice()
    };
    if target.shape() != expected {
        return None;
    }
    let strides: Vec<usize> = (0..pred_shape.len())
        .map(|axis| pred_shape[axis + 1..].iter().product())
        .collect();
    let flat = |index: &[usize]| -> usize { index.iter().zip(&strides).map(|(i, s)| i * s).sum() };
    let groups = (0..pred_shape[1])
        .map(|class| {
            let mut group = Group {
                indices: Vec::new(),
                targets: Vec::new(),
                shape: position_shape.clone(),
            };
            for position in ndarray::indices(position_shape.as_slice()) {
                let mut index = position.slice().to_vec();
                index.insert(1, class);
                let t = if mode == Mode::Multilabel {
                    target[IxDyn(&index)]
                } else {
                    let label = target[&position];
                    if !kept(label) {
                        continue;
                    }
                    f64::from(u8::from(label == class as f64))
                };
                group.indices.push(flat(&index));
                group.targets.push(t);
            }
            if ignore_index.is_some() {
                group.shape = vec![group.targets.len()];
            }
            group
        })
        .collect();
    Some(groups)
}

impl FocalReduction {
    /// The reduced values of a group's loss array.
    fn reduce(self, values: &ArrayD<Real>) -> ArrayD<Real> {
        match self {
            FocalReduction::Mean => {
                ArrayD::from_elem(vec![], sum(values) / Real::from_f64(values.len() as f64))
            }
            FocalReduction::Sum => ArrayD::from_elem(vec![], sum(values)),
            FocalReduction::BatchwiseMean => values.map_axis(Axis(0), |lane| sum(lane.iter())),
            FocalReduction::Unreduced => values.clone(),
        }
    }

    /// The upstream gradient on each element of a group of `shape` from that on its reduced
    /// values.
    fn expand(self, upstream: &ArrayD<Real>, shape: &[usize]) -> ArrayD<Real> {
        let count = Real::from_f64(shape.iter().product::<usize>() as f64);
        let scalar = || upstream.iter().next().cloned().unwrap_or_else(Real::zero);
        ArrayD::from_shape_fn(IxDyn(shape), |index| match self {
            FocalReduction::Mean => scalar() / &count,
            FocalReduction::Sum => scalar(),
            FocalReduction::BatchwiseMean => upstream[&index.slice()[1..]].clone(),
            FocalReduction::Unreduced => upstream[&index].clone(),
        })
    }
}

/// The logits smp's focal sees and their derivative with respect to y_pred. From logits: y_pred
/// itself. From probabilities: p = clamp(y, eps, 1 − eps) (1 − eps as the Python float), then
/// z = ln(p/(1 − p)) = ln p − ln1p(−p) with dz/dy = 1/(p·(1 − p)), or in multiclass mode
/// z = ln p with dz/dy = 1/p; where the clamp is active (y outside [eps, 1 − eps], NaN included)
/// the derivative is 0 and no gradient passes (`None`).
fn logits(y: &ArrayD<Real>, from_logits: bool, eps: f64, mode: Mode) -> Vec<(Real, Option<Real>)> {
    if from_logits {
        return y.iter().map(|y| (y.clone(), Some(Real::one()))).collect();
    }
    let (low, high) = (Real::from_f64(eps), Real::from_f64(1.0 - eps));
    y.iter()
        .map(|y| {
            let inside = !(y - &low).is_negative() && !(&high - y).is_negative() && !y.is_nan();
            let p = if y.is_nan() {
                Real::Nan
            } else {
                y.max(&low).min(&high)
            };
            let slope = |value: Real| inside.then(|| Real::one() / value);
            if mode == Mode::Multiclass {
                (p.ln(), slope(p.clone()))
            } else {
                let complement = Real::one() - &p;
                let z = p.ln() - (-&p).ln_1p();
                (z, slope(&p * &complement))
            }
        })
        .collect()
}

/// `smp.losses.FocalLoss(mode, alpha=None, gamma=2, ignore_index=None, reduction='mean',
/// normalized=False, reduced_threshold=None, from_logits=True, eps=1e-7,
/// class_weights=None)(y_pred, y_true)`: [`focal_element`] on each group ([`groups`]), then per
/// group
///
/// ```text
/// normalized: v_i = l_i / N,  N = max(S, 1e-6),  S = Σ_group m_i
///   ∂/∂x_j Σ_i u_i·v_i = u_j·l′_j / N − [S ≥ 1e-6]·(Σ_i u_i·l_i)/N²·m′_j
/// reduction: mean (Σ v / n), sum, batchwise_mean (Σ over axis 0), anything else: none
/// ```
///
/// Binary mode returns the group's reduced loss. The other modes stack the C reduced groups and
/// average them, Σ(stack·w)/Σ_c w_c with class_weights w (rounded to float32, broadcast
/// right-aligned against the stack), Σ stack / (its size) without: a scalar whatever the
/// reduction. Binary mode refuses class_weights and multilabel mode ignore_index (smp fails).
pub(super) fn focal_loss(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let mode = match text(call, "mode", "")? {
        "binary" => Mode::Binary,
        "multiclass" => Mode::Multiclass,
        "multilabel" => Mode::Multilabel,
        _ => return None,
    };
    let alpha = optional_number(call, "alpha", None)?;
    let gamma = number(call, "gamma", 2.0)?;
    let ignore_index = optional_integer(call, "ignore_index", None)?;
    let from_logits = flag(call, "from_logits", true)?;
    let eps = number(call, "eps", 1e-7)?;
    let reduction = match text(call, "reduction", "mean")? {
        "mean" => FocalReduction::Mean,
        "sum" => FocalReduction::Sum,
        "batchwise_mean" => FocalReduction::BatchwiseMean,
        _ => FocalReduction::Unreduced,
    };
    let normalized = flag(call, "normalized", false)?;
    let threshold = optional_number(call, "reduced_threshold", None)?;
    let class_weights = match call.params.get("class_weights") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| item.as_f64().map(|w| Real::from_f64(w).round_to_f32()))
                .collect::<Option<Vec<Real>>>()?,
        ),
        Some(_) => return None,
    };
    if mode == Mode::Binary && class_weights.is_some() {
        return None;
    }
    let y = prediction(call, "y_pred", at)?;
    let y = y.as_standard_layout().into_owned();
    let target = call.tensors.get("y_true")?.to_f64();
    let target = target.as_standard_layout().into_owned();
    let z = logits(&y, from_logits, eps, mode);
    let groups = groups(y.shape(), &target, mode, ignore_index)?;
    let floor = Real::from_f64(1e-6);

    struct Forward {
        elements: Vec<Element>,
        norm: Real,
        normalizes: bool,
    }
    let mut forwards = Vec::with_capacity(groups.len());
    let mut reduced = Vec::with_capacity(groups.len());
    for group in &groups {
        let elements: Vec<Element> = group
            .indices
            .iter()
            .zip(&group.targets)
            .map(|(&index, &t)| focal_element(&z[index].0, t, alpha, gamma, threshold))
            .collect();
        let modulation_sum = sum(elements.iter().map(|element| &element.modulation));
        let (norm, normalizes) = if normalized {
            (
                modulation_sum.max(&floor),
                !(&modulation_sum - &floor).is_negative(),
            )
        } else {
            (Real::one(), false)
        };
        let values: Vec<Real> = elements
            .iter()
            .map(|element| &element.loss / &norm)
            .collect();
        let values = ArrayD::from_shape_vec(group.shape.clone(), values).ok()?;
        reduced.push(reduction.reduce(&values));
        forwards.push(Forward {
            elements,
            norm,
            normalizes,
        });
    }

    // Compose the groups; the upstream gradient on each group's reduced values.
    let (loss, group_upstreams) = if mode == Mode::Binary {
        let shape = reduced[0].shape().to_vec();
        let upstream = match &call.grad_output {
            Some(given) if given.shape() != shape.as_slice() => return None,
            Some(given) => given.map(|&value| Real::from_f64(value)),
            None => ArrayD::from_elem(shape, Real::one()),
        };
        (reduced[0].clone(), vec![upstream])
    } else {
        let views: Vec<_> = reduced.iter().map(|values| values.view()).collect();
        let stack = ndarray::stack(Axis(0), &views).ok()?;
        let g = match &call.grad_output {
            Some(given) if !given.shape().is_empty() => return None,
            Some(given) => Real::from_f64(given.iter().copied().next()?),
            None => Real::one(),
        };
        let (weights, total) = match &class_weights {
            Some(weights) => {
                let own = ndarray::Array1::from_vec(weights.clone()).into_dyn();
                if own.ndim() > stack.ndim() {
                    return None;
                }
                (own.broadcast(stack.raw_dim())?.to_owned(), sum(weights))
            }
            None => (
                ArrayD::from_elem(stack.raw_dim(), Real::one()),
                Real::from_f64(stack.len() as f64),
            ),
        };
        let weighted: Vec<Real> = stack.iter().zip(&weights).map(|(l, w)| l * w).collect();
        let loss = sum(&weighted) / &total;
        let upstream = weights.map(|w| &g * w / &total);
        let per_group = upstream.outer_iter().map(|view| view.to_owned()).collect();
        (ArrayD::from_elem(vec![], loss), per_group)
    };

    let mut grad_input = vec![Real::zero(); y.len()];
    for ((group, forward), upstream) in groups.iter().zip(&forwards).zip(&group_upstreams) {
        let element_upstream = reduction.expand(upstream, &group.shape);
        let modulation_upstream = if forward.normalizes {
            let terms: Vec<Real> = element_upstream
                .iter()
                .zip(&forward.elements)
                .map(|(u, element)| u * &element.loss)
                .collect();
            -(sum(&terms) / (&forward.norm * &forward.norm))
        } else {
            Real::zero()
        };
        for ((&index, element), u) in group
            .indices
            .iter()
            .zip(&forward.elements)
            .zip(element_upstream.iter())
        {
            if let Some(slope) = &z[index].1 {
                let d = u / &forward.norm * &element.loss_slope
                    + &modulation_upstream * &element.modulation_slope;
                grad_input[index] = &grad_input[index] + &(d * slope);
            }
        }
    }
    Some(Exact {
        loss,
        grad_input: ArrayD::from_shape_vec(y.shape(), grad_input).ok()?,
    })
}
