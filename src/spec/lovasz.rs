//! The Lovász family: the Lovász extension of the Jaccard loss (Berman et al., 2018), over hinge
//! errors of logits (`smp.LovaszLoss` binary and multilabel, `kornia.lovasz_hinge_loss`) or over
//! softmax errors |fg − p| (`smp.LovaszLoss` multiclass, `kornia.lovasz_softmax_loss`).
//!
//! One formula, [`lovasz_extension`], is applied to *groups* of (prediction, label) pairs. The
//! anchors differ only in conventions, each an explicit parameter below:
//!
//! | convention | smp `LovaszLoss` | kornia |
//! |---|---|---|
//! | groups | the whole batch pooled, or one per image (`per_image`) | one per image |
//! | classes of a softmax group | those present in its labels ([`ClassSelection::Present`]) | all ([`ClassSelection::All`]) |
//! | class weights | none | `weight`, the mean still divides by C |
//! | ignored labels | `ignore_index` (dropped from every group) | none |
//! | dtype | float32 only (its Lovász weights are float32) | float32 or float64 |
//! | averaging | smp's `mean` helper ([`running_mean`]) | plain means (the same numbers) |
//!
//! Kinks and ties, with the gradient convention at each (PyTorch's backward where it has one):
//!
//! * **Ties in the sort.** Errors are sorted by decreasing value with a stable sort, so equal
//!   errors keep their position order. The loss does not depend on how ties are ordered; the
//!   gradient does (each element gets the Lovász weight of its rank), and `torch.sort` promises no
//!   order. The fixtures therefore keep every group's errors at least 1e-4 apart.
//! * **relu at 0** (hinge): slope 0 at e = 0, as PyTorch's relu backward passes gradient only
//!   where e > 0.
//! * **|fg − p| at p = fg** (softmax errors): slope sign(0) = 0, as PyTorch's abs backward.
//! * The Lovász weights are functions of the labels only: no gradient flows through them.

use std::ops::Range;

use ndarray::{ArrayD, Zip};

use super::smp::SmpMode;
use super::softmax::{log_softmax, log_softmax_backward};
use super::{compensated_sum, grad_output_or_ones, scalar, LossOutput};
use crate::error::Rejection;
use crate::spec::Result;
use crate::tensor::{DType, Tensor};

/// `lovasz_grad`: the Lovász weights Δ of ground truth sorted by decreasing error.
///
/// ```text
/// g   = Σ_k gt_k
/// J_i = 1 − (g − Σ_{k≤i} gt_k) / (g + Σ_{k≤i} (1 − gt_k))
/// Δ_1 = J_1,   Δ_i = J_i − J_{i−1}
/// ```
///
/// For gt ∈ {0, 1}, J_i is the Jaccard loss of calling the i largest errors wrong. Labels are read
/// as numbers and not checked (neither smp nor kornia checks them), so a label of 2 counts twice.
pub fn lovasz_weights(truth_sorted: &[f64]) -> Vec<f64> {
    let total = compensated_sum(truth_sorted.iter().copied());
    let (mut hits, mut misses) = (0.0, 0.0);
    let jaccard: Vec<f64> = truth_sorted
        .iter()
        .map(|&truth| {
            hits += truth;
            misses += 1.0 - truth;
            1.0 - (total - hits) / (total + misses)
        })
        .collect();
    (0..jaccard.len())
        .map(|rank| match rank {
            0 => jaccard[0],
            _ => jaccard[rank] - jaccard[rank - 1],
        })
        .collect()
}

/// The function φ of each error that the extension weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surrogate {
    /// φ(e) = relu(e), the hinge; φ'(e) = 1 where e > 0, and 0 at and below 0.
    Relu,
    /// φ(e) = e, for softmax errors, which are never negative.
    Identity,
}

impl Surrogate {
    /// φ(e) and φ'(e). A NaN error passes through relu, as in PyTorch.
    fn apply(self, error: f64) -> (f64, f64) {
        match self {
            Surrogate::Relu if error <= 0.0 => (0.0, 0.0),
            Surrogate::Relu | Surrogate::Identity => (error, 1.0),
        }
    }
}

/// The Lovász extension of the Jaccard loss at errors e with ground truth gt, and its gradient:
///
/// ```text
/// σ     = the permutation sorting e by decreasing value (stable: ties keep position order)
/// loss  = Σ_i φ(e_σ(i))·Δ_i(gt_σ)
/// ∂loss/∂e_σ(i) = φ'(e_σ(i))·Δ_i(gt_σ)
/// ```
///
/// Returns the loss and ∂loss/∂e in the errors' own order. No errors give 0.
pub fn lovasz_extension(errors: &[f64], truth: &[f64], surrogate: Surrogate) -> (f64, Vec<f64>) {
    let mut order: Vec<usize> = (0..errors.len()).collect();
    order.sort_by(|&a, &b| errors[b].total_cmp(&errors[a]));
    let truth_sorted: Vec<f64> = order.iter().map(|&position| truth[position]).collect();
    let weights = lovasz_weights(&truth_sorted);
    let mut grad = vec![0.0; errors.len()];
    let mut terms = Vec::with_capacity(errors.len());
    for (&position, &weight) in order.iter().zip(&weights) {
        let (value, slope) = surrogate.apply(errors[position]);
        terms.push(value * weight);
        grad[position] = slope * weight;
    }
    (compensated_sum(terms), grad)
}

/// Which classes enter the mean of a softmax group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassSelection {
    /// The classes some label of the group names (smp's hard-wired `classes='present'`).
    Present,
    /// Every class; an absent one contributes its largest probability in the group (kornia).
    All,
}

/// A value smp's `mean` helper folds. kornia's groups always give `Scored`.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    /// A scalar loss and its gradient with respect to the flattened prediction (the logits for
    /// the hinge, the probabilities for softmax errors), as (index, value) entries to be summed:
    /// a group holds entries for its own elements only, so folding many groups costs no more
    /// than the elements they hold.
    Scored { loss: f64, grad: Vec<(usize, f64)> },
    /// The empty `(0, C)` tensor smp returns for a softmax group without unignored positions
    /// (`probas * 0.`).
    Void,
    /// The Python number 0 that smp's `mean` returns when there is nothing to average.
    Zero,
}

impl Term {
    /// The term with its loss and gradient mapped by the same linear function.
    fn map(self, f: impl Fn(f64) -> f64) -> Term {
        match self {
            Term::Scored { loss, grad } => Term::Scored {
                loss: f(loss),
                grad: grad
                    .into_iter()
                    .map(|(index, value)| (index, f(value)))
                    .collect(),
            },
            other => other,
        }
    }
}

/// smp's `mean(values)` helper, evaluated lazily in order as smp's generators are:
///
/// ```text
/// acc = v_1;   acc += v_k for k = 2..n (in place);   result = acc (n = 1), acc / n (n > 1), 0 (n = 0)
/// ```
///
/// In place, a scalar `acc` cannot take an empty `(0, C)` value ([`Rejection::VoidAfterScored`]); an
/// empty `acc` absorbs every later value and stays empty; the number 0 plus a value is the value.
/// When every value is a scalar this is the plain mean, which is what kornia computes.
fn running_mean(terms: impl IntoIterator<Item = Result<Term>>, classes: usize) -> Result<Term> {
    let mut acc: Option<Term> = None;
    let mut count = 0;
    for (index, term) in terms.into_iter().enumerate() {
        let term = term?;
        count += 1;
        acc = Some(match (acc, term) {
            (None | Some(Term::Zero), term) => term,
            (Some(Term::Void), _) => Term::Void,
            (Some(Term::Scored { .. }), Term::Void) => {
                return Err(Rejection::VoidAfterScored {
                    image: index,
                    classes,
                })
            }
            (Some(scored), Term::Zero) => scored,
            (
                Some(Term::Scored { loss, mut grad }),
                Term::Scored {
                    loss: more,
                    grad: more_grad,
                },
            ) => {
                grad.extend(more_grad);
                Term::Scored {
                    loss: loss + more,
                    grad,
                }
            }
        });
    }
    Ok(match acc {
        None => Term::Zero,
        Some(term) if count > 1 => term.map(|value| value / count as f64),
        Some(term) => term,
    })
}

/// One Lovász-hinge group over (index into the flattened logits x, label gt) pairs:
///
/// ```text
/// s_i = 2·gt_i − 1,   e_i = 1 − x_i·s_i,   loss = Σ_i relu(e_σ(i))·Δ_i(gt_σ)
/// ∂loss/∂x_i = −s_i·∂loss/∂e_i
/// ```
///
/// A group without pairs gives 0 with a zero gradient (smp's `logits.sum() * 0.`).
fn hinge_term(logits: &[f64], pairs: &[(usize, f64)]) -> Term {
    let signs: Vec<f64> = pairs.iter().map(|&(_, truth)| 2.0 * truth - 1.0).collect();
    let errors: Vec<f64> = pairs
        .iter()
        .zip(&signs)
        .map(|(&(index, _), &sign)| 1.0 - logits[index] * sign)
        .collect();
    let truth: Vec<f64> = pairs.iter().map(|&(_, truth)| truth).collect();
    let (loss, grad_errors) = lovasz_extension(&errors, &truth, Surrogate::Relu);
    let grad = pairs
        .iter()
        .zip(&signs)
        .zip(&grad_errors)
        .map(|((&(index, _), &sign), &grad_error)| (index, -(sign * grad_error)))
        .collect();
    Term::Scored { loss, grad }
}

/// One Lovász-softmax group over (index of the position's class-0 probability, label) pairs, the
/// probabilities of one position `class_stride` apart:
///
/// ```text
/// fg_{i,c} = [y_i = c],   e_{i,c} = |fg_{i,c} − p_{i,c}|
/// l_c      = Σ_i e_{σ(i),c}·Δ_i(fg_{σ,c})        (σ sorts e_{·,c} by decreasing value)
/// loss     = mean over the selected classes of w_c·l_c   (running_mean: Σ / count, 0 for none)
/// ∂e_{i,c}/∂p_{i,c} = sign(p_{i,c} − fg_{i,c}), 0 at p = fg
/// ```
fn softmax_term(
    probs: &[f64],
    class_stride: usize,
    pairs: &[(usize, f64)],
    selection: ClassSelection,
    weights: &[f64],
) -> Result<Term> {
    let class_terms = weights.iter().enumerate().filter_map(|(class, &weight)| {
        let truth: Vec<f64> = pairs
            .iter()
            .map(|&(_, label)| f64::from(label == class as f64))
            .collect();
        if selection == ClassSelection::Present && !truth.contains(&1.0) {
            return None;
        }
        let indices: Vec<usize> = pairs
            .iter()
            .map(|&(base, _)| base + class * class_stride)
            .collect();
        let errors: Vec<f64> = indices
            .iter()
            .zip(&truth)
            .map(|(&index, &fg)| (fg - probs[index]).abs())
            .collect();
        let (loss, grad_errors) = lovasz_extension(&errors, &truth, Surrogate::Identity);
        let grad = indices
            .iter()
            .zip(&truth)
            .zip(&grad_errors)
            .map(|((&index, &fg), &grad_error)| {
                let slope = match probs[index] {
                    p if p > fg => 1.0,
                    p if p < fg => -1.0,
                    _ => 0.0,
                };
                (index, slope * grad_error)
            })
            .collect();
        Some(Ok(Term::Scored { loss, grad }.map(|value| value * weight)))
    });
    running_mean(class_terms, weights.len())
}

/// The loss and gradient of the folded term for the grad_output. `backward` turns the gradient
/// with respect to the flattened prediction into one with respect to the prediction tensor.
///
/// A scalar term gives a 0-d loss. [`Term::Void`] gives smp's empty `(0, C)` loss with a zero
/// gradient (its grad_output has that empty shape). [`Term::Zero`] stands for the Python number 0
/// smp returns: the reference gives a 0-d 0 with a zero gradient (smp's number cannot be
/// differentiated, so no fixture records it).
fn finish(
    term: Term,
    prediction_shape: &[usize],
    classes: usize,
    grad_output: Option<&ArrayD<f64>>,
    backward: impl FnOnce(ArrayD<f64>) -> ArrayD<f64>,
) -> Result<LossOutput> {
    let zeros = || ArrayD::zeros(prediction_shape);
    match term {
        Term::Scored { loss, grad } => {
            let upstream = scalar(&grad_output_or_ones(grad_output, &[])?);
            let mut flat = vec![0.0; prediction_shape.iter().product()];
            for (index, value) in grad {
                if let Some(slot) = flat.get_mut(index) {
                    *slot += value;
                }
            }
            let mut scaled = zeros();
            for (slot, value) in scaled.iter_mut().zip(flat) {
                *slot = value * upstream;
            }
            Ok(LossOutput {
                loss: ArrayD::from_elem(vec![], loss),
                grad_input: backward(scaled),
            })
        }
        Term::Void => {
            grad_output_or_ones(grad_output, &[0, classes])?;
            Ok(LossOutput {
                loss: ArrayD::zeros(vec![0, classes]),
                grad_input: zeros(),
            })
        }
        Term::Zero => {
            grad_output_or_ones(grad_output, &[])?;
            Ok(LossOutput {
                loss: ArrayD::from_elem(vec![], 0.0),
                grad_input: zeros(),
            })
        }
    }
}

/// Softmax over the class axis 1, and the backward that maps ∂L/∂p to ∂L/∂logits:
/// ∂L/∂x_c = p_c·(g_c − Σ_k g_k·p_k), i.e. the log-softmax backward of g ⊙ p.
fn softmax_with_backward(
    logits: &ArrayD<f64>,
) -> (Vec<f64>, impl FnOnce(ArrayD<f64>) -> ArrayD<f64>) {
    let log_probs = log_softmax(logits, 1);
    let probs = log_probs.mapv(f64::exp);
    let flat = probs.iter().copied().collect();
    let backward = move |grad_probs: ArrayD<f64>| {
        let mut grad_log_probs = grad_probs;
        Zip::from(&mut grad_log_probs)
            .and(&probs)
            .for_each(|grad, &p| *grad *= p);
        log_softmax_backward(&log_probs, &grad_log_probs, 1)
    };
    (flat, backward)
}

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
    let prediction = y_pred.to_f64();
    let labels: Vec<f64> = y_true.to_f64().iter().copied().collect();
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

    if options.mode != SmpMode::Multiclass {
        let logits: Vec<f64> = prediction.iter().copied().collect();
        let terms = groups.iter().map(|(predictions, truths)| {
            let group_labels = &labels[truths.clone()];
            if predictions.len() != group_labels.len() && (masked || !group_labels.is_empty()) {
                return Err(mismatch());
            }
            let pairs: Vec<(usize, f64)> = predictions
                .clone()
                .zip(group_labels.iter().copied())
                .filter(|&(_, label)| kept(label))
                .collect();
            if !pairs.is_empty() {
                if y_true.dtype() == DType::Bool {
                    return Err(Rejection::BoolSubtraction { argument: "y_true" });
                }
                float32_only()?;
            }
            Ok(hinge_term(&logits, &pairs))
        });
        let term = running_mean(terms, 1)?;
        return finish(term, shape, 1, grad_output, |grad| grad);
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
    let (probs, backward) = softmax_with_backward(&prediction);
    let weights = vec![1.0; classes];
    let terms = groups.iter().map(|(predictions, truths)| {
        let group_labels = &labels[truths.clone()];
        let rows = predictions.len() / classes;
        if masked && rows != group_labels.len() {
            return Err(mismatch());
        }
        let kept_labels = group_labels.iter().copied().filter(|&label| kept(label));
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
        if rows != group_labels.len() {
            return Err(mismatch());
        }
        if kept_labels
            .clone()
            .any(|label| (0..classes).any(|class| label == class as f64))
        {
            float32_only()?;
        }
        let pairs: Vec<(usize, f64)> = group_labels
            .iter()
            .enumerate()
            .filter(|&(_, &label)| kept(label))
            .map(|(row, &label)| {
                let base = predictions.start + row / spatial * classes * spatial + row % spatial;
                (base, label)
            })
            .collect();
        softmax_term(&probs, spatial, &pairs, ClassSelection::Present, &weights)
    });
    let term = running_mean(terms, classes)?;
    finish(term, shape, classes, grad_output, backward)
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

/// `kornia.losses.lovasz_softmax_loss(pred, target, weight=None)`.
///
/// pred `(B, C, H, W)` logits with C ≥ 2, target `(B, H, W)` labels (any dtype, truncated to
/// int64, each in [0, C)); a pred batch of 1 is scored against every target image. Per target image
/// b, p = softmax(pred) over C, and over **all** classes ([`softmax_term`] with
/// [`ClassSelection::All`]):
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
    let weights = kornia_class_weights(weight, classes)?;
    check_not_empty("pred", pred)?;
    check_not_empty("target", target)?;
    let labels: Vec<i64> = target.to_f64().iter().map(|&label| label as i64).collect();
    if let Some(&value) = labels
        .iter()
        .find(|&&label| label < 0)
        .or_else(|| labels.iter().find(|&&label| label >= classes as i64))
    {
        return Err(Rejection::TargetOutOfBounds { value, classes });
    }

    let (probs, backward) = softmax_with_backward(&pred.to_f64());
    let spatial = height * width;
    let terms = (0..target_batch).map(|image| {
        let pred_image = if batch == 1 { 0 } else { image };
        let pairs: Vec<(usize, f64)> = (0..spatial)
            .map(|position| {
                (
                    pred_image * classes * spatial + position,
                    labels[image * spatial + position] as f64,
                )
            })
            .collect();
        softmax_term(&probs, spatial, &pairs, ClassSelection::All, &weights)
    });
    let term = running_mean(terms, classes)?;
    finish(term, pred.shape(), classes, grad_output, backward)
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
    let logits: Vec<f64> = pred.to_f64().iter().copied().collect();
    let labels: Vec<f64> = target.to_f64().iter().copied().collect();
    let spatial = height * width;
    let terms = (0..batch).map(|image| {
        let pixels = image * spatial..(image + 1) * spatial;
        let pairs: Vec<(usize, f64)> = pixels.clone().zip(labels[pixels].iter().copied()).collect();
        Ok(hinge_term(&logits, &pairs))
    });
    let term = running_mean(terms, 1)?;
    finish(term, pred.shape(), 1, grad_output, |grad| grad)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_of_binary_truth_are_jaccard_increments() {
        // gt sorted = [1, 0, 1]: J = [1 − 1/2, 1 − 1/3, 1 − 0/3] = [1/2, 2/3, 1].
        let weights = lovasz_weights(&[1.0, 0.0, 1.0]);
        let expected = [0.5, 2.0 / 3.0 - 0.5, 1.0 / 3.0];
        for (got, want) in weights.iter().zip(expected) {
            assert!((got - want).abs() < 1e-15, "{weights:?}");
        }
    }

    #[test]
    fn absent_class_weights_pick_the_largest_error() {
        let (loss, grad) = lovasz_extension(&[0.2, 0.7, 0.1], &[0.0; 3], Surrogate::Identity);
        assert_eq!(loss, 0.7);
        assert_eq!(grad, vec![0.0, 1.0, 0.0]);
    }

    #[test]
    fn relu_has_slope_zero_at_the_kink() {
        assert_eq!(Surrogate::Relu.apply(0.0), (0.0, 0.0));
        assert_eq!(Surrogate::Relu.apply(0.5), (0.5, 1.0));
    }

    #[test]
    fn an_empty_result_after_a_scored_image_fails_as_in_smp() {
        let scored = || {
            Ok(Term::Scored {
                loss: 1.0,
                grad: vec![(0, 0.0)],
            })
        };
        let error = running_mean([scored(), Ok(Term::Void)], 3).unwrap_err();
        assert_eq!(error.kind(), "void_after_scored");
        assert_eq!(running_mean([Ok(Term::Void), scored()], 3), Ok(Term::Void));
        assert_eq!(
            running_mean([Ok(Term::Zero), scored()], 3),
            Ok(Term::Scored {
                loss: 0.5,
                grad: vec![(0, 0.0)]
            })
        );
    }
}
