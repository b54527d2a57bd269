//! Reader for MATLAB MAT-files, Level 5 format (what `save -v6` and `save -v7`
//! write, the latter with zlib-compressed variables), and a small writer
//! ([`write_mat`], [`mat_bytes`]) for the classes the MUST data sets use.
//!
//! Why hand-written: the reference data sets we replay (MUST toolbox examples
//! such as `PWI_disk.mat`) are v7 files whose acquisition parameters live in a
//! struct. The crates that read v5 structs are either bindings to the matio C
//! library (a native build dependency) or young pure-Rust parsers whose
//! behaviour on malformed input is unknown, and we need hard guarantees there.
//! The format is small enough to read here with nothing but `flate2`.
//!
//! v7.3 files are HDF5 containers with a MAT header bolted on; they are
//! detected and refused with a clear error rather than half-parsed (the HDF5
//! reader elsewhere in the crate is the place for them).
//!
//! Every file is treated as hostile input: all lengths and counts in the file
//! are checked against the bytes actually present before anything is
//! allocated, decompression is capped, recursion depth is bounded, and every
//! failure is a [`MatError`] naming the problem and its byte offset. Numeric
//! data of every class is widened to `f64` (column-major, as MATLAB stores it)
//! because that is what the consumers want and it keeps the API to one type;
//! `int64`/`uint64` values beyond 2^53 lose precision as a consequence.
//!
//! The writer produces a little-endian, uncompressed v5 file (chars in
//! UTF-8, as scipy writes them), readable by MATLAB, `scipy.io.loadmat` and
//! this reader. It refuses what MATLAB could not load rather than writing it.

use std::fmt;
use std::path::{Path, PathBuf};

use flate2::{Decompress, FlushDecompress, Status};

const HEADER_LEN: usize = 128;
/// Deep enough for any sane nesting of structs/cells, shallow enough that a
/// hostile file cannot overflow the stack (which would abort, not panic).
const MAX_DEPTH: usize = 64;
/// Refuse zlib streams that inflate beyond this: a real variable this large
/// would not fit the GPU anyway, and a zip bomb must not take the host down.
const MAX_DECOMPRESSED: usize = (u32::MAX as usize).saturating_add(1); // 4 GiB on 64-bit

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

fn mi_name(ty: u32) -> String {
    let s = match ty {
        MI_INT8 => "miINT8",
        MI_UINT8 => "miUINT8",
        MI_INT16 => "miINT16",
        MI_UINT16 => "miUINT16",
        MI_INT32 => "miINT32",
        MI_UINT32 => "miUINT32",
        MI_SINGLE => "miSINGLE",
        MI_DOUBLE => "miDOUBLE",
        MI_INT64 => "miINT64",
        MI_UINT64 => "miUINT64",
        MI_MATRIX => "miMATRIX",
        MI_COMPRESSED => "miCOMPRESSED",
        MI_UTF8 => "miUTF8",
        MI_UTF16 => "miUTF16",
        MI_UTF32 => "miUTF32",
        _ => return format!("unknown data type {ty}"),
    };
    s.to_string()
}

/// The MATLAB class of an array (`mxClassID`), with logical split out of
/// `UInt8` because MATLAB flags it separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatClass {
    Double,
    Single,
    Int8,
    UInt8,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    UInt64,
    Char,
    Struct,
    Cell,
    Logical,
    Sparse,
    Object,
    Function,
    /// classdef objects, strings, tables...: stored as opaque references into
    /// the undocumented subsystem data, so only the name can be read.
    Opaque,
}

/// One variable, struct field value or cell element.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    /// Empty for struct field values and cell elements.
    pub name: String,
    /// MATLAB dimensions; data is column-major (first index fastest).
    pub dims: Vec<usize>,
    pub class: MatClass,
    pub data: MatData,
}

/// Field name and one value per struct element (column-major element order).
pub type MatFields = Vec<(String, Vec<MatArray>)>;

#[derive(Debug, Clone, PartialEq)]
pub enum MatData {
    /// Every numeric and logical class, widened to `f64`, column-major.
    Numeric {
        real: Vec<f64>,
        imag: Option<Vec<f64>>,
    },
    /// A row (or column) vector is the plain string. A 2-D char matrix with
    /// several rows is given row by row, rows joined with `'\n'` (MATLAB pads
    /// rows with spaces, which are kept). Higher dimensions stay in storage
    /// (column-major) order.
    Char(String),
    Struct(MatFields),
    Object {
        class_name: String,
        fields: MatFields,
    },
    Cell(Vec<MatArray>),
    /// Compressed sparse column, as MATLAB stores it: the nonzeros of column
    /// `j` are `row_indices[col_starts[j]..col_starts[j+1]]` (0-based) with
    /// the same range of `real`/`imag`.
    Sparse {
        row_indices: Vec<usize>,
        col_starts: Vec<usize>,
        real: Vec<f64>,
        imag: Option<Vec<f64>>,
        logical: bool,
    },
    /// Function handles and opaque (classdef) objects: their layout is
    /// undocumented, so they are skipped rather than guessed at.
    Unsupported,
}

/// Where in the input a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Byte offset in the file, or in the inflated data when `compressed_at`
    /// is set.
    pub offset: usize,
    /// File offset of the miCOMPRESSED element whose inflated data `offset`
    /// points into.
    pub compressed_at: Option<usize>,
    /// MATLAB-style path of the array being read (`param.fs`, `c{2}`), when known.
    pub variable: Option<String>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.compressed_at {
            None => write!(f, "byte {}", self.offset)?,
            Some(c) => write!(
                f,
                "byte {} of the inflated data of the miCOMPRESSED element at file byte {}",
                self.offset, c
            )?,
        }
        if let Some(v) = &self.variable {
            write!(f, " (reading '{v}')")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MatError {
    #[error("cannot read MAT-file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a MAT-file (v5/v7): {0}")]
    NotMatFile(String),
    #[error(
        "this is a MATLAB v7.3 MAT-file, which is an HDF5 file; this reader only \
         handles v5/v6/v7 MAT-files (re-save with save(..., '-v7') or read it with an HDF5 reader)"
    )]
    V73,
    #[error("malformed MAT-file at {place}: {what}")]
    Malformed { place: Place, what: String },
    #[error("cannot inflate the miCOMPRESSED element at file byte {offset}: {detail}")]
    Decompress { offset: usize, detail: String },
    #[error("cannot write MAT-file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A value [`write_mat`] cannot represent; `file` is `None` from [`mat_bytes`].
    #[error("{}cannot write '{variable}': {what}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
    Unwritable {
        file: Option<PathBuf>,
        variable: String,
        what: String,
    },
}

/// All variables of a MAT-file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct MatFile {
    pub variables: Vec<MatArray>,
}

impl MatFile {
    pub fn open(path: &Path) -> Result<MatFile, MatError> {
        let bytes = std::fs::read(path).map_err(|source| MatError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes)
    }

    pub fn parse(bytes: &[u8]) -> Result<MatFile, MatError> {
        parse_file(bytes)
    }

    pub fn get(&self, name: &str) -> Option<&MatArray> {
        self.variables.iter().find(|v| v.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(|v| v.name.as_str())
    }
}

impl MatArray {
    /// Value of field `name` of a struct (or object) with exactly one element,
    /// the common `param.fs` case; `None` for anything else.
    pub fn field(&self, name: &str) -> Option<&MatArray> {
        let fields = self.fields()?;
        let (_, values) = fields.iter().find(|(n, _)| n == name)?;
        match values.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Field names in file order, for structs and objects.
    pub fn field_names(&self) -> Vec<&str> {
        self.fields()
            .map(|f| f.iter().map(|(n, _)| n.as_str()).collect())
            .unwrap_or_default()
    }

    fn fields(&self) -> Option<&MatFields> {
        match &self.data {
            MatData::Struct(f) => Some(f),
            MatData::Object { fields, .. } => Some(fields),
            _ => None,
        }
    }

    /// The value of a real numeric or logical array with exactly one element.
    pub fn scalar(&self) -> Option<f64> {
        match &self.data {
            MatData::Numeric { real, imag: None } if real.len() == 1 => Some(real[0]),
            _ => None,
        }
    }

    /// Real part of a numeric or logical array, column-major.
    pub fn numeric(&self) -> Option<&[f64]> {
        match &self.data {
            MatData::Numeric { real, .. } => Some(real),
            _ => None,
        }
    }

    /// Imaginary part of a complex numeric array, column-major.
    pub fn imag(&self) -> Option<&[f64]> {
        match &self.data {
            MatData::Numeric { imag: Some(i), .. } => Some(i),
            _ => None,
        }
    }

    /// Real part narrowed to `f32` (what the GPU consumes), column-major.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        self.numeric()
            .map(|r| r.iter().map(|&v| v as f32).collect())
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.data {
            MatData::Char(s) => Some(s),
            _ => None,
        }
    }

    /// Number of elements (product of `dims`).
    pub fn len(&self) -> usize {
        // Saturating: the fields are public, so the dims may not be ones
        // that were checked on read.
        self.dims.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

/// One buffer being parsed: the file itself or the inflated contents of one
/// miCOMPRESSED element. Offsets in errors are relative to it.
struct Buf<'a> {
    data: &'a [u8],
    endian: Endian,
    compressed_at: Option<usize>,
}

struct Elem<'a> {
    ty: u32,
    data: &'a [u8],
    /// Offset of the data (not the tag) in the buffer.
    data_off: usize,
    /// Where the next element starts.
    next: usize,
}

fn round8(n: usize) -> usize {
    n.saturating_add(7) & !7
}

impl<'a> Buf<'a> {
    fn err(&self, offset: usize, path: &str, what: impl Into<String>) -> MatError {
        MatError::Malformed {
            place: Place {
                offset,
                compressed_at: self.compressed_at,
                variable: if path.is_empty() {
                    None
                } else {
                    Some(path.to_string())
                },
            },
            what: what.into(),
        }
    }

    fn u32_at(&self, off: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(off..off.checked_add(4)?)?.try_into().ok()?;
        Some(match self.endian {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        })
    }

    /// Reads the data element starting at `pos`, which must end by `end`.
    /// `pad` rounds the next position up to 8 bytes, as required inside
    /// miMATRIX; it is clipped to `end` so that a writer omitting the final
    /// padding of a matrix is still accepted.
    fn elem(&self, pos: usize, end: usize, path: &str, pad: bool) -> Result<Elem<'a>, MatError> {
        let remain = end.saturating_sub(pos);
        if remain < 8 {
            return Err(self.err(
                pos,
                path,
                format!("truncated data element tag: a tag needs 8 bytes, {remain} remain"),
            ));
        }
        let w0 = self
            .u32_at(pos)
            .ok_or_else(|| self.err(pos, path, "tag beyond end of data"))?;
        if w0 >> 16 != 0 {
            // Small data element: type and size packed into one word, up to 4
            // bytes of data in the second.
            let n = (w0 >> 16) as usize;
            let ty = w0 & 0xffff;
            if n > 4 {
                return Err(self.err(
                    pos,
                    path,
                    format!(
                        "small data element ({}) claims {n} bytes, at most 4 fit",
                        mi_name(ty)
                    ),
                ));
            }
            let data = self
                .data
                .get(pos + 4..pos + 4 + n)
                .ok_or_else(|| self.err(pos, path, "data element beyond end of data"))?;
            return Ok(Elem {
                ty,
                data,
                data_off: pos + 4,
                next: pos + 8,
            });
        }
        let ty = w0;
        let n = self
            .u32_at(pos + 4)
            .ok_or_else(|| self.err(pos, path, "tag beyond end of data"))? as usize;
        let data_off = pos + 8;
        let avail = end - data_off;
        if n > avail {
            return Err(self.err(
                pos,
                path,
                format!(
                    "truncated data element ({}): header says {n} bytes, {avail} remain",
                    mi_name(ty)
                ),
            ));
        }
        let data_end = data_off + n;
        let next = if pad {
            round8(data_end).min(end)
        } else {
            data_end
        };
        Ok(Elem {
            ty,
            data: self
                .data
                .get(data_off..data_end)
                .ok_or_else(|| self.err(pos, path, "data element beyond end of data"))?,
            data_off,
            next,
        })
    }
}

fn parse_file(bytes: &[u8]) -> Result<MatFile, MatError> {
    const HDF5_SIG: &[u8] = b"\x89HDF\r\n\x1a\n";
    if bytes.starts_with(b"MATLAB 7.3") {
        return Err(MatError::V73);
    }
    if bytes.get(512..520) == Some(HDF5_SIG) && bytes.starts_with(b"MATLAB") {
        return Err(MatError::V73);
    }
    if bytes.starts_with(HDF5_SIG) {
        return Err(MatError::NotMatFile(
            "this is a plain HDF5 file (no MAT header); use an HDF5 reader".into(),
        ));
    }
    if bytes.len() < HEADER_LEN {
        return Err(MatError::NotMatFile(format!(
            "input is {} bytes, shorter than the 128-byte MAT-file header",
            bytes.len()
        )));
    }
    let endian = match &bytes[126..128] {
        b"IM" => Endian::Little,
        b"MI" => Endian::Big,
        other => {
            return Err(MatError::NotMatFile(format!(
                "bytes 126..128 are {:02x} {:02x}, expected the endian indicator 'IM' or 'MI' \
                 (Level 4 MAT-files, which lack it, are not supported)",
                other[0], other[1]
            )))
        }
    };
    let file = Buf {
        data: bytes,
        endian,
        compressed_at: None,
    };
    let version = match endian {
        Endian::Little => u16::from_le_bytes([bytes[124], bytes[125]]),
        Endian::Big => u16::from_be_bytes([bytes[124], bytes[125]]),
    };
    if version == 0x0200 {
        return Err(MatError::V73);
    }
    if version != 0x0100 {
        return Err(MatError::NotMatFile(format!(
            "header version is 0x{version:04x}, expected 0x0100 (MAT v5)"
        )));
    }
    // Subsystem data (class definitions backing opaque objects) is stored as
    // an unnamed uint8 variable at this offset; it is not a user variable.
    let subsys_raw: [u8; 8] = [
        bytes[116], bytes[117], bytes[118], bytes[119], bytes[120], bytes[121], bytes[122],
        bytes[123],
    ];
    let subsys = match endian {
        Endian::Little => u64::from_le_bytes(subsys_raw),
        Endian::Big => u64::from_be_bytes(subsys_raw),
    };
    let subsys = if subsys == 0 || subsys_raw == [b' '; 8] {
        None
    } else {
        usize::try_from(subsys).ok()
    };

    let mut variables = Vec::new();
    let mut pos = HEADER_LEN;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < 8 && rest.iter().all(|&b| b == 0) {
            break;
        }
        let el = file.elem(pos, bytes.len(), "", false)?;
        let start = pos;
        match el.ty {
            MI_MATRIX => {
                let var = parse_matrix(&file, el.data_off, el.data_off + el.data.len(), "", 0)?;
                if Some(start) != subsys {
                    variables.push(var);
                }
                pos = round8(el.next).min(bytes.len());
            }
            MI_COMPRESSED => {
                let inflated = inflate(el.data, start)?;
                let inner = Buf {
                    data: &inflated,
                    endian,
                    compressed_at: Some(start),
                };
                let mut ipos = 0;
                while ipos < inflated.len() {
                    // Length first: scanning the whole rest on every element would be
                    // quadratic in a stream of many tiny elements.
                    if inflated.len() - ipos < 8 && inflated[ipos..].iter().all(|&b| b == 0) {
                        break;
                    }
                    let iel = inner.elem(ipos, inflated.len(), "", true)?;
                    if iel.ty != MI_MATRIX {
                        return Err(inner.err(
                            ipos,
                            "",
                            format!(
                                "compressed element holds {}, expected miMATRIX",
                                mi_name(iel.ty)
                            ),
                        ));
                    }
                    let var =
                        parse_matrix(&inner, iel.data_off, iel.data_off + iel.data.len(), "", 0)?;
                    if Some(start) != subsys {
                        variables.push(var);
                    }
                    ipos = iel.next;
                }
                pos = el.next;
            }
            other => {
                return Err(file.err(
                    start,
                    "",
                    format!(
                        "top-level data element is {}, expected miMATRIX or miCOMPRESSED",
                        mi_name(other)
                    ),
                ))
            }
        }
    }
    Ok(MatFile { variables })
}

/// Inflates a zlib stream, growing the output only as data actually comes
/// out, so a lying header cannot make us allocate up front.
fn inflate(input: &[u8], elem_offset: usize) -> Result<Vec<u8>, MatError> {
    let derr = |detail: String| MatError::Decompress {
        offset: elem_offset,
        detail,
    };
    let mut d = Decompress::new(true);
    let mut out: Vec<u8> = Vec::with_capacity(input.len().saturating_mul(4).clamp(4096, 64 << 20));
    loop {
        if out.len() == out.capacity() {
            if out.len() >= MAX_DECOMPRESSED {
                return Err(derr(format!(
                    "inflates to more than {MAX_DECOMPRESSED} bytes, refusing (decompression bomb?)"
                )));
            }
            let grow = out.len().max(4096).min(MAX_DECOMPRESSED - out.len());
            out.try_reserve_exact(grow).map_err(|e| {
                derr(format!(
                    "out of memory after inflating {} bytes: {e}",
                    out.len()
                ))
            })?;
        }
        let (in_before, out_before) = (d.total_in(), d.total_out());
        let consumed = usize::try_from(in_before)
            .unwrap_or(usize::MAX)
            .min(input.len());
        let status = d
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::None)
            .map_err(|e| derr(format!("corrupt zlib data: {e}")))?;
        match status {
            Status::StreamEnd => return Ok(out),
            Status::Ok | Status::BufError => {
                let progressed = d.total_in() != in_before || d.total_out() != out_before;
                if !progressed && out.len() < out.capacity() {
                    return Err(derr(format!(
                        "zlib stream ends early after {} of {} compressed bytes ({} inflated): truncated?",
                        d.total_in(),
                        input.len(),
                        out.len()
                    )));
                }
            }
        }
    }
}

fn class_from_id(id: u32, logical: bool) -> Option<MatClass> {
    Some(match id {
        1 => MatClass::Cell,
        2 => MatClass::Struct,
        3 => MatClass::Object,
        4 => MatClass::Char,
        5 => MatClass::Sparse,
        6 => MatClass::Double,
        7 => MatClass::Single,
        8 => MatClass::Int8,
        9 if logical => MatClass::Logical,
        9 => MatClass::UInt8,
        10 => MatClass::Int16,
        11 => MatClass::UInt16,
        12 => MatClass::Int32,
        13 => MatClass::UInt32,
        14 => MatClass::Int64,
        15 => MatClass::UInt64,
        16 => MatClass::Function,
        17 => MatClass::Opaque,
        _ => return None,
    })
}

/// Parses the contents of a miMATRIX element occupying `start..end` of `buf`.
fn parse_matrix(
    buf: &Buf,
    start: usize,
    end: usize,
    path: &str,
    depth: usize,
) -> Result<MatArray, MatError> {
    if depth > MAX_DEPTH {
        return Err(buf.err(
            start,
            path,
            format!("arrays nested more than {MAX_DEPTH} deep"),
        ));
    }
    if start == end {
        // MATLAB writes an empty miMATRIX for `[]` in struct fields and cells.
        return Ok(MatArray {
            name: String::new(),
            dims: vec![0, 0],
            class: MatClass::Double,
            data: MatData::Numeric {
                real: Vec::new(),
                imag: None,
            },
        });
    }

    let flags_el = buf.elem(start, end, path, true)?;
    if !matches!(flags_el.ty, MI_UINT32 | MI_INT32) || flags_el.data.len() < 8 {
        return Err(buf.err(
            start,
            path,
            format!(
                "array flags subelement is {} of {} bytes, expected miUINT32 of 8 bytes",
                mi_name(flags_el.ty),
                flags_el.data.len()
            ),
        ));
    }
    let flags = buf.u32_at(flags_el.data_off).unwrap_or(0);
    let class_id = flags & 0xff;
    let complex = flags & 0x800 != 0;
    let logical = flags & 0x200 != 0;
    let class = class_from_id(class_id, logical).ok_or_else(|| {
        buf.err(
            flags_el.data_off,
            path,
            format!("unknown array class {class_id}"),
        )
    })?;
    let mut pos = flags_el.next;

    if class == MatClass::Opaque {
        // Opaque arrays have no dimensions subelement, just a name.
        let name_el = buf.elem(pos, end, path, true)?;
        return Ok(MatArray {
            name: ascii_name(name_el.data),
            dims: vec![1, 1],
            class,
            data: MatData::Unsupported,
        });
    }

    let dims_el = buf.elem(pos, end, path, true)?;
    if dims_el.ty != MI_INT32 || !dims_el.data.len().is_multiple_of(4) {
        return Err(buf.err(
            pos,
            path,
            format!(
                "dimensions subelement is {} of {} bytes, expected miINT32 with a multiple of 4 bytes",
                mi_name(dims_el.ty),
                dims_el.data.len()
            ),
        ));
    }
    let mut dims = Vec::with_capacity(dims_el.data.len() / 4);
    for i in 0..dims_el.data.len() / 4 {
        let d = buf.u32_at(dims_el.data_off + 4 * i).unwrap_or(0) as i32;
        if d < 0 {
            return Err(buf.err(
                dims_el.data_off + 4 * i,
                path,
                format!("negative dimension {d}"),
            ));
        }
        dims.push(d as usize);
    }
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            buf.err(
                dims_el.data_off,
                path,
                format!("dimensions {dims:?} overflow the element count"),
            )
        })?;
    pos = dims_el.next;

    let name_el = buf.elem(pos, end, path, true)?;
    if !matches!(name_el.ty, MI_INT8 | MI_UINT8 | MI_UTF8) {
        return Err(buf.err(
            pos,
            path,
            format!(
                "array name subelement is {}, expected miINT8",
                mi_name(name_el.ty)
            ),
        ));
    }
    let name = ascii_name(name_el.data);
    pos = name_el.next;
    let owned_path;
    let path = if path.is_empty() {
        owned_path = name.clone();
        owned_path.as_str()
    } else {
        path
    };

    let data = match class {
        MatClass::Double
        | MatClass::Single
        | MatClass::Int8
        | MatClass::UInt8
        | MatClass::Int16
        | MatClass::UInt16
        | MatClass::Int32
        | MatClass::UInt32
        | MatClass::Int64
        | MatClass::UInt64
        | MatClass::Logical => {
            let re_el = buf.elem(pos, end, path, true)?;
            let real = numeric_values(buf, &re_el, pos, path, "real part")?;
            check_count(buf, pos, path, "real part", real.len(), count, &dims)?;
            let imag = if complex {
                let ipos = re_el.next;
                let im_el = buf.elem(ipos, end, path, true)?;
                let imag = numeric_values(buf, &im_el, ipos, path, "imaginary part")?;
                check_count(buf, ipos, path, "imaginary part", imag.len(), count, &dims)?;
                Some(imag)
            } else {
                None
            };
            MatData::Numeric { real, imag }
        }
        MatClass::Char => {
            let el = buf.elem(pos, end, path, true)?;
            MatData::Char(char_data(buf, &el, pos, path, count, &dims)?)
        }
        MatClass::Cell => {
            let mut cells = Vec::new();
            for i in 0..count {
                let sub_path = format!("{path}{{{}}}", i + 1);
                let el = buf.elem(pos, end, &sub_path, true)?;
                cells.push(sub_matrix(buf, &el, pos, &sub_path, depth)?);
                pos = el.next;
            }
            MatData::Cell(cells)
        }
        MatClass::Struct => MatData::Struct(struct_fields(buf, pos, end, path, count, depth)?),
        MatClass::Object => {
            let cn_el = buf.elem(pos, end, path, true)?;
            let class_name = ascii_name(cn_el.data);
            let fields = struct_fields(buf, cn_el.next, end, path, count, depth)?;
            MatData::Object { class_name, fields }
        }
        MatClass::Sparse => sparse(buf, pos, end, path, &dims, complex, logical)?,
        MatClass::Function | MatClass::Opaque => MatData::Unsupported,
    };
    Ok(MatArray {
        name,
        dims,
        class,
        data,
    })
}

fn sub_matrix(
    buf: &Buf,
    el: &Elem,
    pos: usize,
    path: &str,
    depth: usize,
) -> Result<MatArray, MatError> {
    if el.ty != MI_MATRIX {
        return Err(buf.err(
            pos,
            path,
            format!("element is {}, expected miMATRIX", mi_name(el.ty)),
        ));
    }
    parse_matrix(
        buf,
        el.data_off,
        el.data_off + el.data.len(),
        path,
        depth + 1,
    )
}

fn check_count(
    buf: &Buf,
    pos: usize,
    path: &str,
    what: &str,
    got: usize,
    want: usize,
    dims: &[usize],
) -> Result<(), MatError> {
    if got != want {
        return Err(buf.err(
            pos,
            path,
            format!("{what} has {got} values, dimensions {dims:?} need {want}"),
        ));
    }
    Ok(())
}

fn ascii_name(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn struct_fields(
    buf: &Buf,
    mut pos: usize,
    end: usize,
    path: &str,
    count: usize,
    depth: usize,
) -> Result<MatFields, MatError> {
    let len_el = buf.elem(pos, end, path, true)?;
    if len_el.ty != MI_INT32 || len_el.data.len() != 4 {
        return Err(buf.err(
            pos,
            path,
            format!(
                "field name length subelement is {} of {} bytes, expected miINT32 of 4 bytes",
                mi_name(len_el.ty),
                len_el.data.len()
            ),
        ));
    }
    let name_len = buf.u32_at(len_el.data_off).unwrap_or(0) as usize;
    pos = len_el.next;
    let names_el = buf.elem(pos, end, path, true)?;
    if !matches!(names_el.ty, MI_INT8 | MI_UINT8 | MI_UTF8) {
        return Err(buf.err(
            pos,
            path,
            format!(
                "field names subelement is {}, expected miINT8",
                mi_name(names_el.ty)
            ),
        ));
    }
    let names: Vec<String> = if names_el.data.is_empty() {
        Vec::new()
    } else if name_len == 0 || !names_el.data.len().is_multiple_of(name_len) {
        return Err(buf.err(
            pos,
            path,
            format!(
                "field names take {} bytes, not a multiple of the field name length {name_len}",
                names_el.data.len()
            ),
        ));
    } else {
        names_el.data.chunks(name_len).map(ascii_name).collect()
    };
    pos = names_el.next;

    let mut fields: MatFields = names.into_iter().map(|n| (n, Vec::new())).collect();
    // With no fields there is nothing to read per element; looping over a
    // (possibly huge, hostile) element count anyway would just spin.
    if fields.is_empty() {
        return Ok(fields);
    }
    for e in 0..count {
        for (fname, values) in fields.iter_mut() {
            let sub_path = if count == 1 {
                format!("{path}.{fname}")
            } else {
                format!("{path}({}).{fname}", e + 1)
            };
            let el = buf.elem(pos, end, &sub_path, true)?;
            values.push(sub_matrix(buf, &el, pos, &sub_path, depth)?);
            pos = el.next;
        }
    }
    Ok(fields)
}

fn sparse(
    buf: &Buf,
    mut pos: usize,
    end: usize,
    path: &str,
    dims: &[usize],
    complex: bool,
    logical: bool,
) -> Result<MatData, MatError> {
    let &[nrows, ncols] = dims else {
        return Err(buf.err(
            pos,
            path,
            format!("sparse array has dimensions {dims:?}, expected 2"),
        ));
    };
    let index_list = |el: &Elem, at: usize, what: &str| -> Result<Vec<usize>, MatError> {
        let v = numeric_values(buf, el, at, path, what)?;
        v.into_iter()
            .map(|x| {
                if x >= 0.0 && x.fract() == 0.0 && x <= usize::MAX as f64 {
                    Ok(x as usize)
                } else {
                    Err(buf.err(at, path, format!("{what} contains invalid index {x}")))
                }
            })
            .collect()
    };
    let ir_el = buf.elem(pos, end, path, true)?;
    let mut rows = index_list(&ir_el, pos, "sparse row indices")?;
    let jc_pos = ir_el.next;
    let jc_el = buf.elem(jc_pos, end, path, true)?;
    let cols = index_list(&jc_el, jc_pos, "sparse column starts")?;
    if cols.len() != ncols.saturating_add(1) {
        return Err(buf.err(
            jc_pos,
            path,
            format!(
                "sparse column starts have {} entries, {ncols} columns need {}",
                cols.len(),
                ncols.saturating_add(1)
            ),
        ));
    }
    if cols.first() != Some(&0) || cols.windows(2).any(|w| w[0] > w[1]) {
        return Err(buf.err(jc_pos, path, "sparse column starts do not rise from 0"));
    }
    let nnz = cols.last().copied().unwrap_or(0);
    // MATLAB may write nzmax entries; only the first nnz are meaningful.
    if rows.len() < nnz {
        return Err(buf.err(
            pos,
            path,
            format!("sparse array has {} row indices, needs {nnz}", rows.len()),
        ));
    }
    rows.truncate(nnz);
    if let Some(bad) = rows.iter().find(|&&r| r >= nrows) {
        return Err(buf.err(
            pos,
            path,
            format!("sparse row index {bad} out of range for {nrows} rows"),
        ));
    }
    pos = jc_el.next;
    let pr_el = buf.elem(pos, end, path, true)?;
    let mut real = numeric_values(buf, &pr_el, pos, path, "sparse real part")?;
    if real.len() < nnz {
        return Err(buf.err(
            pos,
            path,
            format!("sparse real part has {} values, needs {nnz}", real.len()),
        ));
    }
    real.truncate(nnz);
    let imag = if complex {
        let ipos = pr_el.next;
        let pi_el = buf.elem(ipos, end, path, true)?;
        let mut imag = numeric_values(buf, &pi_el, ipos, path, "sparse imaginary part")?;
        if imag.len() < nnz {
            return Err(buf.err(
                ipos,
                path,
                format!(
                    "sparse imaginary part has {} values, needs {nnz}",
                    imag.len()
                ),
            ));
        }
        imag.truncate(nnz);
        Some(imag)
    } else {
        None
    };
    Ok(MatData::Sparse {
        row_indices: rows,
        col_starts: cols,
        real,
        imag,
        logical,
    })
}

fn numeric_values(
    buf: &Buf,
    el: &Elem,
    pos: usize,
    path: &str,
    what: &str,
) -> Result<Vec<f64>, MatError> {
    let d = el.data;
    let e = buf.endian;
    macro_rules! conv {
        ($t:ty, $n:expr) => {{
            if !d.len().is_multiple_of($n) {
                return Err(buf.err(
                    pos,
                    path,
                    format!(
                        "{what} is {} of {} bytes, not a multiple of {}",
                        mi_name(el.ty),
                        d.len(),
                        $n
                    ),
                ));
            }
            d.chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    (match e {
                        Endian::Little => <$t>::from_le_bytes(a),
                        Endian::Big => <$t>::from_be_bytes(a),
                    }) as f64
                })
                .collect()
        }};
    }
    Ok(match el.ty {
        MI_INT8 => d.iter().map(|&b| b as i8 as f64).collect(),
        MI_UINT8 => d.iter().map(|&b| b as f64).collect(),
        MI_INT16 => conv!(i16, 2),
        MI_UINT16 => conv!(u16, 2),
        MI_INT32 => conv!(i32, 4),
        MI_UINT32 => conv!(u32, 4),
        MI_INT64 => conv!(i64, 8),
        MI_UINT64 => conv!(u64, 8),
        MI_SINGLE => conv!(f32, 4),
        MI_DOUBLE => conv!(f64, 8),
        other => {
            return Err(buf.err(
                pos,
                path,
                format!(
                    "{what} is stored as {}, which is not a numeric type",
                    mi_name(other)
                ),
            ))
        }
    })
}

fn char_data(
    buf: &Buf,
    el: &Elem,
    pos: usize,
    path: &str,
    count: usize,
    dims: &[usize],
) -> Result<String, MatError> {
    let bad_len = |unit: usize| {
        buf.err(
            pos,
            path,
            format!(
                "character data is {} of {} bytes, not a multiple of {unit}",
                mi_name(el.ty),
                el.data.len()
            ),
        )
    };
    let rd16 = |c: &[u8]| match buf.endian {
        Endian::Little => u16::from_le_bytes([c[0], c[1]]),
        Endian::Big => u16::from_be_bytes([c[0], c[1]]),
    };
    // Everything is brought to UTF-16 code units first: that is MATLAB's own
    // char representation, so one unit is one array element and the
    // row/column reordering below works on it.
    let units: Vec<u16> = match el.ty {
        MI_UINT16 | MI_UTF16 | MI_INT16 => {
            if !el.data.len().is_multiple_of(2) {
                return Err(bad_len(2));
            }
            el.data.chunks_exact(2).map(rd16).collect()
        }
        // Single bytes are Latin-1 (MATLAB's char < 256 mapping).
        MI_UINT8 | MI_INT8 => el.data.iter().map(|&b| b as u16).collect(),
        MI_UTF8 => String::from_utf8_lossy(el.data).encode_utf16().collect(),
        MI_UTF32 | MI_UINT32 | MI_INT32 => {
            if !el.data.len().is_multiple_of(4) {
                return Err(bad_len(4));
            }
            let mut u = Vec::with_capacity(el.data.len() / 4);
            for c in el.data.chunks_exact(4) {
                let a = [c[0], c[1], c[2], c[3]];
                let v = match buf.endian {
                    Endian::Little => u32::from_le_bytes(a),
                    Endian::Big => u32::from_be_bytes(a),
                };
                let ch = char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut tmp = [0u16; 2];
                u.extend_from_slice(ch.encode_utf16(&mut tmp));
            }
            u
        }
        other => {
            return Err(buf.err(
                pos,
                path,
                format!(
                    "character data is stored as {}, expected miUINT16 or miUTF8",
                    mi_name(other)
                ),
            ))
        }
    };
    if matches!(el.ty, MI_UINT16 | MI_UINT8 | MI_INT8 | MI_INT16) && units.len() != count {
        return Err(buf.err(
            pos,
            path,
            format!(
                "character data has {} characters, dimensions {dims:?} need {count}",
                units.len()
            ),
        ));
    }
    if let &[rows, cols] = dims {
        if rows > 1 && units.len() == count {
            let mut out = String::with_capacity(count + rows);
            for r in 0..rows {
                if r > 0 {
                    out.push('\n');
                }
                let row: Vec<u16> = (0..cols).map(|c| units[c * rows + r]).collect();
                out.push_str(&String::from_utf16_lossy(&row));
            }
            return Ok(out);
        }
    }
    Ok(String::from_utf16_lossy(&units))
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// A value to write into a MAT-file: the few classes the MUST reference
/// files use (`RF` as int16 or double, `param` as a 1×1 struct of doubles
/// and strings), enough to hand sonoguide's data to MATLAB/PyMUST and to
/// build test fixtures. Numeric data are column-major, as MATLAB stores them.
#[derive(Debug, Clone, PartialEq)]
pub enum MatValue {
    F64 {
        dims: Vec<usize>,
        data: Vec<f64>,
    },
    I16 {
        dims: Vec<usize>,
        data: Vec<i16>,
    },
    U8 {
        dims: Vec<usize>,
        data: Vec<u8>,
    },
    /// A 1×n char row vector (0×0 when empty), n in UTF-16 code units as
    /// MATLAB counts; stored as miUTF8. (scipy counts code points, so it
    /// only agrees for text within the Basic Multilingual Plane.)
    Char(String),
    /// A 1×1 struct; field order is kept.
    Struct(Vec<(String, MatValue)>),
}

impl MatValue {
    /// A 1×1 double.
    pub fn scalar(v: f64) -> MatValue {
        MatValue::F64 {
            dims: vec![1, 1],
            data: vec![v],
        }
    }

    /// A 1×n double row vector (MUST's `TXdelay`).
    pub fn row(data: Vec<f64>) -> MatValue {
        MatValue::F64 {
            dims: vec![1, data.len()],
            data,
        }
    }
}

const MX_STRUCT: u32 = 2;
const MX_CHAR: u32 = 4;
const MX_DOUBLE: u32 = 6;
const MX_UINT8: u32 = 9;
const MX_INT16: u32 = 10;
/// MATLAB's `namelengthmax`.
const MAX_NAME: usize = 63;

/// The bytes of a little-endian, uncompressed MAT v5 file holding `vars`.
///
/// Everything MATLAB would refuse is refused here instead, with the
/// variable named: names that are not identifiers or repeat, dimensions
/// that disagree with the data, variables over the 4 GiB a v5 element can
/// hold, structs nested deeper than the reader accepts.
pub fn mat_bytes(vars: &[(&str, MatValue)]) -> Result<Vec<u8>, MatError> {
    check_names(vars.iter().map(|(n, _)| *n), "")?;
    let mut w = MatWriter { out: mat_header() };
    for (name, value) in vars {
        w.matrix(name, value, name, 0)?;
    }
    Ok(w.out)
}

/// Write `vars` to `path` as a MAT v5 file, atomically: the bytes go to a
/// temporary file beside `path` that is renamed over it only once complete,
/// so a reader never sees half a file and a failure leaves nothing behind.
pub fn write_mat(path: &Path, vars: &[(&str, MatValue)]) -> Result<(), MatError> {
    let bytes = mat_bytes(vars).map_err(|e| match e {
        MatError::Unwritable { variable, what, .. } => MatError::Unwritable {
            file: Some(path.to_path_buf()),
            variable,
            what,
        },
        other => other,
    })?;
    let io = |source| MatError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = super::output::TempFile::beside(path).map_err(io)?;
    std::fs::write(tmp.path(), &bytes).map_err(io)?;
    tmp.commit().map_err(io)
}

fn mat_header() -> Vec<u8> {
    let mut h = b"MATLAB 5.0 MAT-file, written by sonoguide".to_vec();
    h.resize(116, b' ');
    h.extend_from_slice(&[0; 8]); // no subsystem data
    h.extend_from_slice(&0x0100u16.to_le_bytes());
    h.extend_from_slice(b"IM");
    h
}

fn unwritable(variable: &str, what: impl Into<String>) -> MatError {
    MatError::Unwritable {
        file: None,
        variable: variable.to_string(),
        what: what.into(),
    }
}

/// Variable and field names must be MATLAB identifiers, or MATLAB cannot
/// address them; repeats would silently shadow one another.
fn check_names<'a>(names: impl Iterator<Item = &'a str>, parent: &str) -> Result<(), MatError> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        let path = if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        };
        let mut chars = name.chars();
        let ident = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident || name.len() > MAX_NAME {
            return Err(unwritable(
                &path,
                format!("'{name}' is not a MATLAB name (a letter, then letters, digits or _, at most {MAX_NAME})"),
            ));
        }
        if !seen.insert(name) {
            return Err(unwritable(&path, "appears twice"));
        }
    }
    Ok(())
}

/// Appends data elements to a growing little-endian MAT-file.
struct MatWriter {
    out: Vec<u8>,
}

impl MatWriter {
    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn pad8(&mut self) {
        self.out.resize(round8(self.out.len()), 0);
    }

    /// A data element of `n` bytes produced by `fill`: the small form for 1
    /// to 4 bytes (as MATLAB writes names), else a tag and 8-byte padding.
    fn elem(
        &mut self,
        ty: u32,
        n: usize,
        path: &str,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), MatError> {
        let n32 = u32::try_from(n).map_err(|_| {
            unwritable(
                path,
                format!("holds {n} bytes, over the 4 GiB a MAT v5 element can hold"),
            )
        })?;
        let start = self.out.len();
        if (1..=4).contains(&n) {
            self.u32(n32 << 16 | ty);
        } else {
            self.u32(ty);
            self.u32(n32);
        }
        fill(&mut self.out);
        if (1..=4).contains(&n) {
            self.out.resize(start + 8, 0);
        }
        self.pad8();
        Ok(())
    }

    /// One miMATRIX element. Its length is only known once the contents are
    /// written, so the tag is patched afterwards.
    fn matrix(
        &mut self,
        name: &str,
        value: &MatValue,
        path: &str,
        depth: usize,
    ) -> Result<(), MatError> {
        if depth > MAX_DEPTH {
            return Err(unwritable(
                path,
                format!("structs nested more than {MAX_DEPTH} deep"),
            ));
        }
        let start = self.out.len();
        self.u32(MI_MATRIX);
        self.u32(0);
        let (class, dims) = class_and_dims(value, path)?;
        self.elem(MI_UINT32, 8, path, |o| {
            o.extend_from_slice(&class.to_le_bytes());
            o.extend_from_slice(&0u32.to_le_bytes());
        })?;
        self.elem(MI_INT32, 4 * dims.len(), path, |o| {
            dims.iter()
                .for_each(|&d| o.extend_from_slice(&(d as u32).to_le_bytes()))
        })?;
        self.elem(MI_INT8, name.len(), path, |o| {
            o.extend_from_slice(name.as_bytes())
        })?;
        self.body(value, path, depth)?;
        let len = self.out.len() - start - 8;
        let len = u32::try_from(len).map_err(|_| {
            unwritable(
                path,
                format!("takes {len} bytes, over the 4 GiB a MAT v5 variable can hold"),
            )
        })?;
        self.out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    fn body(&mut self, value: &MatValue, path: &str, depth: usize) -> Result<(), MatError> {
        match value {
            MatValue::F64 { data, .. } => self.elem(MI_DOUBLE, 8 * data.len(), path, |o| {
                data.iter()
                    .for_each(|v| o.extend_from_slice(&v.to_le_bytes()))
            }),
            MatValue::I16 { data, .. } => self.elem(MI_INT16, 2 * data.len(), path, |o| {
                data.iter()
                    .for_each(|v| o.extend_from_slice(&v.to_le_bytes()))
            }),
            MatValue::U8 { data, .. } => {
                self.elem(MI_UINT8, data.len(), path, |o| o.extend_from_slice(data))
            }
            // UTF-8 as scipy writes it: scipy decodes miUINT16 with a byte
            // codec and garbles anything outside ASCII.
            MatValue::Char(s) => self.elem(MI_UTF8, s.len(), path, |o| {
                o.extend_from_slice(s.as_bytes())
            }),
            MatValue::Struct(fields) => self.fields(fields, path, depth),
        }
    }

    /// Field names padded to one common length, then each value unnamed.
    fn fields(
        &mut self,
        fields: &[(String, MatValue)],
        path: &str,
        depth: usize,
    ) -> Result<(), MatError> {
        check_names(fields.iter().map(|(n, _)| n.as_str()), path)?;
        let name_len = fields.iter().map(|(n, _)| n.len() + 1).max().unwrap_or(1);
        self.elem(MI_INT32, 4, path, |o| {
            o.extend_from_slice(&(name_len as u32).to_le_bytes())
        })?;
        self.elem(MI_INT8, name_len * fields.len(), path, |o| {
            for (n, _) in fields {
                o.extend_from_slice(n.as_bytes());
                o.resize(o.len() + name_len - n.len(), 0);
            }
        })?;
        for (n, v) in fields {
            self.matrix("", v, &format!("{path}.{n}"), depth + 1)?;
        }
        Ok(())
    }
}

/// The mxClass and the dimensions to write, checked against the data.
/// Fewer than two dimensions are padded with 1 (MATLAB has no 1-D arrays).
fn class_and_dims(value: &MatValue, path: &str) -> Result<(u32, Vec<usize>), MatError> {
    let (class, dims, len) = match value {
        MatValue::F64 { dims, data } => (MX_DOUBLE, dims.clone(), data.len()),
        MatValue::I16 { dims, data } => (MX_INT16, dims.clone(), data.len()),
        MatValue::U8 { dims, data } => (MX_UINT8, dims.clone(), data.len()),
        MatValue::Char(s) => {
            let n = s.encode_utf16().count();
            (MX_CHAR, if n == 0 { vec![0, 0] } else { vec![1, n] }, n)
        }
        MatValue::Struct(_) => (MX_STRUCT, vec![1, 1], 1),
    };
    let mut dims = dims;
    while dims.len() < 2 {
        dims.push(1);
    }
    if let Some(d) = dims.iter().find(|&&d| d > i32::MAX as usize) {
        return Err(unwritable(
            path,
            format!("dimension {d} exceeds MATLAB's limit of {}", i32::MAX),
        ));
    }
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(len) {
        return Err(unwritable(
            path,
            format!("has {len} values but dimensions {dims:?}"),
        ));
    }
    Ok((class, dims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::path::PathBuf;

    /// The MUST reference files live in the shared data folder beside the
    /// repository (`../shared`), or wherever `SONOGUIDE_SHARED` points.
    fn must_file(name: &str) -> Option<PathBuf> {
        let base = std::env::var_os("SONOGUIDE_SHARED")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
        let p = base.join("data/must").join(name);
        if p.exists() {
            Some(p)
        } else {
            eprintln!("skipping: {} not found", p.display());
            None
        }
    }

    // --- a minimal MAT writer, to build files of either byte order and
    // with the encodings MATLAB itself uses but scipy does not write ---

    fn w32(be: bool, v: u32) -> [u8; 4] {
        if be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn elem(be: bool, ty: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&w32(be, ty));
        out.extend_from_slice(&w32(be, data.len() as u32));
        out.extend_from_slice(data);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        out
    }

    fn small(be: bool, ty: u32, data: &[u8]) -> Vec<u8> {
        assert!(data.len() <= 4);
        let mut out = w32(be, (data.len() as u32) << 16 | ty).to_vec();
        out.extend_from_slice(data);
        out.resize(8, 0);
        out
    }

    fn matrix(be: bool, flags: u32, dims: &[i32], name: &str, body: &[u8]) -> Vec<u8> {
        let mut c = elem(be, MI_UINT32, &[w32(be, flags), w32(be, 0)].concat());
        let d: Vec<u8> = dims.iter().flat_map(|&d| w32(be, d as u32)).collect();
        c.extend(elem(be, MI_INT32, &d));
        if name.len() <= 4 && !name.is_empty() {
            c.extend(small(be, MI_INT8, name.as_bytes()));
        } else {
            c.extend(elem(be, MI_INT8, name.as_bytes()));
        }
        c.extend_from_slice(body);
        elem(be, MI_MATRIX, &c)
    }

    fn compressed(be: bool, el: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(el).unwrap();
        let z = z.finish().unwrap();
        let mut out = w32(be, MI_COMPRESSED).to_vec();
        out.extend_from_slice(&w32(be, z.len() as u32));
        out.extend(z); // top-level compressed elements carry no padding
        out
    }

    fn header(be: bool, text: &str) -> Vec<u8> {
        let mut h = text.as_bytes().to_vec();
        h.resize(116, b' ');
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&if be {
            0x0100u16.to_be_bytes()
        } else {
            0x0100u16.to_le_bytes()
        });
        h.extend_from_slice(if be { b"MI" } else { b"IM" });
        h
    }

    fn file(be: bool, elems: &[Vec<u8>]) -> Vec<u8> {
        let mut f = header(be, "MATLAB 5.0 MAT-file, test");
        for e in elems {
            f.extend_from_slice(e);
        }
        f
    }

    /// Rewrites a v7 file with every miCOMPRESSED element inflated, so that
    /// truncation and corruption tests reach the array parser itself.
    fn inflate_all(bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes[..HEADER_LEN].to_vec();
        let mut pos = HEADER_LEN;
        while pos < bytes.len() {
            let ty = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
            let n = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
            assert_eq!(ty, MI_COMPRESSED);
            out.extend(inflate(&bytes[pos + 8..pos + 8 + n], pos).unwrap());
            pos += 8 + n;
        }
        out
    }

    /// Offsets where a top-level element ends: cutting a file there leaves a
    /// valid, shorter file.
    fn top_level_boundaries(bytes: &[u8]) -> Vec<usize> {
        let mut b = vec![HEADER_LEN];
        let mut pos = HEADER_LEN;
        while pos + 8 <= bytes.len() {
            let ty = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
            let n = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
            pos += 8 + n;
            if ty == MI_MATRIX {
                pos = round8(pos);
            }
            b.push(pos);
        }
        b
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn parse_no_panic(bytes: &[u8]) -> Result<MatFile, MatError> {
        match catch_unwind(AssertUnwindSafe(|| MatFile::parse(bytes))) {
            Ok(r) => r,
            Err(_) => panic!("MatFile::parse panicked on {} bytes of input", bytes.len()),
        }
    }

    #[test]
    fn pwi_disk_rf_and_param() {
        let Some(path) = must_file("PWI_disk.mat") else {
            return;
        };
        let f = MatFile::open(&path).unwrap();
        assert_eq!(f.names().collect::<Vec<_>>(), ["RF", "param"]);

        let rf = f.get("RF").unwrap();
        assert_eq!(rf.dims, [334, 128, 32]);
        // MATLAB's class is double; the file merely stores it as miINT16
        // (scipy reports int16 because it returns the storage type).
        assert_eq!(rf.class, MatClass::Double);
        let v = rf.numeric().unwrap();
        assert_eq!(v.len(), 334 * 128 * 32);
        assert_eq!(rf.len(), v.len());
        println!("RF[0..5] = {:?}", &v[..5]);
        assert_eq!(&v[..5], &[-3.0, -16.0, 12.0, 17.0, -9.0]);
        // RF(101, 65, 17) in MATLAB's 1-based indexing, column-major.
        assert_eq!(v[100 + 334 * (64 + 128 * 16)], 1183.0);
        assert_eq!(*v.last().unwrap(), 78.0);
        assert_eq!(v.iter().sum::<f64>(), -608073.0);
        assert_eq!(v.iter().map(|x| x.abs()).sum::<f64>(), 256686779.0);
        assert_eq!(rf.to_f32().unwrap()[3], 17.0);

        let p = f.get("param").unwrap();
        assert_eq!(p.class, MatClass::Struct);
        assert_eq!(p.dims, [1, 1]);
        let names = p.field_names();
        println!("param fields: {names:?}");
        for n in &names {
            let a = p.field(n).unwrap();
            match a.scalar() {
                Some(s) => println!("  {n} = {s:?} ({:?})", a.class),
                None => println!("  {n}: {:?} {:?}", a.class, a.dims),
            }
        }
        assert_eq!(
            names,
            [
                "fs",
                "pitch",
                "fc",
                "c",
                "t0",
                "PRF",
                "width",
                "Nelements",
                "TXdelay",
                "bandwidth"
            ]
        );
        let s = |n: &str| p.field(n).unwrap().scalar().unwrap();
        assert_eq!(s("fs"), 6666666.666666667);
        assert_eq!(s("fc"), 5e6);
        assert_eq!(s("c"), 1480.0);
        assert_eq!(s("pitch"), 0.000298);
        assert_eq!(s("width"), 0.000262);
        assert_eq!(s("t0"), 9.95e-6);
        assert_eq!(s("PRF"), 10000.0);
        assert_eq!(s("Nelements"), 128.0);
        assert_eq!(s("bandwidth"), 15.0);
        let tx = p.field("TXdelay").unwrap();
        assert_eq!(tx.dims, [1, 128]);
        assert!(tx.numeric().unwrap().iter().all(|&d| d == 0.0));
        assert!(p.field("nope").is_none());
        assert!(rf.field("fs").is_none());
    }

    #[test]
    fn bmode_pwi_disk() {
        let Some(path) = must_file("bmode_PWI_disk.mat") else {
            return;
        };
        let f = MatFile::open(&path).unwrap();
        let i = f.get("I").unwrap();
        assert_eq!(i.dims, [251, 251, 32]);
        println!("I: class {:?}", i.class);
        let v = i.numeric().unwrap();
        assert_eq!(v[125 + 251 * 125], 54.0);
        assert_eq!(v[100 + 251 * (50 + 251 * 31)], 244.0);
        assert_eq!(v.iter().sum::<f64>(), 153648554.0);
        assert_eq!(v.iter().cloned().fold(0.0, f64::max), 255.0);
    }

    #[test]
    fn scipy_fixture_uncompressed_and_compressed_agree() {
        let a = MatFile::parse(SCIPY_V5).unwrap();
        let b = MatFile::parse(SCIPY_V7).unwrap();
        assert_eq!(a, b);
        check_scipy_fixture(&a);
    }

    fn check_scipy_fixture(f: &MatFile) {
        let g = |n: &str| f.get(n).unwrap_or_else(|| panic!("no variable {n}"));
        assert_eq!(g("x").scalar(), Some(2.5));
        assert_eq!(g("x").class, MatClass::Double);

        let i8v = g("i8");
        assert_eq!(
            (i8v.class, i8v.dims.as_slice()),
            (MatClass::Int8, &[2usize, 3][..])
        );
        assert_eq!(i8v.numeric().unwrap(), &[1.0, 4.0, -2.0, 5.0, 3.0, -128.0]);

        let z = g("z");
        assert_eq!(z.numeric().unwrap(), &[1.0, -3.5]);
        assert_eq!(z.imag().unwrap(), &[2.0, -0.25]);
        assert_eq!(z.scalar(), None);

        assert_eq!(g("b").class, MatClass::Logical);
        assert_eq!(g("b").numeric().unwrap(), &[1.0, 0.0, 1.0]);

        assert_eq!(g("s").as_str(), Some("héllo"));
        assert_eq!(g("s").dims, [1, 5]);
        assert_eq!(g("cm").dims, [3, 2]);
        assert_eq!(g("cm").as_str(), Some("ab\ncd\nef"));

        let st = g("st");
        assert_eq!(st.field_names(), ["a", "inner", "name"]);
        assert_eq!(st.field("a").unwrap().scalar(), Some(1.0));
        assert_eq!(st.field("name").unwrap().as_str(), Some("xy"));
        let q = st.field("inner").unwrap().field("q").unwrap();
        assert_eq!(q.dims, [2, 2]);
        assert_eq!(q.numeric().unwrap(), &[1.0, 3.0, 2.0, 4.0]);

        let sa = g("sa");
        assert_eq!(sa.dims, [1, 2]);
        assert!(sa.field("k").is_none(), "field() is for 1x1 structs only");
        match &sa.data {
            MatData::Struct(fields) => {
                assert_eq!(fields.len(), 1);
                let k: Vec<_> = fields[0].1.iter().map(|a| a.scalar().unwrap()).collect();
                assert_eq!(k, [1.0, 2.0]);
            }
            other => panic!("sa is {other:?}"),
        }

        match &g("c").data {
            MatData::Cell(c) => {
                assert_eq!(c.len(), 3);
                assert_eq!(c[0].scalar(), Some(1.0));
                assert_eq!(c[1].as_str(), Some("str"));
                assert!(c[2].is_empty());
            }
            other => panic!("c is {other:?}"),
        }

        let e = g("e");
        assert_eq!(e.dims, [0, 3]);
        assert!(e.is_empty());
        assert_eq!(e.numeric().unwrap().len(), 0);

        match &g("sp").data {
            MatData::Sparse {
                row_indices,
                col_starts,
                real,
                imag,
                logical,
            } => {
                assert_eq!(g("sp").dims, [3, 3]);
                assert_eq!(col_starts, &[0, 1, 2, 3]);
                assert_eq!(row_indices, &[1, 0, 2]);
                assert_eq!(real, &[2.0, 1.5, -3.0]);
                assert!(imag.is_none() && !logical);
            }
            other => panic!("sp is {other:?}"),
        }

        assert_eq!(g("i64").class, MatClass::Int64);
        assert_eq!(g("i64").numeric().unwrap(), &[-(2f64.powi(40)), 7.0]);
        assert_eq!(g("u64").scalar(), Some(2f64.powi(50)));
        assert_eq!(g("f32").class, MatClass::Single);
        assert_eq!(g("f32").numeric().unwrap(), &[0.5, -1.25]);
        assert_eq!(g("u16").scalar(), Some(65535.0));
    }

    /// The same content written little- and big-endian, with small data
    /// elements, a double stored as miUINT8 and miINT16 (as MATLAB does for
    /// integer-valued doubles), UTF-8 chars and a compressed copy.
    #[test]
    fn both_byte_orders_small_elements_and_narrow_storage() {
        let build = |be: bool| {
            let d8 = matrix(be, 6, &[1, 3], "d8", &elem(be, MI_UINT8, &[1, 2, 255]));
            let i16data: Vec<u8> = [-5i16, 300]
                .iter()
                .flat_map(|v| if be { v.to_be_bytes() } else { v.to_le_bytes() })
                .collect();
            // Two int16 values fit the 4-byte small form.
            let d16 = matrix(be, 6, &[2, 1], "d16", &small(be, MI_INT16, &i16data));
            let sing: Vec<u8> = if be {
                1.5f32.to_be_bytes()
            } else {
                1.5f32.to_le_bytes()
            }
            .to_vec();
            let cplx = matrix(
                be,
                7 | 0x800,
                &[1, 1],
                "cplx",
                &[small(be, MI_SINGLE, &sing), small(be, MI_INT8, &[0xfe])].concat(),
            );
            let utf8 = matrix(be, 4, &[1, 3], "u", &elem(be, MI_UTF8, "aé€".as_bytes()));
            let empty_field = {
                // struct with one field holding MATLAB's empty miMATRIX
                let mut body = small(be, MI_INT32, &w32(be, 8));
                body.extend(elem(be, MI_INT8, b"f\0\0\0\0\0\0\0"));
                body.extend(elem(be, MI_MATRIX, &[]));
                matrix(be, 2, &[1, 1], "st", &body)
            };
            let obj = {
                let mut body = elem(be, MI_INT8, b"myclass");
                body.extend(small(be, MI_INT32, &w32(be, 4)));
                body.extend(small(be, MI_INT8, b"v\0\0\0"));
                body.extend(matrix(
                    be,
                    6,
                    &[1, 1],
                    "",
                    &elem(
                        be,
                        MI_DOUBLE,
                        &if be {
                            4.0f64.to_be_bytes()
                        } else {
                            4.0f64.to_le_bytes()
                        },
                    ),
                ));
                matrix(be, 3, &[1, 1], "obj", &body)
            };
            let func = matrix(be, 16, &[1, 1], "fh", &elem(be, MI_UINT8, &[1, 2, 3]));
            let lt = compressed(
                be,
                &matrix(be, 9 | 0x200, &[1, 2], "lt", &small(be, MI_UINT8, &[1, 0])),
            );
            file(be, &[d8, d16, cplx, utf8, empty_field, obj, func, lt])
        };
        let le = MatFile::parse(&build(false)).unwrap();
        let be = MatFile::parse(&build(true)).unwrap();
        assert_eq!(le, be);
        let g = |n: &str| le.get(n).unwrap();
        assert_eq!(
            (g("d8").class, g("d8").numeric().unwrap()),
            (MatClass::Double, &[1.0, 2.0, 255.0][..])
        );
        assert_eq!(g("d16").numeric().unwrap(), &[-5.0, 300.0]);
        assert_eq!(g("cplx").class, MatClass::Single);
        assert_eq!(g("cplx").numeric().unwrap(), &[1.5]);
        assert_eq!(g("cplx").imag().unwrap(), &[-2.0]);
        assert_eq!(g("u").as_str(), Some("aé€"));
        let f = g("st").field("f").unwrap();
        assert!(f.is_empty() && f.class == MatClass::Double);
        match &g("obj").data {
            MatData::Object { class_name, .. } => assert_eq!(class_name, "myclass"),
            other => panic!("obj is {other:?}"),
        }
        assert_eq!(g("obj").field("v").unwrap().scalar(), Some(4.0));
        assert_eq!(
            (g("fh").class, &g("fh").data),
            (MatClass::Function, &MatData::Unsupported)
        );
        assert_eq!(g("lt").class, MatClass::Logical);
        assert_eq!(g("lt").numeric().unwrap(), &[1.0, 0.0]);
    }

    #[test]
    fn truncated_files_are_errors() {
        let Some(path) = must_file("PWI_disk.mat") else {
            return;
        };
        let raw = std::fs::read(path).unwrap();
        let flat = inflate_all(&raw);
        for bytes in [&raw, &flat] {
            let ok_cuts = top_level_boundaries(bytes);
            let cuts = (0..400)
                .chain((400..bytes.len()).step_by(997))
                .chain(bytes.len() - 16..bytes.len());
            for cut in cuts {
                match parse_no_panic(&bytes[..cut]) {
                    Err(e) => assert!(!e.to_string().is_empty()),
                    Ok(_) => assert!(ok_cuts.contains(&cut), "truncation at {cut} was accepted"),
                }
            }
        }
        let err = MatFile::parse(&flat[..flat.len() - 1000])
            .unwrap_err()
            .to_string();
        println!("{err}");
        assert!(err.contains("truncated") && err.contains("remain"), "{err}");
        let err = MatFile::parse(&raw[..raw.len() - 100])
            .unwrap_err()
            .to_string();
        println!("{err}");
    }

    #[test]
    fn random_corruption_never_panics() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut inputs: Vec<(Vec<u8>, usize)> =
            vec![(SCIPY_V5.to_vec(), 3000), (SCIPY_V7.to_vec(), 1000)];
        if let Some(path) = must_file("PWI_disk.mat") {
            let raw = std::fs::read(path).unwrap();
            let mut flat = inflate_all(&raw);
            // Keep the whole param struct but only a sliver of RF's data, so
            // that corruption lands in structure rather than in samples.
            let param_at = top_level_boundaries(&raw)[1];
            let param = inflate(&raw[param_at + 8..], param_at).unwrap();
            flat.truncate(HEADER_LEN);
            flat.extend(param);
            inputs.push((raw, 200));
            inputs.push((flat, 1000));
        }
        for (orig, iterations) in inputs {
            for _ in 0..iterations {
                let mut b = orig.clone();
                for _ in 0..1 + rng.below(8) {
                    let at = HEADER_LEN.min(b.len() - 1)
                        + rng.below(b.len() - HEADER_LEN.min(b.len() - 1));
                    b[at] = match rng.below(4) {
                        0 => 0,
                        1 => 0xff,
                        _ => rng.next() as u8,
                    };
                }
                let _ = parse_no_panic(&b);
            }
        }
    }

    #[test]
    fn not_a_mat_file() {
        let e = MatFile::parse(b"hello world").unwrap_err();
        assert!(matches!(e, MatError::NotMatFile(_)), "{e}");
        assert!(e.to_string().contains("128-byte"), "{e}");
        let e = MatFile::parse(&[b'x'; 300]).unwrap_err().to_string();
        assert!(e.contains("'IM' or 'MI'"), "{e}");
        let e = MatFile::parse(b"\x89HDF\r\n\x1a\n and more")
            .unwrap_err()
            .to_string();
        assert!(e.contains("HDF5"), "{e}");
        let e = MatFile::open(Path::new("/nonexistent/x.mat"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/x.mat"), "{e}");
    }

    #[test]
    fn v73_is_refused_clearly() {
        let mut f = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .".to_vec();
        f.resize(116, b' ');
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&0x0200u16.to_le_bytes());
        f.extend_from_slice(b"IM");
        f.resize(512, 0);
        f.extend_from_slice(b"\x89HDF\r\n\x1a\n");
        f.resize(1024, 0);
        let e = MatFile::parse(&f).unwrap_err();
        assert!(matches!(e, MatError::V73));
        let msg = e.to_string();
        assert!(msg.contains("v7.3") && msg.contains("HDF5"), "{msg}");
        // Identified by the version field even with an unusual header text.
        f[..10].copy_from_slice(b"MATLAB 9.9");
        assert!(matches!(MatFile::parse(&f), Err(MatError::V73)));
    }

    #[test]
    fn hostile_headers_are_bounded() {
        // Element claims 4 GiB.
        let mut f = header(false, "MATLAB 5.0");
        f.extend_from_slice(&w32(false, MI_MATRIX));
        f.extend_from_slice(&w32(false, u32::MAX));
        f.extend_from_slice(&[0; 16]);
        let e = MatFile::parse(&f).unwrap_err().to_string();
        assert!(
            e.contains("header says 4294967295 bytes, 16 remain") && e.contains("byte 128"),
            "{e}"
        );

        // Dimensions whose product overflows.
        let f = file(
            false,
            &[matrix(
                false,
                6,
                &[i32::MAX, i32::MAX, i32::MAX],
                "x",
                &elem(false, MI_DOUBLE, &[]),
            )],
        );
        assert!(MatFile::parse(&f)
            .unwrap_err()
            .to_string()
            .contains("overflow"));
        // A cell claiming 4 billion elements but holding none: fails at the first.
        let f = file(false, &[matrix(false, 1, &[65536, 65536], "c", &[])]);
        let e = MatFile::parse(&f).unwrap_err().to_string();
        assert!(e.contains("c{1}"), "{e}");
        // A struct array of 2^62 elements with no fields must not spin.
        let mut body = small(false, MI_INT32, &w32(false, 32));
        body.extend(elem(false, MI_INT8, &[]));
        let f = file(
            false,
            &[matrix(false, 2, &[i32::MAX, i32::MAX], "s", &body)],
        );
        assert!(MatFile::parse(&f)
            .unwrap()
            .get("s")
            .unwrap()
            .field_names()
            .is_empty());
        // Data count disagreeing with dimensions.
        let f = file(
            false,
            &[matrix(
                false,
                6,
                &[2, 2],
                "x",
                &elem(false, MI_UINT8, &[1, 2, 3]),
            )],
        );
        let e = MatFile::parse(&f).unwrap_err().to_string();
        assert!(
            e.contains("real part has 3 values, dimensions [2, 2] need 4") && e.contains("'x'"),
            "{e}"
        );
        // Negative dimension.
        let f = file(
            false,
            &[matrix(
                false,
                6,
                &[-1, 2],
                "x",
                &elem(false, MI_DOUBLE, &[]),
            )],
        );
        assert!(MatFile::parse(&f)
            .unwrap_err()
            .to_string()
            .contains("negative dimension"));
        // Unknown class.
        let f = file(false, &[matrix(false, 99, &[1, 1], "x", &[])]);
        assert!(MatFile::parse(&f)
            .unwrap_err()
            .to_string()
            .contains("unknown array class 99"));
        // Small element claiming 7 bytes.
        let mut f = header(false, "MATLAB 5.0");
        f.extend_from_slice(&w32(false, 7 << 16 | MI_MATRIX));
        f.extend_from_slice(&[0; 4]);
        assert!(MatFile::parse(&f)
            .unwrap_err()
            .to_string()
            .contains("at most 4"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut inner = matrix(
            false,
            6,
            &[1, 1],
            "",
            &elem(false, MI_DOUBLE, &1.0f64.to_le_bytes()),
        );
        for _ in 0..1000 {
            inner = matrix(false, 1, &[1, 1], "", &inner);
        }
        let f = file(false, &[compressed(false, &inner)]);
        let e = MatFile::parse(&f).unwrap_err().to_string();
        assert!(e.contains("nested more than"), "{e}");
        // Exactly at the limit it still works.
        let mut inner = matrix(
            false,
            6,
            &[1, 1],
            "",
            &elem(false, MI_DOUBLE, &1.0f64.to_le_bytes()),
        );
        for _ in 0..MAX_DEPTH - 1 {
            inner = matrix(false, 1, &[1, 1], "", &inner);
        }
        let deepest = matrix(false, 1, &[1, 1], "deep", &inner);
        assert!(MatFile::parse(&file(false, &[deepest])).is_ok());
        let too_deep = matrix(
            false,
            1,
            &[1, 1],
            "deep",
            &matrix(false, 1, &[1, 1], "", &inner),
        );
        assert!(MatFile::parse(&file(false, &[too_deep])).is_err());
    }

    #[test]
    fn corrupt_and_truncated_zlib() {
        let el = matrix(
            false,
            6,
            &[1, 100],
            "z",
            &elem(false, MI_DOUBLE, &[7u8; 800]),
        );
        let good = file(false, &[compressed(false, &el)]);
        assert_eq!(MatFile::parse(&good).unwrap().get("z").unwrap().len(), 100);
        // Shorten the compressed element and its declared size together, so
        // only the zlib stream itself knows it is incomplete.
        let mut cut = good[..good.len() - 5].to_vec();
        let n = (cut.len() - HEADER_LEN - 8) as u32;
        cut[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&n.to_le_bytes());
        let e = MatFile::parse(&cut).unwrap_err();
        assert!(matches!(e, MatError::Decompress { offset: 128, .. }), "{e}");
        let mut bad = good.clone();
        bad[HEADER_LEN + 8] = 0x00; // zlib header byte
        assert!(matches!(
            MatFile::parse(&bad),
            Err(MatError::Decompress { .. })
        ));
    }

    // --- the public writer ---

    fn rf_and_param() -> (Vec<i16>, Vec<(&'static str, MatValue)>) {
        let rf: Vec<i16> = (0..20 * 4 * 2).map(|i| (i as i16 - 80) * 397).collect();
        let param = MatValue::Struct(vec![
            ("fs".into(), MatValue::scalar(20e6)),
            ("fc".into(), MatValue::scalar(5.2e6)),
            ("pitch".into(), MatValue::scalar(3e-4)),
            ("c".into(), MatValue::scalar(1540.0)),
            ("t0".into(), MatValue::scalar(-1.25e-6)),
            (
                "TXdelay".into(),
                MatValue::row(vec![0.0, 1e-7, 2.5e-7, 3e-7]),
            ),
        ]);
        let vars = vec![
            (
                "RF",
                MatValue::I16 {
                    dims: vec![20, 4, 2],
                    data: rf.clone(),
                },
            ),
            ("param", param),
        ];
        (rf, vars)
    }

    #[test]
    fn writer_round_trips_rf_and_param() {
        let (rf, vars) = rf_and_param();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rf.mat");
        write_mat(&path, &vars).unwrap();
        // Only the file itself is left, no temporary beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let f = MatFile::open(&path).unwrap();
        assert_eq!(f.names().collect::<Vec<_>>(), ["RF", "param"]);
        let a = f.get("RF").unwrap();
        assert_eq!(
            (a.class, a.dims.as_slice()),
            (MatClass::Int16, &[20usize, 4, 2][..])
        );
        let want: Vec<f64> = rf.iter().map(|&v| v as f64).collect();
        assert_eq!(a.numeric().unwrap(), want.as_slice());

        let p = f.get("param").unwrap();
        assert_eq!(
            (p.class, p.dims.as_slice()),
            (MatClass::Struct, &[1usize, 1][..])
        );
        assert_eq!(p.field_names(), ["fs", "fc", "pitch", "c", "t0", "TXdelay"]);
        let s = |n: &str| p.field(n).unwrap().scalar().unwrap();
        assert_eq!(
            (s("fs"), s("fc"), s("pitch"), s("c"), s("t0")),
            (20e6, 5.2e6, 3e-4, 1540.0, -1.25e-6)
        );
        let tx = p.field("TXdelay").unwrap();
        assert_eq!(
            (tx.class, tx.dims.as_slice()),
            (MatClass::Double, &[1usize, 4][..])
        );
        assert_eq!(tx.numeric().unwrap(), &[0.0, 1e-7, 2.5e-7, 3e-7]);
        assert_eq!(std::fs::read(&path).unwrap(), mat_bytes(&vars).unwrap());
    }

    #[test]
    fn writer_round_trips_every_value_kind() {
        let nested = MatValue::Struct(vec![
            (
                "q".into(),
                MatValue::F64 {
                    dims: vec![2, 2],
                    data: vec![1.0, 3.0, 2.0, -0.0],
                },
            ),
            ("name".into(), MatValue::Char("L11-5v µ€😀".into())),
            ("none".into(), MatValue::Char(String::new())),
            (
                "e".into(),
                MatValue::F64 {
                    dims: vec![0, 3],
                    data: vec![],
                },
            ),
            ("inner".into(), MatValue::Struct(vec![])),
        ]);
        let vars = [
            (
                "img",
                MatValue::U8 {
                    dims: vec![3, 2],
                    data: vec![0, 1, 127, 128, 254, 255],
                },
            ),
            (
                "col",
                MatValue::F64 {
                    dims: vec![3],
                    data: vec![f64::NAN, f64::INFINITY, -1e300],
                },
            ),
            (
                "i2",
                MatValue::I16 {
                    dims: vec![1, 2],
                    data: vec![i16::MIN, i16::MAX],
                },
            ),
            ("st", nested),
        ];
        let f = MatFile::parse(&mat_bytes(&vars).unwrap()).unwrap();
        let g = |n: &str| f.get(n).unwrap();
        assert_eq!(
            (g("img").class, g("img").dims.as_slice()),
            (MatClass::UInt8, &[3usize, 2][..])
        );
        assert_eq!(
            g("img").numeric().unwrap(),
            &[0.0, 1.0, 127.0, 128.0, 254.0, 255.0]
        );
        // One dimension is padded to a column, as MATLAB has no 1-D arrays.
        assert_eq!(g("col").dims, [3, 1]);
        let col = g("col").numeric().unwrap();
        assert!(col[0].is_nan() && col[1] == f64::INFINITY && col[2] == -1e300);
        // Two int16 values take the 4-byte small element form.
        assert_eq!(g("i2").numeric().unwrap(), &[-32768.0, 32767.0]);
        let st = g("st");
        assert_eq!(st.field_names(), ["q", "name", "none", "e", "inner"]);
        assert_eq!(
            st.field("q").unwrap().numeric().unwrap(),
            &[1.0, 3.0, 2.0, -0.0]
        );
        assert_eq!(st.field("name").unwrap().as_str(), Some("L11-5v µ€😀"));
        assert_eq!(
            st.field("name").unwrap().dims,
            [1, 11],
            "UTF-16 code units, as MATLAB counts"
        );
        assert_eq!(
            (
                st.field("none").unwrap().as_str(),
                st.field("none").unwrap().dims.as_slice()
            ),
            (Some(""), &[0usize, 0][..])
        );
        assert_eq!(st.field("e").unwrap().dims, [0, 3]);
        assert!(st.field("inner").unwrap().field_names().is_empty());
    }

    /// scipy.io.savemat wrote `x = 2.5` into the fixture; ours must be the
    /// same bytes, an independent check of the element layout.
    #[test]
    fn writer_matches_scipy_bytes() {
        let ours = mat_bytes(&[("x", MatValue::scalar(2.5))]).unwrap();
        assert_eq!(ours.len(), HEADER_LEN + 64);
        assert_eq!(&ours[HEADER_LEN..], &SCIPY_V5[HEADER_LEN..HEADER_LEN + 64]);
        assert_eq!(&ours[124..128], &SCIPY_V5[124..128]);
    }

    #[test]
    fn writer_refuses_what_matlab_cannot_load() {
        let err = |vars: &[(&str, MatValue)]| mat_bytes(vars).unwrap_err().to_string();
        let e = err(&[(
            "RF",
            MatValue::F64 {
                dims: vec![2, 3],
                data: vec![0.0; 5],
            },
        )]);
        assert!(
            e.contains("'RF'") && e.contains("5 values") && e.contains("[2, 3]"),
            "{e}"
        );
        let long = "n".repeat(64);
        for bad in ["", "1x", "a b", "é", long.as_str()] {
            let e = err(&[(bad, MatValue::scalar(1.0))]);
            assert!(e.contains("not a MATLAB name"), "{bad}: {e}");
        }
        let e = err(&[("x", MatValue::scalar(1.0)), ("x", MatValue::scalar(2.0))]);
        assert!(e.contains("'x'") && e.contains("twice"), "{e}");
        let st = MatValue::Struct(vec![(
            "ok".into(),
            MatValue::Struct(vec![("_no".into(), MatValue::scalar(0.0))]),
        )]);
        let e = err(&[("param", st)]);
        assert!(e.contains("'param.ok._no'"), "{e}");
        let mut deep = MatValue::scalar(1.0);
        for _ in 0..=MAX_DEPTH {
            deep = MatValue::Struct(vec![("f".into(), deep)]);
        }
        assert!(err(&[("d", deep)]).contains("nested more than"));
        let e = err(&[(
            "big",
            MatValue::U8 {
                dims: vec![1 << 31, 1],
                data: vec![],
            },
        )]);
        assert!(e.contains("exceeds"), "{e}");
    }

    #[test]
    fn write_mat_failures_leave_nothing() {
        let (_, vars) = rf_and_param();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/rf.mat");
        let e = write_mat(&missing, &vars).unwrap_err();
        assert!(
            matches!(e, MatError::Write { .. }) && e.to_string().contains("no/such/dir/rf.mat"),
            "{e}"
        );
        let path = dir.path().join("bad.mat");
        write_mat(&path, &[("x", MatValue::row(vec![]))]).unwrap();
        let e = write_mat(&path, &[("x y", MatValue::scalar(0.0))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.mat") && e.contains("'x y'"), "{e}");
        // The earlier good file is untouched by the refused write.
        assert_eq!(
            MatFile::open(&path).unwrap().names().collect::<Vec<_>>(),
            ["x"]
        );
        // A directory in the way: the rename fails, the temporary goes.
        let sub = dir.path().join("sub.mat");
        std::fs::create_dir(&sub).unwrap();
        let e = write_mat(&sub, &vars).unwrap_err();
        assert!(e.to_string().contains("sub.mat"), "{e}");
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["bad.mat", "sub.mat"], "{left:?}");
        // Overwriting replaces the file whole.
        write_mat(&path, &vars).unwrap();
        assert_eq!(
            MatFile::open(&path).unwrap().names().collect::<Vec<_>>(),
            ["RF", "param"]
        );
    }

    const SCIPY_V5: &[u8] = &[
        0x4d, 0x41, 0x54, 0x4c, 0x41, 0x42, 0x20, 0x35, 0x2e, 0x30, 0x20, 0x4d, 0x41, 0x54, 0x2d,
        0x66, 0x69, 0x6c, 0x65, 0x20, 0x50, 0x6c, 0x61, 0x74, 0x66, 0x6f, 0x72, 0x6d, 0x3a, 0x20,
        0x70, 0x6f, 0x73, 0x69, 0x78, 0x2c, 0x20, 0x43, 0x72, 0x65, 0x61, 0x74, 0x65, 0x64, 0x20,
        0x6f, 0x6e, 0x3a, 0x20, 0x53, 0x75, 0x6e, 0x20, 0x4e, 0x6f, 0x76, 0x20, 0x32, 0x39, 0x20,
        0x31, 0x34, 0x3a, 0x31, 0x32, 0x3a, 0x31, 0x33, 0x20, 0x32, 0x30, 0x32, 0x36, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x49, 0x4d, 0x0e, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00,
        0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x78, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x40, 0x0e, 0x00, 0x00,
        0x00, 0x38, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x08, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x02,
        0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x69, 0x38, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x01, 0x04, 0xfe, 0x05, 0x03, 0x80, 0x00,
        0x00, 0x0e, 0x00, 0x00, 0x00, 0x58, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00,
        0x00, 0x00, 0x06, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,
        0x7a, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0xf0, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0xc0, 0x09, 0x00,
        0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0xd0, 0xbf, 0x0e, 0x00, 0x00, 0x00, 0x30, 0x00, 0x00, 0x00,
        0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x09, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x62, 0x00, 0x00, 0x00, 0x02, 0x00, 0x03, 0x00, 0x01,
        0x00, 0x01, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00,
        0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x01, 0x00, 0x73, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x68,
        0xc3, 0xa9, 0x6c, 0x6c, 0x6f, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00,
        0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x63, 0x6d, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x06,
        0x00, 0x00, 0x00, 0x61, 0x63, 0x65, 0x62, 0x64, 0x66, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00,
        0x60, 0x01, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x73, 0x74, 0x00, 0x00, 0x05,
        0x00, 0x04, 0x00, 0x06, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x12, 0x00, 0x00, 0x00,
        0x61, 0x00, 0x00, 0x00, 0x00, 0x00, 0x69, 0x6e, 0x6e, 0x65, 0x72, 0x00, 0x6e, 0x61, 0x6d,
        0x65, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x38, 0x00,
        0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00,
        0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, 0x0e, 0x00,
        0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x02,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x05, 0x00, 0x04, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x71, 0x00,
        0x00, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08,
        0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x40, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x40,
        0x0e, 0x00, 0x00, 0x00, 0x30, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00,
        0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x10, 0x00, 0x02, 0x00, 0x78, 0x79, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00,
        0xb8, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x73, 0x61, 0x00, 0x00, 0x05,
        0x00, 0x04, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x6b, 0x00, 0x00, 0x00,
        0x0e, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00,
        0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xf0, 0x3f, 0x0e, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00,
        0x00, 0x08, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00,
        0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x0e, 0x00, 0x00, 0x00, 0xd8, 0x00, 0x00,
        0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x63, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00,
        0x38, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09,
        0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f,
        0x0e, 0x00, 0x00, 0x00, 0x30, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00,
        0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x10, 0x00, 0x03, 0x00, 0x73, 0x74, 0x72, 0x00, 0x0e, 0x00, 0x00, 0x00,
        0x30, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x30, 0x00, 0x00, 0x00,
        0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x65, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x78, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00,
        0x00, 0x08, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x02, 0x00, 0x73, 0x70, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x05, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x18, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xf8, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0xc0, 0x0e, 0x00, 0x00, 0x00,
        0x40, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x03, 0x00, 0x69, 0x36, 0x34, 0x00, 0x0c,
        0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
        0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00,
        0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x03, 0x00, 0x75, 0x36, 0x34, 0x00, 0x0d, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x0e, 0x00, 0x00,
        0x00, 0x38, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x07, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x03, 0x00, 0x66, 0x33, 0x32, 0x00,
        0x07, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0xa0,
        0xbf, 0x0e, 0x00, 0x00, 0x00, 0x30, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00,
        0x00, 0x00, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x03, 0x00,
        0x75, 0x31, 0x36, 0x00, 0x04, 0x00, 0x02, 0x00, 0xff, 0xff, 0x00, 0x00,
    ];
    const SCIPY_V7: &[u8] = &[
        0x4d, 0x41, 0x54, 0x4c, 0x41, 0x42, 0x20, 0x35, 0x2e, 0x30, 0x20, 0x4d, 0x41, 0x54, 0x2d,
        0x66, 0x69, 0x6c, 0x65, 0x20, 0x50, 0x6c, 0x61, 0x74, 0x66, 0x6f, 0x72, 0x6d, 0x3a, 0x20,
        0x70, 0x6f, 0x73, 0x69, 0x78, 0x2c, 0x20, 0x43, 0x72, 0x65, 0x61, 0x74, 0x65, 0x64, 0x20,
        0x6f, 0x6e, 0x3a, 0x20, 0x53, 0x75, 0x6e, 0x20, 0x4e, 0x6f, 0x76, 0x20, 0x32, 0x39, 0x20,
        0x31, 0x34, 0x3a, 0x31, 0x32, 0x3a, 0x31, 0x33, 0x20, 0x32, 0x30, 0x32, 0x36, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x49, 0x4d, 0x0f, 0x00, 0x00, 0x00, 0x25, 0x00, 0x00,
        0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60, 0x60, 0xb0, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x80, 0xd2,
        0x20, 0xc0, 0x0a, 0xe5, 0x33, 0xc2, 0x31, 0x23, 0x43, 0x05, 0x90, 0xe6, 0x84, 0x8a, 0x43,
        0x00, 0x8b, 0x03, 0x00, 0x21, 0xda, 0x01, 0x39, 0x0f, 0x00, 0x00, 0x00, 0x2d, 0x00, 0x00,
        0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60, 0x60, 0xb0, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x80, 0x62,
        0x10, 0x60, 0x85, 0xb2, 0x99, 0x80, 0x98, 0x19, 0x88, 0x19, 0x81, 0xac, 0x4c, 0x0b, 0x10,
        0x0d, 0x51, 0xcb, 0xc8, 0xf2, 0x8f, 0x95, 0xb9, 0x81, 0x81, 0x01, 0x00, 0x2c, 0x81, 0x02,
        0xa5, 0x0f, 0x00, 0x00, 0x00, 0x37, 0x00, 0x00, 0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60, 0x60,
        0x88, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x00, 0xd1, 0x20, 0x02, 0x08, 0x58, 0xa1, 0x7c, 0x46,
        0x20, 0x66, 0x02, 0xd3, 0x8c, 0x0c, 0x55, 0x40, 0x9a, 0x13, 0x88, 0x05, 0x18, 0x60, 0xe0,
        0x83, 0x3d, 0x84, 0xe6, 0x39, 0x80, 0x2a, 0xce, 0xe0, 0x00, 0xa1, 0x2e, 0xec, 0x07, 0x00,
        0x92, 0xdc, 0x05, 0x0b, 0x0f, 0x00, 0x00, 0x00, 0x29, 0x00, 0x00, 0x00, 0x78, 0x9c, 0xe3,
        0x63, 0x60, 0x60, 0x30, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x00, 0x62, 0x4e, 0x26, 0x06, 0x30,
        0x60, 0x85, 0xf2, 0x19, 0x81, 0x98, 0x19, 0x4c, 0x33, 0x32, 0x24, 0x01, 0x69, 0x26, 0x20,
        0x0f, 0xc4, 0x06, 0x00, 0x17, 0xf0, 0x00, 0xd4, 0x0f, 0x00, 0x00, 0x00, 0x2d, 0x00, 0x00,
        0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60, 0x60, 0xb0, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x00, 0x62,
        0x16, 0x06, 0x08, 0x60, 0x85, 0xf2, 0x19, 0xa1, 0x6c, 0x46, 0x20, 0x2c, 0x06, 0xd2, 0x02,
        0x50, 0xb5, 0x19, 0x87, 0x57, 0xe6, 0xe4, 0xe4, 0x33, 0x30, 0x00, 0x00, 0x33, 0x3a, 0x04,
        0x12, 0x0f, 0x00, 0x00, 0x00, 0x30, 0x00, 0x00, 0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60, 0x60,
        0xb0, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x00, 0x62, 0x16, 0x06, 0x08, 0x60, 0x85, 0xf2, 0x99,
        0x81, 0x98, 0x09, 0x88, 0x19, 0x81, 0x64, 0x72, 0x2e, 0x03, 0x83, 0x00, 0x54, 0x6d, 0x62,
        0x72, 0x6a, 0x52, 0x4a, 0x1a, 0x03, 0x03, 0x00, 0x35, 0x36, 0x03, 0xa9, 0x0f, 0x00, 0x00,
        0x00, 0x84, 0x00, 0x00, 0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60, 0x60, 0x48, 0x60, 0x64, 0x60,
        0x60, 0x03, 0xd2, 0x1c, 0x40, 0xcc, 0xc4, 0x00, 0x01, 0xac, 0x50, 0x3e, 0x23, 0x1c, 0x33,
        0x31, 0x14, 0x97, 0x80, 0xc4, 0x59, 0xc0, 0x6a, 0x41, 0x62, 0x42, 0x40, 0x9c, 0x08, 0x56,
        0x9d, 0x99, 0x97, 0x97, 0x5a, 0xc4, 0x90, 0x97, 0x98, 0x9b, 0x0a, 0xd5, 0xce, 0xc0, 0x07,
        0xc4, 0x16, 0x0c, 0x08, 0x73, 0xd9, 0x70, 0x9a, 0x0b, 0x01, 0x9c, 0x50, 0x71, 0x08, 0xf8,
        0x60, 0x0f, 0xd2, 0x3f, 0x81, 0x81, 0x18, 0x77, 0xc1, 0xc4, 0x59, 0xc0, 0x6a, 0x40, 0xee,
        0x2c, 0x84, 0xda, 0x1f, 0x80, 0xc7, 0x7e, 0x26, 0x28, 0x46, 0xb6, 0x5f, 0x01, 0xc9, 0x7e,
        0x08, 0xcd, 0xe1, 0x00, 0x15, 0x80, 0xd2, 0x02, 0x0e, 0x20, 0x73, 0x0d, 0x90, 0xcc, 0x65,
        0xc1, 0xe2, 0x2e, 0x64, 0x73, 0x05, 0x80, 0xbc, 0x8a, 0x4a, 0x06, 0x06, 0x00, 0x00, 0x37,
        0x0c, 0xb8, 0x0f, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60,
        0x60, 0xd8, 0x01, 0xc4, 0x6c, 0x40, 0xcc, 0x01, 0xc4, 0x4c, 0x0c, 0x10, 0xc0, 0x0a, 0xe5,
        0x33, 0x42, 0xc5, 0x18, 0x81, 0x64, 0x71, 0x22, 0x48, 0x9c, 0x05, 0xce, 0xcf, 0x06, 0xd2,
        0x7c, 0x40, 0x6c, 0x81, 0xa4, 0x9f, 0x0d, 0x8b, 0x7e, 0x18, 0x06, 0x01, 0x4e, 0xa8, 0x38,
        0x04, 0x7c, 0xb0, 0xa7, 0x4c, 0x3f, 0x83, 0x03, 0x00, 0xff, 0x69, 0x04, 0x9c, 0x0f, 0x00,
        0x00, 0x00, 0x4e, 0x00, 0x00, 0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60, 0x60, 0xb8, 0x01, 0xc4,
        0x6c, 0x40, 0xcc, 0x01, 0xc4, 0x8c, 0x0c, 0x10, 0xc0, 0x8a, 0xc4, 0x67, 0x06, 0xd3, 0x8c,
        0x0c, 0xc9, 0x40, 0x9a, 0x0f, 0x88, 0x2d, 0x90, 0xd4, 0xb3, 0x61, 0x51, 0xcf, 0x88, 0x64,
        0x0e, 0x27, 0x54, 0x1c, 0x02, 0x3e, 0xd8, 0x83, 0xf4, 0x1b, 0x20, 0xe9, 0x67, 0xc1, 0x69,
        0x1f, 0x04, 0x08, 0x00, 0x79, 0xc5, 0x25, 0x45, 0x0c, 0xe8, 0xfa, 0xd0, 0xed, 0x85, 0x01,
        0x64, 0x7b, 0x41, 0x00, 0x00, 0x89, 0x59, 0x05, 0x4d, 0x0f, 0x00, 0x00, 0x00, 0x24, 0x00,
        0x00, 0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60, 0x60, 0x30, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x80,
        0xd2, 0x20, 0xc0, 0x0a, 0xe5, 0x83, 0x00, 0x33, 0x10, 0x33, 0x02, 0x61, 0x2a, 0x90, 0xe6,
        0x84, 0x8a, 0x01, 0x00, 0x17, 0x56, 0x00, 0xd3, 0x0f, 0x00, 0x00, 0x00, 0x43, 0x00, 0x00,
        0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60, 0x60, 0xa8, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x00, 0x62,
        0x56, 0x20, 0x66, 0x86, 0xd2, 0x1c, 0x50, 0x36, 0x08, 0x33, 0x32, 0x30, 0x31, 0x14, 0x17,
        0x40, 0xc4, 0x79, 0xc0, 0x7c, 0x08, 0x60, 0x82, 0xd2, 0x20, 0x71, 0x01, 0x28, 0x9b, 0x11,
        0x2a, 0x0e, 0xd2, 0xc7, 0x09, 0xc4, 0x12, 0x0c, 0x70, 0xe0, 0x00, 0xa1, 0x7e, 0xd8, 0x43,
        0x68, 0x8e, 0x03, 0x00, 0xbd, 0xcf, 0x04, 0x25, 0x0f, 0x00, 0x00, 0x00, 0x31, 0x00, 0x00,
        0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60, 0x60, 0x70, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x00, 0x62,
        0x3e, 0x06, 0x08, 0x60, 0x85, 0xf2, 0x19, 0x81, 0x98, 0x09, 0x4c, 0x33, 0x33, 0x64, 0x9a,
        0x99, 0x30, 0xf0, 0x00, 0xd9, 0x02, 0x50, 0x35, 0x0c, 0xff, 0xff, 0xff, 0x67, 0x87, 0x32,
        0x01, 0x55, 0xd2, 0x04, 0x72, 0x0f, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x78, 0x9c,
        0xe3, 0x63, 0x60, 0x60, 0xb0, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x00, 0x62, 0x7e, 0x06, 0x08,
        0x60, 0x85, 0xf2, 0x19, 0xe1, 0x98, 0x99, 0xa1, 0xd4, 0xcc, 0x84, 0x81, 0x17, 0x2a, 0x0e,
        0x01, 0x2c, 0x0c, 0x00, 0x2b, 0x24, 0x01, 0x6f, 0x0f, 0x00, 0x00, 0x00, 0x2e, 0x00, 0x00,
        0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60, 0x60, 0xb0, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x00, 0x62,
        0x76, 0x06, 0x08, 0x60, 0x85, 0xf2, 0x19, 0x81, 0x98, 0x09, 0x4c, 0x33, 0x33, 0xa4, 0x19,
        0x1b, 0x81, 0xe5, 0x39, 0x20, 0x4a, 0xec, 0x19, 0x18, 0x16, 0xec, 0x07, 0x00, 0x2b, 0x09,
        0x02, 0xe8, 0x0f, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x78, 0x9c, 0xe3, 0x63, 0x60,
        0x60, 0x30, 0x00, 0x62, 0x36, 0x20, 0xe6, 0x00, 0x62, 0x6e, 0x06, 0x08, 0x60, 0x85, 0xf2,
        0x19, 0xe1, 0x98, 0x99, 0xa1, 0xd4, 0xd0, 0x8c, 0x81, 0x85, 0x81, 0x89, 0xe1, 0xff, 0x7f,
        0x06, 0x06, 0x00, 0x23, 0xfe, 0x03, 0x4b,
    ];
}
