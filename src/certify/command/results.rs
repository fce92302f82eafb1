//! The results of an `ok` answer, read as untrusted input: inline in the answer (protocol version 2:
//! base64 of `.npy` bytes) or files in the case's `out` directory, regular files only (not symbolic
//! links, FIFOs or devices); either way no larger than the case can produce, float32 or float64,
//! and the gradient of the prediction's shape.

use std::path::Path;

use base64::Engine as _;

use super::protocol::Inline;

use crate::catalog::LossCall;
use crate::npy;
use crate::spec::LossOutput;
use crate::tensor::{DType, Tensor};

/// Room for a `.npy` header on top of the elements (NumPy's headers are far smaller).
const HEADER_ROOM: u64 = 1 << 16;

/// Reads the loss and the gradient, inline in the answer or `loss.npy` and `grad_input.npy` in
/// `out`, written for `call` whose prediction tensor is named `prediction`. `Err` says what is
/// wrong with them.
pub(super) fn read_results(
    out: &Path,
    inline: &Inline,
    call: &LossCall,
    prediction: &str,
) -> Result<LossOutput, String> {
    let limit = size_limit(call);
    let loss = read_float(out, "loss.npy", inline.loss.as_deref(), limit)?;
    let grad_input = read_float(out, "grad_input.npy", inline.grad_input.as_deref(), limit)?;
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

/// Reads the loss alone, inline or `loss.npy` in `out`, for an answer without a gradient.
pub(super) fn read_loss(
    out: &Path,
    inline: &Inline,
    call: &LossCall,
) -> Result<ndarray::ArrayD<f64>, String> {
    Ok(read_float(out, "loss.npy", inline.loss.as_deref(), size_limit(call))?.to_f64())
}

/// The most bytes a result file of `call` may have: neither result has more elements than the
/// call's tensors together, each at most 8 bytes.
fn size_limit(call: &LossCall) -> u64 {
    let elements = call.tensors.values().fold(0u64, |sum, tensor| {
        sum.saturating_add(tensor.shape().iter().product::<usize>() as u64)
    });
    elements.saturating_mul(8).saturating_add(HEADER_ROOM)
}

/// Reads the float32 or float64 array `name`: from `inline`, the base64 of its `.npy` bytes, when
/// the answer carries it, else the file `name` in `out`; either way at most `limit` bytes.
fn read_float(out: &Path, name: &str, inline: Option<&str>, limit: u64) -> Result<Tensor, String> {
    let tensor = match inline {
        Some(encoded) => decode_inline(name, encoded, limit)?,
        None => read_file(out, name, limit)?,
    };
    match tensor.dtype() {
        DType::Float32 | DType::Float64 => Ok(tensor),
        other => Err(format!(
            "{name} is {other}; the protocol requires float32 or float64"
        )),
    }
}

/// An inline array: base64 of `.npy` bytes, at most `limit` bytes once decoded.
fn decode_inline(name: &str, encoded: &str, limit: u64) -> Result<Tensor, String> {
    if (encoded.len() as u64) / 4 * 3 > limit {
        return Err(format!(
            "the inline {name} holds more than the {limit} bytes this case's results can have"
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|error| format!("the inline {name} is not base64: {error}"))?;
    npy::parse_npy(&bytes, Path::new(name)).map_err(|error| format!("the inline {error}"))
}

/// The array file `name` in `out`, a regular file of at most `limit` bytes.
fn read_file(out: &Path, name: &str, limit: u64) -> Result<Tensor, String> {
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
    npy::read_npy_file(&path, limit).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr0, arr1};
    use std::collections::BTreeMap;

    fn encoded(tensor: &Tensor) -> String {
        base64::engine::general_purpose::STANDARD.encode(npy::to_npy_bytes(tensor))
    }

    #[test]
    fn inline_results_are_checked_as_files_are() {
        let input = Tensor::Float64(arr1(&[1.0, 2.0, 3.0]).into_dyn());
        let call = LossCall {
            loss: "nll_loss".into(),
            params: BTreeMap::new(),
            tensors: BTreeMap::from([("input".to_string(), input)]),
            grad_output: None,
        };
        let loss = encoded(&Tensor::Float32(arr0(0.5f32).into_dyn()));
        let grad = encoded(&Tensor::Float64(arr1(&[0.1, 0.2, 0.3]).into_dyn()));
        let inline = |loss: &str, grad_input: &str| Inline {
            loss: Some(loss.to_string()),
            grad_input: Some(grad_input.to_string()),
        };
        let nowhere = Path::new("/nonexistent");
        let output = read_results(nowhere, &inline(&loss, &grad), &call, "input").unwrap();
        assert_eq!(output.loss, arr0(0.5).into_dyn());
        assert_eq!(output.grad_input, arr1(&[0.1, 0.2, 0.3]).into_dyn());
        let wrong_shape = encoded(&Tensor::Float64(arr1(&[0.1, 0.2]).into_dyn()));
        let integer = encoded(&Tensor::Int64(arr1(&[1, 2, 3]).into_dyn()));
        // 3 elements of 8 bytes and 64 KiB of header room: one byte more does not fit.
        let huge = "A".repeat(((3 * 8 + (1 << 16)) / 3 + 1) * 4);
        for (grad, why) in [
            (
                wrong_shape.as_str(),
                "has shape [2], not the shape of the prediction",
            ),
            (
                integer.as_str(),
                "grad_input.npy is int64; the protocol requires float32 or float64",
            ),
            ("not base64!", "the inline grad_input.npy is not base64"),
            ("AAAA", "the inline "),
            (huge.as_str(), "holds more than the 65560 bytes"),
        ] {
            let error = read_results(nowhere, &inline(&loss, grad), &call, "input").unwrap_err();
            assert!(error.contains(why), "{why}: {error}");
        }
        // The bound is on the decoded bytes: 144 of them (a 128-byte header and two float64)
        // are 192 base64 characters, allowed at a limit of 144 and refused at 143.
        let two = npy::to_npy_bytes(&Tensor::Float64(arr1(&[0.1, 0.2]).into_dyn()));
        assert_eq!(two.len(), 144);
        let two = base64::engine::general_purpose::STANDARD.encode(two);
        assert!(decode_inline("grad_input.npy", &two, 144).is_ok());
        let refused = decode_inline("grad_input.npy", &two, 143).unwrap_err();
        assert!(refused.contains("more than the 143 bytes"), "{refused}");
        // Without an inline loss the file is read, and there is none.
        let missing = Inline {
            loss: None,
            grad_input: Some(grad),
        };
        let error = read_results(nowhere, &missing, &call, "input").unwrap_err();
        assert_eq!(error, "loss.npy was not written");
    }
}
