//! The step policy on a tiny random Llama (no model file needed): the engine's Policy contract,
//! seeded determinism, the tree-shared KV cache, and a whole search through it.

use std::path::Path;
use std::sync::Arc;

use burn::prelude::Device;
use ponder_engine::{
    CriticPanel, Evaluator, ExpandRequest, Models, NodeId, PathRef, Policy, Problem, SearchConfig,
    StepRule, Task, Tree, TreeId, search,
};
use ponder_policies::gguf::Gguf;
use ponder_policies::llama::Llama;
use ponder_policies::step_policy::{LlamaPolicy, Sampling};
use ponder_policies::tokenizer::Tokenizer;
use ponder_testkit::tiny_llama::tiny_llama_gguf;

fn policy(rule: StepRule, max_entries: usize) -> LlamaPolicy {
    let g = Gguf::parse(Path::new("tiny.gguf"), tiny_llama_gguf(5)).unwrap();
    let m = Llama::from_gguf(&g, &Device::flex()).unwrap();
    let t = Tokenizer::from_gguf(&g).unwrap();
    LlamaPolicy::new(m, t, rule, Sampling::default(), true, max_entries)
}

fn rule(max_tokens: u32) -> StepRule {
    StepRule {
        max_tokens,
        ..StepRule::default()
    }
}

#[derive(Debug)]
struct PlainTask;

impl Task for PlainTask {
    fn name(&self) -> &str {
        "plain"
    }
    fn prompt(&self, p: &Problem) -> String {
        format!("Q: {}\nA:", p.question)
    }
    fn extract_answer(&self, text: &str) -> Option<String> {
        text.rsplit("The answer is")
            .next()
            .filter(|_| text.contains("The answer is"))
            .map(|s| s.trim().to_string())
    }
    fn check(&self, a: &str, g: &str) -> bool {
        a == g
    }
}

/// A step's content: tokens, text, log-prob, finished.
type Content = (Option<Vec<u32>>, String, f32, bool);

/// What a step says, without the cache bookkeeping (`reused_tokens` depends on what was cached).
fn core(v: &[Vec<ponder_engine::Step>]) -> Vec<Vec<Content>> {
    v.iter()
        .map(|s| {
            s.iter()
                .map(|s| (s.tokens.clone(), s.text.clone(), s.logprob, s.finished))
                .collect()
        })
        .collect()
}

fn tree() -> Tree {
    Tree::new(
        TreeId(3),
        Problem::new("p", "1+1?"),
        "Q: 1+1?\nA:".into(),
        9,
        64,
    )
}

#[test]
fn proposals_keep_the_contract_and_repeat_with_the_seed() {
    let p = policy(rule(6), 64);
    let t = tree();
    let req = |seed| ExpandRequest {
        path: PathRef::new(&t, NodeId::ROOT),
        k: 3,
        seed,
        to_end: false,
        greedy: false,
        max_tokens: None,
    };
    let a = p.propose(&[req(1), req(2)]).unwrap();
    assert_eq!(a.len(), 2);
    for steps in &a {
        assert_eq!(steps.len(), 3);
        for s in steps {
            let toks = s.tokens.as_ref().expect("token ids are kept");
            assert_eq!(s.n_tokens as usize, toks.len());
            assert!(s.n_tokens <= 6);
            assert_eq!(s.text, p.tokenizer().decode(toks).unwrap());
            assert!(s.logprob <= 0.0 && s.logprob.is_finite());
        }
    }
    let b = p.propose(&[req(1), req(2)]).unwrap();
    assert_eq!(core(&a), core(&b), "same seeds, same steps");
    assert!(
        b[0][0].reused_tokens > 0,
        "the second call reused the prompt's cache"
    );
    assert_ne!(a[0], a[1], "different seeds, different steps");
    // Candidates decode as one batch, each from its own stream: candidate 0 of three is the
    // candidate of a single-candidate request with the same seed.
    // (The log-prob may differ in the last bit: batch shape changes the matmul blocking.)
    let single = p.propose(&[ExpandRequest { k: 1, ..req(1) }]).unwrap();
    let (x, y) = (&single[0][0], &a[0][0]);
    assert_eq!(
        (&x.tokens, &x.text, x.finished),
        (&y.tokens, &y.text, y.finished)
    );
    assert!((x.logprob - y.logprob).abs() < 1e-4);
    // Greedy candidates are all the same.
    let g = p
        .propose(&[ExpandRequest {
            greedy: true,
            ..req(4)
        }])
        .unwrap();
    assert!(g[0].windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn a_search_reuses_prefixes_and_release_forgets_the_tree() {
    let p = Arc::new(policy(rule(4), 1000));
    let models = Models {
        policy: p.clone(),
        rollout: None,
        critics: CriticPanel::new(),
        task: Arc::new(PlainTask),
    };
    let mut cfg = SearchConfig::alphallm();
    cfg.budget.simulations = 12;
    cfg.budget.max_depth = 4;
    cfg.expansion.widening.c_min_root = 2;
    cfg.expansion.widening.c_min = 2;
    let r = search(
        Problem::new("p", "1+1?"),
        TreeId(7),
        &cfg,
        Evaluator::direct(&models),
    )
    .unwrap();
    let st = p.cache_stats();
    assert!(st.reused > 0, "{st:?}");
    assert!(r.stats.tokens_reused > 0, "{:?}", r.stats);
    assert!(r.stats.tokens > 0);
    // Every node's step carries the exact tokens it was generated with.
    for n in r.tree.node_ids().filter(|&n| n != NodeId::ROOT) {
        assert!(r.tree.data(n).step.tokens.is_some());
    }
    // search() released the tree: a new expansion of the root recomputes the prompt.
    let before = p.cache_stats();
    let t = Tree::new(
        TreeId(7),
        Problem::new("p", "1+1?"),
        "Q: 1+1?\nA:".into(),
        1,
        8,
    );
    p.propose(&[ExpandRequest {
        path: PathRef::new(&t, NodeId::ROOT),
        k: 1,
        seed: 0,
        to_end: false,
        greedy: true,
        max_tokens: None,
    }])
    .unwrap();
    assert!(p.cache_stats().computed > before.computed);
}

#[test]
fn cached_and_recomputed_prefixes_agree_and_eviction_bounds_the_cache() {
    let t = tree();
    let req = ExpandRequest {
        path: PathRef::new(&t, NodeId::ROOT),
        k: 2,
        seed: 11,
        to_end: false,
        greedy: true,
        max_tokens: None,
    };
    let warm = policy(rule(5), 64);
    let first = warm.propose(&[req]).unwrap();
    let second = warm.propose(&[req]).unwrap();
    assert_eq!(core(&first), core(&second));
    assert!(warm.cache_stats().reused > 0);
    let cold = policy(rule(5), 1);
    assert_eq!(core(&cold.propose(&[req]).unwrap()), core(&first));
    // A cache of one entry evicts as soon as a second path is stored.
    let t2 = Tree::new(
        TreeId(4),
        Problem::new("q", "2+2?"),
        "Q: 2+2?\nA:".into(),
        9,
        64,
    );
    cold.propose(&[ExpandRequest {
        path: PathRef::new(&t2, NodeId::ROOT),
        ..req
    }])
    .unwrap();
    assert!(cold.cache_stats().evicted > 0);
}

#[test]
fn a_byte_budget_evicts_by_memory_and_changes_no_step() {
    let t = tree();
    let t2 = Tree::new(
        TreeId(5),
        Problem::new("q", "2+2?"),
        "Q: 2+2?\nA:".into(),
        9,
        64,
    );
    fn req(t: &Tree) -> ExpandRequest<'_> {
        ExpandRequest {
            path: PathRef::new(t, NodeId::ROOT),
            k: 2,
            seed: 3,
            to_end: false,
            greedy: true,
            max_tokens: None,
        }
    }
    let roomy = policy(rule(5), 1000);
    let a = roomy.propose(&[req(&t), req(&t2)]).unwrap();
    assert_eq!(roomy.cache_stats().evicted, 0);
    // The tiny model's K/V is 256 bytes per token: a 1 KB budget holds one short prefix.
    let tight = policy(rule(5), 1000).with_cache_bytes(1024);
    let b = tight.propose(&[req(&t), req(&t2)]).unwrap();
    assert_eq!(core(&a), core(&b));
    assert!(tight.cache_stats().evicted > 0, "{:?}", tight.cache_stats());
}

#[test]
fn rows_that_finish_early_take_no_more_tokens() {
    // One batch: a request capped at 2 tokens (a token budget) beside one that may run to 12. The capped rows finish first and stay in the batch while the others
    // decode; they must not grow past their cap, and each candidate must be what it is alone.
    let p = policy(rule(12), 64);
    let t = tree();
    let req = |seed, k, max_tokens| ExpandRequest {
        path: PathRef::new(&t, NodeId::ROOT),
        k,
        seed,
        to_end: false,
        greedy: false,
        max_tokens,
    };
    // One capped row of nine: too few finished rows for the batch to drop them at once.
    let both = p.propose(&[req(1, 1, Some(2)), req(2, 8, None)]).unwrap();
    for s in &both[0] {
        assert!(
            s.n_tokens <= 2,
            "capped candidate has {} tokens",
            s.n_tokens
        );
        assert_eq!(s.tokens.as_ref().map(Vec::len), Some(s.n_tokens as usize));
    }
    let alone = p.propose(&[req(1, 1, Some(2))]).unwrap();
    assert_eq!(
        core(&both[..1])
            .concat()
            .iter()
            .map(|c| (&c.0, &c.1))
            .collect::<Vec<_>>(),
        core(&alone)
            .concat()
            .iter()
            .map(|c| (&c.0, &c.1))
            .collect::<Vec<_>>()
    );
    assert!(both[1].iter().all(|s| s.n_tokens <= 12));
}

/// A whole solution is cut into its steps on token boundaries, each keeping its exact tokens
/// (the engine stores them as a chain, INV-7).
#[test]
fn whole_solutions_split_into_steps_with_their_tokens() {
    let p = policy(rule(16), 100);
    let g = Gguf::parse(Path::new("tiny.gguf"), tiny_llama_gguf(5)).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let text = "a b\nc d\nThe answer is 4.\n";
    let tokens = tok.encode(text).unwrap();
    let whole = ponder_engine::Step {
        text: tok.decode(&tokens).unwrap(),
        n_tokens: tokens.len() as u32,
        tokens: Some(tokens.clone()),
        logprob: -3.0,
        finished: true,
        ..ponder_engine::Step::default()
    };
    let pieces = p.split_steps(&whole).expect("token ids are known");
    let texts: Vec<&str> = pieces.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["a b\n", "c d\n", "The answer is 4.\n"]);
    let joined: Vec<u32> = pieces
        .iter()
        .flat_map(|s| s.tokens.clone().unwrap())
        .collect();
    assert_eq!(joined, tokens);
    assert_eq!(
        pieces.iter().map(|s| s.n_tokens).sum::<u32>(),
        whole.n_tokens
    );
    assert!((pieces.iter().map(|s| s.logprob).sum::<f32>() + 3.0).abs() < 1e-4);
    assert!(pieces[2].finished && !pieces[0].finished && !pieces[1].finished);
}
