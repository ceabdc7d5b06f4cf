//! # ponder-hostile
//!
//! Arbitrary bytes into every reader ponder has. Each function here is one fuzz target's body:
//! it takes whatever the fuzzer made, feeds it to the real reader the way ponder does, and checks
//! the reader's promises — an error or a value, never a panic, never an allocation sized by an
//! unchecked count, and where a value comes back, the invariants callers rely on (a step cut at
//! a character boundary, a judge's score inside `[0, 1]`, a config that survives a TOML round
//! trip). The `fuzz/` workspace wraps each in a libFuzzer target; `tests/replay.rs` replays the
//! seeds and every input the fuzzers found (`fuzz/regressions/<target>/`) in the normal suite.
//!
//! Readers that take a path get the bytes through a file in a scratch folder of their own
//! ([`Scratch`]), as they would in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ponder_engine::policy::{Boundary, StepRule};
use ponder_engine::{ScoreRange, SearchConfig};
use ponder_formats::gguf::Gguf;
use ponder_formats::hf::Safetensors;
use ponder_formats::shape::LlamaConfig;
use ponder_formats::tokenizer::{ChatTemplate, Tokenizer};
use ponder_remote::critics::ScoreFormat;
use ponder_remote::wire;
use ponder_testkit::gguf_writer::GgufWriter;

/// A fuzz target: its name (the file under `fuzz/fuzz_targets/`) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order the README's table lists them.
pub const TARGETS: &[Target] = &[
    ("gguf", gguf),
    ("safetensors", safetensors),
    ("tokenizer_json", tokenizer_json),
    ("tokenize", tokenize),
    ("jsonl", jsonl),
    ("journal", journal),
    ("config_toml", config_toml),
    ("model_text", model_text),
    ("remote_answer", remote_answer),
    ("serve_request", serve_request),
];

/// A scratch folder for readers that take paths: one per process, emptied per input.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// The process's scratch folder under the system temp folder (removed on drop).
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ponder-hostile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the temp folder is writable");
        Scratch { dir }
    }

    /// Writes `bytes` as `name` in the folder and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes).expect("the temp folder is writable");
        p
    }

    /// A fresh empty subfolder `name`.
    pub fn folder(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("the temp folder is writable");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Splits `data` in two at a length read from its first two bytes (little-endian, clamped):
/// how the targets that need two files take them from one input.
fn split2(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 2 {
        return (data, &[]);
    }
    let n = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 2);
    data[2..].split_at(n)
}

/// Text the tokenizers are asked to encode: ASCII, digits, the chat specials, multi-byte
/// characters.
const PROBE: &str =
    "Question: 12 + 30 = 42.\n\n<|im_start|>user\nÉtape 3: ½ × 4 = 2 ✓ 😀<|im_end|>";

/// A tokenizer's promises on one text: encoding works, decoding any in-range ids works, and
/// byte-level BPE gives the text back when it holds no special-token markup.
fn exercise(tok: &Tokenizer, text: &str, round_trip: bool) {
    let ids = match quietly(|| tok.encode(text)) {
        Ok(ids) => ids,
        // The byte-level tokenizers ponder builds encode any UTF-8.
        Err(e) if round_trip => panic!("encoding failed: {e}"),
        Err(_) => return,
    };
    let vocab = tok.id_bound();
    assert!(
        ids.iter().all(|&i| (i as usize) < vocab),
        "an id outside the vocabulary"
    );
    let back = quietly(|| tok.decode(&ids));
    if round_trip && !text.contains("<|") {
        assert_eq!(back.ok().as_deref(), Some(text), "byte-level BPE lost text");
    }
    let some: Vec<u32> = (0..vocab.min(64) as u32).collect();
    let _ = quietly(|| tok.decode(&some));
}

/// Runs `f` with panic messages silenced. `formats::tokenizer` catches panics raised inside the
/// `tokenizers` crate (it has some on malformed files) and returns an error; libFuzzer's panic
/// hook would abort on them before they are caught, so the targets that build and use
/// tokenizers run those calls under this. A panic that escapes `f` still reaches libFuzzer as
/// a crash.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    out.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// The GGUF reader: header, metadata, tensor directory; then every tensor dequantised, the model
/// shape and the tokenizer the metadata describes.
pub fn gguf(data: &[u8]) {
    let Ok(g) = Gguf::parse(Path::new("fuzz.gguf"), data.to_vec()) else {
        return;
    };
    for t in &g.tensors {
        if let Ok((shape, values)) = g.tensor_f32(&t.name) {
            assert_eq!(
                shape.iter().product::<usize>(),
                values.len(),
                "a tensor's values do not fill its shape"
            );
        }
    }
    let _ = LlamaConfig::from_gguf(&g);
    if let Ok(tok) = quietly(|| Tokenizer::from_gguf(&g)) {
        exercise(&tok, PROBE, false);
    }
}

/// An HF checkpoint folder's `config.json` (the first part) and a safetensors file (the rest):
/// the shape, the header, every tensor as f32.
pub fn safetensors(data: &[u8]) {
    let (config, file) = split2(data);
    let _ = LlamaConfig::from_hf_json(Path::new("config.json"), &String::from_utf8_lossy(config));
    let names: Vec<String> = match safetensors::SafeTensors::deserialize(file) {
        Ok(st) => st.names().into_iter().map(String::from).collect(),
        Err(_) => Vec::new(),
    };
    let Ok(st) = Safetensors::from_files(vec![(PathBuf::from("model.safetensors"), file.to_vec())])
    else {
        return;
    };
    for n in names {
        if let Ok(Some((shape, values))) = st.tensor_f32(&n) {
            assert_eq!(shape.iter().product::<usize>(), values.len());
        }
    }
}

/// An HF `tokenizer.json`: built, then used.
pub fn tokenizer_json(data: &[u8]) {
    let built = quietly(|| {
        Tokenizer::from_json(
            Path::new("tokenizer.json"),
            data,
            Some(0),
            Some(1),
            ChatTemplate::from_jinja(None),
        )
    });
    if let Ok(tok) = built {
        exercise(&tok, PROBE, false);
    }
}

/// Byte-level tokenizers of every supported pre-tokenizer, built from GGUF metadata (the 256
/// byte tokens, a few merges, the chat specials).
fn byte_tokenizers() -> &'static [Tokenizer] {
    static TOKS: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    TOKS.get_or_init(|| {
        let chars: Vec<String> = (0u8..=255)
            .map(|b| ponder_testkit::tiny_llama::byte_char(b).to_string())
            .collect();
        let mut tokens: Vec<String> = chars.clone();
        let merges = ["Ġ t", "Ġ a", "h e", "i n", "r e", "1 2", "Ġt he"];
        for m in merges {
            tokens.push(m.replace(' ', ""));
        }
        tokens.extend(["<|im_start|>", "<|im_end|>", "<|endoftext|>"].map(String::from));
        let mut types = vec![1i32; tokens.len()];
        let n = types.len();
        types[n - 3..].fill(3);
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        ["smollm", "gpt2", "qwen2", "llama-bpe"]
            .iter()
            .map(|pre| {
                let bytes = GgufWriter::new()
                    .string("tokenizer.ggml.model", "gpt2")
                    .string("tokenizer.ggml.pre", pre)
                    .strings("tokenizer.ggml.tokens", &refs)
                    .strings("tokenizer.ggml.merges", &merges)
                    .i32s("tokenizer.ggml.token_type", &types)
                    .u32("tokenizer.ggml.eos_token_id", (n - 2) as u32)
                    .build();
                let g =
                    Gguf::parse(Path::new("byte.gguf"), bytes).expect("the writer's GGUF parses");
                Tokenizer::from_gguf(&g).expect("a byte-level tokenizer builds")
            })
            .collect()
    })
}

/// Arbitrary UTF-8 through byte-level BPE with each pre-tokenizer: encoded, decoded back to the
/// same text.
pub fn tokenize(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for tok in byte_tokenizers() {
        exercise(tok, &text, true);
    }
}

/// The JSONL readers, the first byte choosing which: a dataset of problems, critic training
/// data (PRM records or labelled paths), DPO pairs (with and without the chat template), an
/// evaluation's records, a tree dump for `ponder view`.
pub fn jsonl(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let s = scratch();
    match which % 6 {
        0 => {
            let p = s.file("data.jsonl", rest);
            let _ = ponder_runtime::dataset::read_dataset(&p, &Default::default());
        }
        1 => {
            let p = s.file("prm.jsonl", rest);
            let _ = ponder_tasks::data::read_jsonl(&p);
        }
        2 | 3 => {
            let tok = &byte_tokenizers()[0];
            if let Ok(pairs) = ponder_formats::pairs::parse_pairs(
                Path::new("pairs.jsonl"),
                rest,
                tok,
                which % 6 == 3,
            ) {
                for p in pairs {
                    assert!(!p.chosen.is_empty() && !p.rejected.is_empty());
                    assert!((0.0..=0.5).contains(&p.label_smoothing));
                }
            }
        }
        4 => {
            let dir = s.folder("eval");
            let folder = ponder_eval::Folder::new(&dir);
            let _ = std::fs::write(folder.records(), rest);
            let _ = folder.read_records(false);
            let _ = folder.read_records(true);
        }
        _ => {
            let p = s.file("trees.jsonl", rest);
            if let Ok(tree) = ponder_runtime::view::read_tree(&p, None)
                && let Ok(page) = ponder_runtime::view::render(&tree)
            {
                assert!(
                    page.matches("</script>").count() <= 2,
                    "step text broke out of the page's script"
                );
            }
        }
    }
}

/// A `ponder generate` folder resumed and merged: the journal (first part) and `pairs.jsonl`
/// (the rest), with a manifest. Resuming never grows a data file, and a merge reads only what
/// the files hold.
pub fn journal(data: &[u8]) {
    let (journal, pairs) = split2(data);
    let s = scratch();
    let dir = s.folder("gen");
    let _ = std::fs::write(dir.join(ponder_runtime::journal::JOURNAL), journal);
    let _ = std::fs::write(dir.join("pairs.jsonl"), pairs);
    let _ = std::fs::write(dir.join("manifest.json"), b"{\"command\": \"generate\"}");
    let _ = ponder_runtime::journal::read_entries(&dir.join(ponder_runtime::journal::JOURNAL));
    let out = s.folder("merged");
    let _ = ponder_runtime::merge::merge(std::slice::from_ref(&dir), &out, true, &[]);
    if let Ok(j) = ponder_runtime::journal::Journal::open(&dir, &["pairs.jsonl"], false, false) {
        drop(j);
        let len = std::fs::metadata(dir.join("pairs.jsonl")).map_or(0, |m| m.len());
        assert!(len <= pairs.len() as u64, "resuming grew a data file");
    }
}

/// The TOML config: parsed over its preset and validated; a valid config written back as TOML
/// reads back equal.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = ponder_runtime::Config::parse(text, None) else {
        return;
    };
    if cfg.validate().is_err() {
        return;
    }
    let again = toml::to_string(&cfg).expect("a valid config serialises");
    let back = ponder_runtime::Config::parse(&again, None).expect("a written config parses");
    assert_eq!(cfg, back, "a config changed through TOML:\n{again}");
}

/// Model text, anything at all: the answer extractor and its normal form, answer equivalence,
/// the arithmetic checker, and every step rule's cut (which must fall on a character boundary
/// inside the text).
pub fn model_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = ponder_tasks::math::extract_answer(&text);
    let _ = ponder_tasks::math::normalise(&text);
    let mid = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(0, |(i, _)| i);
    let (a, b) = text.split_at(mid);
    let _ = ponder_tasks::math::equivalent(a, b);
    let _ = ponder_tasks::arith::evaluate(&text);
    let _ = ponder_tasks::arith::claims(&text);
    let score = ponder_tasks::arith::ArithmeticCritic::score_text(&text);
    assert!(score.is_finite(), "the arithmetic checker scored {score}");
    for boundary in [
        Boundary::Newline,
        Boundary::BlankLine,
        Boundary::BlankLineFormula,
        Boundary::None,
    ] {
        for pattern in [None, Some("The answer is"), Some("####")] {
            let rule = StepRule {
                boundary,
                answer_pattern: pattern.map(String::from),
                max_tokens: 64,
            };
            if let Some(cut) = rule.cut(&text) {
                assert!(cut.len <= text.len() && text.is_char_boundary(cut.len));
            }
        }
    }
}

/// A remote server's answer (the first byte choosing the request it answers): the body read,
/// then its choices, scores in both shapes and a judge's verdict.
pub fn remote_answer(data: &[u8]) {
    let Some((&b, rest)) = data.split_first() else {
        return;
    };
    let want = 1 + usize::from(b & 7);
    let Ok(v) = wire::answer(&String::from_utf8_lossy(rest)) else {
        return;
    };
    if let Ok((choices, _)) = wire::choices(&v, want, b & 8 != 0, b & 16 != 0) {
        assert!(!choices.is_empty() && choices.len() <= want);
        for c in &choices {
            assert!(c.tokens.iter().all(|(_, lp)| lp.is_finite()));
        }
    }
    for format in [ScoreFormat::Ponder, ScoreFormat::VllmPooling] {
        for range in [ScoreRange::UNIT, ScoreRange { lo: -1.0, hi: 1.0 }] {
            if let Ok(scores) = wire::scores(&v, format, want, range) {
                assert_eq!(scores.len(), want);
                assert!(
                    scores
                        .iter()
                        .all(|x| x.is_finite() && range.normalise(*x).is_some())
                );
            }
        }
    }
    let yes = ["Yes".to_string()];
    let no = ["No".to_string()];
    if let Ok(p) = wire::judgement(&v, &yes, &no) {
        assert!((0.0..=1.0).contains(&p), "a judge's score {p}");
    }
}

/// The process's scratch folder.
fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| Scratch::new("target"))
}

/// A server on the synthetic models, its router driven in process.
struct Server {
    rt: tokio::runtime::Runtime,
    app: Arc<ponder_serve::App>,
}

fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let models = ponder_testkit::synthetic::models(&Default::default());
        let mut search = SearchConfig::alphallm();
        search.parallel.threads = 1;
        let cfg = ponder_serve::ServeConfig {
            api_key: None,
            max_simulations: 4,
            max_wall_seconds: 10.0,
            max_body_bytes: 1 << 16,
            ..Default::default()
        };
        let app = ponder_serve::App::start(cfg, search, Default::default(), models)
            .expect("the synthetic server starts");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        Server { rt, app }
    })
}

/// A request to `ponder serve` (the first byte choosing the route, the rest the body), answered
/// in full (streams read to the end). Bad input is the client's error (4xx); a 500 only for a
/// search that failed.
pub fn serve_request(data: &[u8]) {
    use tower::ServiceExt;
    let Some((&b, body)) = data.split_first() else {
        return;
    };
    let (method, path) = match b % 6 {
        0 => ("POST", "/v1/chat/completions".to_string()),
        1 => ("POST", "/v1/completions".to_string()),
        2 => ("GET", "/v1/models".to_string()),
        3 => (
            "GET",
            format!("/v1/trees/{}", String::from_utf8_lossy(body).trim()),
        ),
        4 => ("GET", "/metrics".to_string()),
        _ => ("GET", "/health".to_string()),
    };
    let Ok(req) = axum::http::Request::builder()
        .method(method)
        .uri(&path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_vec()))
    else {
        return;
    };
    let s = server();
    let router = ponder_serve::router(s.app.clone());
    s.rt.block_on(async move {
        let resp = router.oneshot(req).await.expect("the router is infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .expect("the body can be read");
        // A failed search is a server error by design (a model or critic failed), and the
        // synthetic doubles fail on any question they did not generate; anything else that
        // answers 500 is a request the server did not handle.
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            status.as_u16() != 500 || text.contains("the search failed"),
            "a server error on {path}: {text}"
        );
    });
}

/// Starting inputs for `target`: small valid files of each kind, made by the test writers (no
/// model files in git) or taken from `fixtures/` and `configs/`. `cargo run -p ponder-hostile
/// --example seeds` writes them as the fuzzers' corpora.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |p: &str| std::fs::read(repo.join(p)).unwrap_or_default();
    let prefixed = |b: u8, body: &[u8]| {
        let mut v = vec![b];
        v.extend_from_slice(body);
        v
    };
    let two = |a: &[u8], b: &[u8]| {
        let mut v = (a.len() as u16).to_le_bytes().to_vec();
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        v
    };
    match target {
        "gguf" => {
            let mut out = vec![ponder_testkit::tiny_llama::tiny_llama_gguf(0)];
            // One small tensor of every supported block type, with the byte tokenizer's metadata.
            let mut w = GgufWriter::new().string("general.architecture", "llama");
            for (ty, per, bytes) in [
                (0u32, 1usize, 4usize),
                (1, 1, 2),
                (30, 1, 2),
                (2, 32, 18),
                (3, 32, 20),
                (6, 32, 22),
                (7, 32, 24),
                (8, 32, 34),
                (10, 256, 84),
                (11, 256, 110),
                (12, 256, 144),
                (13, 256, 176),
                (14, 256, 210),
                (15, 256, 292),
                (20, 32, 18),
            ] {
                let raw: Vec<u8> = (0..bytes).map(|i| (i * 37 + ty as usize) as u8).collect();
                w = w.tensor_raw(&format!("t{ty}"), &[per], ty, raw);
            }
            out.push(w.build());
            out
        }
        "safetensors" => {
            use safetensors::tensor::TensorView;
            let config = br#"{"model_type": "llama", "vocab_size": 259, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 512}"#;
            let f32s: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
            let halves: Vec<u8> = (0..8u16).flat_map(|i| (i << 10).to_le_bytes()).collect();
            let views = vec![
                ("a", TensorView::new(safetensors::Dtype::F32, vec![2, 4], &f32s).expect("sized")),
                ("b", TensorView::new(safetensors::Dtype::F16, vec![8], &halves).expect("sized")),
                ("c", TensorView::new(safetensors::Dtype::BF16, vec![4, 2], &halves).expect("sized")),
            ];
            let file = safetensors::serialize(views, None).expect("serialises");
            vec![two(config, &file), two(b"{}", &file)]
        }
        "tokenizer_json" => {
            let s = Scratch::new("seeds");
            let dir = s.folder("tok");
            byte_tokenizers()
                .iter()
                .filter_map(|t| {
                    t.save_hf(&dir).ok()?;
                    std::fs::read(dir.join("tokenizer.json")).ok()
                })
                .collect()
        }
        "tokenize" => [
            PROBE,
            "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72",
            "  \t\r\n\u{a0}x\u{300}\u{200d}👨‍👩‍👧 ١٢٣ 中文 'll 's",
        ]
        .map(|t| t.as_bytes().to_vec())
        .to_vec(),
        "jsonl" => vec![
            prefixed(0, &read("fixtures/gsm8k-style.jsonl")),
            prefixed(
                1,
                br#"{"problem_id": "p1", "prompt": "Q", "completions": ["a\n", "b\n"], "labels": [true, false], "mc_values": [1.0, 0.0]}
{"prompt": "Q", "steps": ["x = 2\n"], "label": 0.5, "id": "q"}"#,
            ),
            prefixed(
                2,
                br#"{"prompt": "Q: 2+2?\nStep 1\n", "prefix": "Step 1\n", "chosen": "4\n", "rejected": "5\n", "label_smoothing": 0.1}
{"prompt": "Hello", "chosen": " there", "rejected": " you", "chosen_tokens": [1, 2], "rejected_tokens": [3]}"#,
            ),
            prefixed(
                4,
                br#"{"method": "greedy", "problem_id": "p1", "seed": 0, "correct": true, "answer": "4", "tokens": 12}"#,
            ),
            prefixed(
                5,
                br#"{"problem_id": "p", "prompt": "Q", "nodes": [{"id": 0, "parent": null, "text": "", "visits": 2, "value": 0.5, "depth": 0, "terminal": false, "children": [1]}, {"id": 1, "parent": 0, "text": "x </script><script>", "visits": 1, "value": 1.0, "depth": 1, "terminal": true, "children": []}]}"#,
            ),
        ],
        "journal" => {
            let pairs = b"{\"a\": 1}\n{\"b\": 2}\n";
            let journal = br#"{"problem_id": "p1", "index": 0, "status": "ok", "records": {"pairs.jsonl": 1}, "ends": {"pairs.jsonl": 9}}
{"problem_id": "p2", "index": 1, "status": "ok", "records": {"pairs.jsonl": 1}, "ends": {"pairs.jsonl": 18}}
"#;
            vec![two(journal, pairs), two(&journal[..40], pairs)]
        }
        "config_toml" => std::fs::read_dir(repo.join("configs"))
            .map(|d| {
                d.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default(),
        "model_text" => [
            "Step 1: 48 / 2 = 24\nStep 2: 48 + 24 = 72\nThe answer is 72.",
            "We have $\\frac{3}{4} + 0.25 = 1$.\n\nSo \\boxed{1}\n\n#### 1",
            "12 * 3 = 36, 36 - 1 = 35 (wrong: 36 - 1 = 34)\n\n\nThe answer is -1,234.50",
        ]
        .map(|t| t.as_bytes().to_vec())
        .to_vec(),
        "remote_answer" => vec![
            prefixed(
                2,
                br#"{"choices": [{"text": "x = 2\n", "finish_reason": "stop", "stop_reason": "\n", "logprobs": {"tokens": ["x", " =", " 2"], "token_logprobs": [-0.1, -0.2, -0.3], "top_logprobs": [{"Yes": -0.1, "No": -2.5}]}}, {"text": "y", "finish_reason": "length"}], "usage": {"completion_tokens": 4, "prompt_tokens": 9}, "scores": [0.5, 0.9], "data": [{"data": [0.1, [0.7]]}, {"data": 0.2}]}"#,
            ),
            prefixed(
                8,
                br#"{"choices": [{"message": {"role": "assistant", "content": "The answer is 4."}, "finish_reason": "stop", "logprobs": {"content": [{"token": "The", "logprob": -0.01}]}}]}"#,
            ),
        ],
        "serve_request" => vec![
            prefixed(
                0,
                br#"{"model": "ponder-mcts", "messages": [{"role": "user", "content": "Start with 5. Add 4. What is the result?"}], "reasoning_effort": "low", "ponder": {"simulations": 2, "return_tree": true}}"#,
            ),
            prefixed(
                1,
                br#"{"model": "ponder-greedy", "prompt": "Start with 5. Add 4. What is the result?", "stream": true}"#,
            ),
            prefixed(2, b""),
            prefixed(3, b"chatcmpl-1"),
            prefixed(4, b""),
        ],
        _ => Vec::new(),
    }
}
