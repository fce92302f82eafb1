//! segmentation_models_pytorch's `FocalLoss`: one sigmoid focal function with geometric p_t,
//! applied to groups of elements (one-vs-rest per class in multiclass mode) and composed per mode.

use ndarray::{ArrayD, Axis, Dimension, IxDyn, Zip};

use super::{grad_output_scalar, to_f32, Element, SigmoidFocal, SoftTarget};
use crate::error::Rejection;
use crate::spec::binary::broadcast_to;
use crate::spec::cross_entropy::float_input;
use crate::spec::smp::{shape_error, SmpMode};
use crate::spec::{compensated_sum, scalar, LossOutput, Reduction, Result};
use crate::tensor::Tensor;

/// smp's focal reductions: mean, sum, batchwise_mean (a sum over the first axis); any other string
/// leaves the loss unreduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmpReduction {
    /// Σ l / n.
    Mean,
    /// Σ l.
    Sum,
    /// Σ over axis 0.
    BatchwiseMean,
    /// No reduction.
    Unreduced,
}

impl SmpReduction {
    /// smp's reading of a reduction string.
    pub fn parse(name: &str) -> SmpReduction {
        match name {
            "mean" => SmpReduction::Mean,
            "sum" => SmpReduction::Sum,
            "batchwise_mean" => SmpReduction::BatchwiseMean,
            _ => SmpReduction::Unreduced,
        }
    }

    /// The reduced values of a group's loss array.
    fn reduce(self, values: &ArrayD<f64>) -> ArrayD<f64> {
        let total = || ArrayD::from_elem(vec![], compensated_sum(values.iter().copied()));
        match self {
            SmpReduction::Mean => total() / values.len() as f64,
            SmpReduction::Sum => total(),
            SmpReduction::BatchwiseMean => {
                values.map_axis(Axis(0), |lane| compensated_sum(lane.iter().copied()))
            }
            SmpReduction::Unreduced => values.clone(),
        }
    }

    /// The upstream gradient on each element of a group of `shape`, from the gradient on its
    /// reduced values.
    fn expand(self, upstream: &ArrayD<f64>, shape: &[usize]) -> ArrayD<f64> {
        let count: usize = shape.iter().product();
        let mut expanded = ArrayD::zeros(shape);
        for (index, value) in expanded.indexed_iter_mut() {
            *value = match self {
                SmpReduction::Mean => scalar(upstream) / count as f64,
                SmpReduction::Sum => scalar(upstream),
                SmpReduction::BatchwiseMean => upstream[&index.slice()[1..]],
                SmpReduction::Unreduced => upstream[&index],
            };
        }
        expanded
    }
}

/// The constructor arguments of `smp.losses.FocalLoss`, with smp's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SmpFocalOptions {
    /// binary / multiclass / multilabel (required).
    pub mode: SmpMode,
    /// α (default none: no weighting).
    pub alpha: Option<f64>,
    /// γ (default 2).
    pub gamma: f64,
    /// Targets equal to this are dropped (default none).
    pub ignore_index: Option<i64>,
    /// Logits (default) or probabilities.
    pub from_logits: bool,
    /// Probabilities are clamped to [eps, 1 − eps] (default 1e-7).
    pub eps: f64,
    /// The reduction of each focal call.
    pub reduction: SmpReduction,
    /// Divide by Σ m (clamped at 1e-6) per focal call.
    pub normalized: bool,
    /// r: the reduced focal loss.
    pub reduced_threshold: Option<f64>,
    /// Per-class weights of the mean over classes (not in binary mode).
    pub class_weights: Option<Vec<f64>>,
}

/// The elements one call of smp's `focal_loss_with_logits` sees: where they are in y_pred, their
/// targets, and the shape of the tensor they form.
struct Group {
    indices: Vec<IxDyn>,
    targets: Vec<f64>,
    shape: Vec<usize>,
}

/// `segmentation_models_pytorch.losses.FocalLoss(mode, ...)(y_pred, y_true)`.
///
/// Every mode calls one sigmoid focal function ([`SoftTarget::Geometric`]: p_t = exp(−BCE)) on
/// groups of elements:
///
/// ```text
/// l_i = α_t·m_i·BCE_i,  m_i = (1 − p_t)^γ  (or ((1 − p_t)/r)^γ, 1 below r)   α_t = α·t + (1 − α)(1 − t)
/// normalized: l_i / max(Σ_group m, 1e-6)
/// reduction per group: mean (Σ/n) | sum | batchwise_mean (Σ over axis 0) | anything else: none
/// ```
///
/// * binary: one group, every element flattened, ignored targets dropped; `none` gives the
///   flattened 1-D tensor of kept elements.
/// * multiclass: **one-vs-rest sigmoid**, not softmax: group c is y_pred[:, c] against [y = c];
///   multilabel: y_pred[:, c] against y_true[:, c]. The reduced groups are stacked (C, …) and
///   averaged — `Σ(stack·w)/Σw` with class_weights (float32, broadcast right-aligned, so they only
///   fit a (C,) stack) — so the result is a scalar even for `none`. With ignore_index a group is
///   1-D (the kept positions). Multilabel with ignore_index fails in smp (a 4-D mask indexes a 3-D
///   target).
/// * from_logits=False: p is clamped to [eps, 1 − eps] (no gradient outside) and turned into
///   log(p/(1 − p)) (binary, multilabel) or log p (multiclass, then fed to the *sigmoid* focal).
/// * All elements ignored: the mean of nothing, NaN. γ < 1 at saturation: NaN gradient.
pub fn loss(
    y_pred: &Tensor,
    y_true: &Tensor,
    options: &SmpFocalOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    if options.mode == SmpMode::Binary && options.class_weights.is_some() {
        return Err(Rejection::UnsupportedOption {
            option: "class_weights".into(),
            context: "with mode=binary".into(),
        });
    }
    let raw = float_input(y_pred)?;
    let (logits, slope) = smp_logits(&raw, options);
    let groups = smp_groups(y_pred, y_true, options)?;
    let focal = SigmoidFocal {
        gamma: options.gamma,
        soft_target: SoftTarget::Geometric {
            reduced_threshold: options.reduced_threshold,
        },
    };
    let alpha = options.alpha.map(|alpha| (alpha, 1.0 - alpha));
    let normalizer = 1e-6;
    // Forward: each group's loss array (normalised) and its normaliser.
    let mut forwards = Vec::new();
    for group in &groups {
        let elements: Vec<Element> = group
            .indices
            .iter()
            .zip(&group.targets)
            .map(|(index, &t)| focal.forward(logits[index], t, alpha, 1.0))
            .collect();
        let norm = if options.normalized {
            compensated_sum(elements.iter().map(|element| element.modulation)).max(normalizer)
        } else {
            1.0
        };
        let losses = elements
            .iter()
            .map(|element| element.loss)
            .collect::<Vec<_>>();
        let values = ArrayD::from_shape_vec(
            group.shape.clone(),
            losses.iter().map(|l| l / norm).collect(),
        )
        .map_err(|_| shape_error(y_pred, y_true))?;
        let modulation_sum = compensated_sum(elements.iter().map(|element| element.modulation));
        forwards.push((values, losses, norm, modulation_sum));
    }
    let reduced: Vec<ArrayD<f64>> = forwards
        .iter()
        .map(|(values, ..)| options.reduction.reduce(values))
        .collect();
    // Compose the groups and find the upstream gradient on each group's reduced values.
    let (loss, group_upstreams) = if options.mode == SmpMode::Binary {
        let upstream = Reduction::None.upstream(grad_output, reduced[0].shape(), 1.0)?;
        (reduced[0].clone(), vec![upstream])
    } else {
        let views: Vec<_> = reduced.iter().map(|values| values.view()).collect();
        let stack = ndarray::stack(Axis(0), &views).map_err(|_| shape_error(y_pred, y_true))?;
        let g = grad_output_scalar(grad_output)?;
        let (weights, total) = match &options.class_weights {
            Some(weights) => {
                let weights: Vec<f64> = weights.iter().copied().map(to_f32).collect();
                let total = to_f32(compensated_sum(weights.iter().copied()));
                let tensor = Tensor::Float64(
                    ArrayD::from_shape_vec(vec![weights.len()], weights)
                        .map_err(|_| shape_error(y_pred, y_true))?,
                );
                (
                    broadcast_to("class_weights", &tensor, stack.shape())?,
                    total,
                )
            }
            None => (ArrayD::ones(stack.shape()), stack.len() as f64),
        };
        let loss = compensated_sum(stack.iter().zip(&weights).map(|(l, w)| l * w)) / total;
        let upstream = weights.mapv(|w| g * w / total);
        let per_group = upstream.outer_iter().map(|view| view.to_owned()).collect();
        (ArrayD::from_elem(vec![], loss), per_group)
    };
    let mut grad_input = ArrayD::zeros(raw.raw_dim());
    for ((group, (_, losses, norm, modulation_sum)), upstream) in
        groups.iter().zip(&forwards).zip(&group_upstreams)
    {
        let element_upstream = options.reduction.expand(upstream, &group.shape);
        let upstream_modulation = if options.normalized && *modulation_sum >= normalizer {
            -compensated_sum(element_upstream.iter().zip(losses).map(|(u, l)| u * l))
                / (norm * norm)
        } else {
            0.0
        };
        for ((index, &t), &u) in group
            .indices
            .iter()
            .zip(&group.targets)
            .zip(&element_upstream)
        {
            if let Some(slope) = slope[index] {
                grad_input[index] +=
                    focal.backward(logits[index], t, alpha, 1.0, u / norm, upstream_modulation)
                        * slope;
            }
        }
    }
    Ok(LossOutput { loss, grad_input })
}

/// The logits smp's focal sees and their derivative with respect to y_pred: y_pred itself, or for
/// probabilities p = clamp(y_pred, eps, 1 − eps) → log(p/(1 − p)) (slope 1/(p(1 − p))) or, in
/// multiclass mode, log p (slope 1/p). Where the clamp is active — everywhere for eps > ½, when
/// torch's clamp gives 1 − eps — the slope is `None`: torch's clamp backward selects 0 there, so
/// not even a NaN from the focal term passes.
fn smp_logits(raw: &ArrayD<f64>, options: &SmpFocalOptions) -> (ArrayD<f64>, ArrayD<Option<f64>>) {
    if options.from_logits {
        return (raw.clone(), ArrayD::from_elem(raw.raw_dim(), Some(1.0)));
    }
    let (low, high) = (options.eps, 1.0 - options.eps);
    let p = raw.mapv(|value| torch_clamp(value, low, high));
    let multiclass = options.mode == SmpMode::Multiclass;
    let slope = Zip::from(raw).and(&p).map_collect(|&value, &p| {
        let inside = value >= low && value <= high;
        inside.then(|| {
            if multiclass {
                1.0 / p
            } else {
                1.0 / (p * (1.0 - p))
            }
        })
    });
    if multiclass {
        (p.mapv(f64::ln), slope)
    } else {
        (p.mapv(|p| (p / (1.0 - p)).ln()), slope)
    }
}

/// `torch.clamp(x, low, high)` = min(max(x, low), high): NaN (in x or a bound) stays NaN, and
/// low > high gives high everywhere.
fn torch_clamp(x: f64, low: f64, high: f64) -> f64 {
    if x.is_nan() || low.is_nan() || high.is_nan() {
        f64::NAN
    } else {
        x.max(low).min(high)
    }
}

/// The groups of one smp focal call per mode (see [`loss`]).
fn smp_groups(y_pred: &Tensor, y_true: &Tensor, options: &SmpFocalOptions) -> Result<Vec<Group>> {
    let pred_shape = y_pred.shape();
    let targets = y_true.to_f64();
    let kept = |label: f64| {
        options
            .ignore_index
            .is_none_or(|ignored| label != ignored as f64)
    };
    match options.mode {
        SmpMode::Binary => {
            if targets.len() != raw_len(pred_shape) {
                return Err(shape_error(y_pred, y_true));
            }
            let flat_pred: Vec<IxDyn> = ndarray::indices(pred_shape).into_iter().collect();
            let (indices, labels): (Vec<IxDyn>, Vec<f64>) = flat_pred
                .into_iter()
                .zip(targets.iter().copied())
                .filter(|(_, label)| kept(*label))
                .unzip();
            let shape = vec![labels.len()];
            Ok(vec![Group {
                indices,
                targets: labels,
                shape,
            }])
        }
        SmpMode::Multiclass | SmpMode::Multilabel => {
            if pred_shape.len() < 2 {
                return Err(Rejection::InputRank {
                    got: pred_shape.len(),
                    min: 2,
                });
            }
            let multilabel = options.mode == SmpMode::Multilabel;
            if multilabel && options.ignore_index.is_some() {
                return Err(Rejection::UnsupportedOption {
                    option: "ignore_index".into(),
                    context: "with mode=multilabel (smp indexes each class's 3-D target with the 4-D mask)".into(),
                });
            }
            let mut position_shape = pred_shape.to_vec();
            position_shape.remove(1);
            let expected: &[usize] = if multilabel {
                pred_shape
            } else {
                &position_shape
            };
            if targets.shape() != expected {
                return Err(shape_error(y_pred, y_true));
            }
            let positions: Vec<IxDyn> = ndarray::indices(position_shape.as_slice())
                .into_iter()
                .collect();
            let groups = (0..pred_shape[1])
                .map(|class| {
                    let mut group = Group {
                        indices: Vec::new(),
                        targets: Vec::new(),
                        shape: Vec::new(),
                    };
                    for position in &positions {
                        let mut index = position.slice().to_vec();
                        index.insert(1, class);
                        let index = IxDyn(&index);
                        let label = if multilabel {
                            targets[&index]
                        } else {
                            targets[position]
                        };
                        if !multilabel && !kept(label) {
                            continue;
                        }
                        let t = if multilabel {
                            label
                        } else {
                            f64::from(u8::from(label == class as f64))
                        };
                        group.indices.push(index);
                        group.targets.push(t);
                    }
                    group.shape = if options.ignore_index.is_some() {
                        vec![group.targets.len()]
                    } else {
                        position_shape.clone()
                    };
                    group
                })
                .collect();
            Ok(groups)
        }
    }
}

/// The number of elements of a shape.
fn raw_len(shape: &[usize]) -> usize {
    shape.iter().product()
}
