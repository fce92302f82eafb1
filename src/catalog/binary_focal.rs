//! The binary cross-entropy and focal family in the catalog: PyTorch's two BCEs, torchvision's
//! `sigmoid_focal_loss`, smp's `FocalLoss`, `SoftBCEWithLogitsLoss` and `SoftCrossEntropyLoss`,
//! MONAI's `FocalLoss`, kornia's `focal_loss` and `binary_focal_loss_with_logits`. Parameter and
//! tensor names are each anchor's own (constructor keywords and forward arguments for classes).

use super::domain::{
    Domain, BOOL, CLASS_INDEX, EPS, GAMMA, PER_CLASS, REDUCTIONS, SMP_MODES, UNIT, WEIGHTS,
};
use super::{LossCall, LossDef, NumberOrList, Param};

/// smp's focal reductions.
const SMP_FOCAL_REDUCTIONS: Domain = Domain::Choice(&["mean", "sum", "batchwise_mean", "none"]);
use crate::error::Rejection;
use crate::spec::binary::{self, SoftBceOptions};
use crate::spec::cross_entropy::{self, SoftCrossEntropyOptions};
use crate::spec::focal::kornia::{self, KorniaOptions};
use crate::spec::focal::monai::{self, MonaiFocalOptions, PerClass};
use crate::spec::focal::smp::{self, SmpFocalOptions, SmpReduction};
use crate::spec::focal::torchvision;
use crate::spec::Reduction;
use crate::spec::Result;

/// smp's reading of `reduction` for its BCE and CE: `mean` and `sum` reduce, any other string
/// leaves the loss unreduced.
fn smp_reduction(call: &LossCall) -> Result<Reduction> {
    Ok(match call.string_param("reduction")?.unwrap_or("mean") {
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        _ => Reduction::None,
    })
}

/// A MONAI per-class argument.
pub(super) fn per_class(value: Option<NumberOrList>) -> Option<PerClass> {
    value.map(|value| match value {
        NumberOrList::Number(number) => PerClass::Scalar(number),
        NumberOrList::List(list) => PerClass::List(list),
    })
}

/// kornia's focal arguments besides α, with kornia's defaults.
fn kornia_options(call: &LossCall, alpha: Option<f64>) -> Result<KorniaOptions> {
    Ok(KorniaOptions {
        alpha,
        gamma: call.float_param("gamma", 2.0)?,
        reduction: call.reduction_or(Reduction::None)?,
        ignore_index: call.optional_int_param("ignore_index", Some(-100))?,
    })
}

/// The losses of this family.
pub(super) const LOSSES: &[LossDef] = &[
    LossDef {
        name: "binary_cross_entropy",
        summary: "torch.nn.functional.binary_cross_entropy: probabilities in, log clamped at -100, broadcast weight",
        params: &[Param::new("reduction", REDUCTIONS)],
        required_tensors: &["input", "target"],
        optional_tensors: &["weight"],
        evaluate: |call| {
            binary::binary_cross_entropy(
                call.tensor("input")?,
                call.tensor("target")?,
                call.tensors.get("weight"),
                call.reduction()?,
                call.grad_output.as_ref(),
            )
        },
    },
    LossDef {
        name: "binary_cross_entropy_with_logits",
        summary: "torch.nn.functional.binary_cross_entropy_with_logits: logits in, right-aligned weight and pos_weight",
        params: &[Param::new("reduction", REDUCTIONS)],
        required_tensors: &["input", "target"],
        optional_tensors: &["weight", "pos_weight"],
        evaluate: |call| {
            binary::binary_cross_entropy_with_logits(
                call.tensor("input")?,
                call.tensor("target")?,
                call.tensors.get("weight"),
                call.tensors.get("pos_weight"),
                call.reduction()?,
                call.grad_output.as_ref(),
            )
        },
    },
    LossDef {
        name: "sigmoid_focal_loss",
        summary: "torchvision.ops.sigmoid_focal_loss: linear p_t, alpha in [0, 1] or -1, default reduction none",
        params: &[
            Param::new("alpha", UNIT),
            Param::new("gamma", GAMMA),
            Param::new("reduction", REDUCTIONS),
        ],
        required_tensors: &["inputs", "targets"],
        optional_tensors: &[],
        evaluate: |call| {
            torchvision::loss(
                call.tensor("inputs")?,
                call.tensor("targets")?,
                call.float_param("alpha", 0.25)?,
                call.float_param("gamma", 2.0)?,
                call.reduction_or(Reduction::None)?,
                call.grad_output.as_ref(),
            )
        },
    },
    LossDef {
        name: "smp.FocalLoss",
        summary: "segmentation_models_pytorch FocalLoss: binary / multiclass (one-vs-rest sigmoid) / multilabel",
        params: &[
            Param::new("mode", SMP_MODES).required(),
            Param::new("alpha", UNIT).nullable(),
            Param::new("gamma", GAMMA),
            Param::new("ignore_index", CLASS_INDEX).nullable(),
            Param::new("from_logits", BOOL),
            Param::new("eps", EPS),
            Param::new("reduction", SMP_FOCAL_REDUCTIONS),
            Param::new("normalized", BOOL),
            Param::new("reduced_threshold", UNIT).nullable(),
            Param::new("class_weights", WEIGHTS).nullable(),
        ],
        required_tensors: &["y_pred", "y_true"],
        optional_tensors: &[],
        evaluate: |call| {
            let class_weights = match call.number_or_list_param("class_weights")? {
                None => None,
                Some(NumberOrList::List(weights)) => Some(weights),
                Some(NumberOrList::Number(weight)) => {
                    return Err(Rejection::ParameterType {
                        name: "class_weights".into(),
                        expected: "a list of numbers or null",
                        got: weight.to_string(),
                    })
                }
            };
            let options = SmpFocalOptions {
                mode: call
                    .required("mode", |value| value.as_str(), "a string")?
                    .parse()?,
                alpha: call.optional_float_param("alpha", None)?,
                gamma: call.float_param("gamma", 2.0)?,
                ignore_index: call.optional_int_param("ignore_index", None)?,
                from_logits: call.bool_param("from_logits", true)?,
                eps: call.float_param("eps", 1e-7)?,
                reduction: SmpReduction::parse(call.string_param("reduction")?.unwrap_or("mean")),
                normalized: call.bool_param("normalized", false)?,
                reduced_threshold: call.optional_float_param("reduced_threshold", None)?,
                class_weights,
            };
            smp::loss(
                call.tensor("y_pred")?,
                call.tensor("y_true")?,
                &options,
                call.grad_output.as_ref(),
            )
        },
    },
    LossDef {
        name: "smp.SoftBCEWithLogitsLoss",
        summary: "segmentation_models_pytorch SoftBCEWithLogitsLoss: two-sided smoothing, ignored elements in the mean",
        params: &[
            Param::new("ignore_index", CLASS_INDEX).nullable(),
            Param::new("reduction", REDUCTIONS),
            Param::new("smooth_factor", UNIT).nullable(),
        ],
        required_tensors: &["y_pred", "y_true"],
        optional_tensors: &["weight", "pos_weight"],
        evaluate: |call| {
            let options = SoftBceOptions {
                ignore_index: call.optional_int_param("ignore_index", Some(-100))?,
                reduction: smp_reduction(call)?,
                smooth_factor: call.optional_float_param("smooth_factor", None)?,
            };
            binary::smp_soft_bce_with_logits(
                call.tensor("y_pred")?,
                call.tensor("y_true")?,
                call.tensors.get("weight"),
                call.tensors.get("pos_weight"),
                &options,
                call.grad_output.as_ref(),
            )
        },
    },
    LossDef {
        name: "smp.SoftCrossEntropyLoss",
        summary: "segmentation_models_pytorch SoftCrossEntropyLoss: fairseq label smoothing, ignored positions in the mean",
        params: &[
            Param::new("reduction", REDUCTIONS),
            // smp's default None fails at the division, so a value is required.
            Param::new("smooth_factor", UNIT).required(),
            Param::new("ignore_index", CLASS_INDEX).nullable(),
        ],
        required_tensors: &["y_pred", "y_true"],
        optional_tensors: &[],
        evaluate: |call| {
            let smooth_factor = call
                .optional_float_param("smooth_factor", None)?
                .ok_or_else(|| Rejection::ParameterType {
                    name: "smooth_factor".into(),
                    expected: "a number (smp's default None cannot be divided)",
                    got: "null".into(),
                })?;
            let options = SoftCrossEntropyOptions {
                reduction: smp_reduction(call)?,
                smooth_factor,
                ignore_index: call.optional_int_param("ignore_index", Some(-100))?,
            };
            cross_entropy::smp_soft_cross_entropy(
                call.tensor("y_pred")?,
                call.tensor("y_true")?,
                &options,
                call.grad_output.as_ref(),
            )
        },
    },
    LossDef {
        name: "monai.FocalLoss",
        summary: "MONAI FocalLoss: sigmoid or softmax, float32, spatial-mean sum, ignore_index mean over positions",
        params: &[
            Param::new("include_background", BOOL),
            Param::new("to_onehot_y", BOOL),
            Param::new("gamma", GAMMA),
            Param::new("alpha", PER_CLASS).nullable(),
            Param::new("weight", PER_CLASS).nullable(),
            Param::new("reduction", REDUCTIONS),
            Param::new("use_softmax", BOOL),
            Param::new("ignore_index", CLASS_INDEX).nullable(),
        ],
        required_tensors: &["input", "target"],
        optional_tensors: &[],
        evaluate: |call| {
            let options = MonaiFocalOptions {
                include_background: call.bool_param("include_background", true)?,
                to_onehot_y: call.bool_param("to_onehot_y", false)?,
                gamma: call.float_param("gamma", 2.0)?,
                alpha: per_class(call.number_or_list_param("alpha")?),
                weight: per_class(call.number_or_list_param("weight")?),
                reduction: call.reduction()?,
                use_softmax: call.bool_param("use_softmax", false)?,
                ignore_index: call.optional_int_param("ignore_index", None)?,
            };
            monai::loss(
                call.tensor("input")?,
                call.tensor("target")?,
                &options,
                call.grad_output.as_ref(),
            )
        },
    },
    LossDef {
        name: "kornia.focal_loss",
        summary: "kornia.losses.focal_loss: softmax focal, 1-alpha for class 0, mean over C x pixels",
        params: &[
            Param::new("alpha", UNIT).nullable().required(),
            Param::new("gamma", GAMMA),
            Param::new("reduction", REDUCTIONS),
            Param::new("ignore_index", CLASS_INDEX).nullable(),
        ],
        required_tensors: &["pred", "target"],
        optional_tensors: &["weight"],
        evaluate: |call| {
            let alpha = call.required(
                "alpha",
                |value| {
                    if value.is_null() {
                        Some(None)
                    } else {
                        value.as_f64().map(Some)
                    }
                },
                "a number or null",
            )?;
            let options = kornia_options(call, alpha)?;
            call.weighted_loss(["pred", "target"], kornia::loss, &options)
        },
    },
    LossDef {
        name: "kornia.binary_focal_loss_with_logits",
        summary: "kornia.losses.binary_focal_loss_with_logits: interpolated soft targets, per-class weight and pos_weight on axis 1",
        params: &[
            Param::new("alpha", UNIT).nullable(),
            Param::new("gamma", GAMMA),
            Param::new("reduction", REDUCTIONS),
            Param::new("ignore_index", CLASS_INDEX).nullable(),
        ],
        required_tensors: &["pred", "target"],
        optional_tensors: &["pos_weight", "weight"],
        evaluate: |call| {
            let options = kornia_options(call, call.optional_float_param("alpha", Some(0.25))?)?;
            kornia::binary_with_logits(
                call.tensor("pred")?,
                call.tensor("target")?,
                call.tensors.get("pos_weight"),
                call.tensors.get("weight"),
                &options,
                call.grad_output.as_ref(),
            )
        },
    },
];
