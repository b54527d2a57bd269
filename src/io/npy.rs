//! NumPy `.npy` reader and writer.
//!
//! `.npy` is how intermediate results (beamformed IQ, envelopes, B-mode
//! frames) are exchanged with the Python reference implementations, so the
//! files must open in `numpy.load` unchanged and numpy's own files must read
//! back here. The format is one header line (a Python dict literal) and raw
//! bytes, small enough that writing it here costs less than a dependency and
//! lets the writer be atomic and byte-identical to `numpy.save`.
//!
//! Reading accepts format versions 1.0, 2.0 and 3.0, the plain numeric dtypes
//! (see [`NpyDtype`]) in either byte order, and C or Fortran order. Data is
//! kept little-endian in [`NpyArray::data`], so big-endian files are
//! byte-swapped on read. Input is untrusted: every size in the header is
//! checked (with overflow checks) against the bytes present, and problems come
//! back as an [`NpyError`] saying what was expected.
//!
//! Writers produce format 1.0, byte-identical to `numpy.save`, and are atomic: data goes to a
//! temporary file in the target directory, which is then renamed over the
//! target, so a crash or full disk never leaves a half-written `.npy` that a
//! later step would mistake for a result.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy aligns the data start to this so files can be memory-mapped.
const ARRAY_ALIGN: usize = 64;
/// numpy leaves room in the header for the growth axis to reach this many
/// digits; doing the same keeps our files byte-identical to `numpy.save`.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
const MAX_LITERAL_DEPTH: usize = 16;
/// numpy 2's NPY_MAXDIMS; more could be written but never loaded.
const MAX_NDIM: usize = 64;

/// Element types this module understands. `.npy` files of other dtypes
/// (strings, objects, structured records, float16) are refused on read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NpyDtype {
    Bool,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    /// complex64: interleaved `f32` real, imaginary (`'<c8'`).
    C64,
    /// complex128: interleaved `f64` real, imaginary (`'<c16'`).
    C128,
}

const SUPPORTED_DESCRS: &str =
    "'|b1', '|i1', '|u1', '<i2', '<u2', '<i4', '<u4', '<i8', '<u8', '<f4', '<f8', '<c8', '<c16' (or '>' big-endian)";

impl NpyDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyDtype::Bool | NpyDtype::I8 | NpyDtype::U8 => 1,
            NpyDtype::I16 | NpyDtype::U16 => 2,
            NpyDtype::I32 | NpyDtype::U32 | NpyDtype::F32 => 4,
            NpyDtype::I64 | NpyDtype::U64 | NpyDtype::F64 | NpyDtype::C64 => 8,
            NpyDtype::C128 => 16,
        }
    }

    /// The little-endian descr numpy writes for this type.
    pub fn descr(self) -> &'static str {
        match self {
            NpyDtype::Bool => "|b1",
            NpyDtype::I8 => "|i1",
            NpyDtype::U8 => "|u1",
            NpyDtype::I16 => "<i2",
            NpyDtype::U16 => "<u2",
            NpyDtype::I32 => "<i4",
            NpyDtype::U32 => "<u4",
            NpyDtype::I64 => "<i8",
            NpyDtype::U64 => "<u8",
            NpyDtype::F32 => "<f4",
            NpyDtype::F64 => "<f8",
            NpyDtype::C64 => "<c8",
            NpyDtype::C128 => "<c16",
        }
    }

    pub fn is_complex(self) -> bool {
        matches!(self, NpyDtype::C64 | NpyDtype::C128)
    }

    /// Parses a descr string; `Ok((dtype, big_endian))`.
    fn from_descr(descr: &str) -> Result<(NpyDtype, bool), NpyError> {
        let unsupported = || {
            NpyError::Unsupported(format!(
                "header 'descr' is '{descr}', expected one of {SUPPORTED_DESCRS}"
            ))
        };
        let mut chars = descr.chars();
        let order = chars.next().ok_or_else(unsupported)?;
        let big = match order {
            '<' | '|' => false,
            '>' => true,
            '=' => cfg!(target_endian = "big"),
            _ => return Err(unsupported()),
        };
        let dtype = match chars.as_str() {
            "b1" => NpyDtype::Bool,
            "i1" => NpyDtype::I8,
            "u1" => NpyDtype::U8,
            "i2" => NpyDtype::I16,
            "u2" => NpyDtype::U16,
            "i4" => NpyDtype::I32,
            "u4" => NpyDtype::U32,
            "i8" => NpyDtype::I64,
            "u8" => NpyDtype::U64,
            "f4" => NpyDtype::F32,
            "f8" => NpyDtype::F64,
            "c8" => NpyDtype::C64,
            "c16" => NpyDtype::C128,
            _ => return Err(unsupported()),
        };
        Ok((dtype, big))
    }
}

/// An array as stored: raw little-endian bytes plus layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub dtype: NpyDtype,
    /// True when `data` is in Fortran (column-major) order; the `to_*`
    /// conversions always return C (row-major) order.
    pub fortran_order: bool,
    /// Little-endian element bytes, `shape.product() * dtype.size()` long.
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a .npy file: {0}")]
    NotNpy(String),
    #[error("malformed .npy header: {0}")]
    Header(String),
    #[error("unsupported .npy content: {0}")]
    Unsupported(String),
    #[error("malformed .npy data: {0}")]
    Data(String),
    /// A conversion or write the array's contents cannot satisfy.
    #[error("{0}")]
    Mismatch(String),
}

fn shape_str(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

pub fn read_npy(path: &Path) -> Result<NpyArray, NpyError> {
    let bytes = fs::read(path).map_err(|source| NpyError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?;
    parse_npy(&bytes)
}

pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    if !bytes.starts_with(MAGIC) {
        let head = &bytes[..bytes.len().min(MAGIC.len())];
        return Err(NpyError::NotNpy(format!(
            "starts with {}, expected \\x93NUMPY",
            String::from_utf8_lossy(head).escape_debug()
        )));
    }
    let (major, minor) = match bytes.get(6..8) {
        Some(v) => (v[0], v[1]),
        None => {
            return Err(NpyError::NotNpy(
                "file ends inside the version bytes".into(),
            ))
        }
    };
    let (len_bytes, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => {
            return Err(NpyError::Unsupported(format!(
                "format version {major}.{minor}; 1.0, 2.0 and 3.0 are supported"
            )))
        }
    };
    let len_field = bytes.get(8..8 + len_bytes).ok_or_else(|| {
        NpyError::Header(format!(
            "file ends inside the {len_bytes}-byte header length field"
        ))
    })?;
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([len_field[0], len_field[1]]) as usize
    } else {
        u32::from_le_bytes([len_field[0], len_field[1], len_field[2], len_field[3]]) as usize
    };
    let header_start = 8 + len_bytes;
    let remain = bytes.len() - header_start;
    if header_len > remain {
        return Err(NpyError::Header(format!(
            "header length field says {header_len} bytes, {remain} remain (truncated file?)"
        )));
    }
    let raw_header = &bytes[header_start..header_start + header_len];
    let header: String = if utf8 {
        std::str::from_utf8(raw_header)
            .map_err(|e| NpyError::Header(format!("version 3.0 header is not UTF-8: {e}")))?
            .to_string()
    } else {
        // Versions 1.0 and 2.0 are defined as latin-1.
        raw_header.iter().map(|&b| b as char).collect()
    };
    let (dtype, big, fortran_order, shape) = parse_header(&header)?;

    let count = element_count(&shape).ok_or_else(|| {
        NpyError::Header(format!(
            "shape {} overflows the element count",
            shape_str(&shape)
        ))
    })?;
    let needed = count.checked_mul(dtype.size()).ok_or_else(|| {
        NpyError::Header(format!(
            "shape {} of {} overflows the byte count",
            shape_str(&shape),
            dtype.descr()
        ))
    })?;
    let data = &bytes[header_start + header_len..];
    if data.len() != needed {
        let descr = if big {
            dtype.descr().replace('<', ">")
        } else {
            dtype.descr().to_string()
        };
        return Err(NpyError::Data(format!(
            "data is {} bytes, shape {} of {descr} needs {needed}",
            data.len(),
            shape_str(&shape)
        )));
    }
    let mut data = data.to_vec();
    if big {
        // Complex numbers swap each component, not the whole pair.
        let unit = if dtype.is_complex() {
            dtype.size() / 2
        } else {
            dtype.size()
        };
        if unit > 1 {
            data.chunks_exact_mut(unit).for_each(|c| c.reverse());
        }
    }
    Ok(NpyArray {
        shape,
        dtype,
        fortran_order,
        data,
    })
}

/// A Python literal, as much of the grammar as npy headers use.
#[derive(Debug)]
enum Lit {
    Str(String),
    Bool(bool),
    Int(u64),
    Neg,
    None,
    Tuple(Vec<Lit>),
    List,
    Dict(Vec<(String, Lit)>),
}

impl Lit {
    fn kind(&self) -> &'static str {
        match self {
            Lit::Str(_) => "a string",
            Lit::Bool(_) => "a bool",
            Lit::Int(_) => "an integer",
            Lit::Neg => "a negative integer",
            Lit::None => "None",
            Lit::Tuple(_) => "a tuple",
            Lit::List => "a list",
            Lit::Dict(_) => "a dict",
        }
    }
}

struct LitParser<'a> {
    s: &'a [u8],
    pos: usize,
    text: &'a str,
}

impl<'a> LitParser<'a> {
    fn err(&self, what: impl std::fmt::Display) -> NpyError {
        let ctx: String = self.text.chars().take(120).collect();
        NpyError::Header(format!(
            "{what} at character {} of header {ctx:?}",
            self.pos
        ))
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), NpyError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected '{}'", c as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Lit, NpyError> {
        if depth > MAX_LITERAL_DEPTH {
            return Err(self.err("literal nested too deep"));
        }
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => self.string(q).map(Lit::Str),
            Some(b'(') => {
                self.pos += 1;
                let items = self.seq(b')', depth)?;
                Ok(Lit::Tuple(items))
            }
            Some(b'[') => {
                self.pos += 1;
                self.seq(b']', depth)?;
                Ok(Lit::List)
            }
            Some(b'{') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        break;
                    }
                    let key = match self.value(depth + 1)? {
                        Lit::Str(k) => k,
                        other => {
                            return Err(self
                                .err(format!("dict key is {}, expected a string", other.kind())))
                        }
                    };
                    self.expect(b':')?;
                    let v = self.value(depth + 1)?;
                    items.push((key, v));
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {}
                        _ => return Err(self.err("expected ',' or '}' in dict")),
                    }
                }
                Ok(Lit::Dict(items))
            }
            Some(b'-') => {
                self.pos += 1;
                self.int()?;
                Ok(Lit::Neg)
            }
            Some(c) if c.is_ascii_digit() => self.int().map(Lit::Int),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_alphanumeric() {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(Lit::Bool(true)),
                    b"False" => Ok(Lit::Bool(false)),
                    b"None" => Ok(Lit::None),
                    w => Err(self.err(format!("unexpected word {:?}", String::from_utf8_lossy(w)))),
                }
            }
            Some(c) => Err(self.err(format!("unexpected character {:?}", c as char))),
            None => Err(self.err("header ends early")),
        }
    }

    fn seq(&mut self, close: u8, depth: usize) -> Result<Vec<Lit>, NpyError> {
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err(self.err(format!("expected ',' or '{}'", close as char))),
            }
        }
    }

    fn int(&mut self) -> Result<u64, NpyError> {
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let digits = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        let v = digits
            .parse::<u64>()
            .map_err(|_| self.err(format!("integer {digits:?} is not a valid size")))?;
        // Python 2 wrote longs with an L suffix.
        if matches!(self.s.get(self.pos), Some(b'L' | b'l')) {
            self.pos += 1;
        }
        Ok(v)
    }

    fn string(&mut self, quote: u8) -> Result<String, NpyError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.pos) {
                None => return Err(self.err("unterminated string")),
                Some(&c) if c == quote => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    let Some(&n) = self.s.get(self.pos + 1) else {
                        return Err(self.err("unterminated string"));
                    };
                    out.push(n);
                    self.pos += 2;
                }
                Some(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

fn parse_header(text: &str) -> Result<(NpyDtype, bool, bool, Vec<usize>), NpyError> {
    let mut p = LitParser {
        s: text.as_bytes(),
        pos: 0,
        text,
    };
    let lit = p.value(0)?;
    if let Some(c) = p.peek() {
        return Err(p.err(format!("unexpected {:?} after the header dict", c as char)));
    }
    let Lit::Dict(items) = lit else {
        return Err(NpyError::Header(format!(
            "header is {}, expected a dict",
            lit.kind()
        )));
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (k, v) in items {
        match k.as_str() {
            "descr" => descr = Some(v),
            "fortran_order" => fortran = Some(v),
            "shape" => shape = Some(v),
            other => {
                return Err(NpyError::Header(format!(
                    "unexpected key '{other}'; expected exactly 'descr', 'fortran_order', 'shape'"
                )))
            }
        }
    }
    let missing = |k: &str| NpyError::Header(format!("header has no '{k}' key"));
    let descr = match descr.ok_or_else(|| missing("descr"))? {
        Lit::Str(s) => s,
        Lit::List => {
            return Err(NpyError::Unsupported(
                "header 'descr' is a list: structured (record) dtypes are not supported".into(),
            ))
        }
        other => {
            return Err(NpyError::Header(format!(
                "header 'descr' is {}, expected a string",
                other.kind()
            )))
        }
    };
    let (dtype, big) = NpyDtype::from_descr(&descr)?;
    let fortran_order = match fortran.ok_or_else(|| missing("fortran_order"))? {
        Lit::Bool(b) => b,
        other => {
            return Err(NpyError::Header(format!(
                "header 'fortran_order' is {}, expected True or False",
                other.kind()
            )))
        }
    };
    let shape = match shape.ok_or_else(|| missing("shape"))? {
        Lit::Tuple(items) => items
            .into_iter()
            .map(|d| match d {
                Lit::Int(n) => usize::try_from(n).map_err(|_| {
                    NpyError::Header(format!("header 'shape' dimension {n} is too large"))
                }),
                other => Err(NpyError::Header(format!(
                    "header 'shape' has {} among its dimensions, expected non-negative integers",
                    other.kind()
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => {
            return Err(NpyError::Header(format!(
                "header 'shape' is {}, expected a tuple",
                other.kind()
            )))
        }
    };
    Ok((dtype, big, fortran_order, shape))
}

impl NpyArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        // Saturating: the fields are public, so the shape may not be one
        // that was checked on read.
        self.shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Real data widened to `f64`, C order. Complex dtypes are refused rather
    /// than silently dropping the imaginary part.
    pub fn to_f64(&self) -> Result<Vec<f64>, NpyError> {
        self.check_size()?;
        let d = &self.data;
        macro_rules! conv {
            ($t:ty, $n:expr) => {
                d.chunks_exact($n)
                    .map(|c| {
                        let mut a = [0u8; $n];
                        a.copy_from_slice(c);
                        <$t>::from_le_bytes(a) as f64
                    })
                    .collect::<Vec<f64>>()
            };
        }
        let v = match self.dtype {
            NpyDtype::Bool => d.iter().map(|&b| (b != 0) as u8 as f64).collect(),
            NpyDtype::I8 => d.iter().map(|&b| b as i8 as f64).collect(),
            NpyDtype::U8 => d.iter().map(|&b| b as f64).collect(),
            NpyDtype::I16 => conv!(i16, 2),
            NpyDtype::U16 => conv!(u16, 2),
            NpyDtype::I32 => conv!(i32, 4),
            NpyDtype::U32 => conv!(u32, 4),
            NpyDtype::I64 => conv!(i64, 8),
            NpyDtype::U64 => conv!(u64, 8),
            NpyDtype::F32 => conv!(f32, 4),
            NpyDtype::F64 => conv!(f64, 8),
            NpyDtype::C64 | NpyDtype::C128 => return Err(self.complex_refused("to_f64")),
        };
        Ok(self.c_order(v))
    }

    /// Real data converted to `f32`, C order (`f64`/64-bit integers are
    /// rounded).
    pub fn to_f32(&self) -> Result<Vec<f32>, NpyError> {
        if self.dtype == NpyDtype::F32 {
            self.check_size()?;
            let v = self
                .data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            return Ok(self.c_order(v));
        }
        if self.dtype.is_complex() {
            return Err(self.complex_refused("to_f32"));
        }
        Ok(self.to_f64()?.into_iter().map(|v| v as f32).collect())
    }

    /// Complex data as `[re, im]` pairs of `f32`, C order. Real dtypes are
    /// accepted too, with zero imaginary parts.
    pub fn to_c64(&self) -> Result<Vec<[f32; 2]>, NpyError> {
        self.check_size()?;
        let v: Vec<[f32; 2]> = match self.dtype {
            NpyDtype::C64 => self
                .data
                .chunks_exact(8)
                .map(|c| {
                    [
                        f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                        f32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                    ]
                })
                .collect(),
            NpyDtype::C128 => self
                .data
                .chunks_exact(16)
                .map(|c| {
                    let f = |o: usize| {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(&c[o..o + 8]);
                        f64::from_le_bytes(a) as f32
                    };
                    [f(0), f(8)]
                })
                .collect(),
            _ => return Ok(self.to_f32()?.into_iter().map(|r| [r, 0.0]).collect()),
        };
        Ok(self.c_order(v))
    }

    fn complex_refused(&self, what: &str) -> NpyError {
        NpyError::Mismatch(format!(
            "{what}: array is complex ({}); use to_c64 to keep the imaginary part",
            self.dtype.descr()
        ))
    }

    /// `data` is public, so it may have been changed since parsing.
    fn check_size(&self) -> Result<(), NpyError> {
        let needed = element_count(&self.shape).and_then(|n| n.checked_mul(self.dtype.size()));
        if needed != Some(self.data.len()) {
            return Err(NpyError::Mismatch(format!(
                "data is {} bytes, shape {} of {} needs {}",
                self.data.len(),
                shape_str(&self.shape),
                self.dtype.descr(),
                needed.map_or("more than usize::MAX".to_string(), |n| n.to_string())
            )));
        }
        Ok(())
    }

    fn c_order<T: Copy>(&self, v: Vec<T>) -> Vec<T> {
        if self.fortran_order && self.shape.len() > 1 {
            fortran_to_c(&v, &self.shape)
        } else {
            v
        }
    }

    /// Encodes the array as a complete `.npy` file.
    pub fn to_npy_bytes(&self) -> Result<Vec<u8>, NpyError> {
        self.check_size()?;
        check_shape(&self.shape, self.len(), "to_npy_bytes")?;
        let mut out = npy_header(&self.shape, self.dtype, self.fortran_order);
        out.extend_from_slice(&self.data);
        Ok(out)
    }
}

/// Reorders column-major `v` into row-major, walking the C-order index like
/// an odometer so each step is O(1) amortized.
fn fortran_to_c<T: Copy>(v: &[T], shape: &[usize]) -> Vec<T> {
    let n = v.len();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let nd = shape.len();
    let mut fstride = vec![1usize; nd];
    for k in 1..nd {
        fstride[k] = fstride[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; nd];
    let mut off = 0usize;
    for _ in 0..n {
        out.push(v[off]);
        for k in (0..nd).rev() {
            idx[k] += 1;
            off += fstride[k];
            if idx[k] < shape[k] {
                break;
            }
            off -= fstride[k] * shape[k];
            idx[k] = 0;
        }
    }
    out
}

/// Builds the magic, length and header exactly as `numpy.save` does.
fn npy_header(shape: &[usize], dtype: NpyDtype, fortran_order: bool) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': {}, 'shape': {}, }}",
        dtype.descr(),
        if fortran_order { "True" } else { "False" },
        shape_str(shape)
    );
    let growth_axis = if fortran_order {
        shape.last()
    } else {
        shape.first()
    };
    if let Some(d) = growth_axis {
        let digits = d.to_string().len();
        dict.extend(std::iter::repeat_n(
            ' ',
            GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits),
        ));
    }
    let hlen = dict.len() + 1; // + the final newline
    let pad = ARRAY_ALIGN - (MAGIC.len() + 2 + 2 + hlen) % ARRAY_ALIGN;
    // Callers limit shapes to MAX_NDIM dimensions of at most 20 digits, so the
    // header always fits version 1.0's 16-bit length.
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + hlen + pad);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&((hlen + pad) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

fn check_shape(shape: &[usize], len: usize, what: &str) -> Result<(), NpyError> {
    if shape.len() > MAX_NDIM {
        return Err(NpyError::Mismatch(format!(
            "{what}: shape has {} dimensions, numpy supports at most {MAX_NDIM}",
            shape.len()
        )));
    }
    match element_count(shape) {
        Some(n) if n == len => Ok(()),
        Some(n) => Err(NpyError::Mismatch(format!(
            "{what}: shape {} has {n} elements, data has {len}",
            shape_str(shape)
        ))),
        None => Err(NpyError::Mismatch(format!(
            "{what}: shape {} overflows the element count",
            shape_str(shape)
        ))),
    }
}

#[cfg(test)]
static TMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes header + body complete or not at all ([`super::output`]). `body`
/// streams the data so large arrays are not copied whole.
fn write_atomic(
    path: &Path,
    header: &[u8],
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), NpyError> {
    super::output::write_atomic(path, |w| {
        w.write_all(header)?;
        body(w)
    })
    .map_err(|source| NpyError::Io {
        op: "write",
        path: path.to_path_buf(),
        source,
    })
}

pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    check_shape(shape, data.len(), "write_npy_f32")?;
    write_atomic(path, &npy_header(shape, NpyDtype::F32, false), |w| {
        data.iter().try_for_each(|v| w.write_all(&v.to_le_bytes()))
    })
}

pub fn write_npy_f64(path: &Path, shape: &[usize], data: &[f64]) -> Result<(), NpyError> {
    check_shape(shape, data.len(), "write_npy_f64")?;
    write_atomic(path, &npy_header(shape, NpyDtype::F64, false), |w| {
        data.iter().try_for_each(|v| w.write_all(&v.to_le_bytes()))
    })
}

/// complex64 (`'<c8'`), each element `[re, im]`.
pub fn write_npy_c64(path: &Path, shape: &[usize], data: &[[f32; 2]]) -> Result<(), NpyError> {
    check_shape(shape, data.len(), "write_npy_c64")?;
    write_atomic(path, &npy_header(shape, NpyDtype::C64, false), |w| {
        data.iter().try_for_each(|[re, im]| {
            w.write_all(&re.to_le_bytes())?;
            w.write_all(&im.to_le_bytes())
        })
    })
}

pub fn write_npy_u8(path: &Path, shape: &[usize], data: &[u8]) -> Result<(), NpyError> {
    check_shape(shape, data.len(), "write_npy_u8")?;
    write_atomic(path, &npy_header(shape, NpyDtype::U8, false), |w| {
        w.write_all(data)
    })
}

/// Writes any [`NpyArray`] as it is (dtype and order preserved).
pub fn write_npy(path: &Path, array: &NpyArray) -> Result<(), NpyError> {
    array.check_size()?;
    check_shape(&array.shape, array.len(), "write_npy")?;
    write_atomic(
        path,
        &npy_header(&array.shape, array.dtype, array.fortran_order),
        |w| w.write_all(&array.data),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::Ordering;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sonoguide-npy-{tag}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn parse_no_panic(bytes: &[u8]) -> Result<NpyArray, NpyError> {
        catch_unwind(AssertUnwindSafe(|| parse_npy(bytes)))
            .unwrap_or_else(|_| panic!("parse_npy panicked on {bytes:?}"))
    }

    /// Replaces the header dict of a valid v1.0 file, keeping the data.
    fn with_header(file: &[u8], dict: &str) -> Vec<u8> {
        let hlen = u16::from_le_bytes([file[8], file[9]]) as usize;
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        out.extend_from_slice(&file[10 + hlen..]);
        out
    }

    #[test]
    fn reads_numpy_files() {
        let a = parse_npy(NP_F4_2X3).unwrap();
        assert_eq!(
            (a.shape.as_slice(), a.dtype, a.fortran_order),
            (&[2usize, 3][..], NpyDtype::F32, false)
        );
        assert_eq!(a.to_f32().unwrap(), [1.5, -2.0, 3.0, 4.0, 5.0, 6.25]);
        assert_eq!(a.to_f64().unwrap(), [1.5, -2.0, 3.0, 4.0, 5.0, 6.25]);

        let f = parse_npy(NP_F8_FORTRAN_2X3).unwrap();
        assert!(f.fortran_order);
        assert_eq!(
            f.to_f64().unwrap(),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "converted to C order"
        );
        assert_eq!(f.to_f32().unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);

        let c = parse_npy(NP_C8_3).unwrap();
        assert_eq!(c.dtype, NpyDtype::C64);
        assert_eq!(c.to_c64().unwrap(), [[1.0, 2.0], [0.0, -3.0], [0.5, 0.0]]);
        let e = c.to_f64().unwrap_err().to_string();
        assert!(e.contains("complex") && e.contains("to_c64"), "{e}");

        let s = parse_npy(NP_U1_SCALAR).unwrap();
        assert_eq!((s.shape.len(), s.dtype, s.len()), (0, NpyDtype::U8, 1));
        assert_eq!(s.to_f64().unwrap(), [7.0]);

        let be = parse_npy(NP_I2_BIG_ENDIAN).unwrap();
        assert_eq!(be.dtype, NpyDtype::I16);
        assert_eq!(be.to_f64().unwrap(), [1.0, -2.0, 300.0]);
        assert_eq!(
            be.data,
            [1, 0, 0xfe, 0xff, 0x2c, 0x01],
            "stored little-endian"
        );
        assert_eq!(
            parse_npy(NP_F4_BIG_ENDIAN).unwrap().to_f32().unwrap(),
            [1.5, -0.25]
        );

        assert_eq!(
            parse_npy(NP_BOOL).unwrap().to_f64().unwrap(),
            [1.0, 0.0, 1.0]
        );
        let empty = parse_npy(NP_I8_EMPTY).unwrap();
        assert_eq!(
            (empty.shape.as_slice(), empty.is_empty()),
            (&[0usize, 4][..], true)
        );
        assert!(empty.to_f64().unwrap().is_empty());

        let v2 = parse_npy(NP_F8_V2).unwrap();
        assert_eq!(v2.to_f64().unwrap(), [0.0, 1.0, 2.0, 3.0]);
        let v3 = parse_npy(NP_C16_V3).unwrap();
        assert_eq!(
            (v3.dtype, v3.shape.as_slice()),
            (NpyDtype::C128, &[2usize, 1][..])
        );
        assert_eq!(v3.to_c64().unwrap(), [[1.0, 1.0], [2.0, -2.0]]);

        let u = parse_npy(NP_U1_3D).unwrap();
        assert_eq!(
            u.to_f64().unwrap(),
            (0..24).map(f64::from).collect::<Vec<_>>()
        );
    }

    #[test]
    fn fortran_to_c_order_3d() {
        // element (i, j, k) of shape (2, 3, 4) holds 100i + 10j + k
        let shape = [2, 3, 4];
        let mut fortran = Vec::new();
        for k in 0..4 {
            for j in 0..3 {
                for i in 0..2 {
                    fortran.push((100 * i + 10 * j + k) as f64);
                }
            }
        }
        let c = fortran_to_c(&fortran, &shape);
        let mut want = Vec::new();
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    want.push((100 * i + 10 * j + k) as f64);
                }
            }
        }
        assert_eq!(c, want);
    }

    #[test]
    fn writers_match_numpy_byte_for_byte_and_round_trip() {
        let dir = tmpdir("rt");
        let p = dir.join("a.npy");
        write_npy_f32(&p, &[2, 3], &[1.5, -2.0, 3.0, 4.0, 5.0, 6.25]).unwrap();
        assert_eq!(fs::read(&p).unwrap(), NP_F4_2X3);
        assert_eq!(
            read_npy(&p).unwrap().to_f32().unwrap(),
            [1.5, -2.0, 3.0, 4.0, 5.0, 6.25]
        );

        // numpy's literal -3j has a real part of -0.0.
        write_npy_c64(&p, &[3], &[[1.0, 2.0], [-0.0, -3.0], [0.5, 0.0]]).unwrap();
        assert_eq!(fs::read(&p).unwrap(), NP_C8_3);

        write_npy_u8(&p, &[], &[7]).unwrap();
        assert_eq!(fs::read(&p).unwrap(), NP_U1_SCALAR);
        let data: Vec<u8> = (0..24).collect();
        write_npy_u8(&p, &[2, 3, 4], &data).unwrap();
        assert_eq!(fs::read(&p).unwrap(), NP_U1_3D);

        let f = parse_npy(NP_F8_FORTRAN_2X3).unwrap();
        write_npy(&p, &f).unwrap();
        assert_eq!(fs::read(&p).unwrap(), NP_F8_FORTRAN_2X3);
        assert_eq!(f.to_npy_bytes().unwrap(), NP_F8_FORTRAN_2X3);

        write_npy_f64(&p, &[2, 2], &[0.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(
            read_npy(&p).unwrap().to_f64().unwrap(),
            [0.0, 1.0, 2.0, 3.0]
        );

        // Larger and odd-shaped arrays round trip; the data start stays
        // 64-byte aligned as numpy requires for memory mapping.
        for shape in [
            vec![0],
            vec![1],
            vec![17, 1, 3],
            vec![100_000],
            vec![5, 0, 2],
        ] {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            write_npy_f32(&p, &shape, &v).unwrap();
            let bytes = fs::read(&p).unwrap();
            assert_eq!((bytes.len() - n * 4) % 64, 0);
            let back = parse_npy(&bytes).unwrap();
            assert_eq!(back.shape, shape);
            assert_eq!(back.to_f32().unwrap(), v);
        }
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["a.npy"], "no temporary files left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_writes_leave_nothing_behind() {
        let dir = tmpdir("fail");
        let target = dir.join("out.npy");
        // Shape/data mismatch is caught before touching the disk.
        let e = write_npy_f32(&target, &[10, 20, 2], &[0.0; 100])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("shape (10, 20, 2) has 400 elements, data has 100"),
            "{e}"
        );
        let e = write_npy_u8(&target, &[usize::MAX, 2], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("overflow"), "{e}");
        let e = write_npy_u8(&target, &[1; 65], &[0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 64"), "{e}");
        // The rename fails when the target is a non-empty directory.
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), b"x").unwrap();
        assert!(write_npy_f32(&target, &[1], &[1.0]).is_err());
        // A previous good file is not clobbered by a failed write.
        let good = dir.join("good.npy");
        write_npy_f32(&good, &[1], &[1.0]).unwrap();
        assert!(write_npy_f32(&good, &[2], &[1.0]).is_err());
        assert_eq!(read_npy(&good).unwrap().to_f32().unwrap(), [1.0]);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["good.npy", "out.npy"]);
        // Missing directory: error names the path.
        let e = write_npy_f32(&dir.join("no/such/x.npy"), &[1], &[1.0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no/such"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_inputs_give_clear_errors() {
        let err = |b: &[u8]| parse_no_panic(b).unwrap_err().to_string();

        let e = err(b"PK\x03\x04 this is a zip");
        assert!(
            e.contains("not a .npy file") && e.contains("\\x93NUMPY"),
            "{e}"
        );
        assert!(err(b"").contains("not a .npy file"));
        assert!(err(b"\x93NUMPY").contains("version"));
        assert!(err(b"\x93NUMPY\x04\x00\x10\x00").contains("format version 4.0"));
        assert!(err(b"\x93NUMPY\x01\x00\x10").contains("header length field"));
        let e = err(b"\x93NUMPY\x01\x00\xff\x00{'descr'");
        assert!(
            e.contains("header length field says 255 bytes, 8 remain"),
            "{e}"
        );

        let e = err(&with_header(
            NP_F4_2X3,
            "{'descr': '<U10', 'fortran_order': False, 'shape': (2, 3), }",
        ));
        assert!(
            e.contains("header 'descr' is '<U10', expected one of"),
            "{e}"
        );
        let e = err(NP_STRUCTURED);
        assert!(e.contains("structured"), "{e}");
        let e = err(NP_UNICODE);
        assert!(e.contains("'<U2'"), "{e}");

        let e = err(&with_header(
            NP_F4_2X3,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (10, 20, 2), }",
        ));
        assert!(
            e.contains("data is 24 bytes, shape (10, 20, 2) of <f4 needs 1600"),
            "{e}"
        );
        let e = err(&NP_F4_2X3[..NP_F4_2X3.len() - 1]);
        assert!(
            e.contains("data is 23 bytes, shape (2, 3) of <f4 needs 24"),
            "{e}"
        );
        let e = err(&[NP_F4_2X3, &[0]].concat());
        assert!(e.contains("data is 25 bytes"), "{e}");

        let overflow = "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }";
        assert!(err(&with_header(NP_F4_2X3, overflow)).contains("overflows the element count"));
        let overflow =
            "{'descr': '<c16', 'fortran_order': False, 'shape': (4611686018427387904,), }";
        assert!(err(&with_header(NP_F4_2X3, overflow)).contains("overflows the byte count"));
        let e = err(&with_header(
            NP_F4_2X3,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
        ));
        assert!(e.contains("not a valid size"), "{e}");
        let e = err(&with_header(
            NP_F4_2X3,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 6), }",
        ));
        assert!(e.contains("negative"), "{e}");
        let e = err(&with_header(
            NP_F4_2X3,
            "{'descr': '<f4', 'shape': (2, 3), }",
        ));
        assert!(e.contains("no 'fortran_order'"), "{e}");
        let e = err(&with_header(
            NP_F4_2X3,
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3), }",
        ));
        assert!(e.contains("'fortran_order' is an integer"), "{e}");
        let e = err(&with_header(
            NP_F4_2X3,
            "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], 'x': 1}",
        ));
        assert!(e.contains("unexpected key 'x'"), "{e}");
        let e = err(&with_header(
            NP_F4_2X3,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)",
        ));
        assert!(e.contains("expected ',' or '}'"), "{e}");
        let e = err(&with_header(
            NP_F4_2X3,
            &format!("{}{}", "(".repeat(10_000), ")".repeat(10_000)),
        ));
        assert!(e.contains("too deep"), "{e}");

        // Python 2 style, double quotes and no trailing comma are all valid Python.
        let ok = with_header(
            NP_F4_2X3,
            "{\"descr\": \"<f4\", \"shape\": (2L, 3L), \"fortran_order\": False}",
        );
        assert_eq!(parse_npy(&ok).unwrap().shape, [2, 3]);
        let ok = with_header(
            NP_F4_2X3,
            "{'descr':'<f4','fortran_order':False,'shape':(6,)}",
        );
        assert_eq!(parse_npy(&ok).unwrap().shape, [6]);
    }

    #[test]
    fn truncation_and_corruption_never_panic() {
        for f in [
            NP_F4_2X3,
            NP_F8_FORTRAN_2X3,
            NP_C16_V3,
            NP_U1_SCALAR,
            NP_F8_V2,
        ] {
            for cut in 0..f.len() {
                assert!(parse_no_panic(&f[..cut]).is_err(), "cut at {cut} accepted");
            }
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..3000 {
            let mut b = [NP_F4_2X3, NP_C16_V3, NP_F8_FORTRAN_2X3][i % 3].to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() % b.len() as u64) as usize;
                b[at] = next() as u8;
            }
            if let Ok(a) = parse_no_panic(&b) {
                let _ = (a.to_f64(), a.to_f32(), a.to_c64());
            }
        }
        // Public fields can be set inconsistently; conversions report it.
        let bad = NpyArray {
            shape: vec![usize::MAX, 3],
            dtype: NpyDtype::F32,
            fortran_order: true,
            data: vec![0; 12],
        };
        assert!(bad.to_f64().is_err() && bad.to_f32().is_err() && bad.to_c64().is_err());
        assert!(bad.to_npy_bytes().is_err());
    }

    const NP_F4_2X3: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73,
        0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x34, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
        0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46,
        0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
        0x28, 0x32, 0x2c, 0x20, 0x33, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00,
        0xc0, 0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0x40, 0x00, 0x00, 0xa0, 0x40, 0x00, 0x00,
        0xc8, 0x40,
    ];
    const NP_F8_FORTRAN_2X3: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73,
        0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x38, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
        0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x54,
        0x72, 0x75, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20, 0x28,
        0x32, 0x2c, 0x20, 0x33, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0,
        0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x08, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x18, 0x40,
    ];
    const NP_C8_3: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73,
        0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x63, 0x38, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
        0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46,
        0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
        0x28, 0x33, 0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00,
        0x40, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x40, 0xc0, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00,
        0x00, 0x00,
    ];
    const NP_U1_SCALAR: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73,
        0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x7c, 0x75, 0x31, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
        0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46,
        0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
        0x28, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x07,
    ];
    const NP_I2_BIG_ENDIAN: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73,
        0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3e, 0x69, 0x32, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
        0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46,
        0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
        0x28, 0x33, 0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x01, 0xff, 0xfe, 0x01, 0x2c,
    ];
    const NP_F4_BIG_ENDIAN: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73,
        0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3e, 0x66, 0x34, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
        0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46,
        0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
        0x28, 0x32, 0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x3f, 0xc0, 0x00, 0x00, 0xbe, 0x80, 0x00,
        0x00,
    ];
    const NP_BOOL: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73,
        0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x7c, 0x62, 0x31, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
        0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46,
        0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
        0x28, 0x33, 0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x01, 0x00, 0x01,
    ];
    const NP_I8_EMPTY: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73,
        0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x69, 0x38, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
        0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46,
        0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
        0x28, 0x30, 0x2c, 0x20, 0x34, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a,
    ];
    const NP_F8_V2: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x02, 0x00, 0x74, 0x00, 0x00, 0x00, 0x7b, 0x27, 0x64,
        0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x38, 0x27, 0x2c, 0x20, 0x27,
        0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a,
        0x20, 0x46, 0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27,
        0x3a, 0x20, 0x28, 0x32, 0x2c, 0x20, 0x32, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x40,
    ];
    const NP_C16_V3: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x03, 0x00, 0x74, 0x00, 0x00, 0x00, 0x7b, 0x27, 0x64,
        0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x63, 0x31, 0x36, 0x27, 0x2c, 0x20,
        0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27,
        0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65,
        0x27, 0x3a, 0x20, 0x28, 0x32, 0x2c, 0x20, 0x31, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0,
        0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0,
    ];
    const NP_U1_3D: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73,
        0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x7c, 0x75, 0x31, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
        0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46,
        0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
        0x28, 0x32, 0x2c, 0x20, 0x33, 0x2c, 0x20, 0x34, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
        0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
        0x16, 0x17,
    ];
    const NP_STRUCTURED: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73,
        0x63, 0x72, 0x27, 0x3a, 0x20, 0x5b, 0x28, 0x27, 0x61, 0x27, 0x2c, 0x20, 0x27, 0x3c, 0x66,
        0x34, 0x27, 0x29, 0x2c, 0x20, 0x28, 0x27, 0x62, 0x27, 0x2c, 0x20, 0x27, 0x3c, 0x69, 0x32,
        0x27, 0x29, 0x5d, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f,
        0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27,
        0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20, 0x28, 0x32, 0x2c, 0x29, 0x2c, 0x20, 0x7d,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    const NP_UNICODE: &[u8] = &[
        0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73,
        0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x55, 0x32, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
        0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46,
        0x61, 0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
        0x28, 0x32, 0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x61, 0x00, 0x00, 0x00, 0x62, 0x00, 0x00,
        0x00, 0x63, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
}
