//! Tests against the optional second model, Qwen2.5-Coder-0.5B-Instruct as a Q4_K_M GGUF
//! (`scripts/setup.sh --model qwen2.5-0.5b`): the `qwen2` architecture and a real file mixing
//! Q5_0, Q8_0, Q4_K and Q6_K blocks. Without the model they print a loud SKIPPED line and pass.
//! Reference values come from the `gguf` Python package
//! (`fixtures/reference/make_qwen_reference.py` made `fixtures/reference/qwen.json`).

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use ponder_policies::gguf::Gguf;
use ponder_policies::llama::{Llama, LlamaConfig, Rope};
use ponder_policies::models::{SECOND_MODEL_FILE, models_dir};
use ponder_policies::tokenizer::Tokenizer;

fn model() -> Option<PathBuf> {
    let p = models_dir().join(SECOND_MODEL_FILE);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "\n*** SKIPPED: the second model is not installed at {} (run scripts/setup.sh --model qwen2.5-0.5b) ***\n",
            p.display()
        );
        None
    }
}

fn reference() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/reference/qwen.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn qwen2_metadata_and_every_block_type_match_the_gguf_package() {
    let Some(path) = model() else { return };
    let g = Gguf::open(&path).unwrap();
    let r = reference();
    assert_eq!(g.tensors.len() as u64, r["tensor_count"].as_u64().unwrap());
    let cfg = LlamaConfig::from_gguf(&g).unwrap();
    let m = &r["meta"];
    assert_eq!(
        cfg.n_layers as u64,
        m["qwen2.block_count"].as_u64().unwrap()
    );
    assert_eq!(
        cfg.d_model as u64,
        m["qwen2.embedding_length"].as_u64().unwrap()
    );
    assert_eq!(
        cfg.ffn as u64,
        m["qwen2.feed_forward_length"].as_u64().unwrap()
    );
    assert_eq!(
        cfg.n_heads as u64,
        m["qwen2.attention.head_count"].as_u64().unwrap()
    );
    assert_eq!(
        cfg.n_kv_heads as u64,
        m["qwen2.attention.head_count_kv"].as_u64().unwrap()
    );
    assert_eq!(
        f64::from(cfg.rope_base),
        m["qwen2.rope.freq_base"].as_f64().unwrap()
    );
    assert_eq!(
        cfg.rope,
        Rope::Half,
        "llama.cpp leaves qwen2's Q/K rows unpermuted"
    );
    assert_eq!(cfg.vocab, 151_936);
    for (ty, want) in r["tensors"].as_object().unwrap() {
        let name = want["tensor"].as_str().unwrap();
        let (_, x) = g.tensor_f32(name).unwrap();
        assert_eq!(
            x.len() as u64,
            want["elements"].as_u64().unwrap(),
            "{ty} {name}"
        );
        let sum: f64 = x.iter().map(|&v| f64::from(v)).sum();
        let sum_sq: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let close =
            |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0) * (x.len() as f64).sqrt();
        assert!(
            close(sum, want["sum"].as_f64().unwrap()),
            "{ty} {name}: sum {sum}"
        );
        assert!(
            close(sum_sq, want["sum_sq"].as_f64().unwrap()),
            "{ty} {name}: sum_sq"
        );
        for (got, w) in x.iter().zip(want["first"].as_array().unwrap()) {
            assert!(
                (f64::from(*got) - w.as_f64().unwrap()).abs() <= 1e-7,
                "{ty} {name}: {got} vs {w}"
            );
        }
    }
}

#[test]
fn qwen2_tokenizer_and_a_greedy_answer() {
    let Some(path) = model() else { return };
    let g = Gguf::open(&path).unwrap();
    let t = Tokenizer::from_gguf(&g).unwrap();
    // Qwen2's pre-tokenizer splits digits one by one; ChatML markers are single special tokens.
    let digits = t.encode("12345").unwrap();
    assert_eq!(digits.len(), 5, "{digits:?}");
    assert_eq!(t.encode("<|im_start|>").unwrap(), vec![151_644]);
    assert_eq!(t.eos(), Some(151_645));
    let text = "Tom has 3 apples and buys 5 more.\n  Ünïcödé: 東京 🙂 it's";
    assert_eq!(t.decode(&t.encode(text).unwrap()).unwrap(), text);
    // The decoder runs: a plain question gets the right answer greedily.
    let m = Llama::from_gguf(&g, &Device::flex()).unwrap();
    let prompt = t.chat().render(
        None,
        "Tom has 3 apples and buys 5 more. How many apples does Tom have now? End with \"The answer is N.\"",
    );
    let ids = t.encode(&prompt).unwrap();
    let out = m.greedy(&ids, 24, t.eos()).unwrap();
    let answer = t.decode(&out).unwrap();
    assert!(answer.contains('8'), "{answer:?}");
}
