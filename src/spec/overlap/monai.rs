//! MONAI 1.6's `DiceLoss`, `GeneralizedDiceLoss`, `TverskyLoss`, `DiceCELoss` and
//! `DiceFocalLoss`: one score per (image, class) or per class with `batch`, the intersection
//! Σpt, Σmin(p, t) with `soft_label` or Σpt over Σp², Σt² with `squared_pred`, nr and dr, the
//! `to_onehot_y`, `include_background` and `ignore_index` operands, and DiceLoss's unnormalised
//! class weights. [`loss`] is the three overlap losses; [`dice_ce`] and [`dice_focal`] add a
//! cross-entropy or focal term.

use ndarray::{ArrayD, Axis, IxDyn};

use super::operands::{
    check_prediction, float32_values, prediction_layout, shape_mismatch, truncated_labels,
    Activation, Mask, Operands, Target,
};
use super::{
    grad_output_shape, Absent, Aggregation, ClassPooling, Convention, Guard, Intersection, Ratio,
    ScoreLoss, WeightType,
};
use crate::error::Rejection;
use crate::spec::binary;
use crate::spec::cross_entropy::{self, CrossEntropyOptions, DEFAULT_IGNORE_INDEX};
use crate::spec::focal;
use crate::spec::focal::monai::{MonaiFocalOptions, PerClass};
use crate::spec::monai::{ignore_mask, OneHot};
use crate::spec::positions::Values;
use crate::spec::{reshaped, LossOutput, Reduction, Result};
use crate::tensor::{DType, Tensor};

/// Which MONAI loss.
#[derive(Debug, Clone, PartialEq)]
pub enum MonaiScore {
    /// `DiceLoss`: 1 − (2I + nr)/(2I + FP + FN + dr), or with `jaccard` 1 − (2I + nr)/(2(I + FP + FN) + dr).
    Dice {
        /// P = Σp², T = Σt² (and I = Σpt).
        squared_pred: bool,
        /// The Jaccard form (α = β = 2 with k = 2).
        jaccard: bool,
        /// `weight`: multiplies each class's loss, not normalised.
        weight: Option<MonaiWeight>,
    },
    /// `TverskyLoss`: 1 − (I + nr)/(I + α·FP + β·FN + dr).
    Tversky {
        /// Weight of the false positives.
        alpha: f64,
        /// Weight of the false negatives.
        beta: f64,
    },
    /// `GeneralizedDiceLoss`: 1 − (2·Σ_c w_c·I_c + nr)/(Σ_c w_c·(P_c + T_c) + dr) per image.
    Generalized(WeightType),
}

/// MONAI `DiceLoss`'s `weight`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonaiWeight {
    /// One value for every class, or one per class (after `include_background`).
    pub values: Vec<f64>,
    /// A single number, applied to every class.
    pub broadcast: bool,
    /// Held as float32: `torch.as_tensor` of Python floats (DiceLoss's list or number); a tensor
    /// (DiceCELoss's `weight`) keeps its dtype.
    pub float32: bool,
}

/// The arguments MONAI's overlap losses share, with MONAI's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonaiOptions {
    /// Keep channel 0 (ignored with a single channel).
    pub include_background: bool,
    /// Make a `(N, 1, …)` label map one-hot (ignored with a single channel).
    pub to_onehot_y: bool,
    /// σ on the prediction.
    pub sigmoid: bool,
    /// softmax over the channels (ignored with a single channel).
    pub softmax: bool,
    /// none / mean / sum over the (image, class) losses.
    pub reduction: Reduction,
    /// nr.
    pub smooth_nr: f64,
    /// dr.
    pub smooth_dr: f64,
    /// Sum over the batch too: one score per class.
    pub batch: bool,
    /// The L1 intersection Σ min(p, t).
    pub soft_label: bool,
    /// Positions whose label is this leave both sums (see [`loss`]).
    pub ignore_index: Option<i64>,
}

impl Default for MonaiOptions {
    fn default() -> Self {
        MonaiOptions {
            include_background: true,
            to_onehot_y: false,
            sigmoid: false,
            softmax: false,
            reduction: Reduction::Mean,
            smooth_nr: 1e-5,
            smooth_dr: 1e-5,
            batch: false,
            soft_label: false,
            ignore_index: None,
        }
    }
}

impl MonaiOptions {
    /// The constructor's check: at most one of `sigmoid`, `softmax` (and `other_act`, which segloss
    /// does not take).
    pub fn check(&self) -> Result<()> {
        if self.sigmoid && self.softmax {
            Err(Rejection::UnsupportedOption {
                option: "sigmoid=True".into(),
                context: "together with softmax=True".into(),
            })
        } else {
            Ok(())
        }
    }
}

/// MONAI 1.6's `DiceLoss`, `TverskyLoss` and `GeneralizedDiceLoss(…)(input, target)`, input
/// `(N, C, d1, …)`:
///
/// ```text
/// p = σ(x) with sigmoid, softmax(x) with softmax (C > 1), else x
/// t = one_hot(label map) with to_onehot_y (C > 1; an out-of-range ignore_index label becomes 0
///     first; the one-hot target is float32), else the target; channel 0 of both dropped without
///     include_background (C > 1)
/// m from the original target: [y ≠ ii] for a label map (N, 1, …); 1 − y[:, ii] for a C-channel
///     target with 0 ≤ ii < C (every position of class ii leaves every class); [Σ_c y_c > 0]
///     otherwise (positions with an all-zero target leave); p·m, t·m
/// per (image, class) — per class with batch — I, P, T: Σpt, Σp, Σt; Σmin(p,t) with soft_label;
///     Σpt, Σp², Σt² with squared_pred (DiceLoss only)
/// Dice:    f = 1 − (2I + nr)/(2I + FP + FN + dr)         jaccard: 1 − (2I + nr)/(2(I + FP + FN) + dr)
/// Tversky: f = 1 − (I + nr)/(I + α·FP + β·FN + dr)
/// GDL:     f = 1 − (2·Σ_c w_c·I_c + nr)/(Σ_c w_c·(P_c + T_c) + dr), w_c = 1/T_c², 1/T_c or 1 in
///          float32, an infinite w_c replaced by the largest finite one (one f per image, or one)
/// DiceLoss: f_c·w_c (weight, unnormalised; ignored with one channel); then none / mean / sum
/// ```
///
/// Absent classes are kept: a class with T = 0 scores nr/(P + dr), ≈ 1 loss unless P = 0. The
/// unreduced shapes are MONAI's: DiceLoss `(N, C, 1, …)` (`(C, 1, …)` with batch), GDL
/// `(N, 1, 1, …)` (`(1, 1, …)`), TverskyLoss `(N, C)` (`(C)`). Inputs without a spatial axis are not
/// specified (MONAI's sum over no axis sums every axis). With `squared_pred` and `to_onehot_y`,
/// MONAI squares the float32 one-hot target's norm in float32, which the reference computes exactly
/// (see the tolerance overrides).
pub fn loss(
    score: &MonaiScore,
    input: &Tensor,
    target: &Tensor,
    options: &MonaiOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    options.check()?;
    check_prediction(input, 2)?;
    let shape = input.shape();
    if shape.len() < 3 {
        return Err(Rejection::NotSpecified {
            what: "a MONAI overlap loss of an input without spatial axes".into(),
        });
    }
    let (batch, classes) = (shape[0], shape[1]);
    let several = classes > 1;
    let activation = if options.sigmoid {
        Activation::Sigmoid
    } else if options.softmax && several {
        Activation::Softmax
    } else {
        Activation::Identity
    };
    let ignore_index = match score {
        MonaiScore::Generalized(_) => None,
        _ => options.ignore_index,
    };

    let drop_background = !options.include_background && several;
    // The shapes MONAI compares, without channel 0 when include_background is False.
    let sliced = |shape: &[usize]| {
        let mut shape = shape.to_vec();
        if drop_background && shape.len() > 1 {
            shape[1] = shape[1].saturating_sub(1);
        }
        shape
    };
    let target_values = if options.to_onehot_y && several {
        let target_shape = target.shape();
        if target_shape.get(1) != Some(&1) {
            return Err(Rejection::TargetShapeMismatch {
                expected: [&[batch, 1], &shape[2..]].concat(),
                got: target_shape.to_vec(),
            });
        }
        let one_hot = OneHot::new(&target.to_f64(), classes, ignore_index)?;
        if one_hot.shape() != shape {
            return Err(shape_mismatch(&sliced(shape), &sliced(one_hot.shape())));
        }
        // The labels stand for the one-hot target, t_c = [label = c], never built.
        Target::Labels(one_hot.labels().iter().copied().collect())
    } else if target.shape().len() < 2 {
        return Err(shape_mismatch(shape, target.shape()));
    } else if target.shape() != shape {
        return Err(shape_mismatch(&sliced(shape), &sliced(target.shape())));
    } else {
        Target::Values(Values::read(target))
    };
    let mask = ignore_index
        .map(|ii| position_ignore_mask(target, ii))
        .transpose()?;
    let channels: Vec<usize> = (usize::from(drop_background)..classes).collect();
    let scores = channels.len();
    let spatial_ones = vec![1; shape.len() - 2];
    let (ratio, intersection, class_pooling, weights, unreduced) = match score {
        MonaiScore::Dice {
            squared_pred,
            jaccard,
            weight,
        } => {
            let overlap_weight = if *jaccard { 2.0 } else { 1.0 };
            let intersection = if *squared_pred {
                Intersection::Squared
            } else if options.soft_label {
                Intersection::L1
            } else {
                Intersection::Product
            };
            let weights = match weight {
                Some(weight) if scores != 1 => Some(monai_weights(weight, scores)?),
                _ => None,
            };
            let leading = if options.batch {
                vec![scores]
            } else {
                vec![batch, scores]
            };
            (
                (2.0, overlap_weight, overlap_weight),
                intersection,
                ClassPooling::PerClass,
                weights,
                [leading, spatial_ones].concat(),
            )
        }
        MonaiScore::Tversky { alpha, beta } => (
            (1.0, *alpha, *beta),
            monai_ord1(options),
            ClassPooling::PerClass,
            None,
            if options.batch {
                vec![scores]
            } else {
                vec![batch, scores]
            },
        ),
        MonaiScore::Generalized(weight_type) => (
            (2.0, 1.0, 1.0),
            monai_ord1(options),
            ClassPooling::Generalized(*weight_type),
            None,
            [
                if options.batch {
                    vec![1]
                } else {
                    vec![batch, 1]
                },
                spatial_ones,
            ]
            .concat(),
        ),
    };
    let (k, alpha, beta) = ratio;
    let convention = Convention {
        intersection,
        pool_batch: options.batch,
        class_pooling,
        ratio: Ratio {
            k,
            alpha,
            beta,
            smooth_nr: options.smooth_nr,
            smooth_dr: options.smooth_dr,
            guard: Guard::None,
        },
        score_loss: ScoreLoss::OneMinus,
        absent: Absent::Kept,
        aggregation: Aggregation::Each {
            weights,
            reduction: options.reduction,
            shape: unreduced,
        },
    };
    let operands = Operands::new(
        activation,
        input,
        prediction_layout("input", input)?,
        target_values,
        mask,
        channels,
    );
    operands.run(&convention, grad_output)
}

/// Σpt, or Σmin(p, t) with soft_label (TverskyLoss and GeneralizedDiceLoss have no squared form).
fn monai_ord1(options: &MonaiOptions) -> Intersection {
    if options.soft_label {
        Intersection::L1
    } else {
        Intersection::Product
    }
}

/// MONAI's `create_ignore_mask(original target, ii)` ([`ignore_mask`]), `(N, 1, …)`: one value per
/// position, the same for every class.
fn position_ignore_mask(target: &Tensor, ignore_index: i64) -> Result<Mask> {
    let mask = ignore_mask(&target.to_f64(), ignore_index)?;
    Ok(Mask::Positions(mask.iter().copied().collect()))
}

/// DiceLoss's class weights for `scores` classes: a number for all, or one each; none negative.
fn monai_weights(weight: &MonaiWeight, scores: usize) -> Result<Vec<f64>> {
    let values = if weight.float32 {
        float32_values(&weight.values)
    } else {
        weight.values.clone()
    };
    let values = if weight.broadcast {
        vec![values.first().copied().unwrap_or(0.0); scores]
    } else if values.len() != scores {
        return Err(Rejection::WeightLength {
            classes: scores,
            got: vec![values.len()],
        });
    } else {
        values
    };
    match values.iter().copied().find(|&value| value < 0.0) {
        Some(value) => Err(Rejection::NegativeParameter {
            name: "weight".into(),
            value,
        }),
        None => Ok(values),
    }
}

/// MONAI `DiceCELoss`'s own arguments beyond [`MonaiOptions`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiceCeOptions {
    /// The Dice part's sums of squares.
    pub squared_pred: bool,
    /// The Dice part's Jaccard form.
    pub jaccard: bool,
    /// λ_dice ≥ 0.
    pub lambda_dice: f64,
    /// λ_ce ≥ 0.
    pub lambda_ce: f64,
    /// The cross entropy's ε.
    pub label_smoothing: f64,
}

impl Default for DiceCeOptions {
    fn default() -> Self {
        DiceCeOptions {
            squared_pred: false,
            jaccard: false,
            lambda_dice: 1.0,
            lambda_ce: 1.0,
            label_smoothing: 0.0,
        }
    }
}

/// MONAI 1.6's `DiceCELoss(…, weight)(input, target)`:
///
/// ```text
/// L = λ_dice·DiceLoss(input, target) + λ_ce·cross_entropy(input, target', weight, label_smoothing)
/// ```
///
/// The Dice part is [`loss`] with the `weight` tensor (without channel 0 when
/// include_background is False; its dtype kept, not float32). The cross-entropy part is
/// [`cross_entropy::cross_entropy`] on the raw input whatever the activation flags and
/// include_background say: a label map `(N, 1, …)` is squeezed to class indices (`.long()`), a
/// C-channel target is a probability target (cast to the input's dtype when not floating). With a
/// single channel the second part is [`binary::binary_cross_entropy_with_logits`] instead, with
/// `pos_weight = weight` (MONAI's `BCEWithLogitsLoss(pos_weight=weight)`), on the target cast to
/// the input's dtype when not floating; the Dice part ignores the weight there. Only `mean` and
/// `sum`; no ignore_index, no soft_label.
pub fn dice_ce(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    monai: &MonaiOptions,
    options: &DiceCeOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    if monai.reduction == Reduction::None {
        return Err(Rejection::InvalidOption {
            name: "reduction".into(),
            value: "none".into(),
            allowed: "mean, sum",
        });
    }
    let lambdas = [
        ("lambda_dice", options.lambda_dice),
        ("lambda_ce", options.lambda_ce),
    ];
    let (shape, target_shape) = check_composed(monai, lambdas, input, target)?;
    let dice_weight = weight.map(|weight| {
        let values: Vec<f64> = weight.to_f64().iter().copied().collect();
        let skip = usize::from(!monai.include_background);
        MonaiWeight {
            values: values.into_iter().skip(skip).collect(),
            broadcast: weight.shape().is_empty(),
            float32: false,
        }
    });
    let scale = |lambda: f64| {
        Some(grad_output.map_or_else(|| ArrayD::from_elem(vec![], lambda), |given| given * lambda))
    };
    let dice_options = (options.squared_pred, options.jaccard, dice_weight);
    let dice = dice_part(
        input,
        target,
        monai,
        dice_options,
        scale(options.lambda_dice).as_ref(),
    )?;
    if shape[1] == 1 {
        let bce = binary::binary_cross_entropy_with_logits(
            input,
            &floating_target(input, target),
            None,
            weight,
            monai.reduction,
            scale(options.lambda_ce).as_ref(),
        )?;
        return Ok(LossOutput {
            loss: dice.loss * options.lambda_dice + bce.loss * options.lambda_ce,
            grad_input: dice.grad_input + bce.grad_input,
        });
    }
    let ce_target = if target_shape[1] == 1 {
        let labels = truncated_labels(target);
        let squeezed = [&target_shape[..1], &target_shape[2..]].concat();
        Tensor::Int64(
            reshaped(labels, IxDyn(&squeezed))
                .ok_or_else(|| shape_mismatch(shape, target_shape))?,
        )
    } else {
        floating_target(input, target)
    };
    let ce = cross_entropy::cross_entropy(
        input,
        &ce_target,
        weight,
        &CrossEntropyOptions {
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: monai.reduction,
            label_smoothing: options.label_smoothing,
        },
        scale(options.lambda_ce).as_ref(),
    )?;
    Ok(LossOutput {
        loss: dice.loss * options.lambda_dice + ce.loss * options.lambda_ce,
        grad_input: dice.grad_input + ce.grad_input,
    })
}

/// The Dice part of DiceCELoss and DiceFocalLoss: [`loss`]'s Dice with (squared_pred,
/// jaccard, weight), without ignore_index or soft_label, which neither passes on.
fn dice_part(
    input: &Tensor,
    target: &Tensor,
    monai: &MonaiOptions,
    (squared_pred, jaccard, weight): (bool, bool, Option<MonaiWeight>),
    upstream: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let score = MonaiScore::Dice {
        squared_pred,
        jaccard,
        weight,
    };
    let options = MonaiOptions {
        ignore_index: None,
        soft_label: false,
        ..*monai
    };
    loss(&score, input, target, &options, upstream)
}

/// The checks DiceCELoss and DiceFocalLoss share, in their order: the activation flags, both λ ≥ 0
/// (constructor), then the target's rank and its channels (1 or the input's).
fn check_composed<'a>(
    monai: &MonaiOptions,
    lambdas: [(&str, f64); 2],
    input: &'a Tensor,
    target: &'a Tensor,
) -> Result<(&'a [usize], &'a [usize])> {
    monai.check()?;
    if let Some((name, value)) = lambdas.into_iter().find(|&(_, value)| value < 0.0) {
        return Err(Rejection::NegativeParameter {
            name: name.into(),
            value,
        });
    }
    check_prediction(input, 2)?;
    let (shape, target_shape) = (input.shape(), target.shape());
    if target_shape.len() != shape.len() {
        return Err(Rejection::TargetRank {
            got: target_shape.len(),
            expected: shape.len(),
            input: shape.to_vec(),
        });
    }
    if target_shape[1] != 1 && target_shape[1] != shape[1] {
        return Err(shape_mismatch(shape, target_shape));
    }
    Ok((shape, target_shape))
}

/// DiceCELoss's `target.to(dtype=input.dtype)` of a target that is not floating (a floating
/// target is kept as it is).
fn floating_target(input: &Tensor, target: &Tensor) -> Tensor {
    if target.dtype().is_floating() {
        target.clone()
    } else if input.dtype() == DType::Float32 {
        Tensor::Float32(target.to_f64().mapv(|value| value as f32))
    } else {
        Tensor::Float64(target.to_f64())
    }
}

/// MONAI `DiceFocalLoss`'s own arguments beyond [`MonaiOptions`].
#[derive(Debug, Clone, PartialEq)]
pub struct DiceFocalOptions {
    /// The Dice part's sums of squares.
    pub squared_pred: bool,
    /// The Dice part's Jaccard form.
    pub jaccard: bool,
    /// The focal part's γ.
    pub gamma: f64,
    /// Class weights, given to both parts.
    pub weight: Option<PerClass>,
    /// The focal part's α.
    pub alpha: Option<PerClass>,
    /// λ_dice ≥ 0.
    pub lambda_dice: f64,
    /// λ_focal ≥ 0.
    pub lambda_focal: f64,
}

impl Default for DiceFocalOptions {
    fn default() -> Self {
        DiceFocalOptions {
            squared_pred: false,
            jaccard: false,
            gamma: 2.0,
            weight: None,
            alpha: None,
            lambda_dice: 1.0,
            lambda_focal: 1.0,
        }
    }
}

/// MONAI 1.6's `DiceFocalLoss(…)(input, target)`:
///
/// ```text
/// t' = one_hot(target) with to_onehot_y (C > 1, float32; done once, for both parts), else target
/// L  = λ_dice·DiceLoss(input, t') + λ_focal·FocalLoss(input, t')
/// ```
///
/// The Dice part is [`loss`] with the activation flags, squared_pred, jaccard, smoothing and
/// batch; the focal part is [`focal::monai::loss`] with γ and α, always the sigmoid form on the
/// raw input (`use_softmax` is never set, whatever `softmax` says) and computed in float32. Both take
/// include_background, `weight` (a number or one per remaining class: the Dice part ignores it with
/// a single channel, where the focal part scales by a number and rejects a sequence) and
/// `reduction`; α goes to the focal part only. `none` adds the Dice part's `(N, C, 1, …)` — `(C, 1,
/// …)` with batch — to the focal part's `(N, C, d1, …)` by broadcasting, so the Dice part's
/// upstream gradient is grad_output summed over the broadcast axes. No ignore_index, no
/// soft_label. Checked in MONAI's order: the constructors (reduction, activation flags, λ ≥ 0),
/// the target's rank and channels, the one-hot encoding, then the Dice part's and the focal part's
/// own checks.
pub fn dice_focal(
    input: &Tensor,
    target: &Tensor,
    monai: &MonaiOptions,
    options: &DiceFocalOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let lambdas = [
        ("lambda_dice", options.lambda_dice),
        ("lambda_focal", options.lambda_focal),
    ];
    let (shape, target_shape) = check_composed(monai, lambdas, input, target)?;
    let classes = shape[1];
    let target = if monai.to_onehot_y && classes > 1 {
        if target_shape[1] != 1 {
            return Err(Rejection::TargetShapeMismatch {
                expected: [&[shape[0], 1], &shape[2..]].concat(),
                got: target_shape.to_vec(),
            });
        }
        let one_hot = OneHot::new(&target.to_f64(), classes, None)?;
        if one_hot.shape() != shape {
            return Err(shape_mismatch(shape, one_hot.shape()));
        }
        Tensor::Float32(one_hot.build().mapv(|value| value as f32))
    } else {
        target.clone()
    };
    let dice_weight = options.weight.as_ref().map(|weight| {
        let (values, broadcast) = match weight {
            PerClass::Scalar(value) => (vec![*value], true),
            PerClass::List(values) => (values.clone(), false),
        };
        MonaiWeight {
            values,
            broadcast,
            float32: true,
        }
    });
    let (dice_upstream, focal_upstream) = dice_focal_upstream(shape, monai, options, grad_output)?;
    let dice_options = (options.squared_pred, options.jaccard, dice_weight);
    let encoded = MonaiOptions {
        to_onehot_y: false,
        ..*monai
    };
    let dice = dice_part(input, &target, &encoded, dice_options, Some(&dice_upstream))?;
    let focal = focal::monai::loss(
        input,
        &target,
        &MonaiFocalOptions {
            include_background: monai.include_background,
            to_onehot_y: false,
            gamma: options.gamma,
            alpha: options.alpha.clone(),
            weight: options.weight.clone(),
            reduction: monai.reduction,
            use_softmax: false,
            ignore_index: None,
        },
        Some(&focal_upstream),
    )?;
    let dice_loss = dice
        .loss
        .broadcast(focal.loss.raw_dim())
        .ok_or_else(|| grad_output_shape(focal.loss.shape(), &dice.loss))?
        .to_owned();
    Ok(LossOutput {
        loss: dice_loss * options.lambda_dice + focal.loss * options.lambda_focal,
        grad_input: dice.grad_input + focal.grad_input,
    })
}

/// The upstream gradients of DiceFocalLoss's two parts, λ·grad_output each (ones when absent); for
/// `none`, grad_output has the focal part's `(N, C', d1, …)` shape and the Dice part's is its sum
/// over the spatial axes (and the batch with `batch`), in the Dice part's unreduced shape.
fn dice_focal_upstream(
    shape: &[usize],
    monai: &MonaiOptions,
    options: &DiceFocalOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<(ArrayD<f64>, ArrayD<f64>)> {
    if monai.reduction != Reduction::None {
        let given = grad_output.map_or(1.0, |given| given.iter().copied().sum());
        if let Some(given) = grad_output.filter(|given| given.ndim() != 0) {
            return Err(grad_output_shape(&[], given));
        }
        return Ok((
            ArrayD::from_elem(vec![], given * options.lambda_dice),
            ArrayD::from_elem(vec![], given * options.lambda_focal),
        ));
    }
    let mut unreduced = shape.to_vec();
    if !monai.include_background && shape[1] > 1 {
        unreduced[1] -= 1;
    }
    let given = match grad_output {
        Some(given) if given.shape() == unreduced.as_slice() => given.clone(),
        Some(given) => return Err(grad_output_shape(&unreduced, given)),
        None => ArrayD::ones(unreduced.clone()),
    };
    let (batch, scores) = (unreduced[0], unreduced[1]);
    let mismatch = || grad_output_shape(&unreduced, &given);
    let per_score = reshaped(
        given.clone(),
        (batch, scores, unreduced[2..].iter().product()),
    )
    .ok_or_else(mismatch)?
    .sum_axis(Axis(2));
    let spatial_ones = vec![1; unreduced.len() - 2];
    let dice = if monai.batch {
        let per_class = per_score.sum_axis(Axis(0)).into_dyn();
        reshaped(per_class, IxDyn(&[&[scores][..], &spatial_ones].concat()))
    } else {
        reshaped(
            per_score.into_dyn(),
            IxDyn(&[&[batch, scores][..], &spatial_ones].concat()),
        )
    }
    .ok_or_else(mismatch)?;
    Ok((dice * options.lambda_dice, given * options.lambda_focal))
}
