//! The Lovász losses, exactly: `kornia.lovasz_hinge_loss`, `kornia.lovasz_softmax_loss` and
//! `smp.LovaszLoss` (binary, multiclass, multilabel; pooled or per image; `ignore_index`).
//!
//! **The extension.** A group of n elements has errors e_j and labels gt_j (read as numbers).
//! Let σ order the elements by decreasing error and write g = Σ_j gt_j, and H_i and M_i for the
//! sums of gt and of 1 − gt over the first i elements in that order (H_i + M_i = i). The Jaccard
//! loss of calling the first i elements wrong is
//!
//! ```text
//! J_i = 1 − (g − H_i)/(g + M_i) = i/U_i,       U_i = g + M_i,   J_0 = 0
//! Δ_i = J_i − J_{i−1} = [(g − H_{i−1}) + gt_σ(i)·(i − 1)] / (U_{i−1}·U_i)     (i ≥ 2; Δ_1 = J_1)
//! loss = Σ_i φ(e_σ(i))·Δ_i          ∂loss/∂e_σ(i) = φ'(e_σ(i))·Δ_i
//! ```
//!
//! (the Δ form: put U_i = U_{i−1} + 1 − gt over a common denominator and use i − 1 = H_{i−1} +
//! M_{i−1}). For labels in {0, 1} every term of the numerator and the denominator is
//! non-negative, so Δ is formed without cancellation; it is used wherever U_{i−1}·U_i ≠ 0, and the
//! difference J_i − J_{i−1} otherwise (labels other than 0 and 1, which no anchor checks). The
//! weights Δ are functions of the labels only: no gradient flows through them.
//!
//! φ is relu for the hinge errors e = 1 − x·s with s = 2gt − 1 (∂e/∂x = −s), the identity for
//! the softmax errors e = |fg − p| (∂e/∂p = sign(p − fg)). The kinks take PyTorch's backward:
//! relu'(0) = 0 (its backward passes the gradient only where e > 0; a NaN passes), sign(0) = 0.
//!
//! **Ties.** The forward does not depend on how equal errors are ordered. Swapping two adjacent
//! elements of equal error e changes only their two terms, φ(e)·(Δ_i + Δ_{i+1}) =
//! φ(e)·(J_{i+1} − J_{i−1}), and J_{i+1}, J_{i−1} depend on the sets of the first i + 1 and i − 1
//! elements, not on the order within them (H and M are sums); any order of a run of equal errors
//! is reached by adjacent swaps. The gradient does depend on it: each element gets the Δ of its
//! rank, and at a tie the extension is not differentiable (any such assignment is a
//! subgradient). The oracle takes the **stable** descending order, equal errors in their position
//! order within the group, which is `torch.sort(…, descending=True, stable=True)` and the order
//! the reference documents. The anchors call `torch.sort(errors, descending=True)` without
//! `stable`: on CPU that is `std::sort` (an introsort, stable in effect only for n ≤ 16, where it
//! is an insertion sort) or, in builds with x86-simd-sort for float32/float64, a vectorised
//! quicksort whose order of equal keys is unspecified. So at exact ties the anchors' gradient is
//! the oracle's only up to that order, and the fixtures keep errors apart.
//!
//! Away from ties the oracle's gradient is the derivative, because errors are ordered by their
//! true values, also where they differ beyond f64's precision (NaN first, as torch's descending
//! comparator puts it): hinge errors by their margins x·s, which are exact at the working
//! precision where 1 − x·s need not be (x = 10⁻³⁰⁰); softmax errors up to 1/2 by themselves and
//! above 1/2 by their complements (q for an error p, p for an error q), because an error
//! 1 − e^−300 of a confident wrong class is not told from 1 at 256 bits but its complement is
//! known to 2⁻²⁵⁶ relative. The one limit left: two softmax errors within ~2⁻²⁵⁰ relative of
//! each other (both small, or both complements small) may be tied or misordered. With two classes that
//! takes logit gaps a few f64 ulps apart at magnitudes below ~2⁻²⁰⁰; with more, sums of
//! exponentials that coincide to ~250 bits (not met by chance).
//!
//! **Averaging.** kornia's losses are plain means. smp's `mean(values)` helper folds lazily:
//! `acc = v_1; acc += v_k; acc / n` (n > 1), the Python number 0 for no values. A softmax group
//! with no (unignored) positions yields smp's empty `(0, C)` tensor, which absorbs every later
//! value, and which smp cannot add in place to a scalar (an error: `None` here); the number 0
//! counts in n but adds nothing. Where smp returns the number 0 the oracle gives a 0-d 0 and a zero
//! gradient; for the empty tensor, an empty `(0, C)` loss and a zero gradient.
//!
//! **Softmax.** p = softmax(x) over axis 1 as in the cross-entropy module, with q = 1 − p formed
//! from the sum of the other classes, so that |1 − p| of a confident class stays exact. The
//! backward is
//!
//! ```text
//! ∂L/∂x_k = Σ_c G_c·p_c·([c = k] − p_k) = p_k·Σ_{c≠k} (G_k − G_c)·p_c        (G = ∂L/∂p)
//! ```
//!
//! (Σ_c p_c = 1), which is exactly 0 where the G_c are equal and never subtracts p_k·G_k from G_k.

use std::cmp::Ordering;

use ndarray::{ArrayD, Axis};
use serde_json::Value;

use super::real::{sum, Real};
use super::{float_tensor, prediction, sums_of_others, Exact, LossCall};

/// Decreasing order, NaN before every number, ±∞ and equal values equal (a total preorder).
fn decreasing(a: &Real, b: &Real) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) if (b - a).is_positive() => Ordering::Greater,
        (false, false) if (a - b).is_positive() => Ordering::Less,
        (false, false) => Ordering::Equal,
    }
}

/// Hinge errors e = 1 − m in decreasing order, compared through their margins m = x·s (increasing;
/// NaN first): x·s is exact at the working precision, 1 − x·s need not be (x = 10⁻³⁰⁰).
fn by_margin(a: &Real, b: &Real) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => decreasing(b, a),
        _ => decreasing(a, b),
    }
}

/// Softmax errors e in [0, 1], given as (e, 1 − e), in decreasing order: by e up to 1/2 and by
/// 1 − e above it, so that errors near 1 (a confident wrong class), which differ by less than the
/// working precision resolves near 1, are ordered by their accurately known distances to 1.
fn by_error(a: &(Real, Real), b: &(Real, Real)) -> Ordering {
    let high = |key: &(Real, Real)| (&key.0 - &Real::from_f64(0.5)).is_positive();
    match (a.0.is_nan() || b.0.is_nan(), high(a), high(b)) {
        (true, _, _) => decreasing(&a.0, &b.0),
        (false, true, true) => decreasing(&b.1, &a.1),
        (false, false, false) => decreasing(&a.0, &b.0),
        (false, true, false) => Ordering::Less,
        (false, false, true) => Ordering::Greater,
    }
}

/// The Lovász weight Δ of each element (in the elements' own order) for its rank in the stable
/// decreasing order of the errors, given by their sort keys and comparator.
fn weights_by_rank<K>(
    keys: &[K],
    truth: &[Real],
    compare: impl Fn(&K, &K) -> Ordering,
) -> Vec<Real> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    // `sort_by` is stable: equal errors keep their position order.
    order.sort_by(|&a, &b| compare(&keys[a], &keys[b]));
    let one = Real::one();
    let g = sum(truth);
    let mut weights = vec![Real::zero(); keys.len()];
    let (mut hits, mut misses) = (Real::zero(), Real::zero());
    let mut previous: Option<(Real, Real)> = None; // (U_{i−1}, J_{i−1})
    for (rank, &element) in order.iter().enumerate() {
        let gt = &truth[element];
        let hits_before = hits.clone();
        hits = &hits + gt;
        misses = &misses + &(&one - gt);
        let union = &g + &misses;
        let count = Real::from_f64((rank + 1) as f64);
        let jaccard = &count / &union;
        weights[element] = match &previous {
            None => jaccard.clone(),
            Some((union_before, _)) if !union_before.is_zero() && !union.is_zero() => {
                let numerator = (&g - &hits_before) + gt * &Real::from_f64(rank as f64);
                numerator / (union_before * &union)
            }
            Some((_, jaccard_before)) => &jaccard - jaccard_before,
        };
        previous = Some((union, jaccard));
    }
    weights
}

/// A group's scalar loss and its gradient, as (flat index, value) entries to be added up.
type Scored = (Real, Vec<(usize, Real)>);

/// The Lovász hinge of (flat index into `logits`, label) pairs: loss and ∂loss/∂x. No pairs: 0.
fn hinge(logits: &[Real], pairs: &[(usize, f64)]) -> Scored {
    let one = Real::one();
    let signs: Vec<Real> = pairs
        .iter()
        .map(|&(_, label)| Real::from_f64(2.0 * label - 1.0))
        .collect();
    let truth: Vec<Real> = pairs
        .iter()
        .map(|&(_, label)| Real::from_f64(label))
        .collect();
    let margins: Vec<Real> = pairs
        .iter()
        .zip(&signs)
        .map(|(&(index, _), s)| &logits[index] * s)
        .collect();
    let errors: Vec<Real> = margins.iter().map(|m| &one - m).collect();
    let weights = weights_by_rank(&margins, &truth, by_margin);
    let mut terms = Vec::with_capacity(pairs.len());
    let mut grad = Vec::with_capacity(pairs.len());
    for ((((&(index, _), s), m), e), w) in pairs
        .iter()
        .zip(&signs)
        .zip(&margins)
        .zip(&errors)
        .zip(&weights)
    {
        // relu'(e) = 1 where e = 1 − m > 0, i.e. m < 1 (compared exactly), and for NaN.
        let (value, slope) = if m.is_nan() || (&one - m).is_positive() {
            (e.clone(), one.clone())
        } else {
            (Real::zero(), Real::zero())
        };
        terms.push(value * w);
        grad.push((index, -(s * &(slope * w))));
    }
    (sum(&terms), grad)
}

/// The Lovász-softmax term of one class over positions given as (flat index of the class's
/// probability, whether the position's label is the class): errors |fg − p|, loss and ∂loss/∂p.
fn softmax_class(p: &[Real], q: &[Real], positions: &[(usize, bool)]) -> Scored {
    // Each error with its complement: (q, p) where fg = 1, (p, q) where fg = 0.
    let keys: Vec<(Real, Real)> = positions
        .iter()
        .map(|&(index, fg)| {
            let (e, rest) = if fg {
                (&q[index], &p[index])
            } else {
                (&p[index], &q[index])
            };
            (e.clone(), rest.clone())
        })
        .collect();
    let errors: Vec<Real> = keys.iter().map(|(e, _)| e.clone()).collect();
    let truth: Vec<Real> = positions
        .iter()
        .map(|&(_, fg)| Real::from_f64(f64::from(u8::from(fg))))
        .collect();
    let weights = weights_by_rank(&keys, &truth, by_error);
    let terms: Vec<Real> = errors.iter().zip(&weights).map(|(e, w)| e * w).collect();
    let grad = positions
        .iter()
        .zip(&errors)
        .zip(&weights)
        .map(|((&(index, fg), e), w)| {
            // sign(p − fg): +1 for fg = 0 and −1 for fg = 1 where the error is positive.
            let slope = if e.is_nan() {
                Real::Nan
            } else if !e.is_positive() {
                Real::zero()
            } else if fg {
                -&Real::one()
            } else {
                Real::one()
            };
            (index, slope * w)
        })
        .collect();
    (sum(&terms), grad)
}

/// p = softmax(x) and q = 1 − p over axis 1, arrays of x's shape (standard layout).
fn softmax(x: &ArrayD<Real>) -> (ArrayD<Real>, ArrayD<Real>) {
    let mut p = ArrayD::from_elem(x.shape(), Real::zero());
    let mut q = p.clone();
    for ((lane, mut p_lane), mut q_lane) in x
        .lanes(Axis(1))
        .into_iter()
        .zip(p.lanes_mut(Axis(1)))
        .zip(q.lanes_mut(Axis(1)))
    {
        let mut top = 0;
        let mut m = lane[0].clone();
        for (c, value) in lane.iter().enumerate() {
            if value.is_nan() || m.is_nan() {
                m = Real::Nan;
            } else if (value - &m).is_positive() {
                m = value.clone();
                top = c;
            }
        }
        let e: Vec<Real> = lane.iter().map(|value| (value - &m).exp()).collect();
        let others = sums_of_others(&e);
        let z = &e[top] + &others[top];
        for (c, (slot_p, slot_q)) in p_lane.iter_mut().zip(q_lane.iter_mut()).enumerate() {
            *slot_p = &e[c] / &z;
            *slot_q = &others[c] / &z;
        }
    }
    (p, q)
}

/// ∂L/∂x from G = ∂L/∂p through p = softmax(x) over axis 1: p_k·Σ_{c≠k} (G_k − G_c)·p_c.
fn softmax_backward(p: &ArrayD<Real>, grad_p: &ArrayD<Real>) -> ArrayD<Real> {
    let mut out = ArrayD::from_elem(p.shape(), Real::zero());
    for ((p_lane, g_lane), mut out_lane) in p
        .lanes(Axis(1))
        .into_iter()
        .zip(grad_p.lanes(Axis(1)))
        .zip(out.lanes_mut(Axis(1)))
    {
        for (k, slot) in out_lane.iter_mut().enumerate() {
            let terms: Vec<Real> = (0..p_lane.len())
                .filter(|&c| c != k)
                .map(|c| (&g_lane[k] - &g_lane[c]) * &p_lane[c])
                .collect();
            *slot = &p_lane[k] * &sum(&terms);
        }
    }
    out
}

/// The grad_output of a loss of shape `shape` (ones when absent): its single value, or 0 for an
/// empty loss; `None` when its shape differs.
fn upstream(call: &LossCall, shape: &[usize]) -> Option<Real> {
    match &call.grad_output {
        Some(given) if given.shape() != shape => None,
        Some(given) => Some(
            given
                .iter()
                .next()
                .map_or_else(Real::zero, |&g| Real::from_f64(g)),
        ),
        None => Some(Real::one()),
    }
}

/// The gradient of a scalar loss: its entries (flat indices into `shape`) added up and scaled by
/// the grad_output.
fn dense_grad(
    call: &LossCall,
    entries: Vec<(usize, Real)>,
    shape: &[usize],
) -> Option<ArrayD<Real>> {
    let g = upstream(call, &[])?;
    let mut flat = vec![Vec::new(); shape.iter().product()];
    for (index, value) in entries {
        flat.get_mut(index)?.push(value);
    }
    let flat = flat.iter().map(|values| sum(values) * &g).collect();
    ArrayD::from_shape_vec(shape, flat).ok()
}

/// The labels of a tensor argument, as numbers in row-major order.
fn label_values(call: &LossCall, name: &str) -> Option<Vec<f64>> {
    Some(call.tensors.get(name)?.to_f64().iter().copied().collect())
}

/// `kornia.losses.lovasz_hinge_loss(pred, target)`: pred `(B, 1, H, W)` logits, target
/// `(B, H, W)` labels; one hinge group per image over its H·W pixels,
/// loss = (1/B)·Σ_b hinge_b, ∂loss/∂x = (1/B)·∂hinge_b/∂x.
pub(super) fn kornia_hinge(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let x = prediction(call, "pred", at)?;
    let labels = label_values(call, "target")?;
    let &[batch, 1, height, width] = x.shape() else {
        return None;
    };
    let target_shape = call.tensors.get("target")?.shape();
    if target_shape != [batch, height, width] || x.is_empty() {
        return None;
    }
    let logits: Vec<Real> = x.iter().cloned().collect();
    let spatial = height * width;
    let groups: Vec<Scored> = (0..batch)
        .map(|image| {
            let pairs: Vec<(usize, f64)> = (image * spatial..(image + 1) * spatial)
                .map(|index| (index, labels[index]))
                .collect();
            hinge(&logits, &pairs)
        })
        .collect();
    let (loss, grad) = plain_mean(groups);
    Some(Exact {
        loss: ArrayD::from_elem(vec![], loss),
        grad_input: dense_grad(call, grad, x.shape())?,
    })
}

/// Σ_k v_k / n over scored groups (n ≥ 1).
fn plain_mean(groups: Vec<Scored>) -> Scored {
    let count = Real::from_f64(groups.len() as f64);
    let losses: Vec<Real> = groups.iter().map(|(loss, _)| loss.clone()).collect();
    let grad = groups
        .into_iter()
        .flat_map(|(_, grad)| grad)
        .map(|(index, value)| (index, value / &count))
        .collect();
    (sum(&losses) / &count, grad)
}

/// kornia's class weights: a `(C,)` weight as it is; a `(C, 1, …)` one (which kornia broadcasts
/// into a grid whose mean is mean_c(l_c)·mean(w)) as mean(w) for every class; ones when absent.
fn kornia_weights(call: &LossCall, classes: usize) -> Option<Vec<Real>> {
    let Some(tensor) = call.tensors.get("weight") else {
        return Some(vec![Real::one(); classes]);
    };
    let values: Vec<Real> = float_tensor(call, "weight")?
        .iter()
        .map(|&w| Real::from_f64(w))
        .collect();
    if tensor.shape().first() != Some(&classes) || values.len() != classes {
        return None;
    }
    Some(if tensor.shape().len() == 1 {
        values
    } else {
        vec![sum(&values) / Real::from_f64(classes as f64); classes]
    })
}

/// `kornia.losses.lovasz_softmax_loss(pred, target, weight)`: pred `(B, C, H, W)` logits (C ≥ 2),
/// target `(B', H, W)` labels (truncated to integers, each in [0, C)) with B' = B or B = 1 (one
/// pred image for every target image); p = softmax(pred) over C. Over every class:
///
/// ```text
/// loss = (1/C)·Σ_c w_c·(1/B')·Σ_b l_{b,c},    l_{b,c} = the extension of |fg − p_{b,c}| over H·W
/// ```
pub(super) fn kornia_softmax(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let x = prediction(call, "pred", at)?;
    let &[batch, classes, height, width] = x.shape() else {
        return None;
    };
    let &[targets, target_height, target_width] = call.tensors.get("target")?.shape() else {
        return None;
    };
    if classes < 2
        || (batch != targets && batch != 1)
        || (height, width) != (target_height, target_width)
        || x.is_empty()
        || targets == 0
    {
        return None;
    }
    let weights = kornia_weights(call, classes)?;
    let labels = label_values(call, "target")?
        .into_iter()
        .map(|label| {
            let class = label.trunc();
            (class >= 0.0 && class < classes as f64).then_some(class as usize)
        })
        .collect::<Option<Vec<usize>>>()?;
    let (p, q) = softmax(&x);
    let (p_flat, q_flat) = (p.as_slice()?, q.as_slice()?);
    let spatial = height * width;
    let scale = Real::from_f64((classes * targets) as f64);
    let mut losses = Vec::new();
    let mut grad_p = Vec::new();
    for image in 0..targets {
        let pred_image = if batch == 1 { 0 } else { image };
        for (class, w) in weights.iter().enumerate() {
            let positions: Vec<(usize, bool)> = (0..spatial)
                .map(|s| {
                    let index = (pred_image * classes + class) * spatial + s;
                    (index, labels[image * spatial + s] == class)
                })
                .collect();
            let (loss, grad) = softmax_class(p_flat, q_flat, &positions);
            losses.push(w * &loss / &scale);
            grad_p.extend(
                grad.into_iter()
                    .map(|(index, value)| (index, w * &value / &scale)),
            );
        }
    }
    let grad_p = dense_grad(call, grad_p, x.shape())?;
    Some(Exact {
        loss: ArrayD::from_elem(vec![], sum(&losses)),
        grad_input: softmax_backward(&p, &grad_p),
    })
}

/// What one smp group gives.
enum SmpValue {
    /// A 0-d loss and its gradient entries.
    Loss(Scored),
    /// The empty `(0, C)` tensor of a softmax group without positions.
    Empty,
    /// The Python number 0 of a mean over nothing.
    Nothing,
}

/// smp's `mean` of the groups' values, in order; `None` where smp fails (an empty tensor added in
/// place to a scalar).
fn smp_mean(values: Vec<SmpValue>) -> Option<SmpValue> {
    let count = values.len();
    let mut acc: Option<SmpValue> = None;
    for value in values {
        acc = Some(match (acc, value) {
            (None | Some(SmpValue::Nothing), value) => value,
            (Some(SmpValue::Empty), _) => SmpValue::Empty,
            (Some(SmpValue::Loss(_)), SmpValue::Empty) => return None,
            (Some(SmpValue::Loss(scored)), SmpValue::Nothing) => SmpValue::Loss(scored),
            (Some(SmpValue::Loss((loss, mut grad))), SmpValue::Loss((more, more_grad))) => {
                grad.extend(more_grad);
                SmpValue::Loss((loss + more, grad))
            }
        });
    }
    Some(match acc {
        None => SmpValue::Nothing,
        Some(SmpValue::Loss((loss, grad))) if count > 1 => {
            let n = Real::from_f64(count as f64);
            let grad = grad.into_iter().map(|(i, v)| (i, v / &n)).collect();
            SmpValue::Loss((loss / &n, grad))
        }
        Some(value) => value,
    })
}

/// The ranges of the flattened y_pred and y_true that smp scores as groups: the whole batch, or
/// with `per_image` one per image of `zip(y_pred, y_true)` (the shorter batch decides).
fn smp_groups(
    pred_shape: &[usize],
    true_shape: &[usize],
    per_image: bool,
) -> Option<Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>> {
    let (pred_len, true_len) = (
        pred_shape.iter().product::<usize>(),
        true_shape.iter().product::<usize>(),
    );
    if !per_image {
        return Some(vec![(0..pred_len, 0..true_len)]);
    }
    let (&pred_batch, &true_batch) = (pred_shape.first()?, true_shape.first()?);
    let pred_image = pred_len.checked_div(pred_batch).unwrap_or(0);
    let true_image = true_len.checked_div(true_batch).unwrap_or(0);
    Some(
        (0..pred_batch.min(true_batch))
            .map(|n| {
                (
                    n * pred_image..(n + 1) * pred_image,
                    n * true_image..(n + 1) * true_image,
                )
            })
            .collect(),
    )
}

/// `smp.losses.LovaszLoss(mode, per_image=False, ignore_index=None, from_logits=True)(y_pred,
/// y_true)`; `from_logits` is not read by smp.
///
/// * binary, multilabel: each group is one hinge over its elements of y_pred and y_true
///   flattened (every channel together), labels equal to `ignore_index` dropped; the counts must
///   agree, except that without `ignore_index` a group without labels gives 0.
/// * multiclass: p = softmax(y_pred) over axis 1 (a 3-D y_pred is one class); each group is the
///   mean over the classes present in its unignored labels of the extension of |fg − p| over its
///   unignored positions. A group whose positions are all ignored, or that has none, gives the
///   empty `(0, C)` tensor; with one class, a label 0 is an error in smp and no label 0 gives the
///   number 0.
///
/// The groups are folded with smp's `mean` (see the module's doc).
pub(super) fn smp_lovasz(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let x = prediction(call, "y_pred", at)?;
    let labels = label_values(call, "y_true")?;
    let true_shape = call.tensors.get("y_true")?.shape();
    let mode = call.params.get("mode")?.as_str()?;
    let per_image = match call.params.get("per_image") {
        None => false,
        Some(value) => value.as_bool()?,
    };
    let ignore_index = match call.params.get("ignore_index") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_i64()? as f64),
    };
    let kept = |label: f64| ignore_index != Some(label);
    let groups = smp_groups(x.shape(), true_shape, per_image)?;
    let shape = x.shape().to_vec();

    let (value, grad_of_p) = match mode {
        "binary" | "multilabel" => {
            let logits: Vec<Real> = x.iter().cloned().collect();
            let mut values = Vec::with_capacity(groups.len());
            for (predictions, truths) in groups {
                let group_labels = &labels[truths];
                if predictions.len() != group_labels.len()
                    && (ignore_index.is_some() || !group_labels.is_empty())
                {
                    return None;
                }
                let pairs: Vec<(usize, f64)> = predictions
                    .zip(group_labels.iter().copied())
                    .filter(|&(_, label)| kept(label))
                    .collect();
                values.push(SmpValue::Loss(hinge(&logits, &pairs)));
            }
            (smp_mean(values)?, None)
        }
        "multiclass" => {
            if shape.len() < 2 {
                return None;
            }
            let (classes, spatial) = match shape.len() {
                3 => (1, 1),
                _ => (shape[1], shape[2..].iter().product::<usize>()),
            };
            if classes == 0 {
                return None;
            }
            let softmaxed = (classes > 1).then(|| softmax(&x));
            let mut values = Vec::with_capacity(groups.len());
            for (predictions, truths) in groups {
                let group_labels = &labels[truths];
                let rows = predictions.len() / classes;
                if ignore_index.is_some() && rows != group_labels.len() {
                    return None;
                }
                let mut unignored = group_labels.iter().copied().filter(|&l| kept(l));
                let Some((p, q)) = &softmaxed else {
                    if unignored.any(|label| label == 0.0) {
                        return None;
                    }
                    values.push(SmpValue::Nothing);
                    continue;
                };
                if (ignore_index.is_some() && unignored.next().is_none()) || rows == 0 {
                    values.push(SmpValue::Empty);
                    continue;
                }
                if rows != group_labels.len() {
                    return None;
                }
                let positions: Vec<(usize, f64)> = group_labels
                    .iter()
                    .enumerate()
                    .filter(|&(_, &label)| kept(label))
                    .map(|(row, &label)| {
                        let image = row / spatial;
                        (
                            predictions.start + image * classes * spatial + row % spatial,
                            label,
                        )
                    })
                    .collect();
                let (p_flat, q_flat) = (p.as_slice()?, q.as_slice()?);
                let class_values: Vec<SmpValue> = (0..classes)
                    .filter(|&class| positions.iter().any(|&(_, label)| label == class as f64))
                    .map(|class| {
                        let members: Vec<(usize, bool)> = positions
                            .iter()
                            .map(|&(base, label)| (base + class * spatial, label == class as f64))
                            .collect();
                        SmpValue::Loss(softmax_class(p_flat, q_flat, &members))
                    })
                    .collect();
                values.push(smp_mean(class_values)?);
            }
            (smp_mean(values)?, softmaxed)
        }
        _ => return None,
    };

    let zero_grad = || ArrayD::from_elem(shape.as_slice(), Real::zero());
    match value {
        SmpValue::Loss((loss, entries)) => {
            let grad = dense_grad(call, entries, &shape)?;
            let grad_input = match grad_of_p {
                Some((p, _)) => softmax_backward(&p, &grad),
                None => grad,
            };
            Some(Exact {
                loss: ArrayD::from_elem(vec![], loss),
                grad_input,
            })
        }
        SmpValue::Empty => {
            let classes = if shape.len() == 3 { 1 } else { shape[1] };
            upstream(call, &[0, classes])?;
            Some(Exact {
                loss: ArrayD::from_elem(vec![0, classes], Real::zero()),
                grad_input: zero_grad(),
            })
        }
        SmpValue::Nothing => {
            upstream(call, &[])?;
            Some(Exact {
                loss: ArrayD::from_elem(vec![], Real::zero()),
                grad_input: zero_grad(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reals(values: &[f64]) -> Vec<Real> {
        values.iter().map(|&v| Real::from_f64(v)).collect()
    }

    #[test]
    fn weights_are_the_jaccard_increments() {
        // Errors already decreasing, gt = [1, 0, 1]: J = [1/2, 2/3, 1].
        let weights = weights_by_rank(
            &reals(&[3.0, 2.0, 1.0]),
            &reals(&[1.0, 0.0, 1.0]),
            decreasing,
        );
        let expected = [0.5, 1.0 / 6.0, 1.0 / 3.0];
        for (got, want) in weights.iter().zip(expected) {
            assert_eq!(got.to_f64(), want);
        }
        // No positives: the largest error takes weight 1, the rest exactly 0.
        let weights = weights_by_rank(&reals(&[0.2, 0.7, 0.1]), &reals(&[0.0; 3]), decreasing);
        let got: Vec<f64> = weights.iter().map(Real::to_f64).collect();
        assert_eq!(got, [0.0, 1.0, 0.0]);
    }

    #[test]
    fn ties_keep_position_order_and_leave_the_loss_unchanged() {
        let truth = reals(&[0.0, 1.0, 0.0, 1.0]);
        let tied = weights_by_rank(&reals(&[0.5, 0.5, 0.5, 0.1]), &truth, decreasing);
        // Position order among the tied: ranks 1, 2, 3 go to elements 0, 1, 2.
        let in_order = weights_by_rank(&reals(&[0.7, 0.6, 0.5, 0.1]), &truth, decreasing);
        assert_eq!(tied, in_order);
        // Any order of the tied elements gives the same loss.
        let loss = |errors: &[f64], weights: &[Real]| {
            sum(&reals(errors)
                .iter()
                .zip(weights)
                .map(|(e, w)| e * w)
                .collect::<Vec<_>>())
        };
        let reordered = weights_by_rank(&reals(&[0.6, 0.7, 0.5, 0.1]), &truth, decreasing);
        assert_ne!(tied, reordered);
        let errors = [0.5, 0.5, 0.5, 0.1];
        assert_eq!(
            loss(&errors, &tied).to_f64(),
            loss(&errors, &reordered).to_f64()
        );
    }

    #[test]
    fn errors_are_ordered_beyond_what_the_working_precision_resolves_near_1() {
        // Hinge errors 1 + 10⁻³⁰⁰ and 1 + 2·10⁻³⁰⁰ (labels 0) both round to 1 at 256 bits; the
        // margins order them: the second is larger and takes weight 1, the first 0.
        let logits = reals(&[1e-300, 2e-300]);
        let (_, grad) = hinge(&logits, &[(0, 0.0), (1, 0.0)]);
        let got: Vec<f64> = grad.iter().map(|(_, g)| g.to_f64()).collect();
        assert_eq!(got, [0.0, 1.0]);
        // Softmax errors 1 − ~e⁻³⁰⁰ and 1 − ~e⁻³⁰¹ of an absent class: the second is larger.
        let x = ArrayD::from_shape_vec(vec![2, 2], reals(&[300.0, 0.0, 301.0, 0.0])).unwrap();
        let (p, q) = softmax(&x);
        let (p, q) = (p.as_slice().unwrap(), q.as_slice().unwrap());
        let (_, grad) = softmax_class(p, q, &[(0, false), (2, false)]);
        let got: Vec<f64> = grad.iter().map(|(_, g)| g.to_f64()).collect();
        assert_eq!(got, [0.0, 1.0]);
    }
}
