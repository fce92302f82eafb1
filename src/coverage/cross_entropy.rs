//! What the corpus must hold for the cross-entropy family.

use super::{FamilyCoverage, Matrix, DTYPES, REDUCTIONS};

/// Unbatched, batched, and 1 to 4 spatial dimensions.
const CLASS_SHAPES: &[&str] = &[
    "C5",
    "N4C3",
    "N2C4W5",
    "N2C3H3W4",
    "N2C3D2H3W4",
    "N1C3T2D2H2W3",
];

const MATRICES: &[Matrix] = &[
    Matrix {
        loss: "cross_entropy",
        dtypes: DTYPES,
        shapes: CLASS_SHAPES,
        reductions: REDUCTIONS,
        variants: &[
            "default",
            "weight",
            "ignore_index=1",
            "label_smoothing=0.1",
            "weight,ignore_index=1,label_smoothing=0.1",
            "target=uint8",
            "target=probs",
            "target=probs,label_smoothing=0.1",
            "target=probs,weight",
        ],
    },
    Matrix {
        loss: "nll_loss",
        dtypes: DTYPES,
        shapes: CLASS_SHAPES,
        reductions: REDUCTIONS,
        variants: &[
            "default",
            "weight",
            "ignore_index=1",
            "weight,ignore_index=1",
            "target=uint8",
        ],
    },
];

const EDGE_CASES: &[(&str, &[&str], &str)] = &[
    (
        "cross_entropy/f64/N4C3",
        REDUCTIONS,
        "ignore_index=1,all_ignored",
    ),
    (
        "cross_entropy/f64/N2C3H3W4",
        REDUCTIONS,
        "ignore_index=1,all_ignored",
    ),
    (
        "cross_entropy/f32/N4C3",
        REDUCTIONS,
        "ignore_index=1,all_ignored",
    ),
    ("cross_entropy/f64/N4C3", REDUCTIONS, "ignore_index=5"),
    ("cross_entropy/f64/N4C3", REDUCTIONS, "ignore_index=-1"),
    (
        "cross_entropy/f64/N4C3",
        REDUCTIONS,
        "weight=zeros_negatives",
    ),
    ("cross_entropy/f64/N4C3", &["mean"], "weight=zero_sum"),
    ("cross_entropy/f64/N4C3", REDUCTIONS, "label_smoothing=0.0"),
    ("cross_entropy/f64/N4C3", REDUCTIONS, "label_smoothing=1.0"),
    ("cross_entropy/f64/N4C3", REDUCTIONS, "label_smoothing=-0.1"),
    (
        "cross_entropy/f64/N4C3",
        REDUCTIONS,
        "weight,label_smoothing=1.0",
    ),
    (
        "cross_entropy/f64/N4C3",
        REDUCTIONS,
        "target=probs_unnormalized",
    ),
    (
        "cross_entropy/f64/N4C3",
        REDUCTIONS,
        "target=probs,ignore_index=-1",
    ),
    (
        "cross_entropy/f64/N4C3",
        REDUCTIONS,
        "target=uint8,ignore_index=255",
    ),
    ("cross_entropy/f64/N0C3", REDUCTIONS, "default"),
    ("cross_entropy/f64/N0C3H2W2", REDUCTIONS, "default"),
    ("cross_entropy/f64/N0C3", REDUCTIONS, "target=probs"),
    ("cross_entropy/f64/N0C3", REDUCTIONS, "weight"),
    ("cross_entropy/f64/N4C3", REDUCTIONS, "logits=1e4"),
    ("cross_entropy/f32/N4C3", REDUCTIONS, "logits=1e4"),
    (
        "cross_entropy/f64/N4C3",
        REDUCTIONS,
        "label_smoothing=0.1,logits=1e4",
    ),
    ("cross_entropy/f64/N4C3", REDUCTIONS, "logits=neg_inf"),
    (
        "cross_entropy/f64/N4C3",
        REDUCTIONS,
        "label_smoothing=0.1,logits=neg_inf",
    ),
    (
        "cross_entropy/f64/N4C3",
        REDUCTIONS,
        "ignore_index=1,label_smoothing=0.1,ignored_nan_logits",
    ),
    (
        "nll_loss/f64/N4C3",
        REDUCTIONS,
        "ignore_index=1,all_ignored",
    ),
    ("nll_loss/f64/N4C3", REDUCTIONS, "ignore_index=5"),
    ("nll_loss/f64/N4C3", REDUCTIONS, "weight=zeros_negatives"),
    ("nll_loss/f64/N0C3", REDUCTIONS, "default"),
    ("nll_loss/f64/N4C3", REDUCTIONS, "input=positive"),
];

const ERROR_CASES: &[&str] = &[
    "cross_entropy/f64/N4C3/mean/error=target_too_large",
    "cross_entropy/f64/N4C3/mean/error=target_negative",
    "cross_entropy/f64/N2C3H3W4/none/error=target_too_large",
    "cross_entropy/f64/N4C3/mean/error=target_too_large,label_smoothing=0.1",
    "cross_entropy/f64/N4C3/mean/error=uint8_target_255",
    "cross_entropy/f64/N4C3/mean/error=target_float",
    "cross_entropy/f64/N4C3/mean/error=target_int32",
    "cross_entropy/f64/N4C3/mean/error=target_bool",
    "cross_entropy/f64/N4C3/mean/error=uint8_weighted_smoothing",
    "cross_entropy/f64/N4C3/mean/error=batch_mismatch",
    "cross_entropy/f64/N4C3/mean/error=target_2d",
    "cross_entropy/f64/N2C3H3W4/mean/error=target_4d",
    "cross_entropy/f64/N2C3H3W4/mean/error=spatial_mismatch",
    "cross_entropy/f64/N2C4W5/mean/error=spatial_mismatch",
    "cross_entropy/f64/N2C3D2H3W4/mean/error=spatial_mismatch",
    "cross_entropy/f64/C5/mean/error=target_length_2",
    "cross_entropy/f64/N4C3/mean/error=weight_length",
    "cross_entropy/f64/N2C3H3W4/mean/error=weight_length",
    "cross_entropy/f64/N4C3/mean/error=weight_length,target=probs",
    "cross_entropy/f64/N4C3/mean/error=weight_dtype",
    "cross_entropy/f64/N4C3/mean/error=integer_logits",
    "cross_entropy/f64/N4C3/mean/error=probs_ignore_index",
    "cross_entropy/f64/N4C3/mean/error=probs_int64",
    "cross_entropy/f64/N4C3/mean/error=label_smoothing=1.5",
    "cross_entropy/f64/N4C3/mean/error=label_smoothing=1.5,target=probs",
    "cross_entropy/f64/N4C3/avg/error=reduction=avg",
    "nll_loss/f64/N4C3/mean/error=target_too_large",
    "nll_loss/f64/N4C3/mean/error=target_float",
    "nll_loss/f64/N4C3/mean/error=batch_mismatch",
    "nll_loss/f64/N4C3/mean/error=probs_float",
    "nll_loss/f64/N2C3H3W4/mean/error=spatial_mismatch",
    "nll_loss/f64/N4C3/mean/error=weight_length",
    "nll_loss/f64/N4C3/mean/error=ignore_index_mismatch",
    "nll_loss/f64/S/mean/error=scalar_input",
    "nll_loss/f64/N4C3/avg/error=reduction=avg",
];

/// The cross-entropy family's coverage.
pub(super) const COVERAGE: FamilyCoverage = FamilyCoverage {
    matrices: MATRICES,
    edge_cases: EDGE_CASES,
    error_cases: ERROR_CASES,
};
