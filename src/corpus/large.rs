//! The `large` corpus: every family and reduction at the sizes segmentation trains at, each case
//! in float32 and float64 from a recorded seed.
//!
//! Scenes: VOC-like (8, 21, 512, 512) with 255-ignored region borders, Cityscapes-like
//! (2, 19, 1024, 2048), binary (8, 1, 512, 512), 3-D medical (1, 4, 128, 128, 128) and, for the
//! Lovász losses, (8, 21, 256, 256); label scenarios uniform, regions, heavy class imbalance and
//! empty classes ([`Labels`]).

use std::collections::BTreeMap;

use serde_json::Value;

use super::recipe::{Labels, Recipe, ValueStyle};

const VOC: [usize; 4] = [8, 21, 512, 512];
const CITYSCAPES: [usize; 4] = [2, 19, 1024, 2048];
const BINARY: [usize; 4] = [8, 1, 512, 512];
const MEDICAL: [usize; 5] = [1, 4, 128, 128, 128];
const LOVASZ: [usize; 4] = [8, 21, 256, 256];

/// One line of the corpus: a template (its id with `{dtype}` for f32/f64), parameters set on top
/// of it, the scene and the labels.
struct Line {
    template: &'static str,
    params: &'static [(&'static str, i64)],
    shape: &'static [usize],
    labels: Labels,
}

const fn line(
    template: &'static str,
    params: &'static [(&'static str, i64)],
    shape: &'static [usize],
    labels: Labels,
) -> Line {
    Line {
        template,
        params,
        shape,
        labels,
    }
}

const IGNORE_255: &[(&str, i64)] = &[("ignore_index", 255)];

/// The corpus, family by family.
const LINES: &[Line] = &[
    line(
        "cross_entropy/{dtype}/N2C3H3W4/mean/default",
        IGNORE_255,
        &VOC,
        Labels::Regions,
    ),
    line(
        "cross_entropy/{dtype}/N2C3H3W4/sum/default",
        IGNORE_255,
        &CITYSCAPES,
        Labels::Regions,
    ),
    line(
        "cross_entropy/{dtype}/N2C3H3W4/none/default",
        &[],
        &VOC,
        Labels::Imbalanced,
    ),
    line(
        "cross_entropy/{dtype}/N2C3H3W4/mean/weight,ignore_index=1,label_smoothing=0.1",
        &[],
        &VOC,
        Labels::Imbalanced,
    ),
    line(
        "cross_entropy/{dtype}/N2C3H3W4/mean/target=probs",
        &[],
        &VOC,
        Labels::Uniform,
    ),
    line(
        "nll_loss/{dtype}/N2C3H3W4/mean/weight",
        IGNORE_255,
        &VOC,
        Labels::Regions,
    ),
    line(
        "nll_loss/{dtype}/N2C3H3W4/none/default",
        &[],
        &CITYSCAPES,
        Labels::Uniform,
    ),
    line(
        "nll_loss/{dtype}/N2C3H3W4/sum/ignore_index=1",
        &[],
        &VOC,
        Labels::FewClasses,
    ),
    line(
        "binary_cross_entropy/{dtype}/N2C1H3W4/mean/default",
        &[],
        &BINARY,
        Labels::Imbalanced,
    ),
    line(
        "binary_cross_entropy/{dtype}/N2C1H3W4/none/target=hard",
        &[],
        &BINARY,
        Labels::Regions,
    ),
    line(
        "binary_cross_entropy/{dtype}/N2C1H3W4/sum/weight=channel",
        &[],
        &BINARY,
        Labels::Uniform,
    ),
    line(
        "binary_cross_entropy_with_logits/{dtype}/N2C1H3W4/mean/pos_weight=channel",
        &[],
        &BINARY,
        Labels::Imbalanced,
    ),
    line(
        "binary_cross_entropy_with_logits/{dtype}/N2C1H3W4/none/default",
        &[],
        &BINARY,
        Labels::Uniform,
    ),
    line(
        "binary_cross_entropy_with_logits/{dtype}/N2C1H3W4/sum/target=hard",
        &[],
        &BINARY,
        Labels::Regions,
    ),
    line(
        "sigmoid_focal_loss/{dtype}/N2C1H3W4/mean/default",
        &[],
        &BINARY,
        Labels::Imbalanced,
    ),
    line(
        "sigmoid_focal_loss/{dtype}/N2C1H3W4/none/alpha=0.5,gamma=0.5",
        &[],
        &BINARY,
        Labels::Regions,
    ),
    line(
        "sigmoid_focal_loss/{dtype}/N2C1H3W4/sum/default",
        &[],
        &BINARY,
        Labels::FewClasses,
    ),
    line(
        "segloss.soft_dice/{dtype}/N2C3H3W4/mean/smooth=1.0,target=onehot",
        &[],
        &VOC,
        Labels::Regions,
    ),
    line(
        "smp.DiceLoss/{dtype}/N2C3H3W4/default/mode=multiclass,ignore_index=255",
        &[],
        &VOC,
        Labels::Regions,
    ),
    line(
        "smp.TverskyLoss/{dtype}/N2C3H3W4/default/mode=multiclass",
        &[],
        &VOC,
        Labels::FewClasses,
    ),
    line(
        "smp.FocalLoss/{dtype}/N2C3H3W4/mean/mode=multiclass,ignore_index=255",
        &[],
        &VOC,
        Labels::Regions,
    ),
    line(
        "monai.DiceLoss/{dtype}/N1C3D2H3W2/mean/to_onehot_y,softmax",
        &[],
        &MEDICAL,
        Labels::Regions,
    ),
    line(
        "monai.DiceCELoss/{dtype}/N1C3D2H3W2/mean/to_onehot_y,softmax",
        &[],
        &MEDICAL,
        Labels::Imbalanced,
    ),
    line(
        "monai.GeneralizedDiceLoss/{dtype}/N1C3D2H3W2/sum/to_onehot_y,softmax",
        &[],
        &MEDICAL,
        Labels::FewClasses,
    ),
    line(
        "monai.FocalLoss/{dtype}/N2C3H3W4/mean/use_softmax",
        &[],
        &VOC,
        Labels::Regions,
    ),
    line(
        "kornia.focal_loss/{dtype}/N2C3H3W4/mean/alpha=0.25",
        &[],
        &VOC,
        Labels::Uniform,
    ),
    line(
        "kornia.dice_loss/{dtype}/N2C3H3W4/default/average=macro,ignore_index=255",
        &[],
        &VOC,
        Labels::Regions,
    ),
    line(
        "kornia.lovasz_softmax_loss/{dtype}/N2C3H3W4/default/default",
        &[],
        &LOVASZ,
        Labels::Regions,
    ),
];

/// The dtypes every line is made in.
const DTYPES: [&str; 2] = ["f32", "f64"];

/// Every recipe of the corpus: each line in float32, then in float64, with the seed recorded as
/// the line's position (so a case's seed never changes when lines are added at the end).
pub fn recipes() -> Vec<Recipe> {
    DTYPES
        .iter()
        .flat_map(|dtype| {
            LINES.iter().enumerate().map(move |(index, line)| Recipe {
                template: line.template.replace("{dtype}", dtype),
                params: line
                    .params
                    .iter()
                    .map(|&(name, value)| (name.to_string(), Value::from(value)))
                    .collect::<BTreeMap<_, _>>(),
                shape: line.shape.to_vec(),
                labels: line.labels,
                values: ValueStyle::Uniform,
                seed: 0x5e9_1055 + index as u64,
                tag: None,
            })
        })
        .collect()
}
