//! segmentation_models_pytorch 0.6's `DiceLoss`, `JaccardLoss` and `TverskyLoss`: one Tversky
//! score per class over the whole batch with the L1 intersection Σmin(p, t), the denominator
//! clamped at eps, absent classes zeroed but averaged, float32 class weights, and γ on the mean.
//! [`loss`] checks the arguments in smp's order and maps `mode` onto the operands.

use ndarray::ArrayD;

use super::operands::{
    check_prediction, float32_values, prediction_layout, shape_mismatch, truncated_labels,
    Activation, Mask, Operands, Target,
};
use super::{Absent, Aggregation, ClassPooling, Convention, Guard, Intersection, Ratio, ScoreLoss};
use crate::error::Rejection;
use crate::spec::positions::{Layout, Values};
use crate::spec::smp::SmpMode;
use crate::spec::{check_labels, LossOutput, Result};
use crate::tensor::{DType, Tensor};

/// Which smp loss: `DiceLoss`, `JaccardLoss` or `TverskyLoss`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SmpScore {
    /// soft_dice_score = soft_tversky_score(α = β = ½) = (2I + 2·smooth)/(P + T + 2·smooth).
    Dice,
    /// soft_jaccard_score = soft_tversky_score(α = β = 1) = (I + smooth)/(P + T − I + smooth).
    Jaccard,
    /// soft_tversky_score(α, β), and γ on the aggregated loss.
    Tversky {
        /// Weight of the false positives.
        alpha: f64,
        /// Weight of the false negatives.
        beta: f64,
        /// The aggregated loss is raised to γ.
        gamma: f64,
    },
}

/// The constructor arguments smp's three overlap losses share, with smp's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SmpOptions {
    /// binary / multiclass / multilabel.
    pub mode: SmpMode,
    /// The channels whose losses are averaged (Python indices: negative ones count from the end).
    pub classes: Option<Vec<i64>>,
    /// −ln max(score, eps) instead of 1 − score.
    pub log_loss: bool,
    /// Apply softmax (multiclass) or sigmoid (binary, multilabel) to the prediction.
    pub from_logits: bool,
    /// Added to the intersection in numerator and denominator.
    pub smooth: f64,
    /// Target values equal to this leave both sums.
    pub ignore_index: Option<i64>,
    /// The denominator's clamp and log_loss's floor.
    pub eps: f64,
    /// Per-class weights of the mean over classes (stored as float32 by smp).
    pub class_weights: Option<Vec<f64>>,
}

impl Default for SmpOptions {
    fn default() -> Self {
        SmpOptions {
            mode: SmpMode::Multiclass,
            classes: None,
            log_loss: false,
            from_logits: true,
            smooth: 0.0,
            ignore_index: None,
            eps: 1e-7,
            class_weights: None,
        }
    }
}

/// smp 0.6's `DiceLoss`, `JaccardLoss` and `TverskyLoss(mode, …)(y_pred, y_true)`:
///
/// ```text
/// p = softmax (multiclass) or σ (binary, multilabel) of y_pred, or y_pred when from_logits=False
/// m = [y_true ≠ ignore_index]  (per position; per element in multilabel), applied to p and t
/// per class c, over the batch and the positions:  I = (P + T − Σ|p − t|)/2 = Σ min(p, t)
/// score_c = (I + smooth) / max(I + α·(P − I) + β·(T − I) + smooth, eps)
/// l_c = 1 − score_c, or −ln max(score_c, eps) with log_loss;  l_c = 0 where T_c = 0
/// L = (Σ_{c ∈ classes} w_c·l_c / Σ_{c ∈ classes} w_c)^γ      (w ≡ 1 without class_weights)
/// ```
///
/// The sum over `classes` runs over the selection as given (a class selected twice counts twice),
/// which is computed as every class weighted by the sum of its selections' weights.
/// Dice has α = β = ½ (so 2·smooth in the Dice ratio), Jaccard α = β = 1, Dice and Jaccard γ = 1.
/// Binary mode reads every value of an image as one channel; multiclass targets are class indices
/// (int64 unless ignore_index is set, when smp casts any dtype with `.long()` and ignored positions
/// become class 0 before the mask removes them). Absent classes (T_c = 0 after masking) score 0 but
/// count in the mean. The class weights are float32 (`torch.float`), so their f32 rounding is part
/// of the loss; a weight list of another length than C is rejected (smp would broadcast a single
/// weight, dividing by it once: Σ_c l_c, not the mean — not specified here). smp reshapes y_true
/// to (N, −1) and both tensors to (N, C, −1) (C = 1 in binary mode), which PyTorch refuses for a
/// tensor without elements when N·C = 0: an empty batch, or zero classes outside binary mode, is
/// rejected ([`Rejection::EmptyReshape`]).
pub fn loss(
    score: SmpScore,
    y_pred: &Tensor,
    y_true: &Tensor,
    options: &SmpOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    if options.mode == SmpMode::Binary {
        let conflicting = if options.class_weights.is_some() {
            Some("class_weights")
        } else if options.classes.is_some() {
            Some("classes")
        } else {
            None
        };
        if let Some(option) = conflicting {
            return Err(Rejection::UnsupportedOption {
                option: option.into(),
                context: "with mode=binary".into(),
            });
        }
    }
    check_prediction(y_pred, 2)?;
    let pred_shape = y_pred.shape();
    let batch = pred_shape[0];
    match y_true.shape().first() {
        Some(&target_batch) if target_batch == batch => {}
        target_batch => {
            return Err(Rejection::BatchSizeMismatch {
                input: batch,
                target: target_batch.copied().unwrap_or(0),
            })
        }
    }
    let per_image = pred_shape[1..].iter().product::<usize>();
    let target_values = y_true.to_f64();
    let ignored = |value: f64| options.ignore_index.is_some_and(|ii| value == ii as f64);
    let keep = |value: &f64| f64::from(u8::from(!ignored(*value)));
    let (layout, activation, target, mask) = match options.mode {
        SmpMode::Binary | SmpMode::Multilabel => {
            let channels = if options.mode == SmpMode::Binary {
                1
            } else {
                pred_shape[1]
            };
            if batch * channels == 0 {
                return Err(if target_values.is_empty() {
                    empty_reshape("y_true", y_true)
                } else {
                    shape_mismatch(pred_shape, y_true.shape())
                });
            }
            if target_values.len() != batch * per_image {
                return Err(shape_mismatch(pred_shape, y_true.shape()));
            }
            let layout = Layout {
                batch,
                classes: channels,
                spatial: per_image / channels,
            };
            let mask = options
                .ignore_index
                .map(|_| Mask::Elements(target_values.iter().map(keep).collect()));
            let activation = if options.from_logits {
                Activation::Sigmoid
            } else {
                Activation::Identity
            };
            (
                layout,
                activation,
                Target::Values(Values::read(y_true)),
                mask,
            )
        }
        SmpMode::Multiclass => {
            let classes = pred_shape[1];
            if batch == 0 {
                return Err(empty_reshape("y_true", y_true));
            }
            if classes == 0 {
                return Err(empty_reshape("y_pred", y_pred));
            }
            let labels = match options.ignore_index {
                None if y_true.dtype() != DType::Int64 => {
                    return Err(Rejection::ClassIndexDtype {
                        got: y_true.dtype(),
                    })
                }
                None => truncated_labels(y_true),
                Some(_) => target_values.mapv(|value| {
                    if ignored(value) {
                        0
                    } else {
                        value.trunc() as i64
                    }
                }),
            };
            let positions = per_image / classes;
            if labels.len() % batch != 0 {
                return Err(shape_mismatch(&[batch, positions], y_true.shape()));
            }
            check_labels(&labels, classes)?;
            if labels.len() != batch * positions {
                return Err(shape_mismatch(&[batch, positions], y_true.shape()));
            }
            let mask = options
                .ignore_index
                .map(|_| Mask::Positions(target_values.iter().map(keep).collect()));
            let activation = if options.from_logits {
                Activation::Softmax
            } else {
                Activation::Identity
            };
            (
                prediction_layout("y_pred", y_pred)?,
                activation,
                Target::Labels(labels.iter().copied().collect()),
                mask,
            )
        }
    };
    let classes = layout.classes;
    let weights = match (&options.class_weights, &options.classes) {
        (Some(weights), None) if weights.len() != classes => {
            return Err(Rejection::WeightLength {
                classes,
                got: vec![weights.len()],
            })
        }
        (weights, None) => weights.as_deref().map(float32_values),
        // smp averages the selected classes' losses, a class once per selection (with its
        // weight, picked by the same index): the mean over every class weighted by the sum of
        // its selections' weights, 0 for a class not selected. No class is computed twice,
        // however long the selection.
        (weights, Some(selected)) => {
            let channels = selected
                .iter()
                .map(|&index| python_index(index, classes))
                .collect::<Result<Vec<usize>>>()?;
            let picked = match weights.as_deref().map(float32_values) {
                Some(weights) => selected
                    .iter()
                    .map(|&index| python_index(index, weights.len()).map(|i| weights[i]))
                    .collect::<Result<Vec<f64>>>()?,
                None => vec![1.0; selected.len()],
            };
            let mut folded = vec![0.0; classes];
            for (class, weight) in channels.into_iter().zip(picked) {
                folded[class] += weight;
            }
            Some(folded)
        }
    };
    let (alpha, beta, gamma) = match score {
        SmpScore::Dice => (0.5, 0.5, 1.0),
        SmpScore::Jaccard => (1.0, 1.0, 1.0),
        SmpScore::Tversky { alpha, beta, gamma } => (alpha, beta, gamma),
    };
    let convention = Convention {
        intersection: Intersection::L1,
        pool_batch: true,
        class_pooling: ClassPooling::PerClass,
        ratio: Ratio {
            k: 1.0,
            alpha,
            beta,
            smooth_nr: options.smooth,
            smooth_dr: options.smooth,
            guard: Guard::ClampMin(options.eps),
        },
        score_loss: if options.log_loss {
            ScoreLoss::NegLog(options.eps)
        } else {
            ScoreLoss::OneMinus
        },
        absent: Absent::ZeroedCounted,
        aggregation: Aggregation::ClassMean {
            weights,
            empty: None,
            gamma,
        },
    };
    let operands = Operands::new(
        activation,
        y_pred,
        layout,
        target,
        mask,
        (0..classes).collect(),
    );
    operands.run(&convention, grad_output)
}

/// PyTorch's refusal to reshape a tensor without elements with an inferred (−1) axis when the
/// given axes multiply to 0 (smp's `reshape(bs, C, -1)` of an empty batch or of zero classes).
fn empty_reshape(argument: &'static str, tensor: &Tensor) -> Rejection {
    Rejection::EmptyReshape {
        argument,
        shape: tensor.shape().to_vec(),
    }
}

/// A Python index into `len` items: negative ones count from the end.
fn python_index(index: i64, len: usize) -> Result<usize> {
    let resolved = if index < 0 { index + len as i64 } else { index };
    if resolved < 0 || resolved >= len as i64 {
        Err(Rejection::SelectedClassOutOfBounds {
            index,
            classes: len,
        })
    } else {
        Ok(resolved as usize)
    }
}
