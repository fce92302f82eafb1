//! The oracle: each covered loss and its vector-Jacobian product evaluated in arbitrary precision
//! ([`real::PRECISION`] bits), written from the formulas alone — it shares no code with
//! [`crate::spec`] — so that the reference (or any implementation) can be graded in ulps of the
//! exact value ([`grade`]). How it was validated is in `docs/oracle.md`.
//!
//! The oracle computes; it does not judge arguments. A call it cannot evaluate (a loss it does not
//! cover, a missing tensor, shapes that do not fit, a class index out of range) gives `None`, and
//! an argument the anchor would reject but that has a value (an int32 target, say) is evaluated
//! all the same: grade only calls the anchor accepts.
//!
//! PyTorch's conventions that are semantics are kept: BCE's log clamp at −100 and its backward
//! ε = 1e-12 (as a float32), NaN for a mean over nothing, the weighted mean Σw·l/Σw, label
//! smoothing's ε/C term over every class weight, the probability-target mean over positions.
//! Non-finite values follow IEEE 754's rules on the exact values.

mod binary;
mod cross_entropy;
mod grade;
mod kornia;
mod lovasz;
mod mcc;
mod monai;
mod options;
mod overlap;
pub mod real;
mod smp;

use ndarray::ArrayD;
use serde_json::Value;

pub use grade::{grade, ulps, Grades};
pub use real::Real;

use crate::catalog::LossCall;

/// The losses the oracle evaluates.
pub const LOSSES: &[&str] = &[
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "sigmoid_focal_loss",
    "segloss.soft_dice",
    "segloss.soft_iou",
    // The library focal losses and smp's BCE and CE.
    "kornia.binary_focal_loss_with_logits",
    "kornia.focal_loss",
    "monai.FocalLoss",
    "smp.FocalLoss",
    "smp.SoftBCEWithLogitsLoss",
    "smp.SoftCrossEntropyLoss",
    // The overlap family of the libraries.
    "smp.DiceLoss",
    "smp.JaccardLoss",
    "smp.TverskyLoss",
    "smp.MCCLoss",
    "monai.DiceLoss",
    "monai.GeneralizedDiceLoss",
    "monai.TverskyLoss",
    "monai.DiceCELoss",
    "monai.DiceFocalLoss",
    "kornia.dice_loss",
    "kornia.tversky_loss",
    // The Lovász losses.
    "kornia.lovasz_hinge_loss",
    "kornia.lovasz_softmax_loss",
    "smp.LovaszLoss",
];

/// The exact loss and gradient of a call, at the oracle's precision.
#[derive(Debug, Clone, PartialEq)]
pub struct Exact {
    /// The loss: 0-d for `mean` and `sum`, per position for `none`.
    pub loss: ArrayD<Real>,
    /// gradᵀ·∂loss/∂input for the call's grad_output (ones when absent); the input's shape.
    pub grad_input: ArrayD<Real>,
}

impl Exact {
    /// The loss rounded once to f64.
    pub fn loss_f64(&self) -> ArrayD<f64> {
        self.loss.map(Real::to_f64)
    }

    /// The gradient rounded once to f64.
    pub fn grad_input_f64(&self) -> ArrayD<f64> {
        self.grad_input.map(Real::to_f64)
    }
}

/// The exact loss and gradient of `call`; `None` for a loss outside [`LOSSES`] or a call whose
/// arguments the formula cannot be evaluated on.
pub fn evaluate(call: &LossCall) -> Option<Exact> {
    evaluate_at(call, None)
}

/// As [`evaluate`], with the prediction (the loss's first tensor) replaced by `at`, values that
/// need not be f64 (for finite differences at the oracle's precision); `at` must have the
/// prediction's shape.
pub fn evaluate_at(call: &LossCall, at: Option<&ArrayD<Real>>) -> Option<Exact> {
    match call.loss.as_str() {
        "cross_entropy" => cross_entropy::cross_entropy(call, at),
        "nll_loss" => cross_entropy::nll_loss(call, at),
        "binary_cross_entropy" => binary::binary_cross_entropy(call, at),
        "binary_cross_entropy_with_logits" => binary::binary_cross_entropy_with_logits(call, at),
        "sigmoid_focal_loss" => binary::sigmoid_focal_loss(call, at),
        "segloss.soft_dice" => overlap::textbook(call, at, overlap::Textbook::Dice),
        "segloss.soft_iou" => overlap::textbook(call, at, overlap::Textbook::Iou),
        "smp.DiceLoss" => overlap::smp(call, at, overlap::Smp::Dice),
        "smp.JaccardLoss" => overlap::smp(call, at, overlap::Smp::Jaccard),
        "smp.TverskyLoss" => overlap::smp(call, at, overlap::Smp::Tversky),
        "smp.MCCLoss" => mcc::smp_mcc(call, at),
        "monai.DiceLoss" | "monai.GeneralizedDiceLoss" | "monai.TverskyLoss" => {
            overlap::monai(call, at, &call.loss)
        }
        "monai.DiceCELoss" => overlap::monai_dice_ce(call, at),
        "monai.DiceFocalLoss" => overlap::monai_dice_focal(call, at),
        "kornia.dice_loss" => overlap::kornia(call, at, overlap::Kornia::Dice),
        "kornia.tversky_loss" => overlap::kornia(call, at, overlap::Kornia::Tversky),
        "kornia.binary_focal_loss_with_logits" => kornia::binary_focal_loss_with_logits(call, at),
        "kornia.focal_loss" => kornia::focal_loss(call, at),
        "monai.FocalLoss" => monai::focal_loss(call, at),
        "smp.FocalLoss" => smp::focal_loss(call, at),
        "smp.SoftBCEWithLogitsLoss" => smp::soft_bce_with_logits(call, at),
        "smp.SoftCrossEntropyLoss" => smp::soft_cross_entropy(call, at),
        "kornia.lovasz_hinge_loss" => lovasz::kornia_hinge(call, at),
        "kornia.lovasz_softmax_loss" => lovasz::kornia_softmax(call, at),
        "smp.LovaszLoss" => lovasz::smp_lovasz(call, at),
        _ => None,
    }
}

/// How per-position losses are reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reduce {
    None,
    Mean,
    Sum,
}

/// The call's `reduction` (`default` when absent).
fn reduction(call: &LossCall, default: Reduce) -> Option<Reduce> {
    match call.params.get("reduction") {
        None => Some(default),
        Some(Value::String(name)) => match name.as_str() {
            "none" => Some(Reduce::None),
            "mean" => Some(Reduce::Mean),
            "sum" => Some(Reduce::Sum),
            _ => None,
        },
        Some(_) => None,
    }
}

/// A number parameter (`default` when absent).
fn number(call: &LossCall, name: &str, default: f64) -> Option<f64> {
    match call.params.get(name) {
        None => Some(default),
        Some(value) => value.as_f64(),
    }
}

/// A floating-point tensor argument, as f64.
fn float_tensor(call: &LossCall, name: &str) -> Option<ArrayD<f64>> {
    let tensor = call.tensors.get(name)?;
    tensor
        .dtype()
        .is_floating()
        .then(|| tensor.to_f64().as_standard_layout().into_owned())
}

/// The prediction tensor `name` in extended reals, or `at` in its place.
fn prediction(call: &LossCall, name: &str, at: Option<&ArrayD<Real>>) -> Option<ArrayD<Real>> {
    let values = float_tensor(call, name)?;
    match at {
        Some(at) => (at.shape() == values.shape()).then(|| at.clone()),
        None => Some(values.map(|&value| Real::from_f64(value))),
    }
}

/// Reduces per-position losses: `none` → l, `sum` → Σ l, `mean` → Σ l / denominator; and the
/// upstream gradient of each position for the call's grad_output (which must have the reduced
/// loss's shape): g, g, g / denominator.
fn reduce(
    call: &LossCall,
    reduction: Reduce,
    per_position: ArrayD<Real>,
    denominator: &Real,
) -> Option<(ArrayD<Real>, ArrayD<Real>)> {
    let reduced_shape: &[usize] = match reduction {
        Reduce::None => per_position.shape(),
        Reduce::Mean | Reduce::Sum => &[],
    };
    let grad_output = match &call.grad_output {
        Some(given) if given.shape() != reduced_shape => return None,
        Some(given) => given.map(|&value| Real::from_f64(value)),
        None => ArrayD::from_elem(reduced_shape, Real::one()),
    };
    let scalar = |array: ArrayD<Real>| array.into_iter().next().unwrap_or_else(Real::zero);
    Some(match reduction {
        Reduce::None => (per_position, grad_output),
        Reduce::Sum => {
            let upstream = ArrayD::from_elem(per_position.shape(), scalar(grad_output));
            (
                ArrayD::from_elem(vec![], real::sum(&per_position)),
                upstream,
            )
        }
        Reduce::Mean => {
            let upstream =
                ArrayD::from_elem(per_position.shape(), scalar(grad_output) / denominator);
            let mean = real::sum(&per_position) / denominator;
            (ArrayD::from_elem(vec![], mean), upstream)
        }
    })
}

/// Σ_{c ≠ k} v_c for every k, as prefix + suffix sums: no term is added and taken away again, so
/// a dominant v_k does not cancel out of the others' sum.
fn sums_of_others(values: &[Real]) -> Vec<Real> {
    let mut before = Vec::with_capacity(values.len());
    let mut total = Real::zero();
    for value in values {
        before.push(total.clone());
        total = total + value;
    }
    let mut after = vec![Real::zero(); values.len()];
    let mut total = Real::zero();
    for (k, value) in values.iter().enumerate().rev() {
        after[k] = total.clone();
        total = total + value;
    }
    before.into_iter().zip(after).map(|(b, a)| b + a).collect()
}
