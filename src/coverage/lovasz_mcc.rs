//! What the corpus must hold for the Lovász and MCC losses.
//!
//! None of them has a `reduction`, so every reduction segment is `default`. smp's Lovász loss
//! refuses float64: its f64 matrix cases hold that error (`float32_only`), and its all-ignored
//! f64 edge cases, which never reach the float32 dot product, hold values.

use super::{FamilyCoverage, Matrix, DTYPES};

const DEFAULT: &[&str] = &["default"];
const BINARY_SHAPES: &[&str] = &["N2C1H3W4", "N2C1D2H2W3"];
const CLASS_SHAPES: &[&str] = &["N2C3H3W4", "N2C3D2H2W3"];

const MATRICES: &[Matrix] = &[
    Matrix {
        loss: "smp.LovaszLoss",
        dtypes: DTYPES,
        shapes: BINARY_SHAPES,
        reductions: DEFAULT,
        variants: &[
            "mode=binary",
            "mode=binary,per_image",
            "mode=binary,ignore_index=255",
            "mode=binary,per_image,ignore_index=255",
        ],
    },
    Matrix {
        loss: "smp.LovaszLoss",
        dtypes: DTYPES,
        shapes: CLASS_SHAPES,
        reductions: DEFAULT,
        variants: &[
            "mode=multiclass",
            "mode=multiclass,per_image",
            "mode=multiclass,ignore_index=255",
            "mode=multiclass,per_image,ignore_index=255",
            "mode=multilabel",
            "mode=multilabel,per_image",
            "mode=multilabel,ignore_index=255",
            "mode=multilabel,per_image,ignore_index=255",
        ],
    },
    Matrix {
        loss: "smp.MCCLoss",
        dtypes: DTYPES,
        shapes: &["N2C1H3W4", "N2C1D2H2W3", "N2C3H3W4"],
        reductions: DEFAULT,
        variants: &["default", "eps=0.1"],
    },
    Matrix {
        loss: "kornia.lovasz_softmax_loss",
        dtypes: DTYPES,
        shapes: &["N2C3H3W4", "N3C4H2W5"],
        reductions: DEFAULT,
        variants: &["default", "weight"],
    },
    Matrix {
        loss: "kornia.lovasz_hinge_loss",
        dtypes: DTYPES,
        shapes: &["N2C1H3W4", "N3C1H2W5"],
        reductions: DEFAULT,
        variants: DEFAULT,
    },
];

const EDGE_CASES: &[(&str, &[&str], &str)] = &[
    (
        "smp.LovaszLoss/f32/N2C1H3W4",
        DEFAULT,
        "mode=binary,empty_target",
    ),
    (
        "smp.LovaszLoss/f32/N2C1H3W4",
        DEFAULT,
        "mode=binary,per_image,empty_target",
    ),
    (
        "smp.LovaszLoss/f32/N2C1H3W4",
        DEFAULT,
        "mode=binary,from_logits=False",
    ),
    (
        "smp.LovaszLoss/f32/N2C1H3W4",
        DEFAULT,
        "mode=binary,target=float",
    ),
    (
        "smp.LovaszLoss/f32/N2C1H3W4",
        DEFAULT,
        "mode=binary,target=channel",
    ),
    (
        "smp.LovaszLoss/f32/N2C1H3W4",
        DEFAULT,
        "mode=binary,ignore_index=255,all_ignored",
    ),
    (
        "smp.LovaszLoss/f64/N2C1H3W4",
        DEFAULT,
        "mode=binary,ignore_index=255,all_ignored",
    ),
    (
        "smp.LovaszLoss/f32/N2C1H3W4",
        DEFAULT,
        "mode=binary,per_image,ignore_index=255,first_image_ignored",
    ),
    (
        "smp.LovaszLoss/f32/N2C1H3W4",
        DEFAULT,
        "mode=binary,per_image,extra_target_image",
    ),
    (
        "smp.LovaszLoss/f32/N2C3H3W4",
        DEFAULT,
        "mode=multilabel,empty_target",
    ),
    (
        "smp.LovaszLoss/f32/N2C3H3W4",
        DEFAULT,
        "mode=multiclass,absent_class",
    ),
    (
        "smp.LovaszLoss/f32/N2C3H3W4",
        DEFAULT,
        "mode=multiclass,per_image,absent_class",
    ),
    (
        "smp.LovaszLoss/f32/N2C3H3W4",
        DEFAULT,
        "mode=multiclass,from_logits=False",
    ),
    (
        "smp.LovaszLoss/f32/N2C3H3W4",
        DEFAULT,
        "mode=multiclass,unmatched_label",
    ),
    (
        "smp.LovaszLoss/f32/N2C3H3W4",
        DEFAULT,
        "mode=multiclass,ignore_index=255,all_ignored",
    ),
    (
        "smp.LovaszLoss/f64/N2C3H3W4",
        DEFAULT,
        "mode=multiclass,ignore_index=255,all_ignored",
    ),
    (
        "smp.LovaszLoss/f32/N2C3H3W4",
        DEFAULT,
        "mode=multiclass,per_image,ignore_index=255,first_image_ignored",
    ),
    ("smp.LovaszLoss/f32/N0C3H3W4", DEFAULT, "mode=multiclass"),
    ("smp.MCCLoss/f32/N2C1H3W4", DEFAULT, "empty_target"),
    ("smp.MCCLoss/f64/N2C1H3W4", DEFAULT, "empty_target"),
    ("smp.MCCLoss/f32/N2C1H3W4", DEFAULT, "all_zero"),
    ("smp.MCCLoss/f64/N2C1H3W4", DEFAULT, "all_zero"),
    ("smp.MCCLoss/f64/N2C1H3W4", DEFAULT, "perfect"),
    ("smp.MCCLoss/f64/N2C1H3W4", DEFAULT, "target=channel"),
    ("smp.MCCLoss/f64/N2C1H3W4", DEFAULT, "target=per_image"),
    ("smp.MCCLoss/f64/N2C1H3W4", DEFAULT, "target=soft"),
    (
        "kornia.lovasz_softmax_loss/f32/N2C3H3W4",
        DEFAULT,
        "absent_class",
    ),
    (
        "kornia.lovasz_softmax_loss/f64/N2C3H3W4",
        DEFAULT,
        "absent_class",
    ),
    (
        "kornia.lovasz_softmax_loss/f64/N2C3H3W4",
        DEFAULT,
        "pred_batch=1",
    ),
    (
        "kornia.lovasz_softmax_loss/f64/N2C3H3W4",
        DEFAULT,
        "weight=column",
    ),
    (
        "kornia.lovasz_hinge_loss/f32/N2C1H3W4",
        DEFAULT,
        "empty_target",
    ),
    (
        "kornia.lovasz_hinge_loss/f64/N2C1H3W4",
        DEFAULT,
        "empty_target",
    ),
];

const ERROR_CASES: &[&str] = &[
    "smp.LovaszLoss/f32/N2C1H3W4/default/error=mode=softmax",
    "smp.LovaszLoss/f32/N2C1H3W4/default/error=bool_target,mode=binary",
    "smp.LovaszLoss/f32/N2C1H3W4/default/error=spatial_mismatch,mode=binary",
    "smp.LovaszLoss/f32/N2C1H3W4/default/error=spatial_mismatch,mode=binary,ignore_index=255",
    "smp.LovaszLoss/f32/N2C3H3W4/default/error=spatial_mismatch,mode=multiclass",
    "smp.LovaszLoss/f32/N2C3H3W4/default/error=spatial_mismatch,mode=multiclass,ignore_index=255",
    "smp.LovaszLoss/f32/N2C1H3W4/default/error=label_zero,mode=multiclass",
    "smp.LovaszLoss/f32/N2C3W12/default/error=label_zero,mode=multiclass",
    "smp.LovaszLoss/f32/N2C3H3W4/default/error=last_image_ignored,mode=multiclass,per_image,ignore_index=255",
    "smp.MCCLoss/f64/N2C3H3W4/default/error=class_index_target",
    "smp.MCCLoss/f64/N2C1H3W4/default/error=batch_mismatch",
    "smp.MCCLoss/f64/N2C1H3W4/default/error=indivisible_batch",
    "smp.MCCLoss/f64/N2C1H3W4/default/error=bool_target",
    "smp.MCCLoss/f64/N2C1H3W4/default/error=scalar_target",
    "smp.MCCLoss/f64/N0C1H3W4/default/error=empty_batch",
    "kornia.lovasz_softmax_loss/f64/N2C3D2H2W3/default/error=spatial_3d",
    "kornia.lovasz_softmax_loss/f64/N2C3H3W4/default/error=target_4d",
    "kornia.lovasz_softmax_loss/f64/N2C1H3W4/default/error=one_class",
    "kornia.lovasz_softmax_loss/f64/N2C3H3W4/default/error=spatial_mismatch",
    "kornia.lovasz_softmax_loss/f64/N2C3H3W4/default/error=batch_mismatch",
    "kornia.lovasz_softmax_loss/f64/N2C3H3W4/default/error=target_negative",
    "kornia.lovasz_softmax_loss/f64/N2C3H3W4/default/error=target_too_large",
    "kornia.lovasz_softmax_loss/f64/N2C3H3W4/default/error=weight_length",
    "kornia.lovasz_softmax_loss/f64/N2C3H3W4/default/error=weight_scalar",
    "kornia.lovasz_softmax_loss/f64/N0C3H3W4/default/error=empty_batch",
    "kornia.lovasz_hinge_loss/f64/N2C1D2H2W3/default/error=spatial_3d",
    "kornia.lovasz_hinge_loss/f64/N2C3H3W4/default/error=three_channels",
    "kornia.lovasz_hinge_loss/f64/N2C1H3W4/default/error=target_4d",
    "kornia.lovasz_hinge_loss/f64/N2C1H3W4/default/error=spatial_mismatch",
    "kornia.lovasz_hinge_loss/f64/N2C1H3W4/default/error=batch_mismatch",
    "kornia.lovasz_hinge_loss/f64/N0C1H3W4/default/error=empty_batch",
];

/// The Lovász and MCC losses' coverage.
pub(super) const COVERAGE: FamilyCoverage = FamilyCoverage {
    matrices: MATRICES,
    edge_cases: EDGE_CASES,
    error_cases: ERROR_CASES,
};
