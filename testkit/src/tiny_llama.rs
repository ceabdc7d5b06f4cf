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

/// The shape of a decoder to build with random weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// `llama` (interleaved rotary) or `qwen2` (rotate-half, Q/K/V biases).
    pub arch: &'static str,
    /// Hidden size.
    pub d_model: usize,
    /// Feed-forward size.
    pub ffn: usize,
    /// Decoder blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Vocabulary size: the 3 chat specials and 256 bytes, then filler tokens.
    pub vocab: usize,
    /// Context length.
    pub context: usize,
    /// Rotary base.
    pub rope_base: u32,
}

impl Shape {
    /// The tiny test model: 2 layers, d_model 32, 4 query / 2 KV heads, FFN 64, 259 tokens.
    pub const TINY: Shape = Shape {
        arch: "llama",
        d_model: 32,
        ffn: 64,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        vocab: 259,
        context: 512,
        rope_base: 10_000,
    };

    /// A real model's exact shape by name: `smollm2-135m`, `qwen2.5-0.5b`, `llama-1b`
    /// (Llama 3.2 1B), for benchmarks on machines without the weights.
    pub fn named(name: &str) -> Option<Shape> {
        Some(match name {
            "smollm2-135m" => Shape {
                arch: "llama",
                d_model: 576,
                ffn: 1536,
                layers: 30,
                heads: 9,
                kv_heads: 3,
                vocab: 49_152,
                context: 8192,
                rope_base: 100_000,
            },
            "qwen2.5-0.5b" => Shape {
                arch: "qwen2",
                d_model: 896,
                ffn: 4864,
                layers: 24,
                heads: 14,
                kv_heads: 2,
                vocab: 151_936,
                context: 8192,
                rope_base: 1_000_000,
            },
            "llama-1b" => Shape {
                arch: "llama",
                d_model: 2048,
                ffn: 8192,
                layers: 16,
                heads: 32,
                kv_heads: 8,
                vocab: 128_256,
                context: 8192,
                rope_base: 500_000,
            },
            _ => return None,
        })
    }

    /// The names [`Shape::named`] knows.
    pub const NAMES: [&'static str; 3] = ["smollm2-135m", "qwen2.5-0.5b", "llama-1b"];

    /// Parameters (weights) of the model, tied embeddings counted once.
    pub fn parameters(&self) -> usize {
        let (d, kv) = (self.d_model, self.kv_heads * (self.d_model / self.heads));
        let per_layer = d * (d + 2 * kv) + d * d + 3 * d * self.ffn + 2 * d;
        self.vocab * d + self.layers * per_layer + d
    }
}

/// A 2-layer Llama (d_model 32, 4 query / 2 KV heads, FFN 64) over a 259-token byte-level
/// vocabulary (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, then the 256 bytes), with seeded
/// random weights, as GGUF bytes.
pub fn tiny_llama_gguf(seed: u64) -> Vec<u8> {
    random_gguf(&Shape::TINY, seed)
}

/// A decoder of `shape` with seeded random f32 weights (uniform, scaled by `1/√fan-in`; norms
/// one) and a byte-level tokenizer (the chat specials, the 256 bytes, then filler tokens up to
/// the vocabulary size, which encoding never produces), as GGUF bytes. Tied embeddings; Q/K/V
/// biases for `qwen2`.
pub fn random_gguf(shape: &Shape, seed: u64) -> Vec<u8> {
    let Shape {
        arch,
        d_model: d,
        ffn,
        layers,
        heads,
        kv_heads,
        vocab,
        context,
        rope_base,
    } = *shape;
    let hd = d / heads;
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    tokens.extend((0u8..=255).map(|b| byte_char(b).to_string()));
    let fillers = vocab.saturating_sub(tokens.len());
    tokens.extend((0..fillers).map(|i| format!("<|x{i}|>")));
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let mut types = vec![3, 3, 3];
    types.extend(std::iter::repeat_n(1, tokens.len() - 3));
    let mut rng = Rng::new(seed);
    let mut rand = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * scale)
            .collect()
    };
    // The tiny model keeps its historical scales (tests depend on its logits).
    let tiny = *shape == Shape::TINY;
    let fan = |n: usize| if tiny { 0.3 } else { 1.0 / (n as f32).sqrt() };
    let k = |s: &str| format!("{arch}.{s}");
    let mut w = GgufWriter::new()
        .string("general.architecture", arch)
        .u32(&k("block_count"), layers as u32)
        .u32(&k("context_length"), context as u32)
        .u32(&k("embedding_length"), d as u32)
        .u32(&k("feed_forward_length"), ffn as u32)
        .u32(&k("attention.head_count"), heads as u32)
        .u32(&k("attention.head_count_kv"), kv_heads as u32)
        .f32(&k("rope.freq_base"), rope_base as f32)
        .f32(&k("attention.layer_norm_rms_epsilon"), 1e-5)
        .u32(&k("vocab_size"), tokens.len() as u32)
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
    let vocab = tokens.len();
    w = w.tensor_f32(
        "token_embd.weight",
        &[vocab, d],
        &rand(vocab * d, if tiny { 0.5 } else { 1.0 }),
    );
    let kv = kv_heads * hd;
    for i in 0..layers {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        w = w
            .tensor_f32(&p("attn_norm"), &[d], &vec![1.0; d])
            .tensor_f32(&p("attn_q"), &[d, d], &rand(d * d, fan(d)))
            .tensor_f32(&p("attn_k"), &[kv, d], &rand(kv * d, fan(d)))
            .tensor_f32(&p("attn_v"), &[kv, d], &rand(kv * d, fan(d)))
            .tensor_f32(&p("attn_output"), &[d, d], &rand(d * d, fan(d)))
            .tensor_f32(&p("ffn_norm"), &[d], &vec![1.0; d])
            .tensor_f32(&p("ffn_gate"), &[ffn, d], &rand(ffn * d, fan(d)))
            .tensor_f32(&p("ffn_up"), &[ffn, d], &rand(ffn * d, fan(d)))
            .tensor_f32(&p("ffn_down"), &[d, ffn], &rand(d * ffn, fan(ffn)));
        if arch == "qwen2" {
            let b = |s: &str| format!("blk.{i}.{s}.bias");
            w = w
                .tensor_f32(&b("attn_q"), &[d], &rand(d, 0.1))
                .tensor_f32(&b("attn_k"), &[kv], &rand(kv, 0.1))
                .tensor_f32(&b("attn_v"), &[kv], &rand(kv, 0.1));
        }
    }
    w = w.tensor_f32("output_norm.weight", &[d], &vec![1.0; d]);
    w.build()
}
