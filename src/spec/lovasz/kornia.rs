//! kornia's front-ends of the Lovász family: `lovasz_softmax_loss` (every class, optional class
//! weights) and `lovasz_hinge_loss` (one hinge per image), over the core's terms.

use ndarray::ArrayD;

use super::{
    finish, hinge_term, running_mean, softmax_backward, softmax_term, upstream, Labels,
    SoftmaxInput, Term,
};
use crate::error::Rejection;
use crate::spec::positions::Values;
use crate::spec::{compensated_sum, LossOutput, Result};
use crate::tensor::Tensor;

/// `kornia.losses.lovasz_softmax_loss(pred, target, weight=None)`.
///
/// pred `(B, C, H, W)` logits with C ≥ 2, target `(B, H, W)` labels (any dtype, truncated to
/// int64, each in [0, C)); a pred batch of 1 is scored against every target image. Per target image
/// b, p = softmax(pred) over C, and over **all** classes ([`softmax_term`] with every class
/// scored; an absent class contributes its largest probability in the image):
///
/// ```text
/// loss = (1/B)·Σ_b (1/C)·Σ_c w_c·l_{b,c}
/// ```
///
/// kornia computes mean over b, then × w_c, then mean over c: the same number. w ≡ 1 without a
/// weight; see [`kornia_class_weights`] for its shapes.
///
/// Checks, in kornia's order: pred 4-D, target 3-D, C ≥ 2, batch (equal, or pred's 1) and H, W
/// equal, the weight, no empty tensor (kornia reshapes with an inferred axis), then labels
/// non-negative and below C.
pub fn kornia_lovasz_softmax(
    pred: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let &[batch, classes, height, width] = pred.shape() else {
        return Err(Rejection::UnexpectedShape {
            argument: "pred",
            expected: "(B, C, H, W)",
            got: pred.shape().to_vec(),
        });
    };
    let &[target_batch, target_height, target_width] = target.shape() else {
        return Err(Rejection::UnexpectedShape {
            argument: "target",
            expected: "(B, H, W)",
            got: target.shape().to_vec(),
        });
    };
    if classes < 2 {
        return Err(Rejection::TooFewClasses {
            shape: pred.shape().to_vec(),
        });
    }
    if !((batch == target_batch || batch == 1) && (height, width) == (target_height, target_width))
    {
        return Err(Rejection::TargetShapeMismatch {
            expected: vec![batch, height, width],
            got: target.shape().to_vec(),
        });
    }
    let weights: Vec<Option<f64>> = kornia_class_weights(weight, classes)?
        .into_iter()
        .map(Some)
        .collect();
    check_not_empty("pred", pred)?;
    check_not_empty("target", target)?;
    super::record_facts(
        true,
        "one per image",
        "every class",
        if weight.is_some() {
            "per class; the mean still divides by C"
        } else {
            "none"
        },
        None,
    );
    let labels = Labels::read(target);
    let label = |index: usize| labels.at(index) as i64;
    let count = target.shape().iter().product();
    if let Some(value) = (0..count)
        .map(label)
        .find(|&label| label < 0)
        .or_else(|| (0..count).map(label).find(|&label| label >= classes as i64))
    {
        return Err(Rejection::TargetOutOfBounds { value, classes });
    }

    let spatial = height * width;
    let input = SoftmaxInput {
        logits: Values::read(pred),
        classes,
        spatial,
        one_image: batch == 1,
    };
    let image_len = input.image_len();
    let upstream = upstream(grad_output);
    let mut gradient = vec![0.0; target_batch * image_len];
    let terms = (0..target_batch).map(|image| {
        let label = |row: usize| Some(label(image * spatial + row) as f64);
        Ok(softmax_term(
            &input,
            image..image + 1,
            &label,
            &weights,
            upstream,
            target_batch,
            &mut gradient,
        ))
    });
    let term = running_mean(terms, classes)?;
    if let Term::Scored(_) = term {
        // One pred image scored against every target image: ∂L/∂p sums over the targets.
        let (first, rest) = gradient.split_at_mut(batch * image_len);
        for block in rest.chunks(image_len) {
            for (sum, value) in first.iter_mut().zip(block) {
                *sum += value;
            }
        }
        gradient.truncate(batch * image_len);
        softmax_backward(&input, 0..batch, &mut gradient);
    }
    finish(term, pred.shape(), classes, grad_output, gradient)
}

/// kornia's class weights, checked as `weight.shape[0] == C` and `weight.numel() == C`.
///
/// A 1-D weight scales each class term. A `(C, 1, …)` weight passes the check too, and
/// `loss_per_class * weight` then broadcasts into a `(C, …, C)` grid whose mean is
/// mean_c(l_c)·mean(w): every class weighted by mean(w). A 0-d weight has no `shape[0]`.
fn kornia_class_weights(weight: Option<&Tensor>, classes: usize) -> Result<Vec<f64>> {
    let Some(weight) = weight else {
        return Ok(vec![1.0; classes]);
    };
    let shape = weight.shape();
    let Some(&first) = shape.first() else {
        return Err(Rejection::UnexpectedShape {
            argument: "weight",
            expected: "(C,)",
            got: vec![],
        });
    };
    let values: Vec<f64> = weight.to_f64().iter().copied().collect();
    if first != classes || values.len() != classes {
        return Err(Rejection::WeightLength {
            classes,
            got: shape.to_vec(),
        });
    }
    Ok(match shape.len() {
        1 => values,
        _ => vec![compensated_sum(values) / classes as f64; classes],
    })
}

/// `kornia.losses.lovasz_hinge_loss(pred, target)`.
///
/// pred `(B, 1, H, W)` logits, target `(B, H, W)` labels read as numbers (not checked). One
/// Lovász hinge per image ([`hinge_term`]), averaged over the batch: it equals smp's
/// `LovaszLoss('binary', per_image=True)` without ignored labels, in float32 or float64.
///
/// Checks, in kornia's order: pred `(B, 1, H, W)`, target 3-D, batch and H, W equal, no empty
/// tensor.
pub fn kornia_lovasz_hinge(
    pred: &Tensor,
    target: &Tensor,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    let &[batch, 1, height, width] = pred.shape() else {
        return Err(Rejection::UnexpectedShape {
            argument: "pred",
            expected: "(B, 1, H, W)",
            got: pred.shape().to_vec(),
        });
    };
    super::record_facts(false, "one per image", "", "none", None);
    if target.shape().len() != 3 {
        return Err(Rejection::UnexpectedShape {
            argument: "target",
            expected: "(B, H, W)",
            got: target.shape().to_vec(),
        });
    }
    if target.shape() != [batch, height, width] {
        return Err(Rejection::TargetShapeMismatch {
            expected: vec![batch, height, width],
            got: target.shape().to_vec(),
        });
    }
    check_not_empty("pred", pred)?;
    let logits = Values::read(pred);
    let labels = Labels::read(target);
    let upstream = upstream(grad_output);
    let mut gradient = vec![0.0; pred.shape().iter().product()];
    let spatial = height * width;
    let terms = (0..batch).map(|image| {
        let pixels = image * spatial..(image + 1) * spatial;
        let scale = upstream / batch as f64;
        let loss = hinge_term(
            &logits,
            pixels,
            |index| labels.at(index),
            scale,
            &mut gradient,
        );
        Ok(Term::Scored(loss))
    });
    let term = running_mean(terms, 1)?;
    finish(term, pred.shape(), 1, grad_output, gradient)
}

/// kornia reshapes with an inferred axis (`reshape(B, -1)`), which PyTorch refuses for a tensor
/// without elements.
fn check_not_empty(argument: &'static str, tensor: &Tensor) -> Result<()> {
    match tensor.shape().iter().product::<usize>() {
        0 => Err(Rejection::EmptyReshape {
            argument,
            shape: tensor.shape().to_vec(),
        }),
        _ => Ok(()),
    }
}
