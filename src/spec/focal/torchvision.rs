//! torchvision's `sigmoid_focal_loss`: the sigmoid focal loss of each element, with linear p_t.

use ndarray::ArrayD;

use super::{Aggregation, Alpha, SigmoidFocal, SoftTarget};
use crate::error::Rejection;
use crate::spec::binary::{check_same_shape, elementwise};
use crate::spec::cross_entropy::check_float_input;
use crate::spec::positions::Values;
use crate::spec::trace::{self, Fact};
use crate::spec::{LossOutput, Reduction, Result};
use crate::tensor::Tensor;

/// `torchvision.ops.sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction='none')`.
///
/// ```text
/// l = α_t·BCE(x, t)·(1 − p_t)^γ,  p_t = p·t + (1 − p)·(1 − t)      (SoftTarget::Linear)
/// α_t = α·t + (1 − α)·(1 − t), or 1 when α = −1                    (Alpha::Balanced / None)
/// mean = Σ l / (number of elements)
/// ```
///
/// α must lie in [0, 1] or be exactly −1. At a saturated logit torchvision's 1 − p_t rounds to 0:
/// its loss there is 0 and, for 0 < γ < 1, its gradient NaN; the reference returns the exact loss
/// and gradient (anchor artefacts `saturated-focal-loss`, `saturated-focal-gradient`).
pub fn loss(
    inputs: &Tensor,
    targets: &Tensor,
    alpha: f64,
    gamma: f64,
    reduction: Reduction,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    if !(0.0..=1.0).contains(&alpha) && alpha != -1.0 {
        return Err(Rejection::AlphaRange { value: alpha });
    }
    check_same_shape(inputs, targets)?;
    if !targets.dtype().is_floating() {
        return Err(Rejection::TargetDtypeMismatch {
            expected: inputs.dtype(),
            got: targets.dtype(),
        });
    }
    check_float_input(inputs)?;
    let (x, t) = (Values::read(inputs), Values::read(targets));
    let focal = SigmoidFocal {
        gamma,
        soft_target: SoftTarget::Linear,
    };
    let alpha = if alpha >= 0.0 {
        Alpha::Balanced(alpha)
    } else {
        Alpha::None
    };
    trace::record(|| {
        let mut facts = focal.facts("logits, sigmoid of each element", &alpha);
        facts.push(Fact::new(
            "reduction",
            Aggregation::plain(reduction).words(),
        ));
        facts
    });
    elementwise(inputs.shape(), reduction, grad_output, |i| {
        let t = t.at(i);
        let element = focal.element(x.at(i), t, alpha.sigmoid_pair(0, t), 1.0);
        (element.loss(), element.slope(1.0, 0.0))
    })
}
