//! Conventions shared by segmentation_models_pytorch's losses (`FocalLoss`, `DiceLoss`,
//! `JaccardLoss`, `TverskyLoss`, `LovaszLoss`, `SoftCrossEntropyLoss`).

use std::str::FromStr;

use crate::error::Rejection;
use crate::spec::Result;
use crate::tensor::Tensor;

/// smp's `mode`: how the prediction's channels and the target are read.
///
/// | mode | focal | overlap (Dice, Jaccard, Tversky) | Lovász |
/// |---|---|---|---|
/// | binary | one channel; all elements are one binary problem | one sigmoid channel: every value of an image (all channels, all positions) is one class | one logit channel, the Lovász hinge |
/// | multiclass | class-index target (N, *); one-vs-rest sigmoid per class | softmax over C channels, class-index target | softmax over classes, the Lovász-softmax |
/// | multilabel | one binary target per channel (N, C, *) | C independent sigmoid channels, target of the prediction's shape | one logit per class, every channel flattened into one Lovász hinge |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmpMode {
    /// One channel, one binary problem.
    Binary,
    /// A class-index target.
    Multiclass,
    /// One binary target per channel.
    Multilabel,
}

impl FromStr for SmpMode {
    type Err = Rejection;

    /// `binary`, `multiclass` or `multilabel` (smp asserts it, with a bare AssertionError).
    fn from_str(mode: &str) -> Result<SmpMode> {
        match mode {
            "binary" => Ok(SmpMode::Binary),
            "multiclass" => Ok(SmpMode::Multiclass),
            "multilabel" => Ok(SmpMode::Multilabel),
            _ => Err(Rejection::InvalidOption {
                name: "mode".into(),
                value: mode.into(),
                allowed: "binary, multiclass, multilabel",
            }),
        }
    }
}

/// The shape error of an smp call whose target does not fit the prediction.
pub(crate) fn shape_error(y_pred: &Tensor, y_true: &Tensor) -> Rejection {
    Rejection::TargetShapeMismatch {
        expected: y_pred.shape().to_vec(),
        got: y_true.shape().to_vec(),
    }
}
