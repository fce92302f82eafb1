//! The overlap family in the catalog: the textbook soft Dice and soft IoU, and the Dice, Jaccard,
//! Tversky and generalized Dice losses of smp, MONAI and kornia, each with its library's argument
//! names and defaults.

use serde_json::Value;

use super::binary_focal::per_class;
use super::domain::{
    Domain, BOOL, CLASS_INDEX, EPS, GAMMA, LAMBDA, PER_CLASS, REDUCTIONS, SMP_MODES, UNIT, WEIGHTS,
};
use super::{LossCall, LossDef, NumberOrList, Param};
use crate::error::Rejection;
use crate::spec::overlap::kornia::{self, KorniaDiceOptions};
use crate::spec::overlap::monai::{
    self, DiceCeOptions, DiceFocalOptions, MonaiOptions, MonaiScore, MonaiWeight,
};
use crate::spec::overlap::smp::{self, SmpOptions, SmpScore};
use crate::spec::overlap::textbook::{self, Textbook, TextbookOptions};
use crate::spec::overlap::WeightType;
use crate::spec::LossOutput;
use crate::spec::Result;

const TEXTBOOK_PARAMS: &[Param] = &[
    Param::new("smooth", UNIT),
    Param::new("reduction", REDUCTIONS),
];
/// smp's overlap parameters; Tversky adds its own after `eps`.
macro_rules! smp_params {
    ($($own:expr),*) => {
        &[
            Param::new("mode", SMP_MODES).required(),
            Param::new("classes", Domain::IntList { min: -2, max: 3 }).nullable(),
            Param::new("log_loss", BOOL),
            Param::new("from_logits", BOOL),
            Param::new("smooth", UNIT),
            Param::new("ignore_index", CLASS_INDEX).nullable(),
            Param::new("eps", EPS),
            $($own,)*
            Param::new("class_weights", WEIGHTS).nullable(),
        ]
    };
}
const SMP_PARAMS: &[Param] = smp_params![];
const SMP_TVERSKY_PARAMS: &[Param] = smp_params![
    Param::new("alpha", UNIT),
    Param::new("beta", UNIT),
    Param::new("gamma", Domain::Number { min: 0.5, max: 3.0 })
];
const SMP_TENSORS: &[&str] = &["y_pred", "y_true"];
const MONAI_TENSORS: &[&str] = &["input", "target"];
const KORNIA_TENSORS: &[&str] = &["pred", "target"];

/// The parameters of MONAI's `DiceLoss` constructor that `DiceCELoss` and `DiceFocalLoss` repeat,
/// in signature order, followed by each loss's own.
macro_rules! monai_dice_params {
    ($reductions:expr; $($own:expr),*) => {
        &[
            Param::new("include_background", BOOL),
            Param::new("to_onehot_y", BOOL),
            Param::new("sigmoid", BOOL),
            Param::new("softmax", BOOL),
            Param::new("squared_pred", BOOL),
            Param::new("jaccard", BOOL),
            Param::new("reduction", $reductions),
            Param::new("smooth_nr", UNIT),
            Param::new("smooth_dr", UNIT),
            Param::new("batch", BOOL),
            $($own),*
        ]
    };
}

/// Every overlap loss.
pub(super) const LOSSES: &[LossDef] = &[
    LossDef {
        name: "segloss.soft_dice",
        summary: "the textbook soft Dice loss 1 − (2Σpt + s)/(Σp + Σt + s) per image and class, of probabilities",
        params: TEXTBOOK_PARAMS,
        required_tensors: &["input", "target"],
        optional_tensors: &[],
        evaluate: |call| textbook_loss(Textbook::Dice, call),
    },
    LossDef {
        name: "segloss.soft_iou",
        summary: "the textbook soft IoU loss 1 − (Σpt + s)/(Σp + Σt − Σpt + s) per image and class, of probabilities",
        params: TEXTBOOK_PARAMS,
        required_tensors: &["input", "target"],
        optional_tensors: &[],
        evaluate: |call| textbook_loss(Textbook::Iou, call),
    },
    LossDef {
        name: "smp.DiceLoss",
        summary: "segmentation_models_pytorch 0.6 DiceLoss: L1 intersection, batch-pooled per class, absent classes zeroed",
        params: SMP_PARAMS,
        required_tensors: SMP_TENSORS,
        optional_tensors: &[],
        evaluate: |call| smp_loss(SmpScore::Dice, call),
    },
    LossDef {
        name: "smp.JaccardLoss",
        summary: "segmentation_models_pytorch 0.6 JaccardLoss: as DiceLoss with the Jaccard ratio",
        params: SMP_PARAMS,
        required_tensors: SMP_TENSORS,
        optional_tensors: &[],
        evaluate: |call| smp_loss(SmpScore::Jaccard, call),
    },
    LossDef {
        name: "smp.TverskyLoss",
        summary: "segmentation_models_pytorch 0.6 TverskyLoss: as DiceLoss with α, β, and γ on the mean",
        params: SMP_TVERSKY_PARAMS,
        required_tensors: SMP_TENSORS,
        optional_tensors: &[],
        evaluate: |call| {
            let score = SmpScore::Tversky {
                alpha: call.float_param("alpha", 0.5)?,
                beta: call.float_param("beta", 0.5)?,
                gamma: call.float_param("gamma", 1.0)?,
            };
            smp_loss(score, call)
        },
    },
    LossDef {
        name: "monai.DiceLoss",
        summary: "MONAI 1.6 DiceLoss: per (image, class) Dice or Jaccard, squared_pred, soft_label, weight, ignore_index",
        params: monai_dice_params![
            REDUCTIONS;
            Param::new("weight", PER_CLASS).nullable(),
            Param::new("soft_label", BOOL),
            Param::new("ignore_index", CLASS_INDEX).nullable()
        ],
        required_tensors: MONAI_TENSORS,
        optional_tensors: &[],
        evaluate: |call| {
            let options = monai_options(call)?;
            let weight = call.number_or_list_param("weight")?.map(|numbers| {
                let (values, broadcast) = match numbers {
                    NumberOrList::Number(value) => (vec![value], true),
                    NumberOrList::List(values) => (values, false),
                };
                MonaiWeight {
                    values,
                    broadcast,
                    float32: true,
                }
            });
            let score = MonaiScore::Dice {
                squared_pred: call.bool_param("squared_pred", false)?,
                jaccard: call.bool_param("jaccard", false)?,
                weight,
            };
            monai_loss(&score, &options, call)
        },
    },
    LossDef {
        name: "monai.GeneralizedDiceLoss",
        summary: "MONAI 1.6 GeneralizedDiceLoss: class weights 1/T², 1/T or 1 (float32) inside one ratio per image",
        params: &[
            Param::new("include_background", BOOL),
            Param::new("to_onehot_y", BOOL),
            Param::new("sigmoid", BOOL),
            Param::new("softmax", BOOL),
            Param::new("w_type", Domain::Choice(&["square", "simple", "uniform"])),
            Param::new("reduction", REDUCTIONS),
            Param::new("smooth_nr", UNIT),
            Param::new("smooth_dr", UNIT),
            Param::new("batch", BOOL),
            Param::new("soft_label", BOOL),
        ],
        required_tensors: MONAI_TENSORS,
        optional_tensors: &[],
        evaluate: |call| {
            let options = monai_options(call)?;
            options.check()?;
            let weight_type = match call.string_param("w_type")?.unwrap_or("square") {
                "square" => WeightType::Square,
                "simple" => WeightType::Simple,
                "uniform" => WeightType::Uniform,
                other => {
                    return Err(Rejection::InvalidOption {
                        name: "w_type".into(),
                        value: other.into(),
                        allowed: "square, simple, uniform",
                    })
                }
            };
            monai_loss(&MonaiScore::Generalized(weight_type), &options, call)
        },
    },
    LossDef {
        name: "monai.TverskyLoss",
        summary: "MONAI 1.6 TverskyLoss: per (image, class) Tversky, soft_label, ignore_index",
        params: &[
            Param::new("include_background", BOOL),
            Param::new("to_onehot_y", BOOL),
            Param::new("sigmoid", BOOL),
            Param::new("softmax", BOOL),
            Param::new("alpha", UNIT),
            Param::new("beta", UNIT),
            Param::new("reduction", REDUCTIONS),
            Param::new("smooth_nr", UNIT),
            Param::new("smooth_dr", UNIT),
            Param::new("batch", BOOL),
            Param::new("soft_label", BOOL),
            Param::new("ignore_index", CLASS_INDEX).nullable(),
        ],
        required_tensors: MONAI_TENSORS,
        optional_tensors: &[],
        evaluate: |call| {
            let options = monai_options(call)?;
            let score = MonaiScore::Tversky {
                alpha: call.float_param("alpha", 0.5)?,
                beta: call.float_param("beta", 0.5)?,
            };
            monai_loss(&score, &options, call)
        },
    },
    LossDef {
        name: "monai.DiceCELoss",
        summary: "MONAI 1.6 DiceCELoss: λ_dice·DiceLoss + λ_ce·cross_entropy on the raw input (BCE with logits for one channel)",
        params: monai_dice_params![
            Domain::Choice(&["mean", "sum"]);
            Param::new("lambda_dice", LAMBDA),
            Param::new("lambda_ce", LAMBDA),
            Param::new("label_smoothing", UNIT)
        ],
        required_tensors: MONAI_TENSORS,
        optional_tensors: &["weight"],
        evaluate: |call| {
            let options = DiceCeOptions {
                squared_pred: call.bool_param("squared_pred", false)?,
                jaccard: call.bool_param("jaccard", false)?,
                lambda_dice: call.float_param("lambda_dice", 1.0)?,
                lambda_ce: call.float_param("lambda_ce", 1.0)?,
                label_smoothing: call.float_param("label_smoothing", 0.0)?,
            };
            monai::dice_ce(
                call.tensor("input")?,
                call.tensor("target")?,
                call.tensors.get("weight"),
                &monai_options(call)?,
                &options,
                call.grad_output.as_ref(),
            )
        },
    },
    LossDef {
        name: "monai.DiceFocalLoss",
        summary: "MONAI 1.6 DiceFocalLoss: λ_dice·DiceLoss + λ_focal·FocalLoss (sigmoid, float32), one-hot target shared",
        params: monai_dice_params![
            REDUCTIONS;
            Param::new("gamma", GAMMA),
            Param::new("weight", PER_CLASS).nullable(),
            Param::new("lambda_dice", LAMBDA),
            Param::new("lambda_focal", LAMBDA),
            Param::new("alpha", PER_CLASS).nullable()
        ],
        required_tensors: MONAI_TENSORS,
        optional_tensors: &[],
        evaluate: |call| {
            let defaults = DiceFocalOptions::default();
            let options = DiceFocalOptions {
                squared_pred: call.bool_param("squared_pred", defaults.squared_pred)?,
                jaccard: call.bool_param("jaccard", defaults.jaccard)?,
                gamma: call.float_param("gamma", defaults.gamma)?,
                weight: per_class(call.number_or_list_param("weight")?),
                alpha: per_class(call.number_or_list_param("alpha")?),
                lambda_dice: call.float_param("lambda_dice", defaults.lambda_dice)?,
                lambda_focal: call.float_param("lambda_focal", defaults.lambda_focal)?,
            };
            monai::dice_focal(
                call.tensor("input")?,
                call.tensor("target")?,
                &monai_options(call)?,
                &options,
                call.grad_output.as_ref(),
            )
        },
    },
    LossDef {
        name: "kornia.dice_loss",
        summary: "kornia 0.9 dice_loss: softmax Dice per image, micro (classes pooled) or macro (present classes)",
        params: &[
            Param::new("average", Domain::Choice(&["micro", "macro"])),
            Param::new("eps", EPS),
            Param::new("ignore_index", CLASS_INDEX).nullable(),
        ],
        required_tensors: KORNIA_TENSORS,
        optional_tensors: &["weight"],
        evaluate: |call| {
            let defaults = KorniaDiceOptions::default();
            let options = KorniaDiceOptions {
                average: call.string_param("average")?.unwrap_or(&defaults.average).to_string(),
                eps: call.float_param("eps", defaults.eps)?,
                ignore_index: kornia_ignore_index(call)?,
            };
            call.weighted_loss(["pred", "target"], kornia::dice, &options)
        },
    },
    LossDef {
        name: "kornia.tversky_loss",
        summary: "kornia 0.9 tversky_loss: softmax Tversky per image over the present classes",
        params: &[
            Param::new("alpha", UNIT).required(),
            Param::new("beta", UNIT).required(),
            Param::new("eps", EPS),
            Param::new("ignore_index", CLASS_INDEX).nullable(),
        ],
        required_tensors: KORNIA_TENSORS,
        optional_tensors: &[],
        evaluate: |call| {
            kornia::tversky(
                call.tensor("pred")?,
                call.tensor("target")?,
                call.required_float_param("alpha")?,
                call.required_float_param("beta")?,
                call.float_param("eps", 1e-8)?,
                kornia_ignore_index(call)?,
                call.grad_output.as_ref(),
            )
        },
    },
];

fn textbook_loss(which: Textbook, call: &LossCall) -> Result<LossOutput> {
    let options = TextbookOptions {
        smooth: call.float_param("smooth", 1.0)?,
        reduction: call.reduction()?,
    };
    textbook::loss(
        which,
        call.tensor("input")?,
        call.tensor("target")?,
        &options,
        call.grad_output.as_ref(),
    )
}

fn smp_loss(score: SmpScore, call: &LossCall) -> Result<LossOutput> {
    let defaults = SmpOptions::default();
    let options = SmpOptions {
        mode: call.required("mode", Value::as_str, "a string")?.parse()?,
        classes: call.int_list_param("classes")?,
        log_loss: call.bool_param("log_loss", defaults.log_loss)?,
        from_logits: call.bool_param("from_logits", defaults.from_logits)?,
        smooth: call.float_param("smooth", defaults.smooth)?,
        ignore_index: call.optional_int_param("ignore_index", None)?,
        eps: call.float_param("eps", defaults.eps)?,
        class_weights: call.float_list_param("class_weights")?,
    };
    smp::loss(
        score,
        call.tensor("y_pred")?,
        call.tensor("y_true")?,
        &options,
        call.grad_output.as_ref(),
    )
}

/// The arguments MONAI's overlap losses share; `reduction` is parsed first, as MONAI's constructor
/// does.
fn monai_options(call: &LossCall) -> Result<MonaiOptions> {
    let defaults = MonaiOptions::default();
    Ok(MonaiOptions {
        reduction: call.reduction()?,
        include_background: call.bool_param("include_background", defaults.include_background)?,
        to_onehot_y: call.bool_param("to_onehot_y", defaults.to_onehot_y)?,
        sigmoid: call.bool_param("sigmoid", defaults.sigmoid)?,
        softmax: call.bool_param("softmax", defaults.softmax)?,
        smooth_nr: call.float_param("smooth_nr", defaults.smooth_nr)?,
        smooth_dr: call.float_param("smooth_dr", defaults.smooth_dr)?,
        batch: call.bool_param("batch", defaults.batch)?,
        soft_label: call.bool_param("soft_label", defaults.soft_label)?,
        ignore_index: call.optional_int_param("ignore_index", None)?,
    })
}

fn monai_loss(score: &MonaiScore, options: &MonaiOptions, call: &LossCall) -> Result<LossOutput> {
    monai::loss(
        score,
        call.tensor("input")?,
        call.tensor("target")?,
        options,
        call.grad_output.as_ref(),
    )
}

/// kornia's `ignore_index`: −100 when absent, none when `null`.
fn kornia_ignore_index(call: &LossCall) -> Result<Option<i64>> {
    call.optional_int_param("ignore_index", KorniaDiceOptions::default().ignore_index)
}
