//! The result files of an `ok` answer, read as untrusted input: regular files only (not symbolic
//! links, FIFOs or devices), no larger than the case can produce, float32 or float64, and the
//! gradient of the prediction's shape.

use std::path::Path;

use crate::catalog::LossCall;
use crate::npy;
use crate::spec::LossOutput;
use crate::tensor::{DType, Tensor};

/// Room for a `.npy` header on top of the elements (NumPy's headers are far smaller).
const HEADER_ROOM: u64 = 1 << 16;

/// Reads `loss.npy` and `grad_input.npy` from `out`, written for `call` whose prediction tensor
/// is named `prediction`. `Err` says what is wrong with them.
pub(super) fn read_results(
    out: &Path,
    call: &LossCall,
    prediction: &str,
) -> Result<LossOutput, String> {
    let limit = size_limit(call);
    let loss = read_float(out, "loss.npy", limit)?;
    let grad_input = read_float(out, "grad_input.npy", limit)?;
    let expected = call.tensors.get(prediction).map(Tensor::shape);
    if let Some(expected) = expected.filter(|&shape| shape != grad_input.shape()) {
        return Err(format!(
            "grad_input.npy has shape {:?}, not the shape of the prediction {prediction:?}, \
             {expected:?}",
            grad_input.shape(),
        ));
    }
    Ok(LossOutput {
        loss: loss.to_f64(),
        grad_input: grad_input.to_f64(),
    })
}

/// Reads `loss.npy` alone from `out`, for an answer without a gradient.
pub(super) fn read_loss(out: &Path, call: &LossCall) -> Result<ndarray::ArrayD<f64>, String> {
    Ok(read_float(out, "loss.npy", size_limit(call))?.to_f64())
}

/// The most bytes a result file of `call` may have: neither result has more elements than the
/// call's tensors together, each at most 8 bytes.
fn size_limit(call: &LossCall) -> u64 {
    let elements = call.tensors.values().fold(0u64, |sum, tensor| {
        sum.saturating_add(tensor.shape().iter().product::<usize>() as u64)
    });
    elements.saturating_mul(8).saturating_add(HEADER_ROOM)
}

/// Reads the float32 or float64 array `name` in `out`, a regular file of at most `limit` bytes.
fn read_float(out: &Path, name: &str, limit: u64) -> Result<Tensor, String> {
    let path = out.join(name);
    match std::fs::symlink_metadata(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{name} was not written"))
        }
        Ok(metadata) if metadata.file_type().is_symlink() => {
            return Err(format!(
                "{name} is a symbolic link; result files must be regular files"
            ))
        }
        _ => {}
    }
    let tensor = npy::read_npy_file(&path, limit).map_err(|error| error.to_string())?;
    match tensor.dtype() {
        DType::Float32 | DType::Float64 => Ok(tensor),
        other => Err(format!(
            "{name} is {other}; the protocol requires float32 or float64"
        )),
    }
}
