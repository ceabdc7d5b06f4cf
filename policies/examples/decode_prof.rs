use burn::prelude::*;
use ponder_policies::{gguf::Gguf, llama::Llama, models};
use std::time::Instant;
fn main() {
    let b: usize = std::env::args().nth(1).map_or(8, |s| s.parse().unwrap());
    let steps: usize = std::env::args().nth(2).map_or(32, |s| s.parse().unwrap());
    let g = Gguf::open(&models::default_model_path()).unwrap();
    let m = Llama::from_gguf(&g, &Device::flex()).unwrap();
    let prompt: Vec<u32> = (100..161).collect();
    let mut c = m.new_cache(b);
    let _ = m
        .forward_last(&vec![prompt; b], &mut c)
        .unwrap()
        .into_data();
    let t = Instant::now();
    for i in 0..steps {
        let toks: Vec<Vec<u32>> = (0..b).map(|r| vec![(200 + i + r) as u32]).collect();
        let _ = m.forward_last(&toks, &mut c).unwrap().into_data();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "b={b} {:.2} ms/step {:.1} tok/s",
        s / steps as f64 * 1e3,
        (b * steps) as f64 / s
    );
}
