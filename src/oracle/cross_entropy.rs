//! `cross_entropy` (class indices and probability targets) and `nll_loss`, exactly.
//!
//! With logits x over C classes at a position, m = max_c x_c, e_c = exp(x_c − m) and
//! Z = Σ_c e_c = 1 + S (S the sum over every class but the arg-max):
//!
//! ```text
//! log p_c = (x_c − m) − ln1p(S)          p_c = e_c / Z          1 − p_k = Σ_{c≠k} e_c / Z
//! ```
//!
//! A loss that is linear in the log-probabilities, l = Σ_c a_c·log p_c, has
//! ∂l/∂x_k = Σ_c a_c·([c = k] − p_k) = a_k·(1 − p_k) − p_k·Σ_{c≠k} a_c,
//! evaluated in that form: 1 − p_k and Σ_{c≠k} a_c come from sums that never add and remove a
//! dominant term, so a confident class does not cancel away the small gradients.

use ndarray::{ArrayD, Axis};

use super::real::{sum, Real};
use super::{
    float_tensor, number, prediction, reduce, reduction, sums_of_others, Exact, LossCall, Reduce,
};

/// PyTorch's default `ignore_index`.
const DEFAULT_IGNORE_INDEX: i64 = -100;

/// The softmax quantities of one position.
pub(super) struct Softmax {
    /// log p_c.
    pub(super) log_p: Vec<Real>,
    /// p_c.
    pub(super) p: Vec<Real>,
    /// 1 − p_c.
    pub(super) q: Vec<Real>,
}

impl Softmax {
    pub(super) fn new(x: &[Real]) -> Softmax {
        let mut arg_max = 0;
        let mut m = x.first().cloned().unwrap_or_else(Real::zero);
        for (c, value) in x.iter().enumerate() {
            if value.is_nan() || m.is_nan() {
                m = Real::Nan;
            } else if (value - &m).is_positive() {
                m = value.clone();
                arg_max = c;
            }
        }
        let shifted: Vec<Real> = x.iter().map(|value| value - &m).collect();
        let e: Vec<Real> = shifted.iter().map(Real::exp).collect();
        let others = sums_of_others(&e);
        let z = &e[arg_max] + &others[arg_max];
        // e at the arg-max is exactly 1 when m is finite: ln Z = ln1p(S) keeps a tiny S.
        let log_z = if e[arg_max] == Real::one() {
            others[arg_max].ln_1p()
        } else {
            z.ln()
        };
        Softmax {
            log_p: shifted.iter().map(|value| value - &log_z).collect(),
            p: e.iter().map(|value| value / &z).collect(),
            q: others.iter().map(|value| value / &z).collect(),
        }
    }

    /// ∂(Σ_c a_c·log p_c)/∂x_k for every k.
    pub(super) fn backward(&self, a: &[Real]) -> Vec<Real> {
        let a_others = sums_of_others(a);
        (0..a.len())
            .map(|k| &a[k] * &self.q[k] - &self.p[k] * &a_others[k])
            .collect()
    }
}

/// The class axis: 0 for an unbatched `(C)` input, else 1.
fn class_axis(rank: usize) -> usize {
    usize::from(rank != 1)
}

/// The input's lanes along the class axis, one per position in row-major order.
pub(super) fn lanes<T: Clone>(values: &ArrayD<T>, axis: usize) -> Vec<Vec<T>> {
    values
        .lanes(Axis(axis))
        .into_iter()
        .map(|lane| lane.to_vec())
        .collect()
}

/// The gradient of the input's shape from each position's lane slope (∂l_n/∂x along the class
/// axis; `None`, a zero lane, for a position that is not read) times the position's upstream.
pub(super) fn scaled_lanes(
    shape: &[usize],
    axis: usize,
    slopes: Vec<Option<Vec<Real>>>,
    upstream: &ArrayD<Real>,
) -> ArrayD<Real> {
    let classes = shape[axis];
    let rows = slopes
        .into_iter()
        .zip(upstream.iter())
        .map(|(slope, u)| match slope {
            Some(slope) => slope.iter().map(|value| value * u).collect(),
            None => vec![Real::zero(); classes],
        })
        .collect();
    from_lanes(shape, axis, rows)
}

/// An array of the input's shape with each position's lane along the class axis set from `rows`.
pub(super) fn from_lanes(shape: &[usize], axis: usize, rows: Vec<Vec<Real>>) -> ArrayD<Real> {
    let mut out = ArrayD::from_elem(shape, Real::zero());
    for (mut lane, row) in out.lanes_mut(Axis(axis)).into_iter().zip(rows) {
        for (slot, value) in lane.iter_mut().zip(row) {
            *slot = value;
        }
    }
    out
}

/// The class weights (ones when absent): C values.
fn class_weights(call: &LossCall, classes: usize) -> Option<Vec<Real>> {
    match call.tensors.get("weight") {
        None => Some(vec![Real::one(); classes]),
        Some(_) => {
            let weight = float_tensor(call, "weight")?;
            (weight.len() == classes).then(|| weight.iter().map(|&w| Real::from_f64(w)).collect())
        }
    }
}

/// A checked class-index call: the input's lanes, the class index (or `None` where ignored) of
/// each position, and the positions' shape.
struct ClassIndices {
    input: ArrayD<Real>,
    axis: usize,
    labels: Vec<Option<usize>>,
    positions: Vec<usize>,
    weights: Vec<Real>,
}

impl ClassIndices {
    /// Σ w_y over the counted (not ignored) positions: the weighted mean's denominator.
    fn counted_weight(&self) -> Real {
        let counted: Vec<Real> = self
            .labels
            .iter()
            .flatten()
            .map(|&y| self.weights[y].clone())
            .collect();
        sum(&counted)
    }
}

fn class_indices(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<ClassIndices> {
    let input = prediction(call, "input", at)?;
    let rank = input.ndim();
    if rank == 0 {
        return None;
    }
    let axis = class_axis(rank);
    let classes = input.shape()[axis];
    let mut positions = input.shape().to_vec();
    positions.remove(axis);
    let target = call.tensors.get("target")?;
    let fits = if rank == 1 {
        target.shape().iter().product::<usize>() == 1 && target.shape().len() <= 1
    } else {
        target.shape() == positions.as_slice()
    };
    if !fits {
        return None;
    }
    let ignore_index = call
        .params
        .get("ignore_index")
        .map_or(Some(DEFAULT_IGNORE_INDEX), |value| value.as_i64())?;
    let labels = target
        .class_indices()?
        .as_standard_layout()
        .iter()
        .map(|&label| {
            if label == ignore_index {
                Some(None)
            } else {
                usize::try_from(label)
                    .ok()
                    .filter(|&c| c < classes)
                    .map(Some)
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Some(ClassIndices {
        weights: class_weights(call, classes)?,
        input,
        axis,
        labels,
        positions,
    })
}

/// `cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)`: a target of
/// the input's shape holds probabilities, any other class indices.
pub(super) fn cross_entropy(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let epsilon = number(call, "label_smoothing", 0.0)?;
    if epsilon > 1.0 {
        return None;
    }
    let epsilon = epsilon.max(0.0);
    let target = call.tensors.get("target")?;
    let input_shape = call.tensors.get("input")?.shape();
    if target.shape() == input_shape && target.dtype().is_floating() {
        probability_targets(call, at, epsilon)
    } else {
        class_index_targets(call, at, epsilon)
    }
}

/// Class indices y_n, weights w (ones when absent), smoothing ε ≥ 0 over C classes, at each
/// position with y_n ≠ ignore_index:
///
/// ```text
/// l_n = (1 − ε)·w_{y_n}·(−log p_{y_n}) + (ε/C)·Σ_c w_c·(−log p_c)     (the sum only when ε > 0)
/// mean = Σ_n l_n / Σ_{n counted} w_{y_n}
/// a_c = ∂l_n/∂log p_c = −(1 − ε)·w_{y_n}·[c = y_n] − (ε/C)·w_c
/// ```
///
/// and l_n = 0, no gradient, at ignored positions (their logits are never read).
fn class_index_targets(call: &LossCall, at: Option<&ArrayD<Real>>, epsilon: f64) -> Option<Exact> {
    let checked = class_indices(call, at)?;
    let reduction = reduction(call, Reduce::Mean)?;
    let classes = checked.weights.len();
    let w = &checked.weights;
    let share = Real::from_f64(epsilon) / Real::from_f64(classes as f64);
    let kept = Real::one() - Real::from_f64(epsilon);
    let rows = lanes(&checked.input, checked.axis);

    let mut per_position = Vec::with_capacity(rows.len());
    let mut slopes = Vec::with_capacity(rows.len());
    for (logits, label) in rows.iter().zip(&checked.labels) {
        let Some(y) = *label else {
            per_position.push(Real::zero());
            slopes.push(None);
            continue;
        };
        let softmax = Softmax::new(logits);
        let mut loss = -(&kept * &w[y] * &softmax.log_p[y]);
        let mut a = vec![Real::zero(); classes];
        if epsilon > 0.0 {
            let smoothing: Vec<Real> = (0..classes).map(|c| &w[c] * &softmax.log_p[c]).collect();
            loss = loss - &share * &sum(&smoothing);
            for (c, slot) in a.iter_mut().enumerate() {
                *slot = -(&share * &w[c]);
            }
        }
        a[y] = &a[y] - &(&kept * &w[y]);
        per_position.push(loss);
        slopes.push(Some(softmax.backward(&a)));
    }
    let denominator = checked.counted_weight();
    let per_position = ArrayD::from_shape_vec(checked.positions, per_position).ok()?;
    let (loss, upstream) = reduce(call, reduction, per_position, &denominator)?;
    Some(Exact {
        loss,
        grad_input: scaled_lanes(checked.input.shape(), checked.axis, slopes, &upstream),
    })
}

/// Probability targets t, weights w, with t'_c = (1 − ε)·t_c + ε/C when ε > 0 (t' = t otherwise):
///
/// ```text
/// l_n = −Σ_c w_c·t'_c·log p_c          mean = Σ_n l_n / (number of positions)
/// a_c = ∂l_n/∂log p_c = −w_c·t'_c
/// ```
fn probability_targets(call: &LossCall, at: Option<&ArrayD<Real>>, epsilon: f64) -> Option<Exact> {
    let input = prediction(call, "input", at)?;
    let target = float_tensor(call, "target")?;
    let rank = input.ndim();
    // PyTorch refuses a class to ignore beside probability targets.
    let ignores_a_class = call
        .params
        .get("ignore_index")
        .and_then(|value| value.as_i64())
        .is_some_and(|index| index >= 0);
    if rank == 0 || ignores_a_class {
        return None;
    }
    let reduction = reduction(call, Reduce::Mean)?;
    let axis = class_axis(rank);
    let classes = input.shape()[axis];
    let w = class_weights(call, classes)?;
    let share = Real::from_f64(epsilon) / Real::from_f64(classes as f64);
    let kept = Real::one() - Real::from_f64(epsilon);
    let mut positions = input.shape().to_vec();
    positions.remove(axis);

    let mut per_position = Vec::new();
    let mut slopes = Vec::new();
    for (logits, targets) in lanes(&input, axis).iter().zip(lanes(&target, axis)) {
        let softmax = Softmax::new(logits);
        let a: Vec<Real> = targets
            .iter()
            .zip(&w)
            .map(|(&t, w_c)| {
                let t = Real::from_f64(t);
                let smoothed = if epsilon > 0.0 {
                    &kept * &t + &share
                } else {
                    t
                };
                -(w_c * &smoothed)
            })
            .collect();
        let terms: Vec<Real> = a.iter().zip(&softmax.log_p).map(|(a, lp)| a * lp).collect();
        per_position.push(sum(&terms));
        slopes.push(softmax.backward(&a));
    }
    let count = Real::from_f64(per_position.len() as f64);
    let per_position = ArrayD::from_shape_vec(positions, per_position).ok()?;
    let (loss, upstream) = reduce(call, reduction, per_position, &count)?;
    let grad_rows = slopes
        .into_iter()
        .zip(upstream.iter())
        .map(|(slope, u)| slope.iter().map(|value| value * u).collect())
        .collect();
    Some(Exact {
        loss,
        grad_input: from_lanes(input.shape(), axis, grad_rows),
    })
}

/// `nll_loss(input, target, weight, ignore_index, reduction)` on log-probabilities lp:
///
/// ```text
/// l_n = −w_{y_n}·lp_{n,y_n} (0 where ignored)     mean = Σ_n l_n / Σ_{n counted} w_{y_n}
/// ∂l_n/∂lp_{n,c} = −w_{y_n}·[c = y_n]
/// ```
pub(super) fn nll_loss(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    let checked = class_indices(call, at)?;
    let reduction = reduction(call, Reduce::Mean)?;
    let classes = checked.weights.len();
    let w = &checked.weights;
    let rows = lanes(&checked.input, checked.axis);
    let per_position: Vec<Real> = rows
        .iter()
        .zip(&checked.labels)
        .map(|(lp, label)| match *label {
            Some(y) => -(&w[y] * &lp[y]),
            None => Real::zero(),
        })
        .collect();
    let denominator = checked.counted_weight();
    let per_position = ArrayD::from_shape_vec(checked.positions, per_position).ok()?;
    let (loss, upstream) = reduce(call, reduction, per_position, &denominator)?;
    let grad_rows = checked
        .labels
        .iter()
        .zip(upstream.iter())
        .map(|(label, u)| {
            let mut row = vec![Real::zero(); classes];
            if let Some(y) = *label {
                row[y] = -(&w[y] * u);
            }
            row
        })
        .collect();
    Some(Exact {
        loss,
        grad_input: from_lanes(checked.input.shape(), checked.axis, grad_rows),
    })
}
