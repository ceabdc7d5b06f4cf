//! The tokenizer: a byte-level BPE built from a GGUF's metadata (vocabulary, merges, token
//! types, pre-tokenizer name) through the HF `tokenizers` crate, or read from an HF
//! `tokenizer.json`; plus the chat template.

use std::path::Path;

use serde_json::json;

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};
pub use ponder_tasks::chat::ChatTemplate;

/// GGUF token type of control tokens (`<|im_start|>`, ...).
const TOKEN_CONTROL: u64 = 3;
/// GGUF token type of user-defined tokens.
const TOKEN_USER_DEFINED: u64 = 4;

/// A tokenizer with its special tokens and chat template.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// One past the largest id the tokenizer can produce (vocabulary and added tokens).
    id_bound: usize,
    bos: Option<u32>,
    eos: Option<u32>,
    chat: ChatTemplate,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// Builds a `tokenizers` tokenizer from JSON bytes. The bytes are parsed as JSON first, so a
/// syntax error is reported with its line and column; the `decoder`, which `tokenizers` 0.23
/// deserialises with an `expect` (a panic on malformed input, found by fuzzing), must be null
/// or an object naming its `type`; and a panic inside `tokenizers` that this misses becomes an
/// error, not a crash of the caller.
fn build(path: &Path, bytes: &[u8]) -> Result<tokenizers::Tokenizer> {
    let bad = |m: String| Error::Tokenizer(format!("{}: {m}", path.display()));
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    match v.get("decoder") {
        None | Some(serde_json::Value::Null) => {}
        Some(d) if d.get("type").is_some_and(serde_json::Value::is_string) => {}
        Some(_) => {
            return Err(bad(
                "`decoder` is neither null nor an object with a `type`".into()
            ));
        }
    }
    shielded("reading it", || tokenizers::Tokenizer::from_bytes(bytes)).map_err(bad)
}

/// Runs a call into `tokenizers`, turning a panic inside it (it has some on malformed files)
/// into an error saying what was being done. No state of ours is half-changed by the unwind.
fn shielded<T>(doing: &str, f: impl FnOnce() -> tokenizers::Result<T>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| format!("the tokenizers library panicked {doing}"))?
        .map_err(|e| e.to_string())
}

/// One past the largest id `inner` can produce.
fn id_bound(inner: &tokenizers::Tokenizer) -> usize {
    inner
        .get_vocab(true)
        .values()
        .map(|&id| id as usize + 1)
        .max()
        .unwrap_or(0)
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes. Supported: `tokenizer.ggml.model = "gpt2"`
    /// (byte-level BPE) with pre-tokenizers `smollm` (digits split one by one, then GPT-2's
    /// regex), `gpt2`, `default`, `qwen2` (Qwen2/2.5's split regex, single digits) and
    /// `llama-bpe` (Llama 3's, digits in threes).
    ///
    /// # Errors
    /// [`Error::MissingMetadata`] for missing vocabulary or merges; [`Error::Tokenizer`] for an
    /// unsupported model or pre-tokenizer.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        let missing = |key: &str| Error::MissingMetadata {
            path: g.path().to_path_buf(),
            key: key.into(),
        };
        let model = g
            .require("tokenizer.ggml.model")?
            .as_str()
            .ok_or_else(|| missing("tokenizer.ggml.model"))?;
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "{}: tokenizer model `{model}` is not supported yet (only byte-level BPE, `gpt2`)",
                g.path().display()
            )));
        }
        let pre = g
            .get("tokenizer.ggml.pre")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
        // Split on a family's regex, then map bytes (as the families' tokenizer.json files do).
        let split = |regex: &str| {
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]})
        };
        let pre_tokenizer = match pre {
            "smollm" => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level]}),
            "gpt2" | "default" => byte_level,
            // Qwen2 / Qwen2.5: single digits.
            "qwen2" => split(QWEN2_REGEX),
            // Llama 3: digits in groups of up to three.
            "llama-bpe" | "llama3" => split(LLAMA3_REGEX),
            other => {
                return Err(Error::Tokenizer(format!(
                    "{}: pre-tokenizer `{other}` is not supported yet (smollm, gpt2, default, \
                     qwen2, llama-bpe)",
                    g.path().display()
                )));
            }
        };
        let strings = |key: &str| -> Result<Vec<&str>> {
            g.require(key)?
                .as_array()
                .ok_or_else(|| missing(key))?
                .iter()
                .map(|v| v.as_str().ok_or_else(|| missing(key)))
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<u64> = match g.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
            Some(a) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let vocab: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), json!(i)))
            .collect();
        let added: Vec<serde_json::Value> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, ty))| **ty == TOKEN_CONTROL || **ty == TOKEN_USER_DEFINED)
            .map(|(i, (t, ty))| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": *ty == TOKEN_CONTROL})
            })
            .collect();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges},
        });
        let inner = build(g.path(), spec.to_string().as_bytes())?;
        let id = |key: &str| g.get(key).and_then(Value::as_u64).map(|v| v as u32);
        Ok(Tokenizer {
            id_bound: id_bound(&inner),
            inner,
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id"),
            chat: ChatTemplate::from_jinja(
                g.get("tokenizer.chat_template").and_then(Value::as_str),
            ),
        })
    }

    /// Reads an HF `tokenizer.json`; special tokens and the chat template come from the
    /// caller (an HF folder's `tokenizer_config.json`).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Tokenizer`].
    pub fn from_file(
        path: &Path,
        bos: Option<u32>,
        eos: Option<u32>,
        chat: ChatTemplate,
    ) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(path, &bytes, bos, eos, chat)
    }

    /// Parses the bytes of a `tokenizer.json` (`path` only names it in errors).
    ///
    /// # Errors
    /// [`Error::Tokenizer`] for bytes that are not a tokenizer the `tokenizers` crate builds.
    pub fn from_json(
        path: &Path,
        bytes: &[u8],
        bos: Option<u32>,
        eos: Option<u32>,
        chat: ChatTemplate,
    ) -> Result<Self> {
        let inner = build(path, bytes)?;
        Ok(Tokenizer {
            id_bound: id_bound(&inner),
            inner,
            bos,
            eos,
            chat,
        })
    }

    /// The tokenizer of an HF checkpoint folder: `tokenizer.json`, special tokens from
    /// `config.json` (`bos_token_id`, `eos_token_id`), the chat template from
    /// `tokenizer_config.json` when present.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Tokenizer`].
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let json = |name: &str| -> Option<serde_json::Value> {
            let text = std::fs::read_to_string(dir.join(name)).ok()?;
            serde_json::from_str(&text).ok()
        };
        let config = json("config.json").unwrap_or_default();
        let id = |k: &str| config[k].as_u64().map(|v| v as u32);
        let template = json("tokenizer_config.json")
            .and_then(|c| c["chat_template"].as_str().map(str::to_string));
        Self::from_file(
            &dir.join("tokenizer.json"),
            id("bos_token_id"),
            id("eos_token_id"),
            ChatTemplate::from_jinja(template.as_deref()),
        )
    }

    /// Writes the tokenizer as an HF checkpoint folder expects it: `tokenizer.json`, and
    /// `tokenizer_config.json` with the chat template. (`config.json` carries the bos/eos ids.)
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Tokenizer`].
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        let json = self.inner.to_string(false).map_err(tok_err)?;
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| Error::Io { path, source })
        };
        write("tokenizer.json", json)?;
        let mut cfg = serde_json::json!({"tokenizer_class": "PreTrainedTokenizerFast"});
        if let Some(t) = self.chat.to_jinja() {
            cfg["chat_template"] = t.into();
        }
        let token = |id: Option<u32>| id.and_then(|i| self.inner.id_to_token(i));
        if let Some(b) = token(self.bos) {
            cfg["bos_token"] = b.into();
        }
        if let Some(e) = token(self.eos) {
            cfg["eos_token"] = e.into();
        }
        write("tokenizer_config.json", cfg.to_string())
    }

    /// Token ids of `text`; special tokens written in the text (`<|im_start|>`) are recognised,
    /// none are added.
    ///
    /// # Errors
    /// [`Error::Tokenizer`].
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoded =
            shielded("encoding", || self.inner.encode(text, false)).map_err(Error::Tokenizer)?;
        Ok(encoded.get_ids().to_vec())
    }

    /// The text of `ids` (special tokens included).
    ///
    /// # Errors
    /// [`Error::Tokenizer`].
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        shielded("decoding", || self.inner.decode(ids, false)).map_err(Error::Tokenizer)
    }

    /// Vocabulary size, added tokens included (distinct tokens; ids may have gaps, see
    /// [`Tokenizer::id_bound`]).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// One past the largest token id this tokenizer produces: a model must have at least this
    /// many embedding rows to take its ids (a file's ids need not be dense).
    pub fn id_bound(&self) -> usize {
        self.id_bound
    }

    /// Checks that a model with `vocab` embedding rows takes every id this tokenizer produces,
    /// and its bos and eos tokens.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] naming the first id out of range.
    pub fn check_fits(&self, vocab: usize) -> Result<()> {
        if self.id_bound > vocab {
            return Err(Error::Tokenizer(format!(
                "token ids go up to {} but the model has {vocab} embedding rows",
                self.id_bound - 1
            )));
        }
        for (name, id) in [("bos", self.bos), ("eos", self.eos)] {
            if let Some(id) = id.filter(|&i| i as usize >= vocab) {
                return Err(Error::Tokenizer(format!(
                    "the {name} token {id} is outside the model's {vocab} embedding rows"
                )));
            }
        }
        Ok(())
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token (generation stops there).
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// The chat template.
    pub fn chat(&self) -> &ChatTemplate {
        &self.chat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ponder_testkit::gguf_writer::GgufWriter;
    use ponder_testkit::tiny_llama::byte_char;

    /// A byte-level BPE over a tiny vocabulary: "Ġ" is the byte-level space.
    fn tiny() -> Gguf {
        let mut tokens: Vec<String> = vec!["<|im_start|>".into(), "<|im_end|>".into()];
        // All 256 byte-level symbols, so any text encodes.
        for b in 0u8..=255 {
            tokens.push(byte_char(b).to_string());
        }
        tokens.extend(["ab", "Ġab", "12"].map(String::from));
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let mut types = vec![3, 3];
        types.extend(std::iter::repeat_n(1, tokens.len() - 2));
        let bytes = GgufWriter::new()
            .string("tokenizer.ggml.model", "gpt2")
            .string("tokenizer.ggml.pre", "smollm")
            .strings("tokenizer.ggml.tokens", &refs)
            .strings("tokenizer.ggml.merges", &["a b", "Ġ ab", "1 2"])
            .i32s("tokenizer.ggml.token_type", &types)
            .u32("tokenizer.ggml.eos_token_id", 1)
            .string(
                "tokenizer.chat_template",
                "{{ '<|im_start|>system\nBe brief<|im_end|>\n' }}{{'<|im_start|>' + role}}",
            )
            .build();
        Gguf::parse(Path::new("tiny.gguf"), bytes).unwrap()
    }

    #[test]
    fn encodes_with_merges_specials_and_split_digits() {
        let t = Tokenizer::from_gguf(&tiny()).unwrap();
        let id =
            |s: &str| 2 + 256 + ["ab", "Ġab", "12"].iter().position(|x| *x == s).unwrap() as u32;
        assert_eq!(t.encode("ab ab").unwrap(), vec![id("ab"), id("Ġab")]);
        // Digits are split one by one before BPE, so the "12" merge never applies.
        let ids = t.encode("12").unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(t.encode("<|im_start|>ab").unwrap(), vec![0, id("ab")]);
        assert_eq!(
            t.decode(&t.encode("héllo ab\n12").unwrap()).unwrap(),
            "héllo ab\n12"
        );
        assert_eq!(t.eos(), Some(1));
    }

    #[test]
    fn chatml_template_with_default_system() {
        let t = Tokenizer::from_gguf(&tiny()).unwrap();
        assert_eq!(
            t.chat().render(None, "Hi"),
            "<|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(ChatTemplate::from_jinja(None).render(Some("s"), "q"), "q");
    }

    #[test]
    fn unsupported_tokenizers_are_named() {
        let bytes = GgufWriter::new()
            .string("tokenizer.ggml.model", "llama")
            .build();
        let g = Gguf::parse(Path::new("sp.gguf"), bytes).unwrap();
        let e = Tokenizer::from_gguf(&g).unwrap_err().to_string();
        assert!(e.contains("`llama`") && e.contains("sp.gguf"), "{e}");
        let bytes = GgufWriter::new().build();
        let g = Gguf::parse(Path::new("none.gguf"), bytes).unwrap();
        let e = Tokenizer::from_gguf(&g).unwrap_err().to_string();
        assert!(e.contains("tokenizer.ggml.model"), "{e}");
    }
}
