//! The Lovász and MCC losses in the catalog: `smp.LovaszLoss`, `smp.MCCLoss`,
//! `kornia.lovasz_softmax_loss` and `kornia.lovasz_hinge_loss`.

use serde_json::Value;

use super::domain::{BOOL, CLASS_INDEX, EPS, SMP_MODES};
use super::{LossDef, Param};
use crate::spec::lovasz::{self, SmpLovaszOptions};
use crate::spec::mcc::{self, DEFAULT_EPS};

/// The four losses, with their anchors' argument names: smp's constructor arguments as
/// parameters and its forward's `y_pred`, `y_true` as tensors; kornia's function arguments.
pub(super) const LOSSES: &[LossDef] = &[
    LossDef {
        name: "smp.LovaszLoss",
        summary: "segmentation_models_pytorch LovaszLoss: Lovász hinge (binary, multilabel) or Lovász-softmax over present classes (multiclass), pooled or per image, ignore_index",
        params: &[
            Param::new("mode", SMP_MODES).required(),
            Param::new("per_image", BOOL),
            Param::new("ignore_index", CLASS_INDEX).nullable(),
            Param::new("from_logits", BOOL),
        ],
        required_tensors: &["y_pred", "y_true"],
        optional_tensors: &[],
        evaluate: |call| {
            // Accepted and type-checked like smp's constructor, then ignored as smp ignores it.
            call.bool_param("from_logits", true)?;
            let options = SmpLovaszOptions {
                mode: call.required("mode", Value::as_str, "a string")?.parse()?,
                per_image: call.bool_param("per_image", false)?,
                ignore_index: call.optional_int_param("ignore_index", None)?,
            };
            lovasz::smp_lovasz(
                call.tensor("y_pred")?,
                call.tensor("y_true")?,
                &options,
                call.grad_output.as_ref(),
            )
        },
    },
    LossDef {
        name: "smp.MCCLoss",
        summary: "segmentation_models_pytorch MCCLoss: 1 − Matthews correlation of soft counts pooled over the batch",
        params: &[Param::new("eps", EPS)],
        required_tensors: &["y_pred", "y_true"],
        optional_tensors: &[],
        evaluate: |call| {
            mcc::smp_mcc(
                call.tensor("y_pred")?,
                call.tensor("y_true")?,
                call.float_param("eps", DEFAULT_EPS)?,
                call.grad_output.as_ref(),
            )
        },
    },
    LossDef {
        name: "kornia.lovasz_softmax_loss",
        summary: "kornia lovasz_softmax_loss: per-image Lovász-softmax over all classes, class weights",
        params: &[],
        required_tensors: &["pred", "target"],
        optional_tensors: &["weight"],
        evaluate: |call| {
            lovasz::kornia_lovasz_softmax(
                call.tensor("pred")?,
                call.tensor("target")?,
                call.tensors.get("weight"),
                call.grad_output.as_ref(),
            )
        },
    },
    LossDef {
        name: "kornia.lovasz_hinge_loss",
        summary: "kornia lovasz_hinge_loss: per-image Lovász hinge of one logit channel",
        params: &[],
        required_tensors: &["pred", "target"],
        optional_tensors: &[],
        evaluate: |call| {
            lovasz::kornia_lovasz_hinge(
                call.tensor("pred")?,
                call.tensor("target")?,
                call.grad_output.as_ref(),
            )
        },
    },
];
