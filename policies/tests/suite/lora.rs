//! LoRA adapters and HF export: a fresh adapter changes nothing, a trained one merges into the
//! weights with the same logits, and an exported checkpoint (GGUF's interleaved rotary layout
//! turned back into HF's) loads back with the same logits, tokenizer and chat template.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::prelude::*;
use ponder_engine::rng::Rng;
use ponder_policies::gguf::Gguf;
use ponder_policies::llama::Llama;
use ponder_policies::lora::{Adapter, Adapters, Lora, LoraConfig, Target};
use ponder_policies::tokenizer::Tokenizer;
use ponder_testkit::tiny_llama::tiny_llama_gguf;

fn tiny() -> (Llama, Tokenizer) {
    let g = Gguf::parse(Path::new("tiny.gguf"), tiny_llama_gguf(21)).unwrap();
    (
        Llama::from_gguf(&g, &Device::flex()).unwrap(),
        Tokenizer::from_gguf(&g).unwrap(),
    )
}

fn logits(m: &Llama, tokens: &[u32], lora: Option<Adapters<'_>>) -> Vec<f32> {
    let h = m
        .hidden_all(&[tokens.to_vec()], &mut m.new_cache(1), lora)
        .unwrap();
    m.logits(h).unwrap().try_into_vec_as::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// Gives every adapter a random `B` (a fresh one is zero).
fn randomise(lora: Lora, seed: u64) -> Lora {
    let mut rng = Rng::new(seed);
    let mut fill = |ad: Option<Adapter>| {
        ad.map(|ad| {
            let [o, r] = ad.b.val().dims();
            let v: Vec<f32> = (0..o * r)
                .map(|_| (rng.next_f64() as f32 - 0.5) * 0.2)
                .collect();
            Adapter {
                a: ad.a,
                b: Param::from_tensor(Tensor::from_data(
                    TensorData::new(v, [o, r]),
                    &Device::flex(),
                )),
            }
        })
    };
    Lora {
        layers: lora
            .layers
            .into_iter()
            .map(|l| ponder_policies::lora::LayerAdapters {
                q: fill(l.q),
                k: fill(l.k),
                v: fill(l.v),
                o: fill(l.o),
                gate: fill(l.gate),
                up: fill(l.up),
                down: fill(l.down),
            })
            .collect(),
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ponder-lora-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn fresh_adapters_change_nothing_and_merged_adapters_match_unmerged() {
    let (m, t) = tiny();
    let tokens: Vec<u32> = (20..45).collect();
    let base = logits(&m, &tokens, None);
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: Target::ALL.to_vec(),
        full: false,
    };
    let fresh = Lora::new(m.config(), &cfg, 1, &Device::flex());
    let a = Adapters {
        lora: &fresh,
        scale: cfg.scale(),
    };
    assert!(max_diff(&base, &logits(&m, &tokens, Some(a))) < 1e-6);
    let trained = randomise(fresh, 2);
    let a = Adapters {
        lora: &trained,
        scale: cfg.scale(),
    };
    let adapted = logits(&m, &tokens, Some(a));
    assert!(
        max_diff(&base, &adapted) > 1e-2,
        "the adapters do something"
    );
    // Export merged, load back as an HF folder: same logits as the unmerged adapters.
    let dir = tmp("merged");
    m.save_hf(&dir, &t, Some(a)).unwrap();
    let back = Llama::from_hf_dir(&dir, &Device::flex()).unwrap();
    let d = max_diff(&adapted, &logits(&back, &tokens, None));
    assert!(d < 1e-4, "merged vs unmerged: {d}");
    let tb = Tokenizer::from_hf_dir(&dir).unwrap();
    assert_eq!(tb.chat(), t.chat());
    assert_eq!(tb.eos(), t.eos());
    let text = t.chat().render(None, "héllo 12 ab");
    assert_eq!(tb.encode(&text).unwrap(), t.encode(&text).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    // Only some targets.
    let cfg = LoraConfig {
        rank: 2,
        alpha: 2.0,
        targets: vec![Target::V, Target::Down],
        full: false,
    };
    let some = randomise(Lora::new(m.config(), &cfg, 3, &Device::flex()), 4);
    assert!(some.layers[0].q.is_none() && some.layers[0].v.is_some());
    let a = Adapters {
        lora: &some,
        scale: cfg.scale(),
    };
    let adapted = logits(&m, &tokens, Some(a));
    let dir = tmp("some");
    m.save_hf(&dir, &t, Some(a)).unwrap();
    let back = Llama::from_hf_dir(&dir, &Device::flex()).unwrap();
    assert!(max_diff(&adapted, &logits(&back, &tokens, None)) < 1e-4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn full_fine_tuning_updates_merge_like_adapters() {
    let (m, t) = tiny();
    let tokens: Vec<u32> = (7..31).collect();
    let base = logits(&m, &tokens, None);
    let cfg = LoraConfig {
        targets: vec![Target::Q, Target::O, Target::Up],
        full: true,
        ..LoraConfig::default()
    };
    assert_eq!(cfg.scale(), 1.0);
    let fresh = Lora::new(m.config(), &cfg, 1, &Device::flex());
    let q = fresh.layers[0].q.as_ref().unwrap();
    assert!(q.a.is_none(), "a dense update has no low-rank factor");
    let (out, inp) = Target::Q.shape(m.config());
    assert_eq!(q.b.val().dims(), [out, inp]);
    let a = Adapters {
        lora: &fresh,
        scale: cfg.scale(),
    };
    assert!(max_diff(&base, &logits(&m, &tokens, Some(a))) < 1e-6);
    let trained = randomise(fresh, 9);
    let a = Adapters {
        lora: &trained,
        scale: cfg.scale(),
    };
    let adapted = logits(&m, &tokens, Some(a));
    assert!(max_diff(&base, &adapted) > 1e-2);
    let dir = tmp("full");
    m.save_hf(&dir, &t, Some(a)).unwrap();
    let back = Llama::from_hf_dir(&dir, &Device::flex()).unwrap();
    let d = max_diff(&adapted, &logits(&back, &tokens, None));
    assert!(d < 1e-4, "merged vs unmerged: {d}");
    // The update file names its mode and holds one dense tensor per projection.
    let file = dir.join("adapter.safetensors");
    trained.save(&file, &cfg).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["mode"], "full");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("layers.0.q.delta").unwrap().shape(), &[out, inp]);
    assert!(st.tensor("layers.0.q.lora_a").is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plain_export_round_trips_and_bad_targets_are_named() {
    let (m, t) = tiny();
    let tokens: Vec<u32> = (3..30).collect();
    let dir = tmp("plain");
    m.save_hf(&dir, &t, None).unwrap();
    let back = Llama::from_hf_dir(&dir, &Device::flex()).unwrap();
    assert!(max_diff(&logits(&m, &tokens, None), &logits(&back, &tokens, None)) < 1e-4);
    assert_eq!(
        m.greedy(&tokens, 6, None).unwrap(),
        back.greedy(&tokens, 6, None).unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        Target::parse("qq")
            .unwrap_err()
            .to_string()
            .contains("`qq`")
    );
    assert_eq!(Target::parse("gate").unwrap(), Target::Gate);
}
