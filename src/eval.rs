//! `segloss eval`: one loss call assembled from `.npy` files and `NAME=VALUE` parameters, computed
//! by the reference, its loss and gradient written as float64 `.npy` files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::catalog::{self, LossCall};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The files and parameters of one `segloss eval` call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalRequest {
    /// The loss id.
    pub loss: String,
    /// The prediction file, passed as the loss's first tensor argument.
    pub prediction: PathBuf,
    /// The target file, passed as its second.
    pub target: PathBuf,
    /// Other tensor arguments by keyword name.
    pub tensors: Vec<(String, PathBuf)>,
    /// The grad_output file; ones when absent.
    pub grad_output: Option<PathBuf>,
    /// Keyword parameters.
    pub params: Vec<(String, Value)>,
}

/// A command-line `NAME=VALUE` parameter: VALUE is read as JSON where it parses, and as a string
/// otherwise (`reduction=none` is the string "none", `ignore_index=1` the number 1).
pub fn parse_param(assignment: &str) -> std::result::Result<(String, Value), String> {
    let (name, value) = split_assignment(assignment)?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((name.to_string(), value))
}

/// A command-line `NAME=FILE` tensor argument.
pub fn parse_tensor_file(assignment: &str) -> std::result::Result<(String, PathBuf), String> {
    let (name, path) = split_assignment(assignment)?;
    Ok((name.to_string(), PathBuf::from(path)))
}

fn split_assignment(assignment: &str) -> std::result::Result<(&str, &str), String> {
    match assignment.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name, value)),
        _ => Err(format!("{assignment:?} is not NAME=VALUE")),
    }
}

/// Reads the request's files, computes the call with the reference and, only when that
/// succeeded, writes `out/loss.npy` and `out/grad_input.npy`.
pub fn eval(request: &EvalRequest, out: &Path) -> Result<()> {
    let definition = catalog::find(&request.loss)?;
    let named = [
        (definition.prediction(), &request.prediction),
        (definition.target(), &request.target),
    ];
    let tensors = named
        .into_iter()
        .map(|(name, path)| (name.to_string(), path))
        .chain(
            request
                .tensors
                .iter()
                .map(|(name, path)| (name.clone(), path)),
        )
        .map(|(name, path)| Ok((name, Tensor::read_npy(path)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let grad_output = request
        .grad_output
        .as_deref()
        .map(Tensor::read_npy)
        .transpose()?
        .map(|tensor| tensor.to_f64());
    let output = catalog::evaluate(&LossCall {
        loss: request.loss.clone(),
        params: request.params.iter().cloned().collect(),
        tensors,
        grad_output,
    })?;
    std::fs::create_dir_all(out).map_err(|error| Error::Io {
        path: out.to_path_buf(),
        message: error.to_string(),
    })?;
    Tensor::Float64(output.loss).write_npy(&out.join("loss.npy"))?;
    Tensor::Float64(output.grad_input).write_npy(&out.join("grad_input.npy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_read_json_values_and_keep_other_text() {
        assert_eq!(
            parse_param("ignore_index=1"),
            Ok(("ignore_index".into(), Value::from(1)))
        );
        assert_eq!(
            parse_param("reduction=none"),
            Ok(("reduction".into(), Value::from("none")))
        );
        assert_eq!(parse_param("a==b"), Ok(("a".into(), Value::from("=b"))));
        assert!(parse_param("reduction").is_err());
        assert!(parse_param("=1").is_err());
        assert_eq!(
            parse_tensor_file("weight=w.npy"),
            Ok(("weight".into(), PathBuf::from("w.npy")))
        );
    }
}
