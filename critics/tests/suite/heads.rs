//! Learned heads: training on synthetic features beats a constant predictor on a held-out
//! split, files round-trip, bad files give errors naming the file and the field, and a head
//! scores tree paths through the policy's backbone (tiny random model).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::Device;
use ponder_critics::head::{self, Example, Head, HeadCritic, TrainConfig};
use ponder_critics::metrics;
use ponder_engine::rng::Rng;
use ponder_engine::{Critic, CriticKind, PathRef, Problem, Step, StepRule, Tree, TreeId};
use ponder_policies::gguf::Gguf;
use ponder_policies::llama::Llama;
use ponder_policies::step_policy::{LlamaPolicy, Sampling};
use ponder_policies::tokenizer::Tokenizer;
use ponder_testkit::tiny_llama::tiny_llama_gguf;

/// Gaussian-ish features (sum of uniforms); the outcome is likely when a hidden linear score is
/// high (a logistic "true" model), so the best AUROC is well above 0.5 but below 1.
fn synthetic(n_groups: usize, per_group: usize, seed: u64) -> Vec<Example> {
    let d = 24;
    let mut rng = Rng::new(seed);
    let w: Vec<f32> = (0..d).map(|i| if i < 6 { 1.0 } else { 0.0 }).collect();
    let mut out = Vec::new();
    for g in 0..n_groups {
        for _ in 0..per_group {
            let x: Vec<f32> = (0..d)
                .map(|_| (0..4).map(|_| rng.next_f64() as f32).sum::<f32>() - 2.0 + 3.0)
                .collect();
            let z: f32 = x.iter().zip(&w).map(|(a, b)| (a - 3.0) * b).sum::<f32>() * 2.0;
            let p = 1.0 / (1.0 + (-z).exp());
            let y = rng.next_f64() < f64::from(p);
            out.push(Example {
                group: format!("p{g}"),
                features: x,
                target: f32::from(u8::from(y)),
            });
        }
    }
    out
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ponder-heads-{}-{name}", std::process::id()))
}

#[test]
fn a_trained_value_head_beats_a_constant_and_round_trips() {
    let data = synthetic(60, 10, 1);
    let cfg = TrainConfig {
        hidden: 16,
        max_epochs: 60,
        ..TrainConfig::default()
    };
    let (h, report) = head::train(CriticKind::Value, &data, &cfg, "synthetic").unwrap();
    let val = report.val.expect("a held-out split");
    assert!(report.n_val > 50 && report.n_train > 300, "{report:?}");
    assert!(val.auroc > 0.8, "held-out AUROC {}", val.auroc);
    // A constant predictor has AUROC 0.5 and the base rate's Brier score.
    let base = val.base_rate;
    assert!(val.brier < base * (1.0 - base), "{val:?}");
    // Fresh data from the same world: the head generalises.
    let fresh = synthetic(20, 10, 99);
    let feats: Vec<Vec<f32>> = fresh.iter().map(|e| e.features.clone()).collect();
    let labels: Vec<bool> = fresh.iter().map(|e| e.target > 0.5).collect();
    let scores = h.scores(&feats, &Device::flex()).unwrap();
    assert!(metrics::auroc(&scores, &labels) > 0.8);
    // Scores are not constant.
    let spread = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        - scores.iter().copied().fold(f32::INFINITY, f32::min);
    assert!(spread > 0.5, "spread {spread}");
    // Save and load: the same scores.
    let p = tmp("value.safetensors");
    h.save(&p).unwrap();
    let back = Head::load(&p).unwrap();
    assert_eq!(back, h);
    assert_eq!(back.scores(&feats, &Device::flex()).unwrap(), scores);
    // Same seed, same head.
    let (again, _) = head::train(CriticKind::Value, &data, &cfg, "synthetic").unwrap();
    assert_eq!(again, h);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn bad_head_files_name_the_file_and_the_field() {
    let data = synthetic(10, 4, 2);
    let cfg = TrainConfig {
        hidden: 4,
        max_epochs: 2,
        ..TrainConfig::default()
    };
    let (h, _) = head::train(CriticKind::Outcome, &data, &cfg, "synthetic").unwrap();
    let p = tmp("orm.safetensors");
    h.save(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let err = |b: &[u8]| {
        let q = tmp("bad.safetensors");
        std::fs::write(&q, b).unwrap();
        let e = Head::load(&q).unwrap_err().to_string();
        std::fs::remove_file(&q).unwrap();
        assert!(e.contains("bad.safetensors"), "{e}");
        e
    };
    // Truncated anywhere: an error, never a panic.
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let e = err(&bytes[..cut]);
        assert!(e.contains("safetensors"), "cut {cut}: {e}");
    }
    // Wrong metadata.
    // (Same-length byte replacements inside the JSON header.)
    let replace = |from: &[u8], to: &[u8]| -> Vec<u8> {
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("present");
        let mut b = bytes.clone();
        b[at..at + to.len()].copy_from_slice(to);
        b
    };
    let e = err(&replace(b"\"outcome\"", b"\"nonsens\""));
    assert!(e.contains("`kind`"), "{e}");
    let e = err(&replace(b"ponder-critic-head", b"ponder-critic-XXXX"));
    assert!(e.contains("`format`"), "{e}");
    let missing = Path::new("/nonexistent/head.safetensors");
    assert!(
        Head::load(missing)
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/head")
    );
    // Bad training input.
    let bad = vec![Example {
        group: "g".into(),
        features: vec![0.0; 3],
        target: 1.5,
    }];
    assert!(
        head::train(CriticKind::Value, &bad, &cfg, "x")
            .unwrap_err()
            .to_string()
            .contains("outside [0, 1]")
    );
    assert!(head::train(CriticKind::Value, &[], &cfg, "x").is_err());
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn a_head_scores_tree_paths_through_the_backbone() {
    let g = Gguf::parse(Path::new("tiny.gguf"), tiny_llama_gguf(4)).unwrap();
    let m = Llama::from_gguf(&g, &Device::flex()).unwrap();
    let t = Tokenizer::from_gguf(&g).unwrap();
    let policy = Arc::new(LlamaPolicy::new(
        m,
        t,
        StepRule::default(),
        Sampling::default(),
        true,
        64,
    ));
    // Features of text paths, labelled by whether the step mentions "good".
    let mut examples = Vec::new();
    for i in 0..40 {
        let good = i % 2 == 0;
        let step = if good {
            format!("good step {i}")
        } else {
            format!("bad move {i}")
        };
        let f = policy.step_features("Q: 1+1?", &[step]).unwrap();
        examples.push(Example {
            group: format!("g{i}"),
            features: f[0].clone(),
            target: f32::from(u8::from(good)),
        });
    }
    let cfg = TrainConfig {
        hidden: 16,
        max_epochs: 100,
        val_share: 0.0,
        ..TrainConfig::default()
    };
    let (h, _) = head::train(CriticKind::Process, &examples, &cfg, "tiny").unwrap();
    let critic = HeadCritic::new(&h, policy.clone(), "mem").unwrap();
    let steps = |s: &str| {
        vec![Step {
            text: s.into(),
            ..Step::default()
        }]
    };
    let (good, gi) = Tree::chain(
        TreeId(1),
        Problem::new("a", "1+1?"),
        "Q: 1+1?".into(),
        steps("good step 2"),
        false,
    )
    .unwrap();
    let (bad, bi) = Tree::chain(
        TreeId(2),
        Problem::new("b", "1+1?"),
        "Q: 1+1?".into(),
        steps("bad move 3"),
        false,
    )
    .unwrap();
    let s = critic
        .score(&[PathRef::new(&good, gi[1]), PathRef::new(&bad, bi[1])])
        .unwrap();
    assert!(s[0] > s[1], "{s:?}");
    // The tree path's features equal the text path's (same encoding).
    let f_tree = policy.features(&[PathRef::new(&good, gi[1])]).unwrap();
    let f_text = policy
        .step_features("Q: 1+1?", &["good step 2".to_string()])
        .unwrap();
    let diff = f_tree[0]
        .iter()
        .zip(&f_text[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "{diff}");
    // A head of another width is refused with the reason.
    let wide = synthetic(4, 4, 3);
    let (w, _) = head::train(
        CriticKind::Value,
        &wide,
        &TrainConfig {
            max_epochs: 1,
            ..cfg
        },
        "other",
    )
    .unwrap();
    let e = HeadCritic::new(&w, policy, "wide.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("wide.safetensors") && e.contains("24 features"),
        "{e}"
    );
}
