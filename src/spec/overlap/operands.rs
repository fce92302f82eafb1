//! The operands of the overlap core: the prediction's activation, the `(N, C, S)` layout, position
//! masks and channel selection, and the argument checks the front ends share.

use ndarray::{Array2, Array3, ArrayD};

use super::{overlap, Convention};
use crate::error::Rejection;
use crate::spec::softmax::{log_softmax, log_softmax_backward};
use crate::spec::{reshaped, LossOutput, Result};
use crate::tensor::Tensor;

/// What turns the prediction into probabilities, along the class axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Activation {
    /// The prediction is already probabilities.
    Identity,
    /// softmax over the classes: p = exp(log_softmax(x)) (smp's `log_softmax(…).exp()`, MONAI's and
    /// kornia's `softmax`, equal to rounding): ∂L/∂x = p ⊙ (g − Σ_c p_c·g_c).
    Softmax,
    /// p = σ(x) = 1/(1 + e^{−x}) per element (smp's `logsigmoid(…).exp()`, MONAI's `sigmoid`):
    /// ∂L/∂x = g·p·(1 − p).
    Sigmoid,
}

/// The prediction after its activation, remembering what the backward pass needs.
pub(super) struct Activated {
    activation: Activation,
    /// p, `(N, C, S)`.
    probabilities: Array3<f64>,
}

impl Activated {
    /// Applies `activation` to the prediction `(N, C, S)`.
    pub(super) fn new(activation: Activation, prediction: Array3<f64>) -> Activated {
        let probabilities = match activation {
            Activation::Identity => prediction,
            Activation::Softmax => softmax_classes(&prediction),
            Activation::Sigmoid => prediction.mapv(|x| {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    x.exp() / (1.0 + x.exp())
                }
            }),
        };
        Activated {
            activation,
            probabilities,
        }
    }

    /// ∂L/∂x from ∂L/∂p.
    pub(super) fn backward(&self, grad: Array3<f64>) -> Array3<f64> {
        let p = &self.probabilities;
        match self.activation {
            Activation::Identity => grad,
            Activation::Sigmoid => grad * &p.mapv(|p| p * (1.0 - p)),
            Activation::Softmax => {
                // The log-softmax backward of g ⊙ p is p ⊙ (g − Σ p·g), the softmax backward.
                let log_p = p.mapv(f64::ln);
                let grad_log_p = grad * p;
                log_softmax_backward(&log_p, &grad_log_p, 1)
            }
        }
    }
}

fn softmax_classes(logits: &Array3<f64>) -> Array3<f64> {
    log_softmax(logits, 1).mapv(f64::exp)
}

/// A tensor argument `(N, C, d1, …)` as `(N, C, S)` in f64; one of fewer than two axes is
/// rejected.
pub(super) fn flatten(argument: &'static str, tensor: &Tensor) -> Result<Array3<f64>> {
    spatial_flattened(tensor.to_f64()).ok_or_else(|| Rejection::UnexpectedShape {
        argument,
        expected: "(N, C, …)",
        got: tensor.shape().to_vec(),
    })
}

/// An array `(N, C, d1, …)` as `(N, C, S)`, in any memory layout; `None` with fewer than two axes.
pub(super) fn spatial_flattened(values: ArrayD<f64>) -> Option<Array3<f64>> {
    let &[batch, classes, ref spatial @ ..] = values.shape() else {
        return None;
    };
    let positions = spatial.iter().product();
    reshaped(values, (batch, classes, positions))
}

/// The operands the core sees and how to route its gradient back to the prediction.
pub(super) struct Operands {
    pub(super) activated: Activated,
    /// t, `(N, C, S)` (the prediction's classes).
    pub(super) target: Array3<f64>,
    /// m, `(N, C, S)`: p and t are multiplied by it (MONAI's real-valued mask included; a mask of
    /// positions is the same for every class).
    pub(super) mask: Option<Array3<f64>>,
    /// The channels that enter the loss, in order (repeats allowed).
    pub(super) channels: Vec<usize>,
}

impl Operands {
    /// Runs the core on p' = (p·m)[channels], t' = (t·m)[channels] and returns the loss and ∂L/∂x
    /// in the shape of `prediction`: the gradient of the selected channels scattered back (added
    /// where a channel repeats), times m, through the activation.
    pub(super) fn run(
        &self,
        convention: &Convention,
        prediction: &Tensor,
        grad_output: Option<&ArrayD<f64>>,
    ) -> Result<LossOutput> {
        let (loss, grad) = self.selected(convention, grad_output)?;
        Ok(LossOutput {
            loss,
            grad_input: unflatten(self.activated.backward(grad), prediction),
        })
    }

    /// The core's loss and ∂L/∂p, `(N, C, S)`. Every channel in order without a mask is the
    /// operands themselves, not copied.
    fn selected(
        &self,
        convention: &Convention,
        grad_output: Option<&ArrayD<f64>>,
    ) -> Result<(ArrayD<f64>, Array3<f64>)> {
        let p = &self.activated.probabilities;
        let (batch, classes, positions) = p.dim();
        if self.mask.is_none() && self.channels.iter().copied().eq(0..classes) {
            return overlap(convention, p, &self.target, grad_output);
        }
        let mask =
            |n: usize, c: usize, s: usize| self.mask.as_ref().map_or(1.0, |mask| mask[(n, c, s)]);
        let select = |values: &Array3<f64>| {
            Array3::from_shape_fn((batch, self.channels.len(), positions), |(n, j, s)| {
                values[(n, self.channels[j], s)] * mask(n, self.channels[j], s)
            })
        };
        let (loss, grad_selected) =
            overlap(convention, &select(p), &select(&self.target), grad_output)?;
        let mut grad = Array3::<f64>::zeros((batch, classes, positions));
        for ((n, j, s), value) in grad_selected.indexed_iter() {
            grad[(n, self.channels[j], s)] += value * mask(n, self.channels[j], s);
        }
        Ok((loss, grad))
    }
}

/// The gradient `(N, C, S)` in the prediction's own shape (the same elements in row-major order).
fn unflatten(grad: Array3<f64>, prediction: &Tensor) -> ArrayD<f64> {
    let mut unflattened = ArrayD::zeros(prediction.shape());
    for (slot, value) in unflattened.iter_mut().zip(grad) {
        *slot = value;
    }
    unflattened
}

/// Class indices read as PyTorch's `.long()` reads them: floats truncated toward zero.
pub(super) fn truncated_labels(target: &Tensor) -> ArrayD<i64> {
    target.to_f64().mapv(|value| value.trunc() as i64)
}

/// A floating-point prediction of at least `min_rank` dimensions `(N, C, …)`.
pub(super) fn check_prediction(prediction: &Tensor, min_rank: usize) -> Result<()> {
    if !prediction.dtype().is_floating() {
        return Err(Rejection::InputDtype {
            got: prediction.dtype(),
        });
    }
    if prediction.shape().len() < min_rank {
        return Err(Rejection::InputRank {
            got: prediction.shape().len(),
            min: min_rank,
        });
    }
    Ok(())
}

pub(super) fn shape_mismatch(expected: &[usize], got: &[usize]) -> Rejection {
    Rejection::TargetShapeMismatch {
        expected: expected.to_vec(),
        got: got.to_vec(),
    }
}

/// The values of a weight, rounded to float32 as `torch.as_tensor` stores Python floats.
pub(super) fn float32_values(values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .map(|&value| f64::from(value as f32))
        .collect()
}

/// A mask of positions `(N, S)` repeated for each of `classes`.
pub(super) fn position_mask(mask: &Array2<f64>, classes: usize) -> Array3<f64> {
    let (batch, positions) = mask.dim();
    Array3::from_shape_fn((batch, classes, positions), |(n, _, s)| mask[(n, s)])
}
