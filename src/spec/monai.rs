//! Conventions shared by MONAI's losses (`FocalLoss`, `DiceLoss`, `GeneralizedDiceLoss`,
//! `TverskyLoss`, `DiceCELoss`): the `to_onehot_y` target and the `ignore_index` mask.

use ndarray::{ArrayD, Axis, Dimension, IxDyn};

use super::{check_labels, Result};
use crate::error::Rejection;

/// MONAI's `to_onehot_y`: a label target `(B, 1, *)` that becomes the one-hot `(B, C, *)`,
/// checked but not yet built, so that a caller can reject a one-hot shape that is not the input's
/// without building a tensor C times the target's size.
///
/// Labels are truncated to integers (`.long()`); a label equal to an `ignore_index` outside
/// [0, C) becomes 0 first (MONAI masks those positions afterwards); any other label outside
/// [0, C) is rejected, and so is a target that is not `(B, 1, …)`.
pub struct OneHot {
    /// The labels, `(B, 1, *)`.
    labels: ArrayD<i64>,
    /// `(B, C, *)`.
    shape: Vec<usize>,
}

impl OneHot {
    /// The checked labels of `target` for `classes` classes.
    pub fn new(target: &ArrayD<f64>, classes: usize, ignore_index: Option<i64>) -> Result<OneHot> {
        let sentinel = ignore_index.filter(|&ignored| ignored < 0 || ignored >= classes as i64);
        let labels = target.mapv(|value| {
            let label = value.trunc() as i64;
            if Some(label) == sentinel {
                0
            } else {
                label
            }
        });
        if target.shape().get(1) != Some(&1) {
            let mut expected = target.shape().to_vec();
            if let Some(channels) = expected.get_mut(1) {
                *channels = 1;
            }
            return Err(Rejection::TargetShapeMismatch {
                expected,
                got: target.shape().to_vec(),
            });
        }
        check_labels(&labels, classes)?;
        let mut shape = target.shape().to_vec();
        shape[1] = classes;
        Ok(OneHot { labels, shape })
    }

    /// The one-hot target's shape `(B, C, *)`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The checked labels y, `(B, 1, *)` in row-major order: t_{b,c,…} = [y_{b,0,…} = c] without
    /// building t.
    pub fn labels(&self) -> &ArrayD<i64> {
        &self.labels
    }

    /// t_{b,c,…} = [y_{b,0,…} = c].
    pub fn build(self) -> ArrayD<f64> {
        ArrayD::from_shape_fn(IxDyn(&self.shape), |index| {
            let mut position = index.slice().to_vec();
            let class = std::mem::replace(&mut position[1], 0);
            f64::from(u8::from(self.labels[IxDyn(&position)] == class as i64))
        })
    }
}

/// MONAI's `create_ignore_mask(target, ignore_index)` of the original target `(B, C_t, *)`, shape
/// `(B, 1, *)`:
///
/// ```text
/// m = [t ≠ ii]           for a label map (C_t = 1)
/// m = 1 − t_ii           for a C_t-channel target with 0 ≤ ii < C_t (every class at a position
///                        of class ii leaves)
/// m = [Σ_c t_c > 0]      otherwise (positions with an all-zero target leave)
/// ```
///
/// In f64: `FocalLoss`, which computes in float32, rounds it to float32; the overlap losses use it
/// as it is. A target without a channel axis is rejected (MONAI reads `target.shape[1]`).
pub fn ignore_mask(target: &ArrayD<f64>, ignore_index: i64) -> Result<ArrayD<f64>> {
    let Some(&channels) = target.shape().get(1) else {
        return Err(Rejection::UnexpectedShape {
            argument: "target",
            expected: "(B, C, …) to mask ignore_index",
            got: target.shape().to_vec(),
        });
    };
    if channels == 1 {
        return Ok(target.mapv(|label| f64::from(u8::from(label != ignore_index as f64))));
    }
    if (0..channels as i64).contains(&ignore_index) {
        return Ok(target
            .index_axis(Axis(1), ignore_index as usize)
            .mapv(|value| 1.0 - value)
            .insert_axis(Axis(1)));
    }
    let mut positions = target.shape().to_vec();
    positions.remove(1);
    let mut total = ArrayD::zeros(positions);
    for channel in target.axis_iter(Axis(1)) {
        total += &channel;
    }
    Ok(total
        .mapv(|total| f64::from(u8::from(total > 0.0)))
        .insert_axis(Axis(1)))
}
