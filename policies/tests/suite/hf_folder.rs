//! HF checkpoint folders: a tiny GGUF model rewritten as an HF folder (Q/K rows un-permuted
//! back to the rotate-half layout, as HF stores them) must give the same logits through the
//! safetensors loader and rotate-half RoPE as the GGUF through interleaved RoPE.

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use ponder_policies::gguf::Gguf;
use ponder_policies::llama::Llama;
use ponder_testkit::tiny_llama::tiny_llama_gguf;
use safetensors::{Dtype, tensor::TensorView};

const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 8;

/// llama.cpp's converter interleaves each head's rows for its RoPE; HF keeps the halves apart.
fn unpermute(rows: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    let half = HEAD_DIM / 2;
    let mut out = vec![0f32; rows.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * HEAD_DIM + 2 * i + j;
                let dst = h * HEAD_DIM + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&rows[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn hf_name(gguf: &str) -> String {
    if let Some(rest) = gguf.strip_prefix("blk.") {
        let (i, part) = rest.split_once('.').unwrap();
        let part = part.trim_end_matches(".weight");
        let hf = match part {
            "attn_norm" => "input_layernorm",
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "ffn_norm" => "post_attention_layernorm",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            other => panic!("unexpected {other}"),
        };
        return format!("model.layers.{i}.{hf}.weight");
    }
    match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        other => panic!("unexpected {other}"),
    }
}

fn write_hf_folder(g: &Gguf, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in &g.tensors {
        let (shape, mut v) = g.tensor_f32(&t.name).unwrap();
        if t.name.ends_with("attn_q.weight") {
            v = unpermute(&v, HEADS, shape[1]);
        } else if t.name.ends_with("attn_k.weight") {
            v = unpermute(&v, KV_HEADS, shape[1]);
        }
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.push((hf_name(&t.name), shape, bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    let config = serde_json::json!({
        "model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "intermediate_size": 64,
        "vocab_size": 259, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
        "max_position_embeddings": 512, "tie_word_embeddings": true
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ponder-hf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn hf_folder_and_gguf_give_the_same_logits() {
    let g = Gguf::parse(Path::new("tiny.gguf"), tiny_llama_gguf(5)).unwrap();
    let dir = temp("same");
    write_hf_folder(&g, &dir);
    let device = Device::flex();
    let a = Llama::from_gguf(&g, &device).unwrap();
    let b = Llama::from_hf_dir(&dir, &device).unwrap();
    let tokens = [3u32, 50, 100, 7, 9, 200, 12, 88];
    let (la, lb) = (
        a.last_logits(&tokens).unwrap(),
        b.last_logits(&tokens).unwrap(),
    );
    let diff = la
        .iter()
        .zip(&lb)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "max |diff| {diff}");
    assert_eq!(
        a.greedy(&tokens, 8, None).unwrap(),
        b.greedy(&tokens, 8, None).unwrap()
    );
}

#[test]
fn bad_hf_folders_are_named_errors() {
    let device = Device::flex();
    let dir = temp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let e = Llama::from_hf_dir(&dir, &device).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let e = Llama::from_hf_dir(&dir, &device).unwrap_err().to_string();
    assert!(e.contains("`gpt2` is not supported"), "{e}");
    // A valid config with no weights, then with a truncated weights file.
    let g = Gguf::parse(Path::new("tiny.gguf"), tiny_llama_gguf(5)).unwrap();
    write_hf_folder(&g, &dir);
    let st = dir.join("model.safetensors");
    let full = std::fs::read(&st).unwrap();
    std::fs::write(&st, &full[..full.len() / 2]).unwrap();
    let e = Llama::from_hf_dir(&dir, &device).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("malformed"),
        "{e}"
    );
    std::fs::remove_file(&st).unwrap();
    let e = Llama::from_hf_dir(&dir, &device).unwrap_err().to_string();
    assert!(e.contains("no safetensors file"), "{e}");
}
