//! The values of a generated case: a fixture case (the template) tells each tensor's kind —
//! its dtype, whether it follows the prediction's shape, the range and kind of its values — and a
//! recipe gives the new shape, the label scenario and the seed.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};

use super::recipe::{Labels, Recipe, ValueStyle};
use crate::catalog;
use crate::fixtures::Case;
use crate::tensor::Tensor;

/// A counter-free splitmix64 stream: every value of a case comes from its seed alone.
pub(crate) struct Stream(u64);

impl Stream {
    /// The stream of `seed`.
    pub(crate) fn new(seed: u64) -> Stream {
        Stream(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn bits(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.bits() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) (0 when n is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.bits() % n as u64) as usize
        }
    }
}

/// The class axis of a prediction of this rank (1 from `(N, C)` on).
const CLASS_AXIS: usize = 1;

/// How a template tensor's shape relates to the template prediction's `(N, C, spatial…)`.
enum Follows {
    /// Axis by axis, each the prediction's size or 1.
    Prediction,
    /// The prediction without its class axis (a class-index map), axis by axis.
    Positions,
    /// Neither: a per-class or broadcast tensor, kept as it is (or regrown to new classes).
    Nothing,
}

/// How `shape` follows `prediction` (every non-class axis of a template prediction is > 1, so
/// an axis equal to the prediction's is the prediction's).
fn follows(shape: &[usize], prediction: &[usize]) -> Follows {
    let fits = |own: &[usize], theirs: &[usize]| {
        own.len() == theirs.len()
            && own.iter().zip(theirs).all(|(&a, &b)| a == b || a == 1)
            && own.iter().zip(theirs).any(|(&a, &b)| a == b && b > 1)
    };
    let positions: Vec<usize> = without_classes(prediction);
    if fits(shape, prediction) {
        Follows::Prediction
    } else if fits(shape, &positions) {
        Follows::Positions
    } else {
        Follows::Nothing
    }
}

fn without_classes(shape: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter(|&(axis, _)| axis != CLASS_AXIS)
        .map(|(_, &size)| size)
        .collect()
}

/// `shape` mapped from the template prediction's sizes onto the new ones, axis by axis.
fn mapped(shape: &[usize], old: &[usize], new: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .zip(old.iter().zip(new))
        .map(|(&own, (&old, &new))| if own == old { new } else { own })
        .collect()
}

/// The kind of values a template tensor holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Class indices 0..classes, and `ignore` where the template has a value outside them.
    Labels { classes: usize, ignore: Option<f64> },
    /// One-hot along the class axis.
    OneHot,
    /// 0 or 1.
    Binary,
    /// Rows along the class axis that sum to 1.
    Distribution { lo: f64, hi: f64 },
    /// Any value in [lo, hi].
    Range { lo: f64, hi: f64 },
}

/// The classes of a prediction with `classes` channels (a single channel is binary: 0 and 1).
fn label_count(classes: usize) -> usize {
    classes.max(2)
}

/// What the template's `values` are, for a tensor laid out as `follows` a prediction with
/// `classes` channels.
fn kind_of(values: &ArrayD<f64>, follows: &Follows, integer: bool, classes: usize) -> Kind {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = finite_bounds(values).unwrap_or((0.0, 1.0));
    let whole = finite.iter().all(|v| v.fract() == 0.0);
    let count = label_count(classes);
    let labels = || {
        let outside = finite
            .iter()
            .copied()
            .find(|&v| v < 0.0 || v >= count as f64);
        Kind::Labels {
            classes: count,
            ignore: outside,
        }
    };
    let binary = finite.iter().all(|&v| v == 0.0 || v == 1.0);
    let one_channel = values.shape().get(CLASS_AXIS) == Some(&1);
    match follows {
        Follows::Positions => labels(),
        Follows::Prediction if one_channel && whole => labels(),
        Follows::Prediction if classes > 1 && binary && rows_sum_to_one(values, 1e-12) => {
            Kind::OneHot
        }
        _ if binary => Kind::Binary,
        _ if integer => labels(),
        Follows::Prediction if classes > 1 && lo >= 0.0 && rows_sum_to_one(values, 1e-5) => {
            Kind::Distribution { lo, hi }
        }
        _ => Kind::Range { lo, hi },
    }
}

/// Whether every lane along the class axis sums to 1 (within `slack`).
fn rows_sum_to_one(values: &ArrayD<f64>, slack: f64) -> bool {
    values.ndim() > CLASS_AXIS
        && values.shape()[CLASS_AXIS] > 1
        && values
            .lanes(ndarray::Axis(CLASS_AXIS))
            .into_iter()
            .all(|lane| (lane.sum() - 1.0).abs() <= slack)
}

/// A label map over `positions` (N, spatial…) under the recipe's scenario: `classes` labels,
/// `ignore` where the scenario ignores a position and the template has an ignore value.
fn label_map(
    positions: &[usize],
    classes: usize,
    ignore: Option<f64>,
    labels: Labels,
    stream: &mut Stream,
) -> ArrayD<f64> {
    let spatial = &positions[1.min(positions.len())..];
    let tile = if spatial.len() >= 3 { 16 } else { 32 };
    let tiles: Vec<usize> = spatial.iter().map(|&size| size.div_ceil(tile)).collect();
    let tile_count: usize = tiles.iter().product::<usize>().max(1);
    let images = positions.first().copied().unwrap_or(1);
    let draw = |stream: &mut Stream| -> usize {
        match labels {
            Labels::Uniform | Labels::Regions | Labels::Ignored => stream.below(classes),
            Labels::Imbalanced => {
                if stream.unit() < 0.9 {
                    0
                } else {
                    stream.below(classes)
                }
            }
            Labels::FewClasses => stream.below(classes.min(3)),
        }
    };
    let tile_labels: Vec<usize> = (0..images * tile_count).map(|_| draw(stream)).collect();
    let per_image: usize = spatial.iter().product();
    let mut values = Vec::with_capacity(images * per_image);
    // The position's spatial coordinates, advanced as an odometer.
    let mut coords = vec![0; spatial.len()];
    for flat in 0..images * per_image {
        let n = flat / per_image.max(1);
        let label = match labels {
            Labels::Regions => {
                let tile_index = coords
                    .iter()
                    .zip(&tiles)
                    .fold(0, |index, (&c, &count)| index * count + c / tile);
                let edge = coords
                    .iter()
                    .zip(spatial)
                    .any(|(&c, &size)| size > 8 && (c % tile < 2 || c + 2 >= size));
                match ignore {
                    Some(ignore) if edge => ignore,
                    _ => tile_labels[n * tile_count + tile_index] as f64,
                }
            }
            Labels::Ignored => ignore.unwrap_or_else(|| draw(stream) as f64),
            _ => match ignore {
                Some(ignore) if stream.unit() < 0.1 => ignore,
                _ => draw(stream) as f64,
            },
        };
        values.push(label);
        for (c, &size) in coords.iter_mut().zip(spatial).rev() {
            *c += 1;
            if *c < size {
                break;
            }
            *c = 0;
        }
    }
    ArrayD::from_shape_vec(IxDyn(positions), values)
        .unwrap_or_else(|_| ArrayD::zeros(IxDyn(positions)))
}

/// A prediction value in [lo, hi] in the recipe's style.
fn range_value(lo: f64, hi: f64, style: ValueStyle, stream: &mut Stream) -> f64 {
    let uniform = lo + (hi - lo) * stream.unit();
    match style {
        ValueStyle::Uniform => uniform,
        ValueStyle::Edges => match stream.below(8) {
            0 => lo,
            1 => hi,
            2 if lo <= 0.0 && hi >= 0.0 => 0.0,
            _ => uniform,
        },
        ValueStyle::Coarse => {
            let steps = 4.0;
            lo + ((uniform - lo) / (hi - lo).max(f64::MIN_POSITIVE) * steps).round() / steps
                * (hi - lo)
        }
    }
}

/// The values of a tensor of `kind` and `shape`.
fn values_of(kind: Kind, shape: &[usize], recipe: &Recipe, stream: &mut Stream) -> ArrayD<f64> {
    match kind {
        Kind::Labels { classes, ignore } => {
            if shape.len() > CLASS_AXIS && shape[CLASS_AXIS] == 1 {
                let positions = without_classes(shape);
                label_map(&positions, classes, ignore, recipe.labels, stream)
                    .into_shape_with_order(IxDyn(shape))
                    .unwrap_or_else(|_| ArrayD::zeros(IxDyn(shape)))
            } else {
                label_map(shape, classes, ignore, recipe.labels, stream)
            }
        }
        Kind::OneHot => {
            let positions = without_classes(shape);
            let classes = shape[CLASS_AXIS];
            let map = label_map(&positions, classes, None, recipe.labels, stream);
            let per_image: usize = shape[CLASS_AXIS + 1..].iter().product();
            let mut values = ArrayD::zeros(IxDyn(shape));
            if let Some(flat) = values.as_slice_mut() {
                for (index, &label) in map.iter().enumerate() {
                    let (n, s) = (index / per_image, index % per_image);
                    flat[(n * classes + label as usize) * per_image + s] = 1.0;
                }
            }
            values
        }
        Kind::Binary => {
            let rate = match recipe.labels {
                Labels::Imbalanced => 0.02,
                Labels::FewClasses | Labels::Ignored => 0.0,
                Labels::Regions => 0.3,
                Labels::Uniform => 0.5,
            };
            ArrayD::from_shape_simple_fn(IxDyn(shape), || f64::from(u8::from(stream.unit() < rate)))
        }
        Kind::Distribution { lo, hi } => {
            let mut values = ArrayD::from_shape_simple_fn(IxDyn(shape), || {
                range_value(lo.max(1e-3), hi.max(1e-3), recipe.values, stream)
            });
            for mut lane in values.lanes_mut(ndarray::Axis(CLASS_AXIS)) {
                let total = lane.sum();
                lane.mapv_inplace(|v| v / total);
            }
            values
        }
        Kind::Range { lo, hi } => ArrayD::from_shape_simple_fn(IxDyn(shape), || {
            range_value(lo, hi, recipe.values, stream)
        }),
    }
}

/// `values` in the dtype of `like`.
fn in_dtype_of(like: &Tensor, values: ArrayD<f64>) -> Tensor {
    match like {
        Tensor::Float64(_) => Tensor::Float64(values),
        Tensor::Float32(_) => Tensor::Float32(values.mapv(|v| v as f32)),
        Tensor::Int64(_) => Tensor::Int64(values.mapv(|v| v as i64)),
        Tensor::Int32(_) => Tensor::Int32(values.mapv(|v| v as i32)),
        Tensor::Int16(_) => Tensor::Int16(values.mapv(|v| v as i16)),
        Tensor::UInt8(_) => Tensor::UInt8(values.mapv(|v| v as u8)),
        Tensor::Bool(_) => Tensor::Bool(values.mapv(|v| v != 0.0)),
    }
}

/// Whether a template case can seed a generated case of prediction shape `shape`: a loss the
/// catalog knows, a prediction of the same rank (at least two axes) whose non-class axes of size
/// 1 stay 1 (so a tensor's axes say which of the prediction's they are), and finite values
/// throughout (non-finite inputs are edge cases of their own, kept in the fixtures).
pub(crate) fn usable_template(case: &Case, new_shape: &[usize]) -> bool {
    let Ok(def) = catalog::find(&case.loss) else {
        return false;
    };
    let Some(prediction) = case.tensors.get(def.prediction()) else {
        return false;
    };
    let shape = prediction.shape();
    shape.len() >= 2
        && shape.len() == new_shape.len()
        && shape
            .iter()
            .zip(new_shape)
            .enumerate()
            .all(|(axis, (&size, &new))| axis == CLASS_AXIS || size > 1 || new == 1)
        && case
            .tensors
            .values()
            .all(|tensor| tensor.to_f64().iter().all(|v| v.is_finite()))
}

/// The template's tensors regrown for the recipe: each tensor that follows the prediction takes
/// the new shape and fresh values of its kind; per-class tensors of the template's class count
/// are redrawn for the new one; the rest are kept.
pub(crate) fn tensors(template: &Case, recipe: &Recipe) -> BTreeMap<String, Tensor> {
    let mut stream = Stream::new(recipe.seed);
    let def = catalog::find(&template.loss).ok();
    let prediction_name = def.map_or("input", |def| def.prediction());
    let old: Vec<usize> = template
        .tensors
        .get(prediction_name)
        .map(|tensor| tensor.shape().to_vec())
        .unwrap_or_default();
    let new = &recipe.shape;
    let old_classes = old.get(CLASS_AXIS).copied().unwrap_or(1);
    let new_classes = new.get(CLASS_AXIS).copied().unwrap_or(1);
    let mut out = BTreeMap::new();
    for (name, tensor) in &template.tensors {
        let values = tensor.to_f64();
        let integer = !tensor.dtype().is_floating();
        let relation = follows(tensor.shape(), &old);
        let grown = match relation {
            Follows::Prediction => Some(mapped(tensor.shape(), &old, new)),
            Follows::Positions => Some(mapped(
                tensor.shape(),
                &without_classes(&old),
                &without_classes(new),
            )),
            Follows::Nothing if tensor.shape() == [old_classes] && old_classes != new_classes => {
                Some(vec![new_classes])
            }
            Follows::Nothing => None,
        };
        let Some(shape) = grown else {
            out.insert(name.clone(), tensor.clone());
            continue;
        };
        let kind = if name == prediction_name
            || relation_is_classes(&relation, tensor.shape(), old_classes)
        {
            let (lo, hi) = finite_range(&values);
            Kind::Range { lo, hi }
        } else {
            kind_of(&values, &relation, integer, old_classes)
        };
        let kind = match kind {
            Kind::Labels { ignore, .. } => {
                let classes = label_count(new_classes);
                let outside = |value: f64| value < 0.0 || value >= classes as f64;
                Kind::Labels {
                    classes,
                    ignore: ignore_index(recipe, template)
                        .filter(|&v| outside(v))
                        .or(ignore),
                }
            }
            other => other,
        };
        out.insert(
            name.clone(),
            in_dtype_of(tensor, values_of(kind, &shape, recipe, &mut stream)),
        );
    }
    out
}

/// The call's `ignore_index` (the recipe's, else the template's), when it is an integer.
fn ignore_index(recipe: &Recipe, template: &Case) -> Option<f64> {
    recipe
        .params
        .get("ignore_index")
        .or_else(|| template.params.get("ignore_index"))
        .and_then(serde_json::Value::as_i64)
        .map(|value| value as f64)
}

/// Whether a tensor kept apart from the prediction is a per-class vector (redrawn in its range).
fn relation_is_classes(relation: &Follows, shape: &[usize], classes: usize) -> bool {
    matches!(relation, Follows::Nothing) && shape == [classes]
}

/// The range of the finite values, widened by 1 each way when they are all equal (0 to 1 when
/// there are none), for drawing new values in it.
fn finite_range(values: &ArrayD<f64>) -> (f64, f64) {
    match finite_bounds(values) {
        Some((lo, hi)) if lo < hi => (lo, hi),
        Some((lo, hi)) => (lo - 1.0, hi + 1.0),
        None => (0.0, 1.0),
    }
}

/// The smallest and largest finite value, if there is one.
fn finite_bounds(values: &ArrayD<f64>) -> Option<(f64, f64)> {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    (lo <= hi).then_some((lo, hi))
}
