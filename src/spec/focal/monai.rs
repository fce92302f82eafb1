//! MONAI's `FocalLoss`: sigmoid per element or softmax over the channels, in float32, with its own
//! `mean` and `sum` over an ignore_index mask.

use ndarray::{ArrayD, Axis, IxDyn};

use super::{
    aggregate, sigmoid_map, softmax_map, to_f32, Aggregation, Alpha, Inputs, SigmoidFocal,
    SoftTarget, SoftmaxFocal, Untargeted,
};
use crate::error::Rejection;
use crate::spec::cross_entropy::check_float_input;
use crate::spec::monai::{ignore_mask, OneHot};
use crate::spec::positions::{Block, Layout, Position, Values};
use crate::spec::trace::{self, Fact};
use crate::spec::{check_batched, LossOutput, Reduction, Result};
use crate::tensor::Tensor;

/// A MONAI argument that is one number for every class or a sequence of one per class.
#[derive(Debug, Clone, PartialEq)]
pub enum PerClass {
    /// One value.
    Scalar(f64),
    /// One value per class.
    List(Vec<f64>),
}

/// The constructor arguments of `monai.losses.FocalLoss`, with MONAI's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct MonaiFocalOptions {
    /// Keep channel 0 (default true); false slices it off input and target before anything else.
    pub include_background: bool,
    /// One-hot encode a (B, 1, *) label target (default false).
    pub to_onehot_y: bool,
    /// γ (default 2).
    pub gamma: f64,
    /// α: a scalar or one per class (default none).
    pub alpha: Option<PerClass>,
    /// Class weights: a scalar or one per class, non-negative (default none).
    pub weight: Option<PerClass>,
    /// none / mean (default) / sum.
    pub reduction: Reduction,
    /// Softmax focal over the channels instead of sigmoid per element (default false).
    pub use_softmax: bool,
    /// Label (or sentinel) whose positions are masked out (default none).
    pub ignore_index: Option<i64>,
}

impl Default for MonaiFocalOptions {
    fn default() -> Self {
        MonaiFocalOptions {
            include_background: true,
            to_onehot_y: false,
            gamma: 2.0,
            alpha: None,
            weight: None,
            reduction: Reduction::Mean,
            use_softmax: false,
            ignore_index: None,
        }
    }
}

/// `monai.losses.FocalLoss(...)(input, target)` on (B, C, *) logits.
///
/// 1. `to_onehot_y` (C > 1): a (B, 1, *) label target becomes one-hot, a label equal to an
///    ignore_index outside [0, C) first becoming 0 (a target of fewer than two axes gains trailing
///    axes of size 1 first, so a (B,) label vector is read as (B, 1)). `include_background=False`
///    (C > 1) then drops channel 0 of input and target, *before* any softmax; a target without a
///    channel axis is rejected there (MONAI's `target[:, 1:]` fails), and with ignore_index at
///    the mask (MONAI reads `target.shape[1]`).
/// 2. With ignore_index, a mask m of shape (B, 1, *) from the original target: label ≠ ii for a
///    one-channel target; 1 − t_ii for a one-hot target when 0 ≤ ii < C; else \[Σ_c t_c > 0\].
///    Input and target are multiplied by m.
/// 3. Everything is cast to float32: the reference rounds the masked input, target, mask, α and
///    weights to float32 and computes in f64 from there (MONAI's arithmetic itself is float32).
/// 4. Sigmoid: l = α_t·m_t·(x − x·t − log σ(x)) with m_t = exp(γ·log σ(−x(2t − 1)))
///    ([`SoftTarget::LogSigmoid`]); a scalar α is [`Alpha::Balanced`], a sequence α_c applies only
///    where t = 1 ([`Alpha::PositivesPerClass`]). The gradient is finite at saturation.
///    Softmax: l_c = −α_c·(1 − p_c)^γ·log p_c·t_c per channel (not summed over classes); a scalar α
///    is [`Alpha::Background`] — and is ignored when include_background is false — a sequence is
///    α_c. At saturation the gradient is the exact one, where MONAI's is NaN with γ < 1.
/// 5. l·m, then l·w_c (scalar or per channel, all ≥ 0).
/// 6. `mean`: Σ l / (B·C·spatial), but Σ l / max(Σ m, ε_f32) with ignore_index (not divided by C);
///    `sum`: Σ_{b,c} of spatial means ([`Aggregation::MonaiSum`]); `none`: the (B, C, *) map.
pub fn loss(
    input: &Tensor,
    target: &Tensor,
    options: &MonaiFocalOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    check_batched(input)?;
    check_float_input(input)?;
    let channels = input.shape()[1];
    let one_hot = if options.to_onehot_y && channels > 1 {
        // MONAI's one_hot first gives a target of fewer than two axes trailing axes of size 1.
        let mut labels = target.to_f64();
        while labels.ndim() < 2 {
            labels.insert_axis_inplace(Axis(labels.ndim()));
        }
        Some(OneHot::new(&labels, channels, options.ignore_index)?)
    } else {
        None
    };
    let first = usize::from(!options.include_background && channels > 1);
    if first == 1 && one_hot.is_none() && target.shape().len() < 2 {
        return Err(Rejection::UnsupportedOption {
            option: "include_background=False".into(),
            context: format!(
                "for a target of shape {:?}: MONAI slices target[:, 1:], which needs a channel axis",
                target.shape()
            ),
        });
    }
    let mut x_shape = input.shape().to_vec();
    x_shape[1] -= first;
    let mask = match options.ignore_index {
        Some(ignored) => Some(ignore_mask(&target.to_f64(), ignored)?.mapv(to_f32)),
        None => None,
    };
    // The one-hot target is checked against the input's shape, never built.
    let shape_error = |mut got: Vec<usize>| {
        if first == 1 {
            // Python's slice 1: of an empty axis is empty.
            got[1] -= first.min(got[1]);
        }
        Err(Rejection::TargetShapeMismatch {
            expected: x_shape.clone(),
            got,
        })
    };
    let given = one_hot
        .as_ref()
        .map_or(target.shape(), |encoded| encoded.shape());
    if given != input.shape() {
        return shape_error(given.to_vec());
    }
    // The mask of each position, (B, 1, spatial…) as the map's positions read it.
    let mask = match mask {
        Some(mask) => {
            let mut positions = x_shape.clone();
            positions[1] = 1;
            match mask
                .broadcast(IxDyn(&x_shape))
                .and(mask.broadcast(IxDyn(&positions)))
            {
                Some(view) => Some(view.iter().copied().collect::<Vec<f64>>()),
                None => {
                    return Err(Rejection::TargetShapeMismatch {
                        expected: x_shape.clone(),
                        got: target.shape().to_vec(),
                    })
                }
            }
        }
        None => None,
    };
    let classes = x_shape[1];
    let alpha = monai_alpha(options, classes)?;
    let weight = monai_class_weight(options.weight.as_ref(), classes)?;
    let aggregation = match options.reduction {
        Reduction::None => Aggregation::None,
        Reduction::Sum => Aggregation::MonaiSum,
        Reduction::Mean => Aggregation::MonaiMean,
    };
    let map = Layout::of(&x_shape, 1);
    let reducer = aggregate(map, &x_shape, mask.as_deref(), aggregation, grad_output)?;
    // Input, target and mask as MONAI computes with them: x·m and t·m, in float32.
    let logits = Layout::of(input.shape(), 1);
    let x = Values::read(input);
    let labels = one_hot
        .as_ref()
        .map(|encoded| encoded.labels().as_standard_layout());
    let targets = match &labels {
        Some(labels) => Targets::Labels(labels.as_slice().unwrap_or_default()),
        None => Targets::Dense(Values::read(target)),
    };
    let inputs = |position: Position, class: usize| {
        let kept = mask.as_ref().map_or(1.0, |mask| mask[position.index]);
        let channel = class + first;
        let t = match &targets {
            Targets::Labels(labels) => {
                f64::from(u8::from(labels[position.index] == channel as i64))
            }
            Targets::Dense(values) => values.at(position.element(&logits, channel)),
        };
        Inputs {
            x: to_f32(x.at(position.element(&logits, channel)) * kept),
            t: to_f32(t * kept),
            kept,
        }
    };
    trace::record(|| {
        vec![Fact::new(
            "inputs",
            "rounded to float32 (MONAI computes in float32)",
        )]
    });
    Ok(if options.use_softmax {
        let focal = SoftmaxFocal {
            gamma: options.gamma,
            untargeted: Untargeted::Formed,
        };
        let class_weight = |class: usize| alpha.of_class(class) * weight[class];
        softmax_map(
            map,
            first,
            &x_shape,
            |block: Block, logits: &mut [f64], targets: &mut [f64]| {
                let rows = logits
                    .chunks_exact_mut(block.width)
                    .zip(targets.chunks_exact_mut(block.width));
                for (class, (logits, targets)) in rows.enumerate() {
                    for (j, (logit, t)) in logits.iter_mut().zip(targets).enumerate() {
                        Inputs {
                            x: *logit,
                            t: *t,
                            ..
                        } = inputs(block.position(j), class);
                    }
                }
            },
            mask.as_deref(),
            &focal,
            class_weight,
            &reducer,
        )
    } else {
        let focal = SigmoidFocal {
            gamma: options.gamma,
            soft_target: SoftTarget::LogSigmoid,
        };
        sigmoid_map(
            map,
            first,
            &x_shape,
            inputs,
            &focal,
            &alpha,
            None,
            Some(&weight),
            &reducer,
        )
    })
}

/// The target as the focal map reads it.
enum Targets<'a> {
    /// `to_onehot_y`'s labels y, one per position: t_c = [y = c].
    Labels(&'a [i64]),
    /// A target of the input's shape.
    Dense(Values<'a>),
}

/// MONAI's α for `classes` channels (after slicing), rounded to float32.
fn monai_alpha(options: &MonaiFocalOptions, classes: usize) -> Result<Alpha> {
    Ok(match &options.alpha {
        None => Alpha::None,
        Some(PerClass::Scalar(_)) if options.use_softmax && !options.include_background => {
            Alpha::None
        }
        Some(PerClass::Scalar(alpha)) if options.use_softmax => Alpha::Background(to_f32(*alpha)),
        Some(PerClass::Scalar(alpha)) => Alpha::Balanced(to_f32(*alpha)),
        Some(PerClass::List(alphas)) => {
            if alphas.len() != classes {
                return Err(Rejection::PerClassLength {
                    name: "alpha".into(),
                    classes,
                    got: alphas.len(),
                });
            }
            let alphas = alphas.iter().copied().map(to_f32).collect();
            if options.use_softmax {
                Alpha::PerClass(alphas)
            } else {
                Alpha::PositivesPerClass(alphas)
            }
        }
    })
}

/// MONAI's class weights for `classes` channels, rounded to float32 (ones without weight).
fn monai_class_weight(weight: Option<&PerClass>, classes: usize) -> Result<Vec<f64>> {
    let weights = match weight {
        None => return Ok(vec![1.0; classes]),
        Some(PerClass::Scalar(weight)) => vec![*weight; classes],
        Some(PerClass::List(weights)) => {
            if classes == 1 {
                return Err(Rejection::UnsupportedOption {
                    option: "a per-class weight".into(),
                    context: "for single-channel outputs".into(),
                });
            }
            if weights.len() != classes {
                return Err(Rejection::PerClassLength {
                    name: "weight".into(),
                    classes,
                    got: weights.len(),
                });
            }
            weights.clone()
        }
    };
    match weights.iter().find(|&&weight| weight < 0.0) {
        Some(&value) => Err(Rejection::NegativeParameter {
            name: "weight".into(),
            value,
        }),
        None => Ok(weights.into_iter().map(to_f32).collect()),
    }
}
