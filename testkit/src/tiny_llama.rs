//! Test doubles: a tiny random Llama written as an in-memory GGUF (with a byte-level tokenizer),
//! so the decoder and the step policy can be tested without the real model.

use crate::gguf_writer::GgufWriter;
use ponder_engine::rng::Rng;

/// GPT-2's byte-to-unicode map (the symbols a byte-level BPE vocabulary is written in).
pub fn byte_char(b: u8) -> char {
    let printable = |b: u8| {
        (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).expect("valid code point")
}

/// A 2-layer Llama (d_model 32, 4 query / 2 KV heads, FFN 64) over a 259-token byte-level
/// vocabulary (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, then the 256 bytes), with seeded
/// random weights, as GGUF bytes.
pub fn tiny_llama_gguf(seed: u64) -> Vec<u8> {
    let (d, ffn, layers, heads, kv_heads) = (32usize, 64usize, 2usize, 4usize, 2usize);
    let hd = d / heads;
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    tokens.extend((0u8..=255).map(|b| byte_char(b).to_string()));
    let vocab = tokens.len();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let mut types = vec![3, 3, 3];
    types.extend(std::iter::repeat_n(1, 256));
    let mut rng = Rng::new(seed);
    let mut rand = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * scale)
            .collect()
    };
    let mut w = GgufWriter::new()
        .string("general.architecture", "llama")
        .u32("llama.block_count", layers as u32)
        .u32("llama.context_length", 512)
        .u32("llama.embedding_length", d as u32)
        .u32("llama.feed_forward_length", ffn as u32)
        .u32("llama.attention.head_count", heads as u32)
        .u32("llama.attention.head_count_kv", kv_heads as u32)
        .f32("llama.rope.freq_base", 10_000.0)
        .f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .u32("llama.vocab_size", vocab as u32)
        .string("tokenizer.ggml.model", "gpt2")
        .string("tokenizer.ggml.pre", "smollm")
        .strings("tokenizer.ggml.tokens", &refs)
        .strings("tokenizer.ggml.merges", &[])
        .i32s("tokenizer.ggml.token_type", &types)
        .u32("tokenizer.ggml.bos_token_id", 1)
        .u32("tokenizer.ggml.eos_token_id", 2)
        .string(
            "tokenizer.chat_template",
            "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}",
        );
    w = w.tensor_f32("token_embd.weight", &[vocab, d], &rand(vocab * d, 0.5));
    for i in 0..layers {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        w = w
            .tensor_f32(&p("attn_norm"), &[d], &vec![1.0; d])
            .tensor_f32(&p("attn_q"), &[d, d], &rand(d * d, 0.3))
            .tensor_f32(
                &p("attn_k"),
                &[kv_heads * hd, d],
                &rand(kv_heads * hd * d, 0.3),
            )
            .tensor_f32(
                &p("attn_v"),
                &[kv_heads * hd, d],
                &rand(kv_heads * hd * d, 0.3),
            )
            .tensor_f32(&p("attn_output"), &[d, d], &rand(d * d, 0.3))
            .tensor_f32(&p("ffn_norm"), &[d], &vec![1.0; d])
            .tensor_f32(&p("ffn_gate"), &[ffn, d], &rand(ffn * d, 0.3))
            .tensor_f32(&p("ffn_up"), &[ffn, d], &rand(ffn * d, 0.3))
            .tensor_f32(&p("ffn_down"), &[d, ffn], &rand(d * ffn, 0.3));
    }
    w = w.tensor_f32("output_norm.weight", &[d], &vec![1.0; d]);
    w.build()
}
