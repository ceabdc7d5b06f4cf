//! int8 weights (`Llama::quantized`): the host decoder computes what the tensor decoder computes
//! on the same int8 weights (dequantised into a dense copy with `cast(F32)`), for prefill,
//! decoding, padded batches of different lengths and the hidden states; the int8 model stays
//! close to the f32 one; and it refuses devices it cannot run on.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::DType;
use ponder_kernels::{Activations, Format};
use ponder_policies::gguf::Gguf;
use ponder_policies::llama::{KvCache, Llama};
use ponder_testkit::tiny_llama::tiny_llama_gguf;

fn dense() -> Llama {
    let g = Gguf::parse(Path::new("tiny.gguf"), tiny_llama_gguf(5)).unwrap();
    Llama::from_gguf(&g, &Device::flex()).unwrap()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().unwrap()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst <= tol, "{what}: largest difference {worst} > {tol}");
}

/// The same steps on two models: a 5-token prefill, then 4 single tokens; logits compared.
fn run_both(a: &Llama, b: &Llama, tol: f32) {
    let (mut ca, mut cb) = (a.new_cache(1), b.new_cache(1));
    let prompt = vec![vec![1u32, 40, 77, 200, 3]];
    let la = values(a.forward(&prompt, &mut ca).unwrap());
    let lb = values(b.forward(&prompt, &mut cb).unwrap());
    assert_close(&la, &lb, tol, "prefill logits");
    for tok in [9u32, 100, 258, 0] {
        let la = values(a.forward_last(&[vec![tok]], &mut ca).unwrap());
        let lb = values(b.forward_last(&[vec![tok]], &mut cb).unwrap());
        assert_close(&la, &lb, tol, "decode logits");
    }
    assert_eq!(ca.len(), cb.len());
}

#[test]
fn host_decoder_matches_the_tensor_decoder_on_the_same_weights() {
    for format in [Format::Q8, Format::Q4] {
        let q = dense()
            .quantized(format)
            .unwrap()
            .with_activations(Activations::F32);
        assert_eq!(q.quantization(), Some(format));
        // The same quantised weights, dequantised into tensors: the tensor decoder's path.
        let same = q.cast(DType::F32).unwrap();
        assert!(!same.is_quantized());
        run_both(&q, &same, 1e-4);
    }
}

#[test]
fn quantised_models_stay_close_to_the_f32_model() {
    let f = dense();
    // Memory: one byte per weight plus a scale per 32 (int8), or half a byte plus a scale and
    // a minimum (4-bit), against four; the error grows as the bits shrink.
    for (format, min_ratio, max_err) in [(Format::Q8, 3.0, 0.02), (Format::Q4, 4.5, 0.3)] {
        let q = f.quantized(format).unwrap();
        let ratio = f.weight_bytes() as f64 / q.weight_bytes() as f64;
        assert!(
            ratio > min_ratio,
            "{format:?}: f32 {} bytes, quantised {}",
            f.weight_bytes(),
            q.weight_bytes()
        );
        let prompt = vec![vec![1u32, 40, 77, 200, 3, 9, 100]];
        let lf = values(f.forward_last(&prompt, &mut f.new_cache(1)).unwrap());
        let lq = values(q.forward_last(&prompt, &mut q.new_cache(1)).unwrap());
        let norm = lf.iter().map(|v| v * v).sum::<f32>().sqrt();
        let err = lf
            .iter()
            .zip(&lq)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt();
        assert!(
            err / norm < max_err,
            "{format:?}: relative logit error {}",
            err / norm
        );
    }
}

#[test]
fn padded_batches_and_hidden_states_match() {
    let q = dense()
        .quantized(Format::Q4)
        .unwrap()
        .with_activations(Activations::F32);
    let same = q.cast(DType::F32).unwrap();
    // Two sequences of different lengths joined into one left-padded batch, then decoded.
    let join = |m: &Llama| -> (KvCache, Vec<f32>) {
        let mut c1 = m.new_cache(1);
        m.forward_last(&[vec![5, 6, 7, 8, 9, 10]], &mut c1).unwrap();
        let mut c2 = m.new_cache(1);
        m.forward_last(&[vec![20, 21]], &mut c2).unwrap();
        let mut c = KvCache::join(&[(&c1, 2), (&c2, 1)]);
        let (l, h) = m
            .forward_last_hidden(&[vec![11, 12], vec![13, 14], vec![22, 23]], &mut c)
            .unwrap();
        let mut v = values(l);
        v.extend(values(h));
        let l = m
            .forward_last(&[vec![1], vec![2], vec![3]], &mut c)
            .unwrap();
        v.extend(values(l));
        (c, v)
    };
    let (cq, vq) = join(&q);
    let (cs, vs) = join(&same);
    assert_eq!(cq.len(), cs.len());
    assert_close(&vq, &vs, 1e-4, "padded batch");
    // Every position's hidden state (what training reads) agrees too.
    let hq = values(
        q.hidden_all(&[vec![3, 4, 5]], &mut q.new_cache(1), None)
            .unwrap(),
    );
    let hs = values(
        same.hidden_all(&[vec![3, 4, 5]], &mut same.new_cache(1), None)
            .unwrap(),
    );
    assert_close(&hq, &hs, 1e-4, "hidden states");
}

#[test]
fn int8_needs_a_plain_cpu_device() {
    let g = Gguf::parse(Path::new("tiny.gguf"), tiny_llama_gguf(5)).unwrap();
    let m = Llama::from_gguf(&g, &Device::flex().autodiff()).unwrap();
    let e = m.quantized(Format::Q8).unwrap_err().to_string();
    assert!(e.contains("CPU backend"), "{e}");
    let half = dense().cast(DType::F16).unwrap();
    assert!(half.quantized(Format::Q8).is_err());
}

#[test]
fn shared_prefixes_stay_untouched_by_continuations() {
    // A cached prefix (as the step policy keeps one per tree node) decoded further by several
    // continuations, batched and alone: the prefix gives the same logits afterwards, and a
    // continuation decoded in a batch equals the same one decoded alone.
    let q = dense().quantized(Format::Q8).unwrap();
    let mut prefix = q.new_cache(1);
    q.forward_last(&[vec![4, 5, 6, 7]], &mut prefix).unwrap();
    let next = |c: &mut KvCache, tok: u32| values(q.forward_last(&[vec![tok]], c).unwrap());
    let first = next(&mut prefix.clone(), 9);
    let mut batch = prefix.repeat(3);
    let mut out = Vec::new();
    for step in 0..4u32 {
        out.push(values(
            q.forward_last(
                &[vec![10 + step], vec![20 + step], vec![30 + step]],
                &mut batch,
            )
            .unwrap(),
        ));
    }
    assert_eq!(
        next(&mut prefix.clone(), 9),
        first,
        "the shared prefix changed"
    );
    let mut alone = prefix.clone();
    let v = q.config().vocab;
    for (step, row) in out.iter().enumerate() {
        let l = next(&mut alone, 20 + step as u32);
        assert_close(&l, &row[v..2 * v], 1e-5, "row 1 of the batch against alone");
    }
    // Rows leave the batch and the rest go on.
    let mut rest = batch.select_rows(&[2]);
    let a = next(&mut rest, 40);
    assert_eq!(a.len(), v);
    assert_eq!(rest.len(), prefix.len() + 5);
}
