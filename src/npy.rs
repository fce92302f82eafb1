//! The `.npy` file format, read within bounds.
//!
//! A `.npy` file is a magic string, a format version, a header (a Python dict literal with the
//! keys `descr`, `fortran_order` and `shape`) and the raw elements. The header is parsed here by a
//! small strict parser of that literal, and the element count it claims (a checked product of the
//! shape) times the item size must equal the data bytes actually present before anything is
//! allocated for the array. Big-endian arrays are byte-swapped, Fortran-order arrays are returned in
//! standard (C) layout: a tensor read from a file always has standard layout, whatever the file's.
//!
//! Versions 1.0, 2.0 and 3.0 are read; [`write_npy`] writes version 1.0 (2.0 when the header needs
//! it), little-endian, C order, as `numpy.save` does.

use std::io::{BufWriter, Write};
use std::path::Path;

use ndarray::{ArrayD, IxDyn, ShapeBuilder};

use crate::error::{Error, Result};
use crate::files::read_regular_file;
use crate::tensor::{DType, Tensor};

/// The default size limit of a `.npy` file. The largest realistic fixture, a
/// `(2, 19, 1024, 2048)` float64 segmentation batch, is 637 MB; 4 GiB admits a few times that and
/// still refuses `/dev/zero`-like sources long before they exhaust a machine's memory.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 << 30;

/// The most dimensions a header may give: NumPy's own limit (`NPY_MAXDIMS`).
pub const MAX_DIMENSIONS: usize = 64;

const MAGIC: &[u8] = b"\x93NUMPY";

/// The longest excerpt of a header value an error message quotes.
const QUOTE_LIMIT: usize = 40;

/// A parsed `.npy` header, checked against the bytes that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The element type.
    pub dtype: DType,
    /// Whether the elements are stored big-endian.
    pub big_endian: bool,
    /// Whether the elements are stored in Fortran (column-major) order.
    pub fortran_order: bool,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Where the elements start in the file.
    pub data_offset: usize,
    /// The number of elements: the product of the shape.
    pub element_count: usize,
}

/// Reads a `.npy` file of at most `max_bytes` bytes: a regular file only (see
/// [`read_regular_file`]), parsed by [`parse_npy`].
pub fn read_npy_file(path: &Path, max_bytes: u64) -> Result<Tensor> {
    parse_npy(&read_regular_file(path, max_bytes)?, path)
}

/// Parses the bytes of a `.npy` file into a tensor in standard layout; `source` only names the
/// file in errors.
pub fn parse_npy(bytes: &[u8], source: &Path) -> Result<Tensor> {
    let header = parse_header(bytes, source)?;
    let data = &bytes[header.data_offset..];
    let big = header.big_endian;
    let tensor = match header.dtype {
        DType::Float64 => Tensor::Float64(header.array(
            source,
            decode(data, pick(big, f64::from_be_bytes, f64::from_le_bytes)),
        )?),
        DType::Float32 => Tensor::Float32(header.array(
            source,
            decode(data, pick(big, f32::from_be_bytes, f32::from_le_bytes)),
        )?),
        DType::Int64 => Tensor::Int64(header.array(
            source,
            decode(data, pick(big, i64::from_be_bytes, i64::from_le_bytes)),
        )?),
        DType::Int32 => Tensor::Int32(header.array(
            source,
            decode(data, pick(big, i32::from_be_bytes, i32::from_le_bytes)),
        )?),
        DType::Int16 => Tensor::Int16(header.array(
            source,
            decode(data, pick(big, i16::from_be_bytes, i16::from_le_bytes)),
        )?),
        DType::UInt8 => Tensor::UInt8(header.array(source, data.to_vec())?),
        DType::Bool => {
            if let Some(position) = data.iter().position(|&byte| byte > 1) {
                return Err(npy_error(
                    source,
                    format!(
                        "bool element {position} holds the byte {:#04x}; bool elements are 0 or 1",
                        data[position]
                    ),
                ));
            }
            Tensor::Bool(header.array(source, data.iter().map(|&byte| byte == 1).collect())?)
        }
    };
    Ok(tensor)
}

/// Parses and checks a `.npy` header: the magic string, the version, the header dict, and that the
/// bytes after the header hold exactly the elements the header claims.
pub fn parse_header(bytes: &[u8], source: &Path) -> Result<Header> {
    let fail = |message: String| npy_error(source, message);
    if !bytes.starts_with(MAGIC) {
        return Err(fail(if bytes.is_empty() {
            "the file is empty".into()
        } else if MAGIC.starts_with(bytes) {
            format!("truncated: {} bytes, not even a header", bytes.len())
        } else {
            "it does not start with the .npy magic string \\x93NUMPY".into()
        }));
    }
    let length_bytes = match (bytes.get(6), bytes.get(7)) {
        (Some(1), Some(0)) => 2,
        (Some(2 | 3), Some(0)) => 4,
        (Some(major), Some(minor)) => {
            return Err(fail(format!(
                "format version {major}.{minor} (this build reads 1.0, 2.0 and 3.0)"
            )))
        }
        _ => return Err(fail("truncated inside the format version".into())),
    };
    let header_start = 8 + length_bytes;
    let header_len = match bytes.get(8..header_start) {
        Some(&[low, high]) => usize::from(u16::from_le_bytes([low, high])),
        Some(&[a, b, c, d]) => usize::try_from(u32::from_le_bytes([a, b, c, d]))
            .map_err(|_| fail("the header length does not fit in memory".into()))?,
        _ => return Err(fail("truncated inside the header length".into())),
    };
    let present = bytes.len() - header_start;
    if header_len > present {
        return Err(fail(format!(
            "truncated: the header claims {header_len} bytes, the file holds {present} after the preamble"
        )));
    }
    let data_offset = header_start + header_len;
    let dict = HeaderDict::parse(&bytes[header_start..data_offset]).map_err(fail)?;
    let item_size = dict.dtype.item_size();
    if dict.shape.len() > MAX_DIMENSIONS {
        return Err(fail(format!(
            "the shape has {} dimensions, more than NumPy's {MAX_DIMENSIONS}",
            dict.shape.len()
        )));
    }
    // Every array must be addressable in bytes, zero-length axes aside, as for NumPy and ndarray.
    let addressable = dict
        .shape
        .iter()
        .filter(|&&axis| axis != 0)
        .try_fold(item_size, |bytes, &axis| bytes.checked_mul(axis))
        .filter(|&bytes| isize::try_from(bytes).is_ok());
    if addressable.is_none() {
        return Err(fail(format!(
            "shape {:?} describes more bytes than a machine can address",
            dict.shape
        )));
    }
    let element_count: usize = dict.shape.iter().product();
    let expected = element_count * item_size;
    let actual = bytes.len() - data_offset;
    if actual != expected {
        let problem = if actual < expected {
            "truncated".to_string()
        } else {
            format!("{} trailing bytes", actual - expected)
        };
        return Err(fail(format!(
            "{problem}: the header claims {element_count} {} elements of shape {:?} ({expected} bytes), the file holds {actual} data bytes",
            dict.dtype, dict.shape
        )));
    }
    Ok(Header {
        dtype: dict.dtype,
        big_endian: dict.big_endian,
        fortran_order: dict.fortran_order,
        shape: dict.shape,
        data_offset,
        element_count,
    })
}

impl Header {
    /// The decoded elements (in file order) as an array of the header's shape, in standard layout.
    fn array<T: Clone>(&self, source: &Path, elements: Vec<T>) -> Result<ArrayD<T>> {
        let shape = IxDyn(&self.shape);
        let built = if self.fortran_order {
            ArrayD::from_shape_vec(shape.f(), elements)
                .map(|array| array.as_standard_layout().into_owned())
        } else {
            ArrayD::from_shape_vec(shape, elements)
        };
        built.map_err(|error| npy_error(source, error.to_string()))
    }
}

/// A shape as the Python tuple literal a `.npy` header holds: `()`, `(3,)`, `(2, 4)`.
pub fn shape_literal(shape: &[usize]) -> String {
    match shape {
        [axis] => format!("({axis},)"),
        axes => format!(
            "({})",
            axes.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The `.npy` bytes of a tensor: format version 1.0 (2.0 if the header is too long for it),
/// little-endian, C order, the header padded to a multiple of 64 bytes as NumPy pads it.
pub fn to_npy_bytes(tensor: &Tensor) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(128 + tensor.shape().iter().product::<usize>() * 8);
    write_npy_to(tensor, &mut bytes).expect("writing to a Vec cannot fail");
    bytes
}

/// Writes the `.npy` bytes of [`to_npy_bytes`] to `out`, element by element.
fn write_npy_to(tensor: &Tensor, out: &mut impl Write) -> std::io::Result<()> {
    let dtype = tensor.dtype();
    let shape = shape_literal(tensor.shape());
    let order = if dtype.item_size() == 1 { '|' } else { '<' };
    let mut dict = format!(
        "{{'descr': '{order}{}', 'fortran_order': False, 'shape': {shape}, }}",
        descr_code(dtype)
    );
    let header_len = |preamble: usize| (preamble + dict.len() + 1).next_multiple_of(64) - preamble;
    let version: u8 = if header_len(10) <= usize::from(u16::MAX) {
        1
    } else {
        2
    };
    let len = header_len(if version == 1 { 10 } else { 12 });
    dict.extend(std::iter::repeat_n(' ', len - dict.len() - 1));
    dict.push('\n');
    out.write_all(MAGIC)?;
    out.write_all(&[version, 0])?;
    if version == 1 {
        out.write_all(&(len as u16).to_le_bytes())?;
    } else {
        out.write_all(&(len as u32).to_le_bytes())?;
    }
    out.write_all(dict.as_bytes())?;
    match tensor {
        Tensor::Float64(array) => encode(out, array, f64::to_le_bytes),
        Tensor::Float32(array) => encode(out, array, f32::to_le_bytes),
        Tensor::Int64(array) => encode(out, array, i64::to_le_bytes),
        Tensor::Int32(array) => encode(out, array, i32::to_le_bytes),
        Tensor::Int16(array) => encode(out, array, i16::to_le_bytes),
        Tensor::UInt8(array) => encode(out, array, |value| [value]),
        Tensor::Bool(array) => encode(out, array, |value| [u8::from(value)]),
    }
}

/// Writes a tensor as a `.npy` file, in its own dtype (see [`to_npy_bytes`]), streamed through a
/// buffer rather than formed whole in memory.
pub fn write_npy(tensor: &Tensor, path: &Path) -> Result<()> {
    let io_error = |error: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        message: error.to_string(),
    };
    let mut out = BufWriter::new(std::fs::File::create(path).map_err(io_error)?);
    write_npy_to(tensor, &mut out).map_err(io_error)?;
    out.flush().map_err(io_error)
}

impl Tensor {
    /// Reads a `.npy` file within [`DEFAULT_MAX_FILE_BYTES`] (see [`read_npy_file`]).
    pub fn read_npy(path: &Path) -> Result<Tensor> {
        read_npy_file(path, DEFAULT_MAX_FILE_BYTES)
    }

    /// Writes the tensor as a `.npy` file, in its own dtype (see [`write_npy`]).
    pub fn write_npy(&self, path: &Path) -> Result<()> {
        write_npy(self, path)
    }
}

fn npy_error(source: &Path, message: String) -> Error {
    Error::Npy {
        path: source.to_path_buf(),
        message,
    }
}

/// The type code of a `descr` without its byte-order character.
fn descr_code(dtype: DType) -> &'static str {
    match dtype {
        DType::Float64 => "f8",
        DType::Float32 => "f4",
        DType::Int64 => "i8",
        DType::Int32 => "i4",
        DType::Int16 => "i2",
        DType::UInt8 => "u1",
        DType::Bool => "b1",
    }
}

fn pick<T>(big_endian: bool, big: T, little: T) -> T {
    if big_endian {
        big
    } else {
        little
    }
}

/// Decodes consecutive `N`-byte elements; the caller has checked that `data` holds whole elements.
fn decode<const N: usize, T>(data: &[u8], element: fn([u8; N]) -> T) -> Vec<T> {
    data.as_chunks::<N>()
        .0
        .iter()
        .map(|&bytes| element(bytes))
        .collect()
}

fn encode<const N: usize, T: Copy>(
    out: &mut impl Write,
    array: &ArrayD<T>,
    element: fn(T) -> [u8; N],
) -> std::io::Result<()> {
    for &value in array {
        out.write_all(&element(value))?;
    }
    Ok(())
}

/// The three entries of a header dict.
struct HeaderDict {
    dtype: DType,
    big_endian: bool,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value of the header dict literal.
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

impl HeaderDict {
    /// Parses `{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }` and the like: the
    /// subset of Python literal syntax `numpy.save` writes, each key exactly once, nothing else.
    fn parse(text: &[u8]) -> std::result::Result<HeaderDict, String> {
        let mut parser = Parser { text, position: 0 };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        parser.expect(b'{')?;
        while !parser.accept(b'}') {
            let at = parser.position;
            let key = parser.string()?;
            let slot = match key.as_str() {
                "descr" => &mut descr,
                "fortran_order" => &mut fortran_order,
                "shape" => &mut shape,
                other => {
                    return Err(format!(
                        "malformed header: key {} at byte {at} is not one of 'descr', 'fortran_order', 'shape'",
                        quote(other)
                    ))
                }
            };
            parser.expect(b':')?;
            if slot.replace(parser.literal()?).is_some() {
                return Err(format!("malformed header: key '{key}' is given twice"));
            }
            if !parser.accept(b',') {
                parser.expect(b'}')?;
                break;
            }
        }
        parser.skip_whitespace();
        if parser.position != text.len() {
            return Err(format!(
                "malformed header: unexpected {} at byte {} after the dict",
                parser.describe_next(),
                parser.position
            ));
        }
        let missing = |key: &str| format!("malformed header: no '{key}' entry");
        let (dtype, big_endian) = match descr.ok_or_else(|| missing("descr"))? {
            Literal::Str(descr) => parse_descr(&descr)?,
            _ => return Err("malformed header: 'descr' is not a string".into()),
        };
        let fortran_order = match fortran_order.ok_or_else(|| missing("fortran_order"))? {
            Literal::Bool(value) => value,
            _ => return Err("malformed header: 'fortran_order' is not True or False".into()),
        };
        let shape = match shape.ok_or_else(|| missing("shape"))? {
            Literal::Tuple(shape) => shape,
            _ => return Err("malformed header: 'shape' is not a tuple of integers".into()),
        };
        Ok(HeaderDict {
            dtype,
            big_endian,
            fortran_order,
            shape,
        })
    }
}

/// The dtype and byte order a `descr` names, or why segloss does not read it.
fn parse_descr(descr: &str) -> std::result::Result<(DType, bool), String> {
    let unsupported = || {
        format!(
            "dtype {} is not supported (segloss reads float64, float32, int64, int32, int16, uint8 and bool); convert the array with .astype() before saving",
            quote(descr)
        )
    };
    let mut characters = descr.chars();
    let order = characters.next().ok_or_else(unsupported)?;
    let code = characters.as_str();
    let dtype = [
        DType::Float64,
        DType::Float32,
        DType::Int64,
        DType::Int32,
        DType::Int16,
        DType::UInt8,
        DType::Bool,
    ]
    .into_iter()
    .find(|&dtype| descr_code(dtype) == code)
    .ok_or_else(unsupported)?;
    let big_endian = match order {
        '<' => false,
        '>' => true,
        '=' => cfg!(target_endian = "big"),
        '|' if dtype.item_size() == 1 => false,
        '|' => {
            return Err(format!(
                "dtype {} has no byte order, but {dtype} needs one ('<' or '>')",
                quote(descr)
            ))
        }
        _ => return Err(unsupported()),
    };
    Ok((dtype, big_endian))
}

/// A cursor over the header text.
struct Parser<'a> {
    text: &'a [u8],
    position: usize,
}

impl Parser<'_> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') = self.peek() {
            self.position += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.position).copied()
    }

    /// Skips whitespace, then consumes `byte` if it comes next.
    fn accept(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let found = self.peek() == Some(byte);
        if found {
            self.position += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> std::result::Result<(), String> {
        if self.accept(byte) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{}'", char::from(byte))))
        }
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            None => "end of header".into(),
            Some(byte) if byte.is_ascii_graphic() => format!("'{}'", char::from(byte)),
            Some(byte) => format!("byte {byte:#04x}"),
        }
    }

    fn unexpected(&self, wanted: &str) -> String {
        format!(
            "malformed header: expected {wanted} at byte {}, found {}",
            self.position,
            self.describe_next()
        )
    }

    /// A single- or double-quoted string of printable ASCII without escapes.
    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_whitespace();
        let quote_byte = match self.peek() {
            Some(byte @ (b'\'' | b'"')) => byte,
            _ => return Err(self.unexpected("a quoted string")),
        };
        self.position += 1;
        let start = self.position;
        loop {
            match self.peek() {
                Some(byte) if byte == quote_byte => break,
                Some(byte) if (b' '..=b'~').contains(&byte) && byte != b'\\' => self.position += 1,
                _ => return Err(self.unexpected("printable ASCII or the closing quote")),
            }
        }
        let value = String::from_utf8_lossy(&self.text[start..self.position]).into_owned();
        self.position += 1;
        Ok(value)
    }

    fn literal(&mut self) -> std::result::Result<Literal, String> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'\'' | b'"') => self.string().map(Literal::Str),
            Some(b'(') => self.tuple().map(Literal::Tuple),
            Some(b'T' | b'F') => {
                for (word, value) in [("True", true), ("False", false)] {
                    if self.text[self.position..].starts_with(word.as_bytes()) {
                        self.position += word.len();
                        return Ok(Literal::Bool(value));
                    }
                }
                Err(self.unexpected("True or False"))
            }
            Some(b'[') => Err(self.unexpected(
                "a string, True, False or a tuple (structured dtypes are not supported; save a plain array)",
            )),
            _ => Err(self.unexpected("a string, True, False or a tuple")),
        }
    }

    /// A tuple of non-negative integers: `()`, `(3,)`, `(2, 3)`, `(2, 3,)`. As in Python, `(3)` is
    /// not a tuple.
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut items = Vec::new();
        loop {
            if self.accept(b')') {
                return Ok(items);
            }
            items.push(self.integer()?);
            if self.accept(b',') {
                continue;
            }
            if items.len() == 1 {
                return Err(self.unexpected("',' (a one-element shape is written (n,))"));
            }
            self.expect(b')')?;
            return Ok(items);
        }
    }

    /// A non-negative decimal integer without sign, leading zeros or underscores.
    fn integer(&mut self) -> std::result::Result<usize, String> {
        self.skip_whitespace();
        let start = self.position;
        while let Some(b'0'..=b'9') = self.peek() {
            self.position += 1;
        }
        let digits = &self.text[start..self.position];
        if digits.is_empty() {
            return Err(self.unexpected("a non-negative integer"));
        }
        let digits = String::from_utf8_lossy(digits);
        if digits.len() > 1 && digits.starts_with('0') {
            return Err(format!(
                "malformed header: integer {} at byte {start} has a leading zero",
                quote(&digits)
            ));
        }
        digits.parse().map_err(|_| {
            format!(
                "malformed header: shape entry {} at byte {start} is too large for this machine",
                quote(&digits)
            )
        })
    }
}

/// A header value for an error message, shortened to [`QUOTE_LIMIT`] characters.
fn quote(value: &str) -> String {
    if value.chars().count() <= QUOTE_LIMIT {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(QUOTE_LIMIT).collect();
        format!("{head:?}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[version, 0]);
        if version == 1 {
            bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            bytes.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        bytes.extend_from_slice(dict.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    fn parse(bytes: &[u8]) -> Result<Tensor> {
        parse_npy(bytes, Path::new("x.npy"))
    }

    fn message(bytes: &[u8]) -> String {
        let error = parse(bytes).unwrap_err();
        assert_eq!(error.kind(), "npy", "{error}");
        error.to_string()
    }

    fn sample_tensors() -> Vec<Tensor> {
        vec![
            Tensor::Float64(ArrayD::from_elem(vec![], 0.125)),
            Tensor::Float32(
                ArrayD::from_shape_vec(vec![2, 2], vec![1.5, -2.0, 0.0, 3.25]).unwrap(),
            ),
            Tensor::Int64(ArrayD::from_shape_vec(vec![3], vec![i64::MIN, -1, i64::MAX]).unwrap()),
            Tensor::Int32(ArrayD::from_shape_vec(vec![1, 2], vec![-7, 9]).unwrap()),
            Tensor::Int16(ArrayD::from_shape_vec(vec![0, 4], vec![]).unwrap()),
            Tensor::UInt8(ArrayD::from_shape_vec(vec![3], vec![0, 7, 255]).unwrap()),
            Tensor::Bool(ArrayD::from_shape_vec(vec![2], vec![true, false]).unwrap()),
        ]
    }

    #[test]
    fn round_trip_keeps_dtype_shape_and_values() {
        let dir = tempfile::tempdir().unwrap();
        for (index, tensor) in sample_tensors().iter().enumerate() {
            let bytes = to_npy_bytes(tensor);
            assert_eq!(&parse(&bytes).unwrap(), tensor);
            let path = dir.path().join(format!("{index}.npy"));
            tensor.write_npy(&path).unwrap();
            assert_eq!(&Tensor::read_npy(&path).unwrap(), tensor);
        }
    }

    #[test]
    fn written_headers_are_padded_like_numpy() {
        for tensor in sample_tensors() {
            let bytes = to_npy_bytes(&tensor);
            let header = parse_header(&bytes, Path::new("x.npy")).unwrap();
            assert_eq!(header.data_offset % 64, 0);
            assert_eq!(bytes[header.data_offset - 1], b'\n');
        }
    }

    #[test]
    fn versions_two_and_three_are_read() {
        for version in [2, 3] {
            let bytes = npy(
                version,
                "{'descr': '<i2', 'fortran_order': False, 'shape': (2,)}",
                &[1, 0, 255, 255],
            );
            assert_eq!(
                parse(&bytes).unwrap(),
                Tensor::Int16(ArrayD::from_shape_vec(vec![2], vec![1, -1]).unwrap())
            );
        }
    }

    #[test]
    fn big_endian_and_native_byte_orders_are_decoded() {
        let value = 1.5f64;
        let big = npy(
            1,
            "{'descr': '>f8', 'fortran_order': False, 'shape': ()}",
            &value.to_be_bytes(),
        );
        let native = npy(
            1,
            "{'descr': '=f8', 'fortran_order': False, 'shape': ()}",
            &value.to_ne_bytes(),
        );
        for bytes in [big, native] {
            assert_eq!(
                parse(&bytes).unwrap(),
                Tensor::Float64(ArrayD::from_elem(vec![], value))
            );
        }
    }

    #[test]
    fn fortran_order_is_returned_in_standard_layout() {
        // The (2, 3) array [[0, 1, 2], [3, 4, 5]] stored column by column.
        let data: Vec<u8> = [0i32, 3, 1, 4, 2, 5]
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        let bytes = npy(
            1,
            "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }",
            &data,
        );
        let Tensor::Int32(array) = parse(&bytes).unwrap() else {
            panic!("not int32");
        };
        assert!(array.is_standard_layout());
        assert_eq!(
            array,
            ArrayD::from_shape_vec(vec![2, 3], (0..6).collect()).unwrap()
        );
    }

    #[test]
    fn header_claims_beyond_the_data_are_refused_before_allocating() {
        let bomb = npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }",
            &[],
        );
        let text = message(&bomb);
        assert!(
            text.contains("truncated: the header claims 1099511627776 float64 elements"),
            "{text}"
        );
        let overflow = npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 0), }",
            &[],
        );
        assert!(message(&overflow).contains("more bytes than a machine can address"));
        let huge = npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
            &[],
        );
        assert!(message(&huge).contains("too large for this machine"));
    }

    #[test]
    fn data_length_must_match_exactly() {
        let dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }";
        assert!(message(&npy(1, dict, &[0; 7])).contains("truncated: the header claims 2 int32"));
        let text = message(&npy(1, dict, &[0; 9]));
        assert!(text.contains("1 trailing bytes"), "{text}");
        assert!(text.contains("the file holds 9 data bytes"), "{text}");
    }

    #[test]
    fn malformed_headers_name_the_problem() {
        let cases = [
            (&b"not an npy file"[..], "magic string"),
            (&b"\x93NUM"[..], "truncated: 4 bytes"),
            (&b""[..], "the file is empty"),
            (&b"\x93NUMPY\x04\x00\x10\x00"[..], "format version 4.0"),
            (
                &b"\x93NUMPY\x01\x00\xff\x00{}"[..],
                "the header claims 255 bytes",
            ),
        ];
        for (bytes, expected) in cases {
            let text = message(bytes);
            assert!(text.contains(expected), "{text} lacks {expected}");
        }
        let dicts = [
            ("{'descr': '<f8', 'shape': ()}", "no 'fortran_order' entry"),
            (
                "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': ()}",
                "'descr' is given twice",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (3)}",
                "a one-element shape is written (n,)",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (-3,)}",
                "expected a non-negative integer",
            ),
            (
                "{'descr': '<f8', 'fortran_order': false, 'shape': ()}",
                "expected a string, True, False or a tuple",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (), 'x': 1}",
                "key \"x\" at byte",
            ),
            (
                "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': ()}",
                "structured dtypes are not supported",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': ()} junk",
                "unexpected 'j'",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (01,)}",
                "leading zero",
            ),
            ("{'descr' '<f8'}", "expected ':' at byte 9"),
            ("{'descr': 'descr' 'shape'}", "expected '}' at byte 18"),
            ("{'descr': '<f8\n', }", "printable ASCII"),
            (
                "{'shape': True, 'descr': '<f8', 'fortran_order': False}",
                "'shape' is not a tuple",
            ),
        ];
        for (dict, expected) in dicts {
            let text = message(&npy(1, dict, &[]));
            assert!(text.contains(expected), "{text} lacks {expected}");
            assert!(!text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn unsupported_dtypes_name_the_fix() {
        for descr in ["<f2", "<c16", "|i1", "<u4", "|f8", "f8", "", "<U10"] {
            let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ()}}");
            let text = message(&npy(1, &dict, &[0; 8]));
            assert!(
                text.contains("is not supported") || text.contains("has no byte order"),
                "{text}"
            );
        }
    }

    #[test]
    fn bool_elements_are_zero_or_one() {
        let dict = "{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }";
        assert!(message(&npy(1, dict, &[1, 2])).contains("bool element 1 holds the byte 0x02"));
    }

    #[test]
    fn error_quotes_are_bounded() {
        let long = "x".repeat(10_000);
        let dict = format!("{{'descr': '{long}', 'fortran_order': False, 'shape': ()}}");
        assert!(message(&npy(1, &dict, &[])).len() < 400);
    }
}
