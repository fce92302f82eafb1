//! `candle` (candle-core / candle-nn 0.11.1, CPU) as a certifiable implementation, behind the
//! `impl-candle` feature: `candle_nn::loss::{cross_entropy, nll, binary_cross_entropy_with_logit}`
//! with gradients from candle's own autodiff (a `Var` and `backward`).
//!
//! What candle has natively: the batch mean of an `(N, C)` input against `(N)` class indices
//! (u8, u32 or i64), in the input's dtype (f32 or f64, so f64 cases are computed in f64). PyTorch's
//! `(N, C, d1, …)` and unbatched `(C)` layouts are laid out as rows of classes first (plain
//! plumbing: the mean over positions is the same). Emulated, and reported so:
//!
//! * `ignore_index` (when some target equals it): the ignored positions are removed with
//!   `index_select` before the loss, so candle's mean runs over the kept positions only;
//! * `reduction="sum"`: candle's mean times the number of positions it averaged.
//!
//! Unsupported: class weights, label smoothing, probability targets, `reduction="none"`, and a
//! boolean target (candle has no boolean dtype).

use candle_core::{DType, Device, Tensor as CandleTensor, Var};

use super::library::{
    array, finish, guarded, kept_positions, library_rejection, unsupported, Layout, Loss, Request,
};
use super::{DeclaredCall, Implementation, Outcome};
use crate::catalog::LossCall;
use crate::spec::Reduction;
use crate::tensor::Tensor;

/// candle's losses on the CPU.
pub struct Candle;

impl Implementation for Candle {
    fn name(&self) -> &str {
        "candle 0.11.1 (candle-nn losses, CPU)"
    }

    fn calls(&self) -> Vec<DeclaredCall> {
        vec![
            DeclaredCall::new(
                "cross_entropy",
                "candle_nn::loss::cross_entropy(&input, &target) on rows of classes",
            ),
            DeclaredCall::new(
                "nll_loss",
                "candle_nn::loss::nll(&input, &target) on rows of classes",
            ),
            DeclaredCall::new(
                "binary_cross_entropy_with_logits",
                "candle_nn::loss::binary_cross_entropy_with_logit(&input, &target)",
            ),
        ]
    }

    fn compute(&self, call: &LossCall) -> Outcome {
        let request = match Request::parse_reduced(call, "candle_nn") {
            Ok(request) => request,
            Err(outcome) => return outcome,
        };
        if let Some(reason) = lacks(&request) {
            return unsupported(reason);
        }
        guarded(|| {
            let result = match request.loss {
                Loss::BceWithLogits => binary_cross_entropy(&request),
                Loss::CrossEntropy | Loss::Nll => class_index(&request),
            };
            result.unwrap_or_else(|error| match error {
                Failure::Library(error) => library_rejection(&error.to_string(), CANDLE_ERRORS),
                Failure::Outcome(outcome) => outcome,
            })
        })
    }
}

/// candle's error messages (first lines, by prefix) with the segloss kind each shows, in the
/// losses this adapter calls: an elementwise op between input and target (binary cross entropy),
/// `nll`'s own checks, and the `gather` of the target's classes.
const CANDLE_ERRORS: &[(&str, &str)] = &[
    ("gather invalid index", "target_out_of_bounds"),
    ("batch size mismatch between inp", "batch_size_mismatch"),
    (
        "the target tensor should have a single dimension",
        "target_rank",
    ),
    ("unsupported dtype F64 for op gather", "target_dtype"),
    ("shape mismatch in ", "target_shape_mismatch"),
    ("dtype mismatch in ", "target_dtype_mismatch"),
];

/// What the call needs that candle's losses do not have.
fn lacks(request: &Request) -> Option<String> {
    if request.weight.is_some() {
        return Some("candle_nn's losses have no class weights".into());
    }
    if request.label_smoothing > 0.0 {
        return Some("candle_nn::loss::cross_entropy has no label smoothing".into());
    }
    if request.loss == Loss::CrossEntropy && request.probability_target() {
        return Some(
            "candle_nn's cross entropy takes class indices only, no probability targets".into(),
        );
    }
    None
}

/// Why a computation stopped: candle returned an error, or the adapter found the call unmappable.
enum Failure {
    Library(candle_core::Error),
    Outcome(Outcome),
}

impl From<candle_core::Error> for Failure {
    fn from(error: candle_core::Error) -> Self {
        Failure::Library(error)
    }
}

/// `cross_entropy` / `nll_loss` through `candle_nn::loss::{cross_entropy, nll}`.
fn class_index(request: &Request) -> Result<Outcome, Failure> {
    let Some(layout) = Layout::of(request.input.shape(), request.target.shape()) else {
        return Err(Failure::Outcome(unsupported(format!(
            "candle_nn's losses take an (N, C) input with an (N) target; a target of shape {:?} does not lay out against an input of shape {:?}",
            request.target.shape(),
            request.input.shape()
        ))));
    };
    let input = Var::from_tensor(&to_candle(&layout.input_rows(request.input))?)?;
    let mut target = to_candle(&layout.target_rows(request.target))?;
    let mut rows = input.as_tensor().clone();
    let mut emulated = Vec::new();
    let ignored = request.ignored_positions();
    let mut positions = target.elem_count();
    if !ignored.is_empty() {
        let kept: Vec<u32> = kept_positions(positions, &ignored)
            .into_iter()
            .map(|position| position as u32)
            .collect();
        positions = kept.len();
        let kept = CandleTensor::from_vec(kept, positions, &Device::Cpu)?;
        rows = rows.index_select(&kept, 0)?;
        target = target.index_select(&kept, 0)?;
        emulated.push(format!(
            "ignore_index={}: the ignored positions removed (index_select) before candle's mean",
            request.ignore_index
        ));
    }
    let loss = match request.loss {
        Loss::Nll => candle_nn::loss::nll(&rows, &target)?,
        _ => candle_nn::loss::cross_entropy(&rows, &target)?,
    };
    let (value, grad) = reduce_and_differentiate(request, loss, &input, positions, &mut emulated)?;
    Ok(finish(value, layout.unrows(grad), emulated))
}

/// `binary_cross_entropy_with_logits` through `candle_nn::loss::binary_cross_entropy_with_logit`.
fn binary_cross_entropy(request: &Request) -> Result<Outcome, Failure> {
    let input = Var::from_tensor(&to_candle(request.input)?)?;
    let target = to_candle(request.target)?;
    let loss = candle_nn::loss::binary_cross_entropy_with_logit(input.as_tensor(), &target)?;
    let mut emulated = Vec::new();
    let positions = input.elem_count();
    let (value, grad) = reduce_and_differentiate(request, loss, &input, positions, &mut emulated)?;
    Ok(finish(value, grad, emulated))
}

/// Applies the reduction to candle's mean over `positions`, then backpropagates
/// `grad_output · loss`: the loss value and the gradient with respect to `input`.
fn reduce_and_differentiate(
    request: &Request,
    mean: CandleTensor,
    input: &Var,
    positions: usize,
    emulated: &mut Vec<String>,
) -> Result<(f64, ndarray::ArrayD<f64>), Failure> {
    let loss = if request.reduction == Reduction::Sum {
        emulated.push("reduction='sum': candle's mean times the number of positions".into());
        mean.affine(positions as f64, 0.0)?
    } else {
        mean
    };
    let grad_output = CandleTensor::new(request.grad_output.unwrap_or(1.0), &Device::Cpu)?
        .to_dtype(loss.dtype())?;
    let grads = loss.broadcast_mul(&grad_output)?.sum_all()?.backward()?;
    let grad = match grads.get(input.as_tensor()) {
        Some(grad) => to_ndarray(grad)?,
        // No path from the input to the loss (an empty batch): the gradient is zero.
        None => ndarray::ArrayD::zeros(input.dims()),
    };
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    Ok((value, grad))
}

/// A segloss tensor as a candle CPU tensor of the same dtype.
fn to_candle(tensor: &Tensor) -> Result<CandleTensor, Failure> {
    let shape = tensor.shape().to_vec();
    let cpu = &Device::Cpu;
    Ok(match tensor {
        Tensor::Float64(array) => CandleTensor::from_vec(values(array), shape, cpu)?,
        Tensor::Float32(array) => CandleTensor::from_vec(values(array), shape, cpu)?,
        Tensor::Int64(array) => CandleTensor::from_vec(values(array), shape, cpu)?,
        Tensor::Int32(array) => CandleTensor::from_vec(values(array), shape, cpu)?,
        Tensor::Int16(array) => CandleTensor::from_vec(values(array), shape, cpu)?,
        Tensor::UInt8(array) => CandleTensor::from_vec(values(array), shape, cpu)?,
        Tensor::Bool(_) => {
            return Err(Failure::Outcome(unsupported(
                "candle has no boolean dtype".into(),
            )))
        }
    })
}

fn values<T: Copy>(array: &ndarray::ArrayD<T>) -> Vec<T> {
    array.iter().copied().collect()
}

/// A candle tensor's values as f64, in its shape.
fn to_ndarray(tensor: &CandleTensor) -> Result<ndarray::ArrayD<f64>, Failure> {
    let values = tensor
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    Ok(array(tensor.dims(), values))
}

#[cfg(test)]
mod tests {
    #[test]
    fn binary_cross_entropy_with_logits_matches_the_closed_form() {
        super::super::library::assert_binary_cross_entropy(&super::Candle);
    }
}
