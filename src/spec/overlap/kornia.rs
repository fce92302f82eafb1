//! kornia 0.9's `dice_loss` and `tversky_loss`: softmax over `(B, C, H, W)` logits against int64
//! labels, one image at a time, eps in the denominator only, ignored positions masked out, and
//! the mean over present classes (macro Dice, Tversky) or over classes pooled into one ratio with
//! their weights (micro Dice).

use ndarray::ArrayD;

use super::operands::{
    check_prediction, prediction_layout, shape_mismatch, Activation, Mask, Operands, Target,
};
use super::{Absent, Aggregation, ClassPooling, Convention, Guard, Intersection, Ratio, ScoreLoss};
use crate::error::Rejection;
use crate::spec::cross_entropy::DEFAULT_IGNORE_INDEX;
use crate::spec::{check_labels, LossOutput, Result};
use crate::tensor::Tensor;

/// The arguments of `kornia.losses.dice_loss`, with kornia's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct KorniaDiceOptions {
    /// `micro` or `macro` (checked after the shapes, as kornia does).
    pub average: String,
    /// Added to the denominator.
    pub eps: f64,
    /// Positions whose label is this leave their image's sums (None: none do).
    pub ignore_index: Option<i64>,
}

impl Default for KorniaDiceOptions {
    fn default() -> Self {
        KorniaDiceOptions {
            average: "micro".into(),
            eps: 1e-8,
            ignore_index: Some(DEFAULT_IGNORE_INDEX),
        }
    }
}

/// kornia's `dice_loss(pred, target, average, eps, weight, ignore_index)` on logits `(B, C, H, W)`
/// and int64 labels `(B, H, W)`, per image b, with p = softmax(pred), t = one_hot(target) and the
/// ignored positions removed from both:
///
/// ```text
/// micro: l_b = 1 − 2·Σ_c w_c·I_bc / (Σ_c w_c·(P_bc + T_bc) + eps)
/// macro: d_bc = 1 − 2·I_bc / (P_bc + T_bc + eps);  l_b = Σ_{c present} w_c·d_bc / Σ_{c present} w_c
/// L = mean_b l_b
/// ```
///
/// w ≡ 1 without weight. A ratio whose P + T (micro: Σ_c w_c·(P + T)) is 0 scores 0 with a zero
/// gradient; a class is present when the image's non-ignored target has it; an image with no
/// present class (or only weightless ones) has l_b = 1 and a zero gradient. kornia's CPU path for
/// 2^15 values or more forms the same sums without the one-hot target, equal to rounding.
pub fn dice(
    pred: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    options: &KorniaDiceOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let operands = kornia_operands(pred, target, options.ignore_index, || {
        match options.average.as_str() {
            "micro" | "macro" => Ok(()),
            other => Err(Rejection::InvalidOption {
                name: "average".into(),
                value: other.into(),
                allowed: "micro, macro",
            }),
        }
    })?;
    let classes = pred.shape()[1];
    let weights = match weight {
        None => vec![1.0; classes],
        Some(weight)
            if weight.shape().first() != Some(&classes)
                || weight.shape().iter().product::<usize>() != classes =>
        {
            return Err(Rejection::WeightLength {
                classes,
                got: weight.shape().to_vec(),
            })
        }
        Some(weight) => weight.to_f64().iter().copied().collect(),
    };
    let macro_average = options.average == "macro";
    let convention = Convention {
        intersection: Intersection::Product,
        pool_batch: false,
        class_pooling: if macro_average {
            ClassPooling::PerClass
        } else {
            ClassPooling::Weighted(weights.clone())
        },
        ratio: Ratio {
            k: 2.0,
            alpha: 1.0,
            beta: 1.0,
            smooth_nr: 0.0,
            smooth_dr: options.eps,
            guard: Guard::ZeroIfEmpty,
        },
        score_loss: ScoreLoss::OneMinus,
        absent: if macro_average {
            Absent::Dropped
        } else {
            Absent::Kept
        },
        aggregation: Aggregation::ClassMean {
            weights: macro_average.then_some(weights),
            empty: Some(1.0),
            gamma: 1.0,
        },
    };
    operands.run(&convention, grad_output)
}

/// kornia's `tversky_loss(pred, target, alpha, beta, eps, ignore_index)` on logits `(B, C, H, W)`
/// and int64 labels `(B, H, W)`, per image b over the classes present in its non-ignored target:
///
/// ```text
/// S_bc = I_bc / (I_bc + α·FP_bc + β·FN_bc + eps);  l_b = 1 − Σ_{c present} S_bc / max(#present, 1)
/// L = mean_b l_b
/// ```
///
/// An image with no present class has l_b = 1 and a zero gradient.
pub fn tversky(
    pred: &Tensor,
    target: &Tensor,
    alpha: f64,
    beta: f64,
    eps: f64,
    ignore_index: Option<i64>,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let operands = kornia_operands(pred, target, ignore_index, || Ok(()))?;
    let convention = Convention {
        intersection: Intersection::Product,
        pool_batch: false,
        class_pooling: ClassPooling::PerClass,
        ratio: Ratio {
            k: 1.0,
            alpha,
            beta,
            smooth_nr: 0.0,
            smooth_dr: eps,
            guard: Guard::None,
        },
        score_loss: ScoreLoss::OneMinus,
        absent: Absent::Dropped,
        aggregation: Aggregation::ClassMean {
            weights: None,
            empty: Some(1.0),
            gamma: 1.0,
        },
    };
    operands.run(&convention, grad_output)
}

/// kornia's checks in its order — a 4-D pred, the target's last two axes, then its batch and
/// spatial shape, then `options_check`, then int64 labels within [0, C) once ignored labels are 0 —
/// and the operands: softmax over the logits `(B, C, S)`, the labels (the one-hot target) and the
/// mask of non-ignored positions.
fn kornia_operands<'a>(
    pred: &'a Tensor,
    target: &Tensor,
    ignore_index: Option<i64>,
    options_check: impl FnOnce() -> Result<()>,
) -> Result<Operands<'a>> {
    check_prediction(pred, 0)?;
    let shape = pred.shape();
    if shape.len() != 4 {
        return Err(Rejection::InputShape {
            expected: "(B, C, H, W)",
            got: shape.to_vec(),
        });
    }
    let target_shape = target.shape();
    let expected = [shape[0], shape[2], shape[3]];
    let last_two = |dims: &[usize]| dims[dims.len().saturating_sub(2)..].to_vec();
    if last_two(shape) != last_two(target_shape) || target_shape != expected {
        return Err(shape_mismatch(&expected, target_shape));
    }
    options_check()?;
    let ignored = |label: i64| ignore_index == Some(label);
    let Tensor::Int64(given) = target else {
        return Err(Rejection::ClassIndexDtype {
            got: target.dtype(),
        });
    };
    let labels = given.mapv(|label| if ignored(label) { 0 } else { label });
    check_labels(&labels, shape[1])?;
    let mask = ignore_index.map(|_| {
        Mask::Positions(
            given
                .iter()
                .map(|&label| f64::from(u8::from(!ignored(label))))
                .collect(),
        )
    });
    let classes = shape[1];
    Ok(Operands::new(
        Activation::Softmax,
        pred,
        prediction_layout("pred", pred)?,
        Target::Labels(labels.iter().copied().collect()),
        mask,
        (0..classes).collect(),
    ))
}
