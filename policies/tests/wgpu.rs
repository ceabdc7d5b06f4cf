//! The decoder on Burn's wgpu backend (a build with `--features wgpu`): the same logits and
//! greedy tokens as on flex. Skipped, with the reason printed, where no wgpu adapter exists
//! (Mesa's software Vulkan, `mesa-vulkan-drivers`, is enough).
#![cfg(feature = "wgpu")]

use std::path::Path;

use ponder_policies::backend::Backend;
use ponder_policies::dpo::{DpoConfig, DpoTrainer, TokenPair};
use ponder_policies::gguf::Gguf;
use ponder_policies::llama::Llama;
use ponder_testkit::tiny_llama::tiny_llama_gguf;

// One test function: wgpu's software GL adapter does not survive two test threads driving
// it at once (a teardown abort in its EGL thread), and ponder drives a model from one thread.
#[test]
fn wgpu_decodes_like_flex_on_one_device_per_process() {
    let device = match Backend::Wgpu.device() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIPPED wgpu_decodes_like_flex_on_one_device_per_process: {e}");
            return;
        }
    };
    // A second model in the same process gets the same device: initialising wgpu again used
    // to fail ("Service already initialized"), so any command that loaded a model twice failed
    // on a GPU.
    let again = Backend::Wgpu
        .device()
        .expect("the second request gets the process's device");
    let g = Gguf::parse(Path::new("tiny.gguf"), tiny_llama_gguf(3)).unwrap();
    let gpu = Llama::from_gguf(&g, &device).unwrap();
    let cpu = Llama::from_gguf(&g, &Backend::Flex.device().unwrap()).unwrap();
    let prompt: Vec<u32> = (10..40).collect();
    let (a, b) = (
        gpu.last_logits(&prompt).unwrap(),
        cpu.last_logits(&prompt).unwrap(),
    );
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-3, "max abs diff {diff}");
    assert_eq!(
        gpu.greedy(&prompt, 8, None).unwrap(),
        cpu.greedy(&prompt, 8, None).unwrap()
    );
    let second = Llama::from_gguf(&g, &again).unwrap();
    assert_eq!(
        second.greedy(&prompt, 8, None).unwrap(),
        cpu.greedy(&prompt, 8, None).unwrap()
    );
    // Training on the same device (what `ponder dpo --backend wgpu` and `iterate`'s DPO run):
    // a few LoRA steps on the autodiff wgpu device lower the DPO loss.
    let trainable = Llama::from_gguf(&g, &again.clone().autodiff()).unwrap();
    let pairs: Vec<TokenPair> = (0..4u32)
        .map(|i| TokenPair {
            context: vec![1, 40 + i, 41, 42],
            chosen: vec![60 + i, 61],
            rejected: vec![90, 91 + i],
            label_smoothing: 0.0,
        })
        .collect();
    let cfg = DpoConfig {
        lr: 2e-2,
        epochs: 6,
        ..DpoConfig::default()
    };
    let report = DpoTrainer::new(&trainable, pairs, cfg)
        .unwrap()
        .train(|_, _, _| {})
        .unwrap();
    assert!(
        report.after.loss < report.before.loss - 0.05,
        "DPO on wgpu: {report:?}"
    );
}
