//! smp's front-end of the Lovász family: `smp.losses.LovaszLoss`, its groups (the pooled batch or
//! one per image), ignored labels and smp's averaging, over the core's hinge and softmax terms.

use std::ops::Range;

use ndarray::ArrayD;

use super::{
    finish, hinge_term, running_mean, softmax_backward, softmax_term, upstream, Labels,
    SoftmaxInput, Term,
};
use crate::error::Rejection;
use crate::spec::positions::Values;
use crate::spec::smp::SmpMode;
use crate::spec::{LossOutput, Result};
use crate::tensor::{DType, Tensor};

/// The arguments of `smp.losses.LovaszLoss(mode, per_image=False, ignore_index=None,
/// from_logits=True)` that matter: smp never reads `from_logits` (multiclass always applies
/// softmax, binary and multilabel always take logits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmpLovaszOptions {
    /// binary / multiclass / multilabel.
    pub mode: SmpMode,
    /// One group per image (`zip(y_pred, y_true)`) instead of the pooled batch.
    pub per_image: bool,
    /// Labels equal to this are dropped from every group.
    pub ignore_index: Option<i64>,
}

/// `smp.losses.LovaszLoss(**options)(y_pred, y_true)`.
///
/// Groups: the whole batch, or with `per_image` one per image of `zip(y_pred, y_true)` (which
/// stops at the shorter batch). Labels equal to `ignore_index` are dropped. The groups' losses
/// are averaged with smp's `mean` ([`running_mean`]).
///
/// * binary, multilabel: each group is one Lovász hinge ([`hinge_term`]) over every element of
///   y_pred and y_true flattened (all channels together for multilabel).
/// * multiclass: p = softmax(y_pred) over axis 1; each group is a Lovász-softmax over the classes
///   present in its labels ([`softmax_term`]). A group without unignored positions yields smp's
///   empty `(0, C)` tensor (so does a pooled batch of zero images), and a group whose labels name
///   no class yields 0. smp reads a 3-D `(N, C, L)` prediction as one sigmoid channel and then
///   fails when a label is 0, like a `(N, 1, …)` one ([`Rejection::TooFewClasses`]).
///
/// Input checks, in smp's order per group: with `ignore_index`, label and prediction counts must
/// match (the mask); a label of bool dtype fails at `1 − gt` (hinge) and a prediction other than
/// float32 at the dot product with the float32 Lovász weights — both only when a dot is evaluated
/// (all-ignored inputs pass in float64).
///
/// Not modelled (the reference rejects what smp accepts by broadcasting): a one-element
/// prediction paired with several labels; and where smp returns the Python number 0 (no label
/// names a class, or nothing to average) the reference returns a 0-d 0 even if sizes disagree.
pub fn smp_lovasz(
    y_pred: &Tensor,
    y_true: &Tensor,
    options: &SmpLovaszOptions,
    grad_output: Option<&ArrayD<f64>>,
) -> Result<LossOutput> {
    super::record_facts(
        options.mode == SmpMode::Multiclass,
        if options.per_image {
            "one per image"
        } else {
            "the whole batch pooled"
        },
        "those present in its labels",
        "none",
        options.ignore_index,
    );
    let prediction = Values::read(y_pred);
    let labels = Labels::read(y_true);
    let groups = smp_groups(y_pred.shape(), y_true.shape(), options.per_image)?;
    let kept = |label: f64| {
        options
            .ignore_index
            .is_none_or(|ignored| label != ignored as f64)
    };
    let mismatch = || Rejection::PairingMismatch {
        prediction: y_pred.shape().to_vec(),
        target: y_true.shape().to_vec(),
    };
    let float32_only = || match y_pred.dtype() {
        DType::Float32 => Ok(()),
        got => Err(Rejection::Float32Only { got }),
    };
    let masked = options.ignore_index.is_some();
    let shape = y_pred.shape();
    let upstream = upstream(grad_output);
    let mut gradient = vec![0.0; shape.iter().product()];

    if options.mode != SmpMode::Multiclass {
        let terms = groups.iter().map(|(predictions, truths)| {
            if predictions.len() != truths.len() && (masked || !truths.is_empty()) {
                return Err(mismatch());
            }
            let label = |index: usize| labels.at(index - predictions.start + truths.start);
            let elements = predictions
                .clone()
                .take(truths.len())
                .filter(|&index| kept(label(index)));
            if elements.clone().next().is_some() {
                if y_true.dtype() == DType::Bool {
                    return Err(Rejection::BoolSubtraction { argument: "y_true" });
                }
                float32_only()?;
            }
            let scale = upstream / groups.len() as f64;
            let loss = hinge_term(&prediction, elements, label, scale, &mut gradient);
            Ok(Term::Scored(loss))
        });
        let term = running_mean(terms, 1)?;
        return finish(term, shape, 1, grad_output, gradient);
    }

    if shape.len() < 2 {
        return Err(Rejection::UnexpectedShape {
            argument: "y_pred",
            expected: "(N, C, …)",
            got: shape.to_vec(),
        });
    }
    // smp reshapes a 3-D prediction (B, H, W) to (B, 1, H, W): one class, every element a position.
    let (classes, spatial) = match shape.len() {
        3 => (1, 1),
        _ => (shape[1], shape[2..].iter().product::<usize>()),
    };
    if classes == 0 {
        return Err(Rejection::EmptyReshape {
            argument: "y_pred",
            shape: shape.to_vec(),
        });
    }
    let input = SoftmaxInput {
        logits: prediction,
        classes,
        spatial,
        one_image: false,
    };
    let terms = groups.iter().map(|(predictions, truths)| {
        let rows = predictions.len() / classes;
        if masked && rows != truths.len() {
            return Err(mismatch());
        }
        let label = |row: usize| Some(labels.at(truths.start + row)).filter(|&label| kept(label));
        let kept_labels = (0..truths.len()).filter_map(label);
        if classes == 1 {
            if kept_labels.clone().any(|label| label == 0.0) {
                return Err(Rejection::TooFewClasses {
                    shape: shape.to_vec(),
                });
            }
            return Ok(Term::Zero);
        }
        if (masked && kept_labels.clone().next().is_none()) || rows == 0 {
            return Ok(Term::Void);
        }
        if rows != truths.len() {
            return Err(mismatch());
        }
        // The classes present, each with weight 1.
        let mut present = vec![None; classes];
        for label in kept_labels {
            let class = label as usize;
            if class as f64 == label && class < classes {
                present[class] = Some(1.0);
            }
        }
        if present.iter().any(Option::is_some) {
            float32_only()?;
        }
        let first = predictions.start / input.image_len();
        Ok(softmax_term(
            &input,
            first..first + rows / spatial,
            &label,
            &present,
            upstream,
            groups.len(),
            &mut gradient,
        ))
    });
    let term = running_mean(terms, classes)?;
    if let Term::Scored(_) = term {
        softmax_backward(&input, 0..shape[0], &mut gradient);
    }
    finish(term, shape, classes, grad_output, gradient)
}

/// The groups smp scores, as ranges of the flattened y_pred and y_true: the whole batch, or with
/// `per_image` one per image of `zip(y_pred, y_true)`, which stops at the shorter batch.
fn smp_groups(
    pred_shape: &[usize],
    true_shape: &[usize],
    per_image: bool,
) -> Result<Vec<(Range<usize>, Range<usize>)>> {
    let pred_len: usize = pred_shape.iter().product();
    let true_len: usize = true_shape.iter().product();
    if !per_image {
        return Ok(vec![(0..pred_len, 0..true_len)]);
    }
    let batch_of = |argument: &'static str, shape: &[usize]| {
        shape.first().copied().ok_or(Rejection::UnexpectedShape {
            argument,
            expected: "(N, …) to iterate over images",
            got: shape.to_vec(),
        })
    };
    let pred_batch = batch_of("y_pred", pred_shape)?;
    let true_batch = batch_of("y_true", true_shape)?;
    let pred_image = pred_len.checked_div(pred_batch).unwrap_or(0);
    let true_image = true_len.checked_div(true_batch).unwrap_or(0);
    Ok((0..pred_batch.min(true_batch))
        .map(|image| {
            (
                image * pred_image..(image + 1) * pred_image,
                image * true_image..(image + 1) * true_image,
            )
        })
        .collect())
}
