//! Dtype-tagged arrays.
//!
//! Losses validate dtypes the way PyTorch does (an int32 target is an error, a uint8 target is not),
//! so a tensor keeps the dtype it was stored with until the loss has looked at it. All arithmetic
//! then happens in f64. Reading and writing them as `.npy` files is [`crate::npy`]'s concern.

use std::fmt;

use ndarray::ArrayD;

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

    /// Bytes per element.
    pub fn item_size(self) -> usize {
        match self {
            DType::Float64 | DType::Int64 => 8,
            DType::Float32 | DType::Int32 => 4,
            DType::Int16 => 2,
            DType::UInt8 | DType::Bool => 1,
        }
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
        match self {
            Tensor::Float64(array) => array.shape(),
            Tensor::Float32(array) => array.shape(),
            Tensor::Int64(array) => array.shape(),
            Tensor::Int32(array) => array.shape(),
            Tensor::Int16(array) => array.shape(),
            Tensor::UInt8(array) => array.shape(),
            Tensor::Bool(array) => array.shape(),
        }
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

    /// Whether the elements lie in row-major (C) order, contiguous.
    pub fn is_standard_layout(&self) -> bool {
        match self {
            Tensor::Float64(array) => array.is_standard_layout(),
            Tensor::Float32(array) => array.is_standard_layout(),
            Tensor::Int64(array) => array.is_standard_layout(),
            Tensor::Int32(array) => array.is_standard_layout(),
            Tensor::Int16(array) => array.is_standard_layout(),
            Tensor::UInt8(array) => array.is_standard_layout(),
            Tensor::Bool(array) => array.is_standard_layout(),
        }
    }

    /// The same tensor in row-major (C) order, contiguous (a copy of a transposed or strided one).
    pub fn to_standard_layout(&self) -> Tensor {
        match self {
            Tensor::Float64(array) => Tensor::Float64(array.as_standard_layout().into_owned()),
            Tensor::Float32(array) => Tensor::Float32(array.as_standard_layout().into_owned()),
            Tensor::Int64(array) => Tensor::Int64(array.as_standard_layout().into_owned()),
            Tensor::Int32(array) => Tensor::Int32(array.as_standard_layout().into_owned()),
            Tensor::Int16(array) => Tensor::Int16(array.as_standard_layout().into_owned()),
            Tensor::UInt8(array) => Tensor::UInt8(array.as_standard_layout().into_owned()),
            Tensor::Bool(array) => Tensor::Bool(array.as_standard_layout().into_owned()),
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
}
