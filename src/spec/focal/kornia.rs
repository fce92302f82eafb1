//! kornia's `binary_focal_loss_with_logits` (sigmoid, target-interpolated) and `focal_loss`
//! (softmax, terms of untargeted classes masked out).

use ndarray::ArrayD;

use super::{
    aggregate, sigmoid_map, softmax_map, Aggregation, Alpha, Inputs, SigmoidFocal, SoftTarget,
    SoftmaxFocal, Untargeted,
};
use crate::error::Rejection;
use crate::spec::binary::check_same_shape;
use crate::spec::cross_entropy::check_float_input;
use crate::spec::positions::{Block, Layout, Position, Values};
use crate::spec::{check_batched, LossOutput, Reduction, Result};
use crate::tensor::Tensor;

/// The non-tensor arguments of kornia's `focal_loss` and `binary_focal_loss_with_logits`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KorniaOptions {
    /// α (`focal_loss` requires it, the binary loss defaults to 0.25); `None` means no α.
    pub alpha: Option<f64>,
    /// γ (default 2).
    pub gamma: f64,
    /// none (default) / mean / sum.
    pub reduction: Reduction,
    /// Targets equal to this contribute 0 and stay in the mean (default −100); `None` ignores none.
    pub ignore_index: Option<i64>,
}

/// `kornia.losses.binary_focal_loss_with_logits(pred, target, alpha=0.25, gamma=2.0,
/// reduction='none', pos_weight=None, weight=None, ignore_index=-100)` on (B, C, *) logits:
///
/// ```text
/// l = w_c·[α·pw_c·t·(1 − p)^γ·(−log p) + (1 − α)·(1 − t)·p^γ·(−log(1 − p))]   (SoftTarget::Interpolated)
/// mean = Σ l / (number of elements)                  (ignored elements are 0 and still counted)
/// ```
///
/// pos_weight and weight are `(C,)` along axis 1 (not PyTorch's right-aligned broadcasting). The
/// powers are exp(γ·log σ(∓x)), so the gradient is finite at saturation.
pub fn binary_with_logits(
    pred: &Tensor,
    target: &Tensor,
    pos_weight: Option<&Tensor>,
    weight: Option<&Tensor>,
    options: &KorniaOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    check_batched(pred)?;
    check_same_shape(pred, target)?;
    check_float_input(pred)?;
    let classes = pred.shape()[1];
    let pos_weight = kornia_per_class("pos_weight", pos_weight, classes)?;
    let weight = kornia_per_class("weight", weight, classes)?;
    let focal = SigmoidFocal {
        gamma: options.gamma,
        soft_target: SoftTarget::Interpolated,
    };
    let alpha = options.alpha.map_or(Alpha::None, Alpha::Balanced);
    let map = Layout::of(pred.shape(), 1);
    let aggregation = Aggregation::plain(options.reduction);
    let reducer = aggregate(map, pred.shape(), None, aggregation, grad_output)?;
    let (x, t) = (Values::read(pred), Values::read(target));
    let inputs = |position: Position, class: usize| {
        let element = position.element(&map, class);
        let t = t.at(element);
        let kept = match options.ignore_index {
            Some(ignored) if t == ignored as f64 => 0.0,
            _ => 1.0,
        };
        Inputs {
            x: x.at(element),
            t: t * kept,
            kept,
        }
    };
    Ok(sigmoid_map(
        map,
        0,
        pred.shape(),
        inputs,
        &focal,
        &alpha,
        pos_weight.as_deref(),
        weight.as_deref(),
        &reducer,
    ))
}

/// `kornia.losses.focal_loss(pred, target, alpha, gamma=2.0, reduction='none', weight=None,
/// ignore_index=-100)`: softmax focal over (B, C, *) logits and int64 labels (B, *):
///
/// ```text
/// l[b, c] = −α_c·w_c·(1 − p_c)^γ·log p_c·[c = y]      α_0 = 1 − α, α_c = α (Alpha::Background)
/// mean = Σ l / (B·C·pixels)                            (ignored pixels are 0 and still counted)
/// ```
///
/// The logits of ignored pixels are set to 0 before the softmax (NaN there does not propagate) and
/// their gradient is 0; terms of classes other than the target are masked out
/// ([`Untargeted::Masked`]). At saturation kornia detaches the modulating factor, so its gradient
/// is 0 where the exact one is tiny but nonzero; the reference returns the exact gradient (the
/// anchor artefact `saturated-focal-gradient`).
pub fn loss(
    pred: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    options: &KorniaOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    check_batched(pred)?;
    let mut expected = pred.shape().to_vec();
    expected.remove(1);
    if target.shape() != expected.as_slice() {
        return Err(Rejection::TargetShapeMismatch {
            expected,
            got: target.shape().to_vec(),
        });
    }
    let labels = match target {
        Tensor::Int64(labels) => labels,
        other => return Err(Rejection::ClassIndexDtype { got: other.dtype() }),
    };
    let classes = pred.shape()[1];
    let ignored = |label: i64| Some(label) == options.ignore_index;
    if let Some(&value) = labels
        .iter()
        .find(|&&label| !ignored(label) && (label < 0 || label as usize >= classes))
    {
        return Err(Rejection::TargetOutOfBounds { value, classes });
    }
    let weight = kornia_per_class("weight", weight, classes)?;
    check_float_input(pred)?;
    let focal = SoftmaxFocal {
        gamma: options.gamma,
        untargeted: Untargeted::Masked,
    };
    let alpha = options.alpha.map_or(Alpha::None, Alpha::Background);
    let map = Layout::of(pred.shape(), 1);
    let aggregation = Aggregation::plain(options.reduction);
    let reducer = aggregate(map, pred.shape(), None, aggregation, grad_output)?;
    let class_weight =
        |class: usize| alpha.of_class(class) * weight.as_ref().map_or(1.0, |w| w[class]);
    let labels = labels.as_standard_layout();
    let labels = labels.as_slice().unwrap_or_default();
    let x = Values::read(pred);
    // An ignored position's logits are replaced by 0: every term there is masked out.
    let inputs = |block: Block, logits: &mut [f64], targets: &mut [f64]| {
        let width = block.width;
        let labels = &labels[block.index..block.index + width];
        let first = block.position(0).element(&map, 0);
        let rows = logits
            .chunks_exact_mut(width)
            .zip(targets.chunks_exact_mut(width));
        for (class, (logits, targets)) in rows.enumerate() {
            x.read_run(first + class * map.spatial, logits);
            for ((logit, t), &label) in logits.iter_mut().zip(targets).zip(labels) {
                if ignored(label) {
                    (*logit, *t) = (0.0, 0.0);
                } else {
                    *t = f64::from(u8::from(label as usize == class));
                }
            }
        }
    };
    Ok(softmax_map(
        map,
        0,
        pred.shape(),
        inputs,
        None,
        &focal,
        class_weight,
        &reducer,
    ))
}

/// A kornia per-class tensor: `shape[0] == C` and C elements.
fn kornia_per_class(
    name: &str,
    tensor: Option<&Tensor>,
    classes: usize,
) -> Result<Option<Vec<f64>>> {
    let Some(tensor) = tensor else {
        return Ok(None);
    };
    let count: usize = tensor.shape().iter().product();
    if tensor.shape().first() != Some(&classes) || count != classes {
        return Err(Rejection::PerClassLength {
            name: name.to_string(),
            classes,
            got: count,
        });
    }
    Ok(Some(tensor.to_f64().iter().copied().collect()))
}
