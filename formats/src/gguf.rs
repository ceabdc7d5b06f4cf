//! A GGUF (v2/v3) reader: metadata, tensor directory, and dequantisation to `f32`.
//!
//! Layout, as the format defines it: magic `GGUF`, version, tensor count, metadata count, the
//! metadata key/values, the tensor infos (name, dims innermost first, type, offset), then the
//! tensor data starting at the next multiple of `general.alignment` (default 32). Every read is
//! bounds-checked: a truncated or corrupt file is an [`Error::Gguf`] naming the file, the byte
//! offset and what was being read, never a panic, and no allocation is sized by an unchecked
//! count.
//!
//! Supported tensor types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
//! Q6_K, Q8_K, IQ4_NL, with the type numbers and block layouts of ggml (`ggml-common.h`). Any
//! other type (Q8_1, the IQ1/IQ2/IQ3 grids, IQ4_XS, TQ1_0/TQ2_0, MXFP4, ...) parses, but reading
//! its data is an [`Error::Tensor`] naming the tensor and the type number.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const MAGIC: u32 = 0x4655_4747; // "GGUF" little-endian
const DEFAULT_ALIGNMENT: u64 = 32;
/// The largest `general.alignment` accepted (llama.cpp writes 32; a page is 4096).
const MAX_ALIGNMENT: u64 = 1 << 20;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `float32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// `string`.
    String(String),
    /// `array` (homogeneous).
    Array(Vec<Value>),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float64`.
    F64(f64),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(u64::from(v)),
            Value::U16(v) => Some(u64::from(v)),
            Value::U32(v) => Some(u64::from(v)),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(f64::from(v)),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64).or(match *self {
                Value::I8(v) => Some(f64::from(v)),
                Value::I16(v) => Some(f64::from(v)),
                Value::I32(v) => Some(f64::from(v)),
                Value::I64(v) => Some(v as f64),
                _ => None,
            }),
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A GGML tensor type (the ones ponder reads, and the others by number for error messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// 16-bit brain float.
    Bf16,
    /// Blocks of 32: f16 scale + 32 × i8.
    Q8_0,
    /// Blocks of 32: f16 scale + 16 bytes of 4-bit values (offset 8).
    Q4_0,
    /// Blocks of 32: f16 scale, f16 min + 16 bytes of 4-bit values.
    Q4_1,
    /// Blocks of 32: f16 scale, 32 high bits (a little-endian `u32`) + 16 bytes of low nibbles;
    /// 5-bit values offset 16.
    Q5_0,
    /// Blocks of 32: f16 scale, f16 min, 32 high bits + 16 bytes of low nibbles.
    Q5_1,
    /// Super-blocks of 256: 16 bytes of 4-bit sub-scales and mins, 64 bytes of 2-bit values, f16
    /// scale, f16 min.
    Q2K,
    /// Super-blocks of 256: 32 bytes of high-bit masks, 64 bytes of 2-bit low values, 12 bytes of
    /// 6-bit sub-scales, f16 scale.
    Q3K,
    /// Super-blocks of 256: f16 scale and min, 12 bytes of 6-bit sub-scales/mins, 128 bytes of
    /// 4-bit values.
    Q4K,
    /// Super-blocks of 256: f16 scale and min, 12 bytes of 6-bit sub-scales/mins, 32 bytes of
    /// high bits, 128 bytes of low nibbles.
    Q5K,
    /// Super-blocks of 256: 128 bytes low nibbles, 64 bytes high 2 bits, 16 × i8 scales, f16 scale.
    Q6K,
    /// Super-blocks of 256: f32 scale, 256 × i8, 16 × i16 block sums (unused here).
    Q8K,
    /// Blocks of 32: f16 scale + 16 bytes of 4-bit indices into a fixed non-linear table.
    Iq4Nl,
    /// Any other type (not supported for reading).
    Other(u32),
}

impl GgmlType {
    /// The type of ggml type number `t` (as a GGUF tensor info stores it).
    pub fn from_u32(t: u32) -> Self {
        match t {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            15 => GgmlType::Q8K,
            20 => GgmlType::Iq4Nl,
            30 => GgmlType::Bf16,
            other => GgmlType::Other(other),
        }
    }

    /// `(elements per block, bytes per block)`, `None` for unsupported types.
    pub fn block(self) -> Option<(u64, u64)> {
        Some(match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::Bf16 => (1, 2),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q2K => (256, 84),
            GgmlType::Q3K => (256, 110),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
            GgmlType::Q8K => (256, 292),
            GgmlType::Iq4Nl => (32, 18),
            GgmlType::Other(_) => return None,
        })
    }
}

/// One entry of the tensor directory.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`, ...).
    pub name: String,
    /// Dimensions as GGUF lists them: innermost (contiguous) first.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Byte offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The shape in row-major order (outermost first), as Burn and PyTorch write it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed GGUF file, its bytes in memory.
#[derive(Debug)]
pub struct Gguf {
    path: PathBuf,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata, by key.
    pub metadata: BTreeMap<String, Value>,
    /// The tensor directory, in file order.
    pub tensors: Vec<TensorInfo>,
    bytes: Vec<u8>,
    data_start: u64,
}

struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &str) -> Error {
        Error::Gguf {
            path: self.path.to_path_buf(),
            offset: self.pos as u64,
            message: what.to_string(),
        }
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let end = (self.pos as u64)
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len() as u64)
            .ok_or_else(|| self.err(&format!("file ends inside {what} (needs {n} bytes)")))?;
        let s = &self.bytes[self.pos..end as usize];
        self.pos = end as usize;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let at = self.pos;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| Error::Gguf {
            path: self.path.to_path_buf(),
            offset: at as u64,
            message: format!("{what} is not valid UTF-8"),
        })
    }

    /// A count of items that each take at least `min_size` bytes: refuse counts the rest of the
    /// file cannot hold, so a corrupt count never drives a huge allocation.
    fn count(&mut self, min_size: u64, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_size.max(1)) > left {
            return Err(self.err(&format!(
                "{what} {n} is larger than the rest of the file allows"
            )));
        }
        Ok(n as usize)
    }

    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.u8(key)?),
            1 => Value::I8(self.u8(key)? as i8),
            2 => Value::U16(self.u16(key)?),
            3 => Value::I16(self.u16(key)? as i16),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(self.u32(key)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(key)?)),
            7 => match self.u8(key)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(&format!("metadata `{key}`: bool byte {b}"))),
            },
            8 => Value::String(self.string(key)?),
            9 => {
                if depth > 4 {
                    return Err(self.err(&format!("metadata `{key}`: arrays nested too deep")));
                }
                let elem = self.u32(key)?;
                let n = self.count(min_value_size(elem), &format!("metadata `{key}` length"))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(self.u64(key)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(key)?)),
            other => return Err(self.err(&format!("metadata `{key}`: unknown value type {other}"))),
        })
    }
}

/// The fewest bytes a value of this type takes (for count sanity checks).
fn min_value_size(ty: u32) -> u64 {
    match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => 1,
    }
}

impl Gguf {
    /// Reads and parses a GGUF file.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; [`Error::Gguf`] for anything malformed: bad
    /// magic, unsupported version, truncation, impossible counts, tensors past the end of the
    /// file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, bytes)
    }

    /// Parses GGUF bytes (`path` is only used in error messages).
    ///
    /// # Errors
    /// As [`Gguf::open`].
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let mut c = Cursor {
            path,
            bytes: &bytes,
            pos: 0,
        };
        let magic = c.u32("the magic number")?;
        if magic != MAGIC {
            return Err(Error::Gguf {
                path: path.to_path_buf(),
                offset: 0,
                message: format!("not a GGUF file (magic {magic:#010x})"),
            });
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(c.err(&format!("GGUF version {version} is not supported (2 or 3)")));
        }
        // A tensor info takes at least 8 + 4 + 4 + 8 bytes; a key/value at least 8 + 4 + 1.
        let n_tensors = c.count(24, "tensor count")?;
        let n_kv = c.count(13, "metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("a metadata key")?;
            let ty = c.u32(&key)?;
            let v = c.value(ty, &key, 0)?;
            metadata.insert(key, v);
        }
        let mut tensors = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = c.string("a tensor name")?;
            let n_dims = c.u32(&name)?;
            if n_dims == 0 || n_dims > 8 {
                return Err(c.err(&format!("tensor `{name}` has {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&name)?);
            }
            let ty = GgmlType::from_u32(c.u32(&name)?);
            let offset = c.u64(&name)?;
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
            });
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v
                .as_u64()
                .filter(|a| a.is_power_of_two() && *a <= MAX_ALIGNMENT)
                .ok_or_else(|| {
                    c.err(&format!(
                        "general.alignment is not a power of two up to {MAX_ALIGNMENT}"
                    ))
                })?,
        };
        // No overflow: the position is at most the file's length and the alignment at most
        // `MAX_ALIGNMENT`.
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let data_len = (bytes.len() as u64).saturating_sub(data_start);
        for t in &tensors {
            let elements = t
                .dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| c.err(&format!("tensor `{}` has an impossible shape", t.name)))?;
            if let Some((per_block, block_bytes)) = t.ty.block() {
                if elements % per_block != 0 {
                    return Err(c.err(&format!(
                        "tensor `{}`: {elements} elements is not a multiple of the {per_block}-element block",
                        t.name
                    )));
                }
                let size = (elements / per_block)
                    .checked_mul(block_bytes)
                    .ok_or_else(|| {
                        c.err(&format!("tensor `{}` has an impossible shape", t.name))
                    })?;
                if t.offset.checked_add(size).is_none_or(|end| end > data_len) {
                    return Err(Error::Gguf {
                        path: path.to_path_buf(),
                        offset: data_start + t.offset,
                        message: format!(
                            "tensor `{}` ({size} bytes at data offset {}) runs past the end of the file (truncated?)",
                            t.name, t.offset
                        ),
                    });
                }
            }
        }
        Ok(Gguf {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            bytes,
            data_start,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A required metadata value.
    ///
    /// # Errors
    /// [`Error::MissingMetadata`] naming the key.
    pub fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| Error::MissingMetadata {
            path: self.path.clone(),
            key: key.into(),
        })
    }

    /// The directory entry of a tensor.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Dequantises a tensor to `f32`, returning its row-major shape and values.
    ///
    /// # Errors
    /// [`Error::Tensor`] if the tensor is missing or of an unsupported type.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self.tensor(name).ok_or_else(|| Error::Tensor {
            path: self.path.clone(),
            name: name.into(),
            message: "not in the file".into(),
        })?;
        let (per_block, block_bytes) = t.ty.block().ok_or_else(|| Error::Tensor {
            path: self.path.clone(),
            name: name.into(),
            message: format!("tensor type {:?} is not supported", t.ty),
        })?;
        let n = t.elements();
        let start = (self.data_start + t.offset) as usize;
        let len = (n / per_block * block_bytes) as usize;
        // `parse` checked that every supported tensor lies inside the file.
        let raw = &self.bytes[start..start + len];
        Ok((t.shape(), dequantize(t.ty, raw, n as usize)))
    }
}

/// IEEE half to f32.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: renormalise.
            let shift = f.leading_zeros() - 21;
            let f = (f << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (f << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K super-block.
fn q4k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// The 6-bit signed sub-scale `i` (of 16) of a Q3_K super-block: low 4 bits from the first 8
/// bytes, high 2 bits from the last 4, offset 32.
fn q3k_scale(i: usize, s: &[u8]) -> i8 {
    let low = (s[i % 8] >> (4 * (i / 8))) & 0x0f;
    let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    (low | (high << 4)) as i8 - 32
}

/// The 32 unsigned 5-bit values of a Q5_0/Q5_1 block: element `j` < 16 is the low nibble of
/// `qs[j]`, element `j + 16` its high nibble, and bit `j` of the little-endian `qh` is element
/// `j`'s fifth bit.
fn q5_values(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let bit = |j: usize| (((h >> j) & 1) as u8) << 4;
    let mut q = [0u8; 32];
    for (j, &x) in qs.iter().take(16).enumerate() {
        q[j] = (x & 0x0f) | bit(j);
        q[j + 16] = (x >> 4) | bit(j + 16);
    }
    q
}

/// The IQ4_NL code book: a 4-bit index selects one of these, times the block scale.
const IQ4_NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Dequantises `n` elements of type `ty` from `raw` (whose length matches).
///
/// The arithmetic is ggml's, in `f32` and in the same order (no fused multiply-add), so the
/// result is bit for bit what `ggml`'s `dequantize_row_*` and the `gguf` Python package give.
pub fn dequantize(ty: GgmlType, raw: &[u8], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    match ty {
        GgmlType::F32 => out.extend(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4"))),
        ),
        GgmlType::F16 => out.extend(raw.chunks_exact(2).map(|c| f16_to_f32(le16(c, 0)))),
        GgmlType::Bf16 => out.extend(
            raw.chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(le16(c, 0)) << 16)),
        ),
        GgmlType::Q8_0 => {
            for b in raw.chunks_exact(34) {
                let d = f16_to_f32(le16(b, 0));
                out.extend(b[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        GgmlType::Q4_0 => {
            for b in raw.chunks_exact(18) {
                let d = f16_to_f32(le16(b, 0));
                let q = &b[2..];
                out.extend(q.iter().map(|&x| d * (f32::from(x & 0x0f) - 8.0)));
                out.extend(q.iter().map(|&x| d * (f32::from(x >> 4) - 8.0)));
            }
        }
        GgmlType::Q4_1 => {
            for b in raw.chunks_exact(20) {
                let d = f16_to_f32(le16(b, 0));
                let m = f16_to_f32(le16(b, 2));
                let q = &b[4..];
                out.extend(q.iter().map(|&x| d * f32::from(x & 0x0f) + m));
                out.extend(q.iter().map(|&x| d * f32::from(x >> 4) + m));
            }
        }
        GgmlType::Q5_0 => {
            for b in raw.chunks_exact(22) {
                let d = f16_to_f32(le16(b, 0));
                let q = q5_values(&b[2..6], &b[6..]);
                out.extend(q.iter().map(|&x| d * (f32::from(x) - 16.0)));
            }
        }
        GgmlType::Q5_1 => {
            for b in raw.chunks_exact(24) {
                let d = f16_to_f32(le16(b, 0));
                let m = f16_to_f32(le16(b, 2));
                let q = q5_values(&b[4..8], &b[8..]);
                out.extend(q.iter().map(|&x| d * f32::from(x) + m));
            }
        }
        GgmlType::Iq4Nl => {
            for b in raw.chunks_exact(18) {
                let d = f16_to_f32(le16(b, 0));
                let q = &b[2..];
                let v = |i: u8| d * f32::from(IQ4_NL_VALUES[usize::from(i)]);
                out.extend(q.iter().map(|&x| v(x & 0x0f)));
                out.extend(q.iter().map(|&x| v(x >> 4)));
            }
        }
        GgmlType::Q2K => {
            for b in raw.chunks_exact(84) {
                let (scales, qs) = (&b[..16], &b[16..80]);
                let d = f16_to_f32(le16(b, 80));
                let dmin = f16_to_f32(le16(b, 82));
                // Each 32 bytes of `qs` hold 128 elements: 2-bit field `shift` of byte `l` is
                // element `32 * shift + l`; sub-block (16 elements) `i` has scale and min
                // `scales[i]` (low and high nibble).
                for (half, q) in qs.chunks_exact(32).enumerate() {
                    for shift in 0..4 {
                        for (l, &x) in q.iter().enumerate() {
                            let sc = scales[8 * half + 2 * shift + l / 16];
                            let dl = d * f32::from(sc & 0x0f);
                            let ml = dmin * f32::from(sc >> 4);
                            out.push(dl * f32::from((x >> (2 * shift)) & 3) - ml);
                        }
                    }
                }
            }
        }
        GgmlType::Q3K => {
            for b in raw.chunks_exact(110) {
                let (hmask, qs, scales) = (&b[..32], &b[32..96], &b[96..108]);
                let d = f16_to_f32(le16(b, 108));
                let dl: [f32; 16] = std::array::from_fn(|i| d * f32::from(q3k_scale(i, scales)));
                // As Q2_K for the low 2 bits; bit `e / 32` of `hmask[e % 32]` is element `e`'s
                // high bit, and a clear high bit means 4 is subtracted.
                for (half, q) in qs.chunks_exact(32).enumerate() {
                    for shift in 0..4 {
                        let e0 = 128 * half + 32 * shift;
                        for (l, (&x, &h)) in q.iter().zip(hmask).enumerate() {
                            let e = e0 + l;
                            let low = ((x >> (2 * shift)) & 3) as i8;
                            let v = low - 4 * i8::from((h >> (e / 32)) & 1 == 0);
                            out.push(dl[e / 16] * f32::from(v));
                        }
                    }
                }
            }
        }
        GgmlType::Q4K => {
            for b in raw.chunks_exact(144) {
                let d = f16_to_f32(le16(b, 0));
                let dmin = f16_to_f32(le16(b, 2));
                let scales = &b[4..16];
                let qs = &b[16..];
                for j in 0..4 {
                    let (s1, m1) = q4k_scale_min(2 * j, scales);
                    let (s2, m2) = q4k_scale_min(2 * j + 1, scales);
                    let q = &qs[32 * j..32 * j + 32];
                    let (d1, min1) = (d * f32::from(s1), dmin * f32::from(m1));
                    let (d2, min2) = (d * f32::from(s2), dmin * f32::from(m2));
                    out.extend(q.iter().map(|&x| d1 * f32::from(x & 0x0f) - min1));
                    out.extend(q.iter().map(|&x| d2 * f32::from(x >> 4) - min2));
                }
            }
        }
        GgmlType::Q5K => {
            for b in raw.chunks_exact(176) {
                let d = f16_to_f32(le16(b, 0));
                let dmin = f16_to_f32(le16(b, 2));
                let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..]);
                // As Q4_K, plus a fifth bit: bit `e / 32` of `qh[e % 32]` for element `e`.
                for (j, q) in qs.chunks_exact(32).enumerate() {
                    for (k, nibble) in [(0usize, 0u32), (1, 4)] {
                        let (sc, m) = q4k_scale_min(2 * j + k, scales);
                        let (dl, ml) = (d * f32::from(sc), dmin * f32::from(m));
                        let hbit = 2 * j + k;
                        out.extend(q.iter().zip(qh).map(|(&x, &h)| {
                            let v = ((x >> nibble) & 0x0f) | (((h >> hbit) & 1) << 4);
                            dl * f32::from(v) - ml
                        }));
                    }
                }
            }
        }
        GgmlType::Q8K => {
            for b in raw.chunks_exact(292) {
                let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                out.extend(b[4..260].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        GgmlType::Q6K => {
            for b in raw.chunks_exact(210) {
                let (ql, qh, sc) = (&b[..128], &b[128..192], &b[192..208]);
                let d = f16_to_f32(le16(b, 208));
                let mut y = [0f32; 256];
                for half in 0..2 {
                    let (ql, qh, sc) = (&ql[64 * half..], &qh[32 * half..], &sc[8 * half..]);
                    let y = &mut y[128 * half..];
                    for l in 0..32 {
                        let is = l / 16;
                        let q = |lo: u8, shift: u32| {
                            i32::from(lo) | ((i32::from(qh[l] >> shift) & 3) << 4)
                        };
                        let q1 = q(ql[l] & 0x0f, 0) - 32;
                        let q2 = q(ql[l + 32] & 0x0f, 2) - 32;
                        let q3 = q(ql[l] >> 4, 4) - 32;
                        let q4 = q(ql[l + 32] >> 4, 6) - 32;
                        let s = |i: usize| d * f32::from(sc[i] as i8);
                        y[l] = s(is) * q1 as f32;
                        y[l + 32] = s(is + 2) * q2 as f32;
                        y[l + 64] = s(is + 4) * q3 as f32;
                        y[l + 96] = s(is + 6) * q4 as f32;
                    }
                }
                out.extend_from_slice(&y);
            }
        }
        GgmlType::Other(_) => {}
    }
    debug_assert_eq!(out.len(), n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ponder_testkit::gguf_writer::GgufWriter;

    fn tiny() -> Vec<u8> {
        GgufWriter::new()
            .string("general.architecture", "llama")
            .u32("llama.block_count", 2)
            .f32("llama.rope.freq_base", 10000.0)
            .strings("tokenizer.ggml.tokens", &["a", "b", "ab"])
            .i32s("tokenizer.ggml.token_type", &[1, 1, 1])
            .tensor_f32("w", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .tensor_f32("v", &[4], &[0.5, -0.5, 0.25, 8.0])
            .build()
    }

    #[test]
    fn reads_what_the_writer_wrote() {
        let g = Gguf::parse(Path::new("tiny.gguf"), tiny()).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(
            g.get("general.architecture").unwrap().as_str(),
            Some("llama")
        );
        assert_eq!(g.get("llama.block_count").unwrap().as_u64(), Some(2));
        assert_eq!(
            g.get("tokenizer.ggml.tokens")
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            3
        );
        let (shape, w) = g.tensor_f32("w").unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(w, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(g.tensor_f32("v").unwrap().1, vec![0.5, -0.5, 0.25, 8.0]);
        let e = g.tensor_f32("missing").unwrap_err().to_string();
        assert!(
            e.contains("missing") && e.contains("not in the file"),
            "{e}"
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = tiny();
        for cut in 0..full.len() {
            let r = Gguf::parse(Path::new("cut.gguf"), full[..cut].to_vec());
            // Cutting only trailing zero padding after the last tensor's data can still be valid;
            // everything else must fail.
            if let Err(e) = r {
                let msg = e.to_string();
                assert!(msg.starts_with("cut.gguf"), "{msg}");
            } else {
                assert!(
                    cut >= full.len() - 16,
                    "truncated at {cut} of {} parsed",
                    full.len()
                );
            }
        }
    }

    #[test]
    fn corrupt_headers_are_named() {
        let mut b = tiny();
        b[0] = b'X';
        assert!(
            Gguf::parse(Path::new("x"), b)
                .unwrap_err()
                .to_string()
                .contains("not a GGUF")
        );
        let mut b = tiny();
        b[4] = 9;
        assert!(
            Gguf::parse(Path::new("x"), b)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
        let mut b = tiny();
        b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(
            Gguf::parse(Path::new("x"), b)
                .unwrap_err()
                .to_string()
                .contains("tensor count")
        );
    }

    /// Random blocks dequantised by the `gguf` Python package
    /// (`fixtures/reference/make_ggml_blocks.py`).
    #[test]
    fn blocks_match_the_gguf_package() {
        let sets: serde_json::Value =
            serde_json::from_str(include_str!("../../fixtures/reference/ggml_blocks.json"))
                .unwrap();
        for set in sets.as_array().unwrap() {
            let ty = match set["type"].as_str().unwrap() {
                "Q8_0" => GgmlType::Q8_0,
                "Q4_0" => GgmlType::Q4_0,
                "Q4_1" => GgmlType::Q4_1,
                "Q4_K" => GgmlType::Q4K,
                "Q6_K" => GgmlType::Q6K,
                other => panic!("unexpected type {other}"),
            };
            let hex = set["hex"].as_str().unwrap();
            let raw: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let want: Vec<f64> = set["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let got = dequantize(ty, &raw, want.len());
            assert_eq!(got.len(), want.len(), "{ty:?}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*g) - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{ty:?}[{i}]: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn half_floats_convert() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn block_formats_decode_as_specified() {
        // Q8_0: scale 0.5, values -4..27.
        let mut q8 = 0x3800u16.to_le_bytes().to_vec();
        q8.extend((0..32).map(|i| (i as i8 - 4) as u8));
        let v = dequantize(GgmlType::Q8_0, &q8, 32);
        assert_eq!(v[0], -2.0);
        assert_eq!(v[31], 13.5);
        // Q4_1: d = 1, m = -8: element i (low nibble) = i - 8, element 16 + i (high) = 15 - i - 8.
        let mut q41 = 0x3c00u16.to_le_bytes().to_vec();
        q41.extend(0xc800u16.to_le_bytes());
        q41.extend((0..16).map(|i| (i as u8) | ((15 - i as u8) << 4)));
        let v = dequantize(GgmlType::Q4_1, &q41, 32);
        assert_eq!(v[3], -5.0);
        assert_eq!(v[16 + 3], 4.0);
        // Q4_0: d = 2, nibble 8 is zero.
        let mut q40 = 0x4000u16.to_le_bytes().to_vec();
        q40.extend(std::iter::repeat_n(0x9_8u8, 16));
        let v = dequantize(GgmlType::Q4_0, &q40, 32);
        assert!(v[..16].iter().all(|&x| x == 0.0) && v[16..].iter().all(|&x| x == 2.0));
    }
}
