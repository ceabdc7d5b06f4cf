//! GGUF files built in memory (a test double's tool): tests of the reader and the loaders on
//! tiny models, and seeds for fuzzing.

/// GGUF's default tensor-data alignment.
const DEFAULT_ALIGNMENT: u64 = 32;
/// `GGUF` as a little-endian `u32`.
const MAGIC: u32 = 0x4655_4747;

/// Builds GGUF files in memory, for tests of this reader and of the loaders on tiny models.
#[derive(Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    fn str_bytes(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    /// Adds a `uint32` value.
    pub fn u32(mut self, key: &str, v: u32) -> Self {
        self.metadata
            .push((key.into(), 4, v.to_le_bytes().to_vec()));
        self
    }

    /// Adds a `float32` value.
    pub fn f32(mut self, key: &str, v: f32) -> Self {
        self.metadata
            .push((key.into(), 6, v.to_le_bytes().to_vec()));
        self
    }

    /// Adds a `string` value.
    pub fn string(mut self, key: &str, v: &str) -> Self {
        self.metadata.push((key.into(), 8, Self::str_bytes(v)));
        self
    }

    /// Adds an array of strings.
    pub fn strings(mut self, key: &str, v: &[&str]) -> Self {
        let mut b = 8u32.to_le_bytes().to_vec();
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for s in v {
            b.extend(Self::str_bytes(s));
        }
        self.metadata.push((key.into(), 9, b));
        self
    }

    /// Adds an array of `int32`.
    pub fn i32s(mut self, key: &str, v: &[i32]) -> Self {
        let mut b = 5u32.to_le_bytes().to_vec();
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for x in v {
            b.extend_from_slice(&x.to_le_bytes());
        }
        self.metadata.push((key.into(), 9, b));
        self
    }

    /// Adds an F32 tensor; `shape` is row-major (outermost first).
    pub fn tensor_f32(self, name: &str, shape: &[usize], data: &[f32]) -> Self {
        let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensor_raw(name, shape, 0, raw)
    }

    /// Adds a tensor of GGML type number `ty` from its raw bytes.
    pub fn tensor_raw(mut self, name: &str, shape: &[usize], ty: u32, raw: Vec<u8>) -> Self {
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        self.tensors.push((name.into(), dims, ty, raw));
        self
    }

    /// The file's bytes (version 3, alignment 32).
    pub fn build(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, ty, v) in &self.metadata {
            b.extend(Self::str_bytes(k));
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, raw) in &self.tensors {
            b.extend(Self::str_bytes(name));
            b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset += (raw.len() as u64).div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
        }
        b.resize(
            (b.len() as u64).div_ceil(DEFAULT_ALIGNMENT) as usize * DEFAULT_ALIGNMENT as usize,
            0,
        );
        let start = b.len();
        for ((_, _, _, raw), off) in self.tensors.iter().zip(offsets) {
            b.resize(start + off as usize, 0);
            b.extend_from_slice(raw);
        }
        b
    }
}
