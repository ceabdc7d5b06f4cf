//! What model-backed critics need from the in-process model, as a trait: trained heads read
//! hidden-state features of a path, self-evaluation reads next-token logits. [`LlamaPolicy`]
//! implements it; a critic written against [`Backbone`] works on any model that does.

use burn::prelude::Device;
use ponder_engine::PathRef;

use crate::error::Result;
use crate::step_policy::LlamaPolicy;
use crate::tokenizer::ChatTemplate;

/// A model critics can read.
pub trait Backbone: Send + Sync {
    /// The width of [`Backbone::features`] vectors.
    fn feature_dim(&self) -> usize;
    /// The device the model's tensors live on (a head is moved there).
    fn device(&self) -> Device;
    /// The model's hidden state at the last position of each path (the step a path carries
    /// included).
    ///
    /// # Errors
    /// A path that does not tokenise or does not fit the model's context.
    fn features(&self, paths: &[PathRef<'_>]) -> Result<Vec<Vec<f32>>>;
    /// Features of every step prefix of one path given as text: entry `i` is the hidden state
    /// after `steps[..=i]`, encoded as [`Backbone::features`] encodes a tree path (how critic
    /// training data, stored as text, becomes features).
    ///
    /// # Errors
    /// Text that does not tokenise, or a path longer than the model's context.
    fn prefix_features(&self, prompt: &str, steps: &[String]) -> Result<Vec<Vec<f32>>>;
    /// Token ids of `text`.
    ///
    /// # Errors
    /// Text the tokenizer rejects.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// The chat template prompts are wrapped in.
    fn chat(&self) -> &ChatTemplate;
    /// Next-token logits after `tokens`.
    ///
    /// # Errors
    /// Too long an input, or a backend failure.
    fn last_logits(&self, tokens: &[u32]) -> Result<Vec<f32>>;
}

impl Backbone for LlamaPolicy {
    fn feature_dim(&self) -> usize {
        LlamaPolicy::feature_dim(self)
    }
    fn device(&self) -> Device {
        self.model().device().clone()
    }
    fn features(&self, paths: &[PathRef<'_>]) -> Result<Vec<Vec<f32>>> {
        LlamaPolicy::features(self, paths)
    }
    fn prefix_features(&self, prompt: &str, steps: &[String]) -> Result<Vec<Vec<f32>>> {
        self.step_features(prompt, steps)
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer().encode(text)?)
    }
    fn chat(&self) -> &ChatTemplate {
        self.tokenizer().chat()
    }
    fn last_logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.model().last_logits(tokens)
    }
}
