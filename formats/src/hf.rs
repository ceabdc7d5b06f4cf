//! HF checkpoint folders: every `*.safetensors` file of a folder, read as f32 tensors.

use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::gguf::f16_to_f32;

/// The safetensors files of a checkpoint folder, in memory.
#[derive(Debug)]
pub struct Safetensors {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Safetensors {
    /// Reads every `*.safetensors` file of `dir` (sharded checkpoints have several).
    ///
    /// # Errors
    /// [`Error::Io`] on unreadable files; [`Error::Tensor`] when there is none or one is
    /// malformed.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(Error::Tensor {
                path: dir.to_path_buf(),
                name: "*.safetensors".into(),
                message: "no safetensors file in the folder".into(),
            });
        }
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            let bytes = std::fs::read(&p).map_err(io(&p))?;
            files.push((p, bytes));
        }
        Self::from_files(files)
    }

    /// Checks and keeps the bytes of safetensors files (each with the path that names it in
    /// errors).
    ///
    /// # Errors
    /// [`Error::Tensor`] when one is malformed: a header that is not the JSON the format
    /// defines, or offsets outside the file.
    pub fn from_files(files: Vec<(PathBuf, Vec<u8>)>) -> Result<Self> {
        for (p, bytes) in &files {
            SafeTensors::deserialize(bytes).map_err(|e| Error::Tensor {
                path: p.clone(),
                name: "header".into(),
                message: format!("malformed safetensors: {e}"),
            })?;
        }
        Ok(Safetensors { files })
    }

    /// A tensor as row-major shape and f32 values (from F32, F16 or BF16), `None` if absent.
    ///
    /// # Errors
    /// [`Error::Tensor`] for other dtypes.
    pub fn tensor_f32(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        for (path, bytes) in &self.files {
            let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Tensor {
                path: path.clone(),
                name: name.into(),
                message: e.to_string(),
            })?;
            let Ok(t) = st.tensor(name) else { continue };
            let data = t.data();
            let values: Vec<f32> = match t.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                    .collect(),
                other => {
                    return Err(Error::Tensor {
                        path: path.clone(),
                        name: name.into(),
                        message: format!("dtype {other:?} is not supported (F32, F16, BF16)"),
                    });
                }
            };
            return Ok(Some((t.shape().to_vec(), values)));
        }
        Ok(None)
    }
}
