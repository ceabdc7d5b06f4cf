//! Batching sequences of different lengths: left padding with masks gives the same logits as
//! running each sequence alone, and the step policy decodes many requests (of one tree or many)
//! in one batch with the same steps as one request at a time.

use std::path::Path;

use burn::prelude::*;
use ponder_engine::{ExpandRequest, NodeId, PathRef, Policy, Problem, StepRule, Tree, TreeId};
use ponder_policies::gguf::Gguf;
use ponder_policies::llama::{KvCache, Llama};
use ponder_policies::step_policy::{LlamaPolicy, Sampling};
use ponder_policies::tokenizer::Tokenizer;
use ponder_testkit::tiny_llama::tiny_llama_gguf;

fn model() -> (Llama, Tokenizer) {
    let g = Gguf::parse(Path::new("tiny.gguf"), tiny_llama_gguf(11)).unwrap();
    (
        Llama::from_gguf(&g, &Device::flex()).unwrap(),
        Tokenizer::from_gguf(&g).unwrap(),
    )
}

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, v] = t.dims();
    t.try_into_vec_as::<f32>()
        .unwrap()
        .chunks(v)
        .map(<[f32]>::to_vec)
        .collect()
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "{what}: max abs diff {diff}");
}

/// Runs `steps` single tokens after `prompt`, alone; returns the logits after each.
fn alone(m: &Llama, prompt: &[u32], steps: &[u32]) -> (KvCache, Vec<Vec<f32>>) {
    let mut c = m.new_cache(1);
    let mut out = vec![rows(m.forward_last(&[prompt.to_vec()], &mut c).unwrap()).remove(0)];
    let prefill = c.clone();
    for &s in steps {
        out.push(rows(m.forward_last(&[vec![s]], &mut c).unwrap()).remove(0));
    }
    (prefill, out)
}

#[test]
fn forward_last_is_the_last_position_of_forward() {
    let (m, _) = model();
    let prompt: Vec<u32> = (3..20).collect();
    let all = m
        .forward(std::slice::from_ref(&prompt), &mut m.new_cache(1))
        .unwrap();
    let [_, t, v] = all.dims();
    let last: Tensor<2> = all.slice([0..1, t - 1..t, 0..v]).reshape([1, v]);
    let fast = m.forward_last(&[prompt], &mut m.new_cache(1)).unwrap();
    assert_close(&rows(last)[0], &rows(fast)[0], "last position");
}

#[test]
fn padded_rows_match_each_sequence_alone() {
    let (m, _) = model();
    let a: Vec<u32> = vec![5, 80, 81, 40];
    let b: Vec<u32> = (30..41).collect();
    let c: Vec<u32> = vec![100, 101, 102, 103, 104, 105, 106];
    let (steps_a, steps_b, steps_c) = ([7u32, 9, 11], [12u32, 13, 14], [50u32, 51, 52]);
    let (ca, la) = alone(&m, &a, &steps_a);
    let (cb, lb) = alone(&m, &b, &steps_b);
    let (cc, lc) = alone(&m, &c, &steps_c);
    // Rows: a, b, b (a repeated part), c; lengths 4, 11, 11, 7.
    let mut joint = KvCache::join(&[(&ca, 1), (&cb, 2), (&cc, 1)]);
    assert_eq!(joint.batch(), 4);
    assert_eq!(joint.len(), 11);
    assert_eq!(
        (0..4).map(|r| joint.row_len(r)).collect::<Vec<_>>(),
        [4, 11, 11, 7]
    );
    for i in 0..2 {
        let input = vec![
            vec![steps_a[i]],
            vec![steps_b[i]],
            vec![steps_b[i]],
            vec![steps_c[i]],
        ];
        let out = rows(m.forward_last(&input, &mut joint).unwrap());
        assert_close(&out[0], &la[i + 1], "row a");
        assert_close(&out[1], &lb[i + 1], "row b");
        assert_close(&out[2], &lb[i + 1], "row b again");
        assert_close(&out[3], &lc[i + 1], "row c");
    }
    // b leaves the batch: the rest go on unchanged, and b's padding columns are dropped.
    let mut kept = joint.select_rows(&[3, 0]);
    assert_eq!(kept.len(), 9, "the longest kept row is c, 7 + 2 tokens");
    let out = rows(
        m.forward_last(&[vec![steps_c[2]], vec![steps_a[2]]], &mut kept)
            .unwrap(),
    );
    assert_close(&out[0], &lc[3], "row c after select");
    assert_close(&out[1], &la[3], "row a after select");
    // A multi-token run on a padded batch (prefill of a next step) matches too.
    let mut joint = KvCache::join(&[(&ca, 1), (&cc, 1)]);
    let out = rows(
        m.forward_last(&[steps_a.to_vec(), steps_c.to_vec()], &mut joint)
            .unwrap(),
    );
    assert_close(&out[0], &la[3], "row a, three tokens at once");
    assert_close(&out[1], &lc[3], "row c, three tokens at once");
}

#[test]
fn a_batch_that_does_not_match_its_cache_is_an_error() {
    let (m, _) = model();
    let mut c = m.new_cache(2);
    let err = m.forward_last(&[vec![1]], &mut c).unwrap_err();
    assert!(err.to_string().contains("cache of 2"), "{err}");
}

#[test]
fn requests_of_different_trees_decode_together_with_the_same_steps() {
    let (m, t) = model();
    let rule = StepRule {
        max_tokens: 6,
        ..StepRule::default()
    };
    let p = LlamaPolicy::new(m, t, rule.clone(), Sampling::default(), true, 64).with_max_rows(64);
    let short = Tree::new(TreeId(1), Problem::new("a", "1+1?"), "1+1?".into(), 9, 64);
    let long = Tree::new(
        TreeId(2),
        Problem::new("b", "A much longer question with many words?"),
        "A much longer question with many words?".into(),
        9,
        64,
    );
    fn req(tree: &Tree, k: u32, seed: u64) -> ExpandRequest<'_> {
        ExpandRequest {
            path: PathRef::new(tree, NodeId::ROOT),
            k,
            seed,
            to_end: false,
            greedy: false,
            max_tokens: None,
        }
    }
    let together = p
        .propose(&[req(&short, 3, 7), req(&long, 2, 8), req(&short, 1, 9)])
        .unwrap();
    let apart = [
        p.propose(&[req(&short, 3, 7)]).unwrap().remove(0),
        p.propose(&[req(&long, 2, 8)]).unwrap().remove(0),
        p.propose(&[req(&short, 1, 9)]).unwrap().remove(0),
    ];
    assert_eq!(together.len(), 3);
    for (tg, ap) in together.iter().zip(&apart) {
        assert_eq!(tg.len(), ap.len());
        for (x, y) in tg.iter().zip(ap) {
            assert_eq!(x.tokens, y.tokens);
            assert_eq!(x.finished, y.finished);
            assert!((x.logprob - y.logprob).abs() < 1e-3, "{x:?} vs {y:?}");
        }
    }
    // A row cap of 2 splits the call into batches; the steps stay the same.
    let (m, t) = model();
    let narrow = LlamaPolicy::new(m, t, rule, Sampling::default(), true, 64).with_max_rows(2);
    let split = narrow
        .propose(&[req(&short, 3, 7), req(&long, 2, 8), req(&short, 1, 9)])
        .unwrap();
    for (a, b) in split.iter().zip(&together) {
        let toks =
            |v: &Vec<ponder_engine::Step>| v.iter().map(|s| s.tokens.clone()).collect::<Vec<_>>();
        assert_eq!(toks(a), toks(b));
    }
}
