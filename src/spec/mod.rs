//! The reference specification: every loss written directly from its formula, forward and
//! gradient, in f64 whatever the input's dtype.
//!
//! Simple, slow, correct: sums are compensated, nothing is fused or vectorised, and the code
//! follows the formula in the doc comment above it. One file per loss family.

pub mod binary;
pub mod cross_entropy;
pub mod focal;
pub mod lovasz;
pub mod mcc;
pub mod monai;
pub mod overlap;
mod positions;
pub mod smp;
pub mod softmax;
pub mod trace;

use std::fmt;
use std::str::FromStr;

use ndarray::{Array, Array3, ArrayD, IntoDimension, IxDyn};

use crate::error::Rejection;
use crate::tensor::Tensor;

/// The result of a spec or catalog function: its value, or the anchor's rejection.
pub type Result<T, E = Rejection> = std::result::Result<T, E>;

/// What a loss computes: the (reduced) loss and the gradient with respect to the input.
#[derive(Debug, Clone, PartialEq)]
pub struct LossOutput {
    /// The loss: 0-d for `mean` and `sum`, the per-position losses for `none`.
    pub loss: ArrayD<f64>,
    /// The vector-Jacobian product gradᵀ·∂loss/∂input for the given grad_output; the input's shape.
    pub grad_input: ArrayD<f64>,
}

/// How per-position losses become the returned loss (PyTorch's `reduction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reduction {
    /// Per-position losses, unreduced.
    None,
    /// The sum divided by the loss's own denominator (a count or a sum of weights).
    Mean,
    /// The sum.
    Sum,
}

impl Reduction {
    /// The PyTorch name: `none`, `mean` or `sum`.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
        }
    }

    /// Reduces per-position losses: `none` → l, `sum` → Σ l, `mean` → Σ l / denominator.
    ///
    /// The denominator is the loss's convention (Σ w_y for weighted NLL, the number of positions
    /// for probability targets, …); 0/0 gives NaN exactly as PyTorch does.
    pub fn reduce(self, per_position: ArrayD<f64>, denominator: f64) -> ArrayD<f64> {
        self.reduce_wide(per_position, &[], denominator)
    }

    /// [`Reduction::reduce`] for per-position losses carried as l_n + r_n, `residuals` holding
    /// the r_n (the rounding errors exact products leave): `sum` and `mean` add both, so a sum of
    /// losses of both signs that cancels keeps its digits; `none` returns the rounded l_n.
    pub fn reduce_wide(
        self,
        per_position: ArrayD<f64>,
        residuals: &[f64],
        denominator: f64,
    ) -> ArrayD<f64> {
        let total = || compensated_sum(per_position.iter().chain(residuals).copied());
        match self {
            Reduction::None => per_position,
            Reduction::Sum => ArrayD::from_elem(vec![], total()),
            Reduction::Mean => ArrayD::from_elem(vec![], total() / denominator),
        }
    }

    /// The gradient of the reduced loss with respect to each per-position loss, scaled by
    /// grad_output: `none` → g (same shape), `sum` → g, `mean` → g / denominator (broadcast).
    ///
    /// `grad_output` defaults to ones and must have the reduced loss's shape.
    pub fn upstream(
        self,
        grad_output: Option<&ArrayD<f64>>,
        positions_shape: &[usize],
        denominator: f64,
    ) -> Result<ArrayD<f64>> {
        let reduced_shape: &[usize] = match self {
            Reduction::None => positions_shape,
            Reduction::Mean | Reduction::Sum => &[],
        };
        let grad_output = grad_output_or_ones(grad_output, reduced_shape)?;
        Ok(match self {
            Reduction::None => grad_output,
            Reduction::Sum => ArrayD::from_elem(positions_shape, scalar(&grad_output)),
            Reduction::Mean => {
                ArrayD::from_elem(positions_shape, scalar(&grad_output) / denominator)
            }
        })
    }
}

impl FromStr for Reduction {
    type Err = Rejection;

    fn from_str(name: &str) -> Result<Reduction> {
        match name {
            "none" => Ok(Reduction::None),
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            _ => Err(Rejection::InvalidReduction {
                value: name.to_string(),
            }),
        }
    }
}

impl fmt::Display for Reduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The grad_output to differentiate with: the given one, which must have the loss's shape, or ones.
pub fn grad_output_or_ones(
    grad_output: Option<&ArrayD<f64>>,
    loss_shape: &[usize],
) -> Result<ArrayD<f64>> {
    match grad_output {
        Some(given) if given.shape() != loss_shape => Err(Rejection::GradOutputShape {
            expected: loss_shape.to_vec(),
            got: given.shape().to_vec(),
        }),
        Some(given) => Ok(given.clone()),
        None => Ok(ArrayD::ones(loss_shape)),
    }
}

/// Rejects the first class-index label (in row-major order) outside [0, C).
pub fn check_labels(labels: &ArrayD<i64>, classes: usize) -> Result<()> {
    match labels
        .iter()
        .find(|&&label| label < 0 || label as usize >= classes)
    {
        Some(&value) => Err(Rejection::TargetOutOfBounds { value, classes }),
        None => Ok(()),
    }
}

/// Rejects an input of fewer than two axes: kornia's `KORNIA_CHECK_SHAPE(pred, ["B", "C", "*"])`,
/// and the (B, C, *) that MONAI's `FocalLoss` and smp's `SoftCrossEntropyLoss` index along axis 1.
pub(crate) fn check_batched(pred: &Tensor) -> Result<()> {
    if pred.shape().len() < 2 {
        return Err(Rejection::InputRank {
            got: pred.shape().len(),
            min: 2,
        });
    }
    Ok(())
}

/// One-hot `(N, C, S)` of class-index labels with N·S elements (`(N, *)` or `(N, 1, *)`,
/// row-major): t_ncs = [y_ns = c]; a label outside [0, C) is rejected.
pub fn one_hot(labels: &ArrayD<i64>, batch: usize, classes: usize) -> Result<Array3<f64>> {
    check_labels(labels, classes)?;
    // The positions of one image: from the labels' own shape `(N, d1, …)`, so that an empty batch
    // keeps its positions (N·S / N would lose them).
    let positions = match labels.shape() {
        [first, rest @ ..] if *first == batch => rest.iter().product(),
        _ => labels.len() / batch.max(1),
    };
    let flat: Vec<i64> = labels.iter().copied().collect();
    Ok(Array3::from_shape_fn(
        (batch, classes, positions),
        |(n, c, s)| f64::from(u8::from(flat[n * positions + s] as usize == c)),
    ))
}

/// `values` reshaped to `shape` in row-major order whatever its memory layout (NumPy's Fortran
/// order and strided views included); `None` when the element counts differ.
pub fn reshaped<A: Clone, E: IntoDimension>(
    values: ArrayD<A>,
    shape: E,
) -> Option<Array<A, E::Dim>> {
    let values = if values.is_standard_layout() {
        values
    } else {
        values.as_standard_layout().into_owned()
    };
    values.into_shape_with_order(shape.into_dimension()).ok()
}

/// The value of a 0-d array.
pub fn scalar(array: &ArrayD<f64>) -> f64 {
    array[IxDyn(&[])]
}

/// Σ values with Neumaier's compensation, so the reference's own rounding error stays far below
/// any tolerance it is compared with. Non-finite values propagate as in a plain sum.
pub fn compensated_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut sum = CompensatedSum::default();
    for value in values {
        sum.add(value);
    }
    sum.total()
}

/// A running Neumaier sum: the rounded running total and, beside it, the rounding errors of the
/// additions so far. Non-finite values propagate as in a plain sum.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    /// Adds `value` to the sum.
    #[inline]
    pub fn add(&mut self, value: f64) {
        let total = self.sum + value;
        let rounding = if self.sum.abs() >= value.abs() {
            (self.sum - total) + value
        } else {
            (value - total) + self.sum
        };
        // Once the sum is inf or NaN, compensation is meaningless: the plain sum is the answer.
        // Selected rather than branched on, so that sums side by side vectorize.
        self.compensation = if total.is_finite() {
            self.compensation + rounding
        } else {
            0.0
        };
        self.sum = total;
    }

    /// The sum as (rounded running total, correction), whose exact sum is the sum of the values
    /// to about n·2⁻¹⁰⁶ of Σ|value| after n values.
    pub fn parts(self) -> (f64, f64) {
        (self.sum, self.compensation)
    }

    /// The sum rounded to f64.
    pub fn total(self) -> f64 {
        self.sum + self.compensation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensated_sum_recovers_what_a_naive_sum_loses() {
        let values = [1e16, 1.0, -1e16, 1.0];
        assert_eq!(compensated_sum(values), 2.0);
        assert!(compensated_sum([1.0, f64::INFINITY, 2.0]).is_infinite());
        assert!(compensated_sum([f64::INFINITY, f64::NEG_INFINITY]).is_nan());
    }

    #[test]
    fn reduction_names_round_trip_and_unknown_names_are_rejected() {
        for (reduction, name) in [
            (Reduction::None, "none"),
            (Reduction::Mean, "mean"),
            (Reduction::Sum, "sum"),
        ] {
            assert_eq!(reduction.name(), name);
            assert_eq!(reduction.to_string(), name);
            assert_eq!(name.parse::<Reduction>(), Ok(reduction));
        }
        assert_eq!(
            "average".parse::<Reduction>(),
            Err(Rejection::InvalidReduction {
                value: "average".into()
            })
        );
    }

    #[test]
    fn a_grad_output_of_another_shape_is_rejected() {
        let given = ArrayD::<f64>::from_elem(vec![2], 3.0);
        assert_eq!(
            grad_output_or_ones(Some(&given), &[3]),
            Err(Rejection::GradOutputShape {
                expected: vec![3],
                got: vec![2]
            })
        );
        assert_eq!(grad_output_or_ones(Some(&given), &[2]), Ok(given));
        assert_eq!(
            grad_output_or_ones(None, &[2, 1]),
            Ok(ArrayD::ones(vec![2, 1]))
        );
    }

    #[test]
    fn mean_of_nothing_is_nan_and_sum_is_zero() {
        let empty = ArrayD::<f64>::zeros(vec![0]);
        assert!(scalar(&Reduction::Mean.reduce(empty.clone(), 0.0)).is_nan());
        assert_eq!(scalar(&Reduction::Sum.reduce(empty, 0.0)), 0.0);
    }
}
