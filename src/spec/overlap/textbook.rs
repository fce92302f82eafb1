//! segloss's own textbook soft Dice and soft IoU.

use ndarray::ArrayD;

use super::operands::{
    check_prediction, prediction_layout, shape_mismatch, Activation, Operands, Target,
};
use super::{Absent, Aggregation, ClassPooling, Convention, Guard, Intersection, Ratio, ScoreLoss};
use crate::spec::positions::Values;
use crate::spec::{LossOutput, Reduction, Result};
use crate::tensor::Tensor;

/// The arguments of segloss's own textbook losses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextbookOptions {
    /// s, added to numerator and denominator.
    pub smooth: f64,
    /// none (shape `(N, C)`) / mean / sum over images and classes.
    pub reduction: Reduction,
}

/// Which textbook ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Textbook {
    /// `segloss.soft_dice`: l = 1 − (2·Σpt + s)/(Σp + Σt + s).
    Dice,
    /// `segloss.soft_iou`: l = 1 − (Σpt + s)/(Σp + Σt − Σpt + s).
    Iou,
}

/// The textbook soft Dice or soft IoU of probabilities `input` `(N, C, d1, …)` and a target of the
/// same shape, per image and class over the spatial positions, reduced over images and classes:
///
/// ```text
/// soft Dice: l_nc = 1 − (2·Σ_s p·t + s)/(Σ_s p + Σ_s t + s)        (k = 2, α = β = 1)
/// soft IoU:  l_nc = 1 − (Σ_s p·t + s)/(Σ_s p + Σ_s t − Σ_s p·t + s) (k = 1, α = β = 1)
/// ```
///
/// Nothing is activated, clamped, masked or weighted, and absent classes count like the others;
/// at least one spatial axis is required (a sum over none is not the textbook's). Both losses are
/// computed as Σ_s[p·(1 − t) + t·(1 − p)] over the denominator, without the cancellation of 1 − N/D
/// near a perfect match (see the [`super`] module's Numerics).
pub fn loss(
    which: Textbook,
    input: &Tensor,
    target: &Tensor,
    options: &TextbookOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    check_prediction(input, 3)?;
    if target.shape() != input.shape() {
        return Err(shape_mismatch(input.shape(), target.shape()));
    }
    let k = match which {
        Textbook::Dice => 2.0,
        Textbook::Iou => 1.0,
    };
    let convention = Convention {
        intersection: Intersection::Product,
        pool_batch: false,
        class_pooling: ClassPooling::PerClass,
        ratio: Ratio {
            k,
            alpha: 1.0,
            beta: 1.0,
            smooth_nr: options.smooth,
            smooth_dr: options.smooth,
            guard: Guard::None,
        },
        score_loss: ScoreLoss::OneMinus,
        absent: Absent::Kept,
        aggregation: Aggregation::Each {
            weights: None,
            reduction: options.reduction,
            shape: input.shape()[..2].to_vec(),
        },
    };
    let operands = Operands::new(
        Activation::Identity,
        input,
        prediction_layout("input", input)?,
        Target::Values(Values::read(target)),
        None,
        (0..input.shape()[1]).collect(),
    );
    operands.run(&convention, grad_output)
}
