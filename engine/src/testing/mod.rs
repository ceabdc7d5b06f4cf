//! Test doubles (feature `test-util`): a synthetic arithmetic task whose truth is known, with a
//! scripted policy and noisy-oracle critics ([`synthetic`]), and a zero-cost evaluator for
//! measuring the tree itself ([`mod@bench`]), and slow wrappers that imitate an inference server
//! ([`latency`]). They are named as test doubles and are never a product
//! default: the CLI only uses them when asked for the synthetic task or `bench tree`.

pub mod bench;
pub mod latency;
pub mod synthetic;
