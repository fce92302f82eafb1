//! Dtype-tagged arrays, `.npy` input and output, and sha256 hashing.
//!
//! Losses validate dtypes the way PyTorch does (an int32 target is an error, a uint8 target is not),
//! so a tensor keeps the dtype it was stored with until the loss has looked at it. All arithmetic
//! then happens in f64.

use std::fmt;
use std::io::Cursor;
use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The element types segloss reads, named as NumPy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// 64-bit float (`torch.float64`, PyTorch's "Double").
    Float64,
    /// 32-bit float (`torch.float32`, PyTorch's "Float").
    Float32,
    /// 64-bit signed integer (`torch.int64`, PyTorch's "Long").
    Int64,
    /// 32-bit signed integer (`torch.int32`, PyTorch's "Int").
    Int32,
    /// 16-bit signed integer (`torch.int16`, PyTorch's "Short").
    Int16,
    /// 8-bit unsigned integer (`torch.uint8`, PyTorch's "Byte").
    UInt8,
    /// Boolean.
    Bool,
}

impl DType {
    /// The NumPy name (`float64`, `int64`, …), as the manifest records it.
    pub fn name(self) -> &'static str {
        match self {
            DType::Float64 => "float64",
            DType::Float32 => "float32",
            DType::Int64 => "int64",
            DType::Int32 => "int32",
            DType::Int16 => "int16",
            DType::UInt8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Whether the dtype is a floating-point type.
    pub fn is_floating(self) -> bool {
        matches!(self, DType::Float64 | DType::Float32)
    }

    /// The dtype a `.npy` header's `descr` names, if segloss reads it.
    fn from_descr(descr: &str) -> Option<DType> {
        Some(match descr {
            "<f8" => DType::Float64,
            "<f4" => DType::Float32,
            "<i8" => DType::Int64,
            "<i4" => DType::Int32,
            "<i2" => DType::Int16,
            "|u1" => DType::UInt8,
            "|b1" => DType::Bool,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An n-dimensional array that remembers its element type.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    /// float64 elements.
    Float64(ArrayD<f64>),
    /// float32 elements.
    Float32(ArrayD<f32>),
    /// int64 elements.
    Int64(ArrayD<i64>),
    /// int32 elements.
    Int32(ArrayD<i32>),
    /// int16 elements.
    Int16(ArrayD<i16>),
    /// uint8 elements.
    UInt8(ArrayD<u8>),
    /// bool elements.
    Bool(ArrayD<bool>),
}

/// Applies the same expression to the array inside whichever variant a tensor holds.
macro_rules! each_variant {
    ($tensor:expr, $array:ident => $body:expr) => {
        match $tensor {
            Tensor::Float64($array) => $body,
            Tensor::Float32($array) => $body,
            Tensor::Int64($array) => $body,
            Tensor::Int32($array) => $body,
            Tensor::Int16($array) => $body,
            Tensor::UInt8($array) => $body,
            Tensor::Bool($array) => $body,
        }
    };
}

impl Tensor {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::Float64(_) => DType::Float64,
            Tensor::Float32(_) => DType::Float32,
            Tensor::Int64(_) => DType::Int64,
            Tensor::Int32(_) => DType::Int32,
            Tensor::Int16(_) => DType::Int16,
            Tensor::UInt8(_) => DType::UInt8,
            Tensor::Bool(_) => DType::Bool,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        each_variant!(self, array => array.shape())
    }

    /// The elements converted to f64 (exactly, for every supported dtype; `true` is 1).
    pub fn to_f64(&self) -> ArrayD<f64> {
        match self {
            Tensor::Float64(array) => array.clone(),
            Tensor::Float32(array) => array.mapv(f64::from),
            Tensor::Int64(array) => array.mapv(|value| value as f64),
            Tensor::Int32(array) => array.mapv(f64::from),
            Tensor::Int16(array) => array.mapv(f64::from),
            Tensor::UInt8(array) => array.mapv(f64::from),
            Tensor::Bool(array) => array.mapv(|value| if value { 1.0 } else { 0.0 }),
        }
    }

    /// The elements as i64, for the integer dtypes PyTorch accepts as class indices (int64, uint8).
    pub fn class_indices(&self) -> Option<ArrayD<i64>> {
        match self {
            Tensor::Int64(array) => Some(array.clone()),
            Tensor::UInt8(array) => Some(array.mapv(i64::from)),
            _ => None,
        }
    }

    /// Reads a `.npy` file.
    pub fn read_npy(path: &Path) -> Result<Tensor> {
        let bytes = read_file(path)?;
        Tensor::from_npy_bytes(&bytes, path)
    }

    /// Parses the bytes of a `.npy` file; `path` only names the source in errors.
    pub fn from_npy_bytes(bytes: &[u8], path: &Path) -> Result<Tensor> {
        let npy_error = |message: String| Error::Npy {
            path: path.to_path_buf(),
            message,
        };
        let descr = npy_descr(bytes).ok_or_else(|| npy_error("unreadable header".into()))?;
        let dtype = DType::from_descr(&descr).ok_or_else(|| {
            npy_error(format!(
                "dtype {descr:?} (supported: float64, float32, int64, int32, int16, uint8, bool, little-endian)"
            ))
        })?;
        let reader = Cursor::new(bytes);
        let parsed = match dtype {
            DType::Float64 => ArrayD::read_npy(reader).map(Tensor::Float64),
            DType::Float32 => ArrayD::read_npy(reader).map(Tensor::Float32),
            DType::Int64 => ArrayD::read_npy(reader).map(Tensor::Int64),
            DType::Int32 => ArrayD::read_npy(reader).map(Tensor::Int32),
            DType::Int16 => ArrayD::read_npy(reader).map(Tensor::Int16),
            DType::UInt8 => ArrayD::read_npy(reader).map(Tensor::UInt8),
            DType::Bool => ArrayD::read_npy(reader).map(Tensor::Bool),
        };
        parsed.map_err(|error| npy_error(error.to_string()))
    }

    /// Writes the tensor as a `.npy` file, in its own dtype.
    pub fn write_npy(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::new();
        each_variant!(self, array => array.write_npy(&mut bytes)).map_err(|error| Error::Npy {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        std::fs::write(path, bytes).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
    }
}

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// The lowercase hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The `descr` entry of a `.npy` header (`'<f8'` → `<f8`), or `None` if the header is malformed.
fn npy_descr(bytes: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return None;
    }
    let (header_start, header_len) = match bytes[6] {
        1 => (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 => (
            12,
            u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize,
        ),
        _ => return None,
    };
    let header = std::str::from_utf8(bytes.get(header_start..header_start + header_len)?).ok()?;
    let after_key = &header[header.find("'descr'")? + "'descr'".len()..];
    let value_start = after_key.find('\'')? + 1;
    let value_len = after_key[value_start..].find('\'')?;
    Some(after_key[value_start..value_start + value_len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip_keeps_dtype_and_values() {
        let dir = std::env::temp_dir().join(format!("segloss-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tensors = [
            Tensor::Float32(
                ArrayD::from_shape_vec(vec![2, 2], vec![1.5, -2.0, 0.0, 3.25]).unwrap(),
            ),
            Tensor::UInt8(ArrayD::from_shape_vec(vec![3], vec![0, 7, 255]).unwrap()),
            Tensor::Bool(ArrayD::from_shape_vec(vec![2], vec![true, false]).unwrap()),
            Tensor::Float64(ArrayD::from_elem(vec![], 0.125)),
        ];
        for (index, tensor) in tensors.iter().enumerate() {
            let path = dir.join(format!("{index}.npy"));
            tensor.write_npy(&path).unwrap();
            assert_eq!(&Tensor::read_npy(&path).unwrap(), tensor);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unsupported_npy_is_a_typed_error() {
        let error = Tensor::from_npy_bytes(b"not an npy file", Path::new("x.npy")).unwrap_err();
        assert_eq!(error.kind(), "npy");
    }
}
