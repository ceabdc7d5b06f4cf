//! Loom models of the tree's protocols (`RUSTFLAGS="--cfg loom" cargo test -p ponder-engine --lib
//! loom_models`): the interleavings of a few threads, checked against the invariants INV-2..INV-7.

use super::*;
use loom::sync::Arc;

fn data(parent: NodeId, text: &str) -> NodeData {
    NodeData {
        parent,
        depth: 1,
        step: Step::text(text),
        terminal: false,
        answer: None,
    }
}

/// Two threads race to expand the root in full mode: exactly one wins (INV-4), and a reader
/// that sees a linked child also sees its data and evaluation (INV-2).
#[test]
fn expansion_is_claimed_once_and_published_safely() {
    loom::model(|| {
        let t = Arc::new(Tree::new(
            TreeId(0),
            Problem::new("p", "q"),
            String::new(),
            0,
            16,
        ));
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let t = t.clone();
                loom::thread::spawn(move || {
                    if t.reserve(NodeId::ROOT, 1, 1, 1, true).unwrap().is_some() {
                        let c = t
                            .alloc(data(NodeId::ROOT, if i == 0 { "a" } else { "b" }))
                            .unwrap();
                        t.set_eval(
                            c,
                            Eval {
                                score: 0.5,
                                ..Eval::default()
                            },
                            0.0,
                        );
                        t.link(NodeId::ROOT, c);
                        1
                    } else {
                        for c in t.children(NodeId::ROOT) {
                            assert!(!t.data(c).step.text.is_empty());
                            assert_eq!(t.eval(c).map(|e| e.score), Some(0.5));
                        }
                        0
                    }
                })
            })
            .collect();
        let wins: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(wins, 1);
        assert_eq!(t.child_count(NodeId::ROOT), 1);
    });
}

/// A chain linked as one (INV-7): a reader that sees its head also sees the rest of it, with
/// data and evaluation (the head's link publishes the links made below it first).
#[test]
fn a_chain_is_published_whole() {
    loom::model(|| {
        let t = Arc::new(Tree::new(
            TreeId(0),
            Problem::new("p", "q"),
            String::new(),
            0,
            16,
        ));
        let writer = {
            let t = t.clone();
            loom::thread::spawn(move || {
                t.reserve(NodeId::ROOT, 1, 1, 1, false).unwrap().unwrap();
                let head = t.alloc(data(NodeId::ROOT, "a\n")).unwrap();
                let tail = t.alloc(data(head, "b\n")).unwrap();
                t.reserve(head, 1, 1, 1, true).unwrap().unwrap();
                let e = Eval {
                    score: 0.5,
                    ..Eval::default()
                };
                assert!(t.link_chain(NodeId::ROOT, &[(head, e, 0.0), (tail, e, 0.0)], true));
            })
        };
        for head in t.children(NodeId::ROOT) {
            assert_eq!(t.eval(head).map(|e| e.score), Some(0.5));
            let below: Vec<NodeId> = t.children(head).collect();
            assert_eq!(
                below.len(),
                1,
                "the chain's rest is published with its head"
            );
            assert_eq!(t.data(below[0]).step.text, "b\n");
            assert_eq!(t.eval(below[0]).map(|e| e.score), Some(0.5));
        }
        writer.join().unwrap();
        assert_eq!(t.child_count(NodeId::ROOT), 1);
    });
}

/// Two threads link children concurrently: both links survive (INV-3).
#[test]
fn concurrent_links_both_survive() {
    loom::model(|| {
        let t = Arc::new(Tree::new(
            TreeId(0),
            Problem::new("p", "q"),
            String::new(),
            0,
            16,
        ));
        let handles: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|s| {
                let t = t.clone();
                loom::thread::spawn(move || {
                    let c = t.alloc(data(NodeId::ROOT, s)).unwrap();
                    t.set_eval(c, Eval::default(), 0.0);
                    t.reserve(NodeId::ROOT, 1, 2, 2, false).unwrap().unwrap();
                    t.link(NodeId::ROOT, c);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut texts: Vec<String> = t
            .children(NodeId::ROOT)
            .map(|c| t.data(c).step.text.clone())
            .collect();
        texts.sort();
        assert_eq!(texts, vec!["a".to_string(), "b".to_string()]);
    });
}

/// Two threads link children with the same step text under dedup: exactly one is linked,
/// and a reader never sees a linked child without its evaluation (INV-2, INV-3).
#[test]
fn dedup_links_one_of_two_equal_steps() {
    loom::model(|| {
        let t = Arc::new(Tree::new(
            TreeId(0),
            Problem::new("p", "q"),
            String::new(),
            0,
            16,
        ));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let t = t.clone();
                loom::thread::spawn(move || {
                    t.reserve(NodeId::ROOT, 1, 2, 2, false).unwrap().unwrap();
                    let c = t.alloc(data(NodeId::ROOT, "same")).unwrap();
                    let linked = t.link_new(NodeId::ROOT, c, Eval::default(), 0.25, true);
                    if !linked {
                        t.unreserve(NodeId::ROOT, 1);
                    }
                    for k in t.children(NodeId::ROOT) {
                        assert!(t.eval(k).is_some());
                        assert_eq!(t.q(k), 0.25);
                    }
                    u32::from(linked)
                })
            })
            .collect();
        let linked: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(linked, 1);
        assert_eq!(t.child_count(NodeId::ROOT), 1);
        assert_eq!(t.reserved(NodeId::ROOT), 1);
    });
}

/// A reader that reaches a child through the link sees its hot fields (depth, terminal)
/// written at allocation (INV-2), not only the OnceLock data.
#[test]
fn hot_fields_are_published_by_the_link() {
    loom::model(|| {
        let t = Arc::new(Tree::new(
            TreeId(0),
            Problem::new("p", "q"),
            String::new(),
            0,
            16,
        ));
        let writer = {
            let t = t.clone();
            loom::thread::spawn(move || {
                t.reserve(NodeId::ROOT, 1, 1, 1, false).unwrap().unwrap();
                let mut d = data(NodeId::ROOT, "a");
                d.depth = 7;
                d.terminal = true;
                let c = t.alloc(d).unwrap();
                t.link_new(NodeId::ROOT, c, Eval::default(), 0.0, false);
            })
        };
        for c in t.children(NodeId::ROOT) {
            assert_eq!(t.depth(c), 7);
            assert!(t.is_terminal(c));
        }
        writer.join().unwrap();
    });
}

/// Workers credit their root tallies concurrently: the sums are exact (INV-6).
#[test]
fn root_credits_add_up() {
    loom::model(|| {
        let t = Arc::new(Tree::new(
            TreeId(0),
            Problem::new("p", "q"),
            String::new(),
            0,
            4,
        ));
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let t = t.clone();
                loom::thread::spawn(move || {
                    t.credit(NodeId::ROOT, 3 + i, fixed(0.5) * i64::from(3 + i))
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(t.counts(NodeId::ROOT), (7, 0));
        assert!((t.value_sum(NodeId::ROOT) - 3.5).abs() < 1e-9);
    });
}

/// Enter/backup/abort from two threads: visits and in-flight are conserved (INV-5, INV-6).
#[test]
fn counts_are_conserved() {
    loom::model(|| {
        let t = Arc::new(Tree::new(
            TreeId(0),
            Problem::new("p", "q"),
            String::new(),
            0,
            4,
        ));
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let t = t.clone();
                loom::thread::spawn(move || {
                    t.enter(NodeId::ROOT);
                    if i == 0 {
                        t.backup(NodeId::ROOT, 1.0);
                    } else {
                        t.abort(NodeId::ROOT);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(t.counts(NodeId::ROOT), (1, 0));
        assert!((t.value_sum(NodeId::ROOT) - 1.0).abs() < 1e-9);
    });
}
