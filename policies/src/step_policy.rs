//! [`LlamaPolicy`]: the engine's [`Policy`] on the in-process Llama decoder. It generates one
//! reasoning step per candidate (until the [`StepRule`] cuts, EOS, or the token cap), samples
//! with an explicit seed, returns the exact token ids and their summed log-probability, and keeps
//! a tree-shared KV cache: the keys and values of a path's prefix are stored under its
//! [`PathKey`], so expanding a child reuses its ancestors' entries instead of re-encoding the
//! prompt and prefix.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ponder_engine::rng::{Rng, mix};
use ponder_engine::{
    BoxError, ExpandRequest, NodeId, PathKey, PathRef, Policy, Step, StepRule, TreeId,
};

use crate::error::{Error, Result};
use crate::llama::{KvCache, Llama, to_vec};
use crate::tokenizer::Tokenizer;

/// Sampling settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// Temperature (0 = greedy).
    pub temperature: f32,
    /// Nucleus sampling mass (1 = off).
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
        }
    }
}

/// Counters of the KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Tokens run through the model (prefix and generated).
    pub computed: u64,
    /// Prefix tokens whose keys and values came from the cache.
    pub reused: u64,
    /// Prompt + prefix tokens of every request (what a policy without a cache encodes).
    pub prefix: u64,
    /// Tokens generated.
    pub generated: u64,
    /// Entries dropped to stay under the limit.
    pub evicted: u64,
}

impl CacheStats {
    /// Forward tokens a prefix-recomputing policy would run (`prefix + generated`) over the
    /// tokens this one ran.
    pub fn reuse_ratio(&self) -> f64 {
        (self.prefix + self.generated) as f64 / self.computed.max(1) as f64
    }
}

struct Entry {
    cache: KvCache,
    /// Logits of the last position, `[vocab]`.
    logits: Vec<f32>,
    /// Hidden state of the last position, `[d_model]` (the critics' features).
    hidden: Vec<f32>,
    tokens: Vec<u32>,
    last_used: u64,
}

/// The step policy over a loaded [`Llama`].
pub struct LlamaPolicy {
    model: Llama,
    tokenizer: Tokenizer,
    rule: StepRule,
    sampling: Sampling,
    chat: bool,
    max_entries: usize,
    /// Most bytes of keys and values the store holds (each entry holds its whole path's).
    max_bytes: usize,
    /// Most candidate rows decoded in one batch.
    max_rows: usize,
    store: Mutex<HashMap<PathKey, Entry>>,
    clock: AtomicU64,
    computed: AtomicU64,
    reused: AtomicU64,
    prefix_total: AtomicU64,
    generated: AtomicU64,
    evicted: AtomicU64,
}

impl std::fmt::Debug for LlamaPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaPolicy")
            .field("rule", &self.rule)
            .field("sampling", &self.sampling)
            .finish()
    }
}

impl LlamaPolicy {
    /// A policy generating steps cut by `rule`. With `chat`, the task prompt is wrapped in the
    /// tokenizer's chat template as the user turn. `max_entries` bounds the KV cache (paths).
    pub fn new(
        model: Llama,
        tokenizer: Tokenizer,
        rule: StepRule,
        sampling: Sampling,
        chat: bool,
        max_entries: usize,
    ) -> Self {
        LlamaPolicy {
            model,
            tokenizer,
            rule,
            sampling,
            chat,
            max_entries: max_entries.max(1),
            max_bytes: 2 << 30,
            max_rows: 64,
            store: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            computed: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            prefix_total: AtomicU64::new(0),
            generated: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// Caps the bytes of keys and values the prefix store keeps (default 2 GiB): an entry holds
    /// the whole K/V of its path, so on long paths the entry count alone does not bound memory.
    /// The least recently used entries go first.
    pub fn with_cache_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// Caps the candidate rows decoded in one batch (default 64); wider policy calls decode in
    /// several batches.
    pub fn with_max_rows(mut self, rows: usize) -> Self {
        self.max_rows = rows.max(1);
        self
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Cache counters so far.
    pub fn cache_stats(&self) -> CacheStats {
        // Relaxed: statistics counters.
        CacheStats {
            computed: self.computed.load(Ordering::Relaxed),
            reused: self.reused.load(Ordering::Relaxed),
            prefix: self.prefix_total.load(Ordering::Relaxed),
            generated: self.generated.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    fn tick(&self) -> u64 {
        // Relaxed: an LRU clock; only its order matters.
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// How many tokens the policy reads for a task prompt (chat-wrapped if configured): a
    /// request's `prompt_tokens`.
    ///
    /// # Errors
    /// Text that does not tokenise.
    pub fn prompt_len(&self, prompt: &str) -> Result<usize> {
        Ok(self.encode_prompt(prompt)?.len())
    }

    /// The prompt's tokens (chat-wrapped if configured).
    fn prompt_tokens(&self, path: &PathRef<'_>) -> Result<Vec<u32>> {
        self.encode_prompt(path.prompt())
    }

    fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        let text = if self.chat {
            self.tokenizer.chat().render(None, prompt)
        } else {
            prompt.to_string()
        };
        Ok(self.tokenizer.encode(&text)?)
    }

    /// The backbone's hidden state after each step of a path given as text (`prompt` as the
    /// task renders it, then `steps`), in one pass: entry `i` is the state after
    /// `steps[..=i]`, encoded exactly as [`LlamaPolicy::features`] encodes a tree path. This is
    /// how critic training data (which stores text) becomes features.
    ///
    /// # Errors
    /// Text that does not tokenise, or a path longer than the model's context.
    pub fn step_features(&self, prompt: &str, steps: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut cache = self.model.new_cache(1);
        let prompt = self.encode_prompt(prompt)?;
        self.model.forward_last(&[prompt], &mut cache)?;
        let mut out = Vec::with_capacity(steps.len());
        let mut last = None;
        for step in steps {
            let run = self.tokenizer.encode(step)?;
            if !run.is_empty() {
                let (_, h) = self.model.forward_last_hidden(&[run], &mut cache)?;
                last = Some(to_vec(h)?);
            }
            match &last {
                Some(h) => out.push(h.clone()),
                None => {
                    return Err(Error::Model(
                        "the path's first step is empty: no state to read".into(),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// A step's tokens: the ones it was generated with, or its text re-tokenised.
    fn step_tokens(&self, s: &Step) -> Result<Vec<u32>> {
        match &s.tokens {
            Some(t) => Ok(t.clone()),
            None => Ok(self.tokenizer.encode(&s.text)?),
        }
    }

    /// The KV cache and last logits after the whole path, built from the deepest cached
    /// ancestor and stored under the path's key.
    fn prefix(&self, path: &PathRef<'_>) -> Result<Encoded> {
        let tree = path.tree();
        let nodes = tree.path_to(path.node());
        // Token runs: the prompt at the root, then each node's step.
        let mut runs: Vec<Vec<u32>> = Vec::with_capacity(nodes.len());
        runs.push(self.prompt_tokens(path)?);
        for &n in &nodes[1..] {
            runs.push(self.step_tokens(&tree.data(n).step)?);
        }
        let key = |n: NodeId| PathKey {
            tree: tree.id(),
            node: n,
        };
        // The deepest ancestor (or the node itself) already in the store.
        let mut start = None;
        {
            let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
            for (i, &n) in nodes.iter().enumerate().rev() {
                if let Some(e) = store.get_mut(&key(n)) {
                    e.last_used = self.tick();
                    start = Some((
                        i,
                        e.cache.clone(),
                        e.logits.clone(),
                        e.hidden.clone(),
                        e.tokens.len(),
                    ));
                    break;
                }
            }
        }
        let (mut cache, mut logits, mut hidden, from, reused) = match start {
            Some((i, c, l, h, len)) => (c, l, h, i + 1, len as u64),
            None => (self.model.new_cache(1), Vec::new(), Vec::new(), 0, 0),
        };
        let mut tokens: Vec<u32> = runs[..from].iter().flatten().copied().collect();
        for (i, run) in runs.iter().enumerate().skip(from) {
            if !run.is_empty() {
                let (out, h) = self
                    .model
                    .forward_last_hidden(std::slice::from_ref(run), &mut cache)?;
                logits = to_vec(out)?;
                hidden = to_vec(h)?;
                // Relaxed: statistics counters.
                self.computed.fetch_add(run.len() as u64, Ordering::Relaxed);
            }
            tokens.extend_from_slice(run);
            self.remember(key(nodes[i]), &cache, &logits, &hidden, &tokens);
        }
        // Relaxed: statistics counters.
        self.reused.fetch_add(reused, Ordering::Relaxed);
        self.prefix_total
            .fetch_add(tokens.len() as u64, Ordering::Relaxed);
        Ok(Encoded {
            cache,
            logits,
            hidden,
            reused,
        })
    }

    /// The backbone's last hidden state after each path (`[d_model]` per path): what the
    /// critics' learned heads read. A path the policy has encoded before (or will expand next)
    /// is encoded once for both: the result is cached under the path's key like any prefix.
    /// A path with an extra step (a rollout's completion) runs that step on top of the cached
    /// prefix without storing it.
    ///
    /// # Errors
    /// A step that does not tokenise, or a path longer than the model's context.
    pub fn features(&self, paths: &[PathRef<'_>]) -> Result<Vec<Vec<f32>>> {
        paths
            .iter()
            .map(|p| {
                let base = PathRef::new(p.tree(), p.node());
                let enc = self.prefix(&base)?;
                match p.extra() {
                    None => Ok(enc.hidden),
                    Some(step) => {
                        let run = self.step_tokens(step)?;
                        if run.is_empty() {
                            return Ok(enc.hidden);
                        }
                        let mut cache = enc.cache;
                        let (_, h) = self.model.forward_last_hidden(&[run], &mut cache)?;
                        to_vec(h)
                    }
                }
            })
            .collect()
    }

    /// The model's width (the length of [`LlamaPolicy::features`] vectors).
    pub fn feature_dim(&self) -> usize {
        self.model.config().d_model
    }

    /// The model.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    fn remember(
        &self,
        k: PathKey,
        cache: &KvCache,
        logits: &[f32],
        hidden: &[f32],
        tokens: &[u32],
    ) {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.tick();
        store.insert(
            k,
            Entry {
                cache: cache.clone(),
                logits: logits.to_vec(),
                hidden: hidden.to_vec(),
                tokens: tokens.to_vec(),
                last_used: now,
            },
        );
        // K and V of one cached position, every layer.
        let cfg = self.model.config();
        let per_token = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim() * 4;
        let mut bytes: usize = store.values().map(|e| e.cache.len() * per_token).sum();
        // The entry just stored is kept even alone over the budget: the caller is using it.
        while store.len() > self.max_entries || (bytes > self.max_bytes && store.len() > 1) {
            let Some(oldest) = store
                .iter()
                .filter(|(key, _)| **key != k)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(key, _)| *key)
            else {
                break;
            };
            if let Some(e) = store.remove(&oldest) {
                bytes -= e.cache.len() * per_token;
            }
            // Relaxed: statistics counter.
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The most tokens one candidate may take: the step rule's cap, eight times that for a
    /// whole solution.
    fn step_cap(&self, to_end: bool) -> u32 {
        if to_end {
            self.rule.max_tokens.saturating_mul(8)
        } else {
            self.rule.max_tokens
        }
    }

    /// Samples every request's `k` candidate steps after its prefix, decoding all candidates
    /// of all requests together as one batch: prefixes of different lengths (from one tree or
    /// many) are padded on the left and masked. Candidate `j` of a request draws from its own
    /// stream seeded by the request's seed and `j`, so its step depends neither on the other
    /// candidates nor on what else shares the batch. Rows that finish leave the batch.
    fn sample_steps(&self, jobs: &[Prefixed<'_, '_>]) -> Result<Vec<Vec<Step>>> {
        struct Cand {
            job: usize,
            rng: Rng,
            tokens: Vec<u32>,
            logprob: f64,
            finished: bool,
            done: bool,
            cap: usize,
            to_end: bool,
            greedy: bool,
        }
        let vocab = self.model.config().vocab;
        let eos = self.tokenizer.eos();
        let mut cands: Vec<Cand> = Vec::new();
        let mut rows: Vec<Vec<f32>> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let req = job.req;
            let cap = self
                .step_cap(req.to_end)
                .min(req.max_tokens.unwrap_or(u32::MAX))
                .max(1) as usize;
            for j in 0..req.k as usize {
                cands.push(Cand {
                    job: i,
                    rng: Rng::new(mix(req.seed, j as u64)),
                    tokens: Vec::new(),
                    logprob: 0.0,
                    finished: false,
                    done: false,
                    cap,
                    to_end: req.to_end,
                    greedy: req.greedy || self.sampling.temperature <= 0.0,
                });
                rows.push(job.enc.logits.clone());
            }
        }
        let parts: Vec<(&KvCache, usize)> = jobs
            .iter()
            .map(|j| (&j.enc.cache, j.req.k as usize))
            .filter(|(_, k)| *k > 0)
            .collect();
        let mut cache = KvCache::join(&parts);
        // `live[r]` = the candidate decoded in batch row `r`.
        let mut live: Vec<usize> = (0..cands.len()).collect();
        while !live.is_empty() {
            let mut inputs = Vec::with_capacity(live.len());
            for (&ci, row) in live.iter().zip(&rows) {
                let c = &mut cands[ci];
                if c.done {
                    // A row that finished earlier and is still in the batch: its step is
                    // complete and takes no more tokens (only its cache row moves along).
                    inputs.push(vec![c.tokens.last().copied().unwrap_or(0)]);
                    continue;
                }
                let next = pick(row, &self.sampling, c.greedy, &mut c.rng);
                c.logprob += f64::from(log_softmax_at(row, next));
                if Some(next as u32) == eos {
                    c.finished = true;
                    c.done = true;
                } else {
                    c.tokens.push(next as u32);
                    let text = self.tokenizer.decode(&c.tokens)?;
                    if c.to_end {
                        // A whole solution runs past every step boundary and ends at its
                        // answer line (the engine splits it into steps afterwards).
                        if self.rule.answer_end(&text).is_some() {
                            c.finished = true;
                            c.done = true;
                        } else if c.tokens.len() >= c.cap {
                            c.done = true;
                        }
                    } else if let Some(cut) = self.rule.cut(&text) {
                        c.finished |= cut.finished;
                        c.done = true;
                    } else if c.tokens.len() >= c.cap {
                        c.done = true;
                    }
                }
                // Finished rows keep the batch rectangular with a token whose output is ignored.
                inputs.push(vec![c.tokens.last().copied().unwrap_or(0)]);
            }
            let keep: Vec<usize> = (0..live.len()).filter(|&r| !cands[live[r]].done).collect();
            if keep.is_empty() {
                break;
            }
            // Drop finished rows once they are a quarter of the batch: copying the cache costs
            // less than decoding dead rows from then on.
            if (live.len() - keep.len()) * 4 >= live.len() {
                cache = cache.select_rows(&keep);
                inputs = keep.iter().map(|&r| inputs[r].clone()).collect();
                live = keep.iter().map(|&r| live[r]).collect();
            }
            let out = self.model.forward_last(&inputs, &mut cache)?;
            let flat = to_vec(out)?;
            rows = flat.chunks_exact(vocab).map(<[f32]>::to_vec).collect();
            let active = live.iter().filter(|&&ci| !cands[ci].done).count() as u64;
            // Relaxed: statistics counters.
            self.computed.fetch_add(active, Ordering::Relaxed);
            self.generated.fetch_add(active, Ordering::Relaxed);
        }
        let mut out: Vec<Vec<Step>> = jobs.iter().map(|_| Vec::new()).collect();
        for c in cands {
            out[c.job].push(Step {
                n_tokens: c.tokens.len() as u32,
                text: self.tokenizer.decode(&c.tokens)?,
                tokens: Some(c.tokens),
                logprob: c.logprob as f32,
                finished: c.finished,
                reused_tokens: jobs[c.job].enc.reused as u32,
            });
        }
        Ok(out)
    }
}

/// A path run through the model.
struct Encoded {
    cache: KvCache,
    /// Logits after the path, `[vocab]`.
    logits: Vec<f32>,
    /// Hidden state after the path, `[d_model]`.
    hidden: Vec<f32>,
    /// Tokens that came from the cache.
    reused: u64,
}

/// A request with its prefix encoded.
struct Prefixed<'r, 'a> {
    req: &'r ExpandRequest<'a>,
    enc: Encoded,
}

/// Log-softmax of `logits` at `i`.
fn log_softmax_at(logits: &[f32], i: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| f64::from(x - max).exp()).sum();
    (f64::from(logits[i] - max) - sum.ln()) as f32
}

/// Picks the next token: argmax, or a draw from the tempered, top-k / top-p filtered
/// distribution.
fn pick(logits: &[f32], s: &Sampling, greedy: bool, rng: &mut Rng) -> usize {
    if greedy {
        return logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .map_or(0, |(i, _)| i);
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let by_logit = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    if s.top_k > 0 && s.top_k < order.len() {
        // Partition first: only the kept tokens get sorted.
        order.select_nth_unstable_by(s.top_k - 1, by_logit);
        order.truncate(s.top_k);
    }
    if s.top_p < 1.0 || s.top_k > 0 {
        order.sort_unstable_by(by_logit);
    } else {
        // Plain sampling needs no order, only the maximum for a stable softmax.
        let best = (0..order.len())
            .max_by(|&a, &b| by_logit(&order[b], &order[a]))
            .unwrap_or(0);
        order.swap(0, best);
    }
    let t = f64::from(s.temperature.max(1e-4));
    let max = f64::from(logits[order[0]]);
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((f64::from(logits[i]) - max) / t).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if s.top_p < 1.0 {
        let mut acc = 0.0;
        let keep = probs
            .iter()
            .position(|&p| {
                acc += p;
                acc >= f64::from(s.top_p)
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
        order.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let mut u = rng.next_f64();
    for (i, p) in order.iter().zip(&probs) {
        if u < *p {
            return *i;
        }
        u -= p;
    }
    *order.last().expect("at least one token")
}

impl Policy for LlamaPolicy {
    fn name(&self) -> &str {
        "llama"
    }

    fn propose(
        &self,
        requests: &[ExpandRequest<'_>],
    ) -> std::result::Result<Vec<Vec<Step>>, BoxError> {
        let mut jobs = Vec::with_capacity(requests.len());
        for req in requests {
            if req.path.extra().is_some() {
                return Err(Box::new(Error::Model(
                    "expansion requests never carry an extra step".into(),
                )));
            }
            jobs.push(Prefixed {
                req,
                enc: self.prefix(&req.path)?,
            });
        }
        // Bounded batches: a very wide call decodes in chunks of at most `max_rows` candidates.
        let mut out = Vec::with_capacity(requests.len());
        let mut rest = &jobs[..];
        while !rest.is_empty() {
            let mut n = 0;
            let mut rows = 0;
            while n < rest.len() && (n == 0 || rows + rest[n].req.k as usize <= self.max_rows) {
                rows += rest[n].req.k as usize;
                n += 1;
            }
            out.extend(self.sample_steps(&rest[..n])?);
            rest = &rest[n..];
        }
        Ok(out)
    }

    fn max_step_tokens(&self, to_end: bool) -> Option<u32> {
        Some(self.step_cap(to_end))
    }

    fn step_rule(&self) -> Option<&StepRule> {
        Some(&self.rule)
    }

    /// Cuts a whole solution's tokens where the step rule ends each step while decoding (the
    /// same test, token by token, that ends a one-step candidate), so every step keeps its exact
    /// tokens. `None` without token ids or when the tokenizer fails.
    fn split_steps(&self, step: &Step) -> Option<Vec<Step>> {
        let tokens = step.tokens.as_ref()?;
        let cap = self.rule.max_tokens.max(1) as usize;
        let per_token = step.logprob / tokens.len().max(1) as f32;
        let mut runs: Vec<(usize, usize, bool)> = Vec::new();
        let mut start = 0;
        while start < tokens.len() {
            let mut end = start;
            let mut finished = false;
            loop {
                end += 1;
                let text = self.tokenizer.decode(&tokens[start..end]).ok()?;
                if let Some(cut) = self.rule.cut(&text) {
                    finished = cut.finished;
                    break;
                }
                if end - start >= cap || end == tokens.len() {
                    break;
                }
            }
            runs.push((start, end, finished));
            start = end;
            if finished {
                break;
            }
        }
        // Whitespace after the last step belongs to it.
        if runs.len() > 1
            && let Some(&(a, b, _)) = runs.last()
            && self.tokenizer.decode(&tokens[a..b]).ok()?.trim().is_empty()
        {
            runs.pop();
            if let Some(last) = runs.last_mut() {
                last.1 = b;
            }
        }
        let n = runs.len();
        runs.into_iter()
            .enumerate()
            .map(|(i, (a, b, finished))| {
                let piece = tokens[a..b].to_vec();
                Some(Step {
                    text: self.tokenizer.decode(&piece).ok()?,
                    logprob: per_token * piece.len() as f32,
                    n_tokens: piece.len() as u32,
                    tokens: Some(piece),
                    reused_tokens: if i == 0 { step.reused_tokens } else { 0 },
                    finished: finished || (i + 1 == n && step.finished && b == tokens.len()),
                })
            })
            .collect()
    }

    fn release(&self, tree: TreeId) {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        store.retain(|k, _| k.tree != tree);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_respects_greedy_top_k_and_seeds() {
        let logits = [0.0f32, 3.0, 1.0, 2.9];
        let s = Sampling::default();
        assert_eq!(pick(&logits, &s, true, &mut Rng::new(1)), 1);
        let top1 = Sampling {
            top_k: 1,
            ..Sampling::default()
        };
        for seed in 0..20 {
            assert_eq!(pick(&logits, &top1, false, &mut Rng::new(seed)), 1);
        }
        let a: Vec<usize> = (0..50)
            .map(|i| pick(&logits, &s, false, &mut Rng::new(i)))
            .collect();
        let b: Vec<usize> = (0..50)
            .map(|i| pick(&logits, &s, false, &mut Rng::new(i)))
            .collect();
        assert_eq!(a, b, "same seeds, same draws");
        assert!(
            a.contains(&3) && a.contains(&1),
            "both likely tokens drawn: {a:?}"
        );
        let nucleus = Sampling {
            top_p: 0.4,
            ..Sampling::default()
        };
        for seed in 0..20 {
            assert_eq!(pick(&logits, &nucleus, false, &mut Rng::new(seed)), 1);
        }
    }

    #[test]
    fn log_softmax_is_normalised() {
        let l = [1.0f32, 2.0, 3.0];
        let total: f64 = (0..3).map(|i| f64::from(log_softmax_at(&l, i)).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
