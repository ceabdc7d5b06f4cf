//! Turning a [`Config`] into models: the policy (in process, remote, or the synthetic test
//! double), the critic panel, and the task. The one loader every command and program uses.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use ponder_engine::{CachedCritic, Critic, CriticKind, CriticPanel, Models, Problem, ScoreRange};
#[cfg(feature = "local")]
use ponder_policies::step_policy::LlamaPolicy;
use ponder_remote::{Client, RemotePolicy, RemoteSampling};
use ponder_testkit::synthetic;

#[cfg(feature = "local")]
use crate::config::BackendKind;
use crate::config::{Config, CriticsConfig, PolicyConfig, PolicyKind};
use crate::error::{Error, Result};

/// Checks that the synthetic task can read every problem, naming the first it cannot.
pub fn check_synthetic(problems: &[Problem]) -> Result<()> {
    for p in problems {
        if synthetic::Arithmetic::parse(&p.question).is_none() {
            return Err(Error::Problem {
                problem: p.id.clone(),
                message: format!(
                    "the synthetic task (`policy.kind = \"synthetic\"`, a test double) reads \
                     questions like 'Start with 7. Add 3. Multiply by 2. What is the result?', \
                     got {:?}; word problems and GSM8K need the LLM policy (the default)",
                    p.question
                ),
            });
        }
    }
    Ok(())
}

/// The models of a config, and the handles their owner may want afterwards. Cloning shares
/// the models (one copy of the weights) between searchers with different search settings.
#[derive(Clone)]
pub struct Loaded {
    /// Policy, rollout policy, critic panel and task.
    pub models: Models,
    /// The remote policy's HTTP client (its request counters), if the policy is served.
    pub client: Option<Arc<Client>>,
    /// The score caches in front of model-backed critics (their hit counts).
    pub caches: Vec<Arc<CachedCritic>>,
    /// The in-process policy, if there is one (for training on the same weights).
    #[cfg(feature = "local")]
    pub local: Option<Arc<LlamaPolicy>>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("policy", &self.models.policy.name())
            .field("remote", &self.client.is_some())
            .field("caches", &self.caches.len())
            .finish()
    }
}

impl Loaded {
    /// `(hits, misses)` of the critics' score caches, summed.
    pub fn cache_counts(&self) -> (u64, u64) {
        self.caches
            .iter()
            .map(|c| c.counts())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Tokens the policy reads for `question`'s prompt (as the task renders it), when the
    /// policy is in process; `None` for a served or synthetic one.
    pub fn prompt_tokens(&self, question: &str) -> Option<u64> {
        #[cfg(feature = "local")]
        if let Some(local) = &self.local {
            let prompt = self.models.task.prompt(&Problem::new("", question));
            return local.prompt_len(&prompt).ok().map(|n| n as u64);
        }
        let _ = question;
        None
    }

    /// The models' counters for monitoring: the critics' score caches, the in-process
    /// policy's KV cache, the remote client's requests.
    pub fn metrics(&self) -> Vec<Metric> {
        let (hits, misses) = self.cache_counts();
        let mut out = vec![
            Metric::counter(
                "critic_cache_hits_total",
                "Critic scores served from the cache.",
                hits,
            ),
            Metric::counter(
                "critic_cache_misses_total",
                "Critic scores computed.",
                misses,
            ),
        ];
        #[cfg(feature = "local")]
        if let Some(local) = &self.local {
            let s = local.cache_stats();
            out.extend([
                Metric::counter(
                    "kv_cache_reused_tokens_total",
                    "Prefix tokens whose keys and values came from the KV cache (hits).",
                    s.reused,
                ),
                Metric::counter(
                    "kv_cache_computed_tokens_total",
                    "Tokens run through the model.",
                    s.computed,
                ),
                Metric::counter(
                    "kv_cache_prefix_tokens_total",
                    "Prompt and path tokens of every policy request.",
                    s.prefix,
                ),
                Metric::counter(
                    "kv_cache_evictions_total",
                    "KV cache entries dropped to stay under the limit.",
                    s.evicted,
                ),
            ]);
        }
        if let Some(c) = &self.client {
            let s = c.stats();
            out.extend([
                Metric::counter(
                    "remote_requests_total",
                    "HTTP requests to the model server.",
                    s.attempts,
                ),
                Metric::counter("remote_retries_total", "Retried model requests.", s.retries),
                Metric::counter(
                    "remote_failures_total",
                    "Model requests failed for good.",
                    s.failures,
                ),
            ]);
        }
        out
    }
}

/// One monitoring figure of [`Loaded::metrics`].
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Its name (Prometheus style, without a prefix).
    pub name: &'static str,
    /// One line on what it counts.
    pub help: &'static str,
    /// A counter (only grows) rather than a gauge.
    pub counter: bool,
    /// The value.
    pub value: f64,
}

impl Metric {
    fn counter(name: &'static str, help: &'static str, value: u64) -> Metric {
        Metric {
            name,
            help,
            counter: true,
            value: value as f64,
        }
    }
}

/// Loads the models `cfg` names: the LLM policy (in process or served over HTTP) with the math
/// task and the configured critics, or the synthetic test-double world. `problems` are checked
/// against the task first (the synthetic task reads only its own questions).
///
/// # Errors
/// A model that cannot be read or reached, a critic that cannot be built, a problem the task
/// cannot read.
pub fn load(cfg: &Config, problems: &[Problem]) -> Result<Loaded> {
    match cfg.policy.kind {
        PolicyKind::Synthetic => {
            check_synthetic(problems)?;
            Ok(Loaded {
                models: synthetic::models(&cfg.synthetic.spec()),
                client: None,
                caches: Vec::new(),
                #[cfg(feature = "local")]
                local: None,
            })
        }
        #[cfg(not(feature = "local"))]
        PolicyKind::Llm => Err(Error::config(
            "policy.kind",
            "this build has no in-process model (the `local` feature): use `remote` or `synthetic`",
        )),
        #[cfg(feature = "local")]
        PolicyKind::Llm => {
            let policy = Arc::new(load_local_policy(&cfg.policy)?);
            let (critics, caches) =
                critic_panel(&cfg.critics, Backbone::Local(&policy), &cfg.policy)?;
            Ok(Loaded {
                models: Models {
                    policy: policy.clone(),
                    // Fast rollouts (`search.scoring.rollouts`) complete paths with the policy.
                    rollout: Some(policy.clone()),
                    critics,
                    task: Arc::new(cfg.task.task()),
                },
                client: None,
                caches,
                local: Some(policy),
            })
        }
        PolicyKind::Remote => {
            let (policy, client) = remote_policy(&cfg.policy)?;
            let policy: Arc<dyn ponder_engine::Policy> = Arc::new(policy);
            let (critics, caches) =
                critic_panel(&cfg.critics, Backbone::Remote(&client), &cfg.policy)?;
            Ok(Loaded {
                models: Models {
                    policy: policy.clone(),
                    rollout: Some(policy),
                    critics,
                    task: Arc::new(cfg.task.task()),
                },
                client: Some(client),
                caches,
                #[cfg(feature = "local")]
                local: None,
            })
        }
    }
}

/// The step rule of `policy`, with the math task's answer marker when none is set.
fn step_rule(policy: &PolicyConfig) -> ponder_engine::StepRule {
    let mut rule = policy.step.clone();
    if rule.answer_pattern.is_none() {
        rule.answer_pattern = Some(ponder_tasks::math::ANSWER_MARKER.into());
    }
    rule
}

/// The remote policy of `[policy.remote]` and its client.
///
/// # Errors
/// A bad endpoint or API key setting.
pub fn remote_policy(policy: &PolicyConfig) -> Result<(RemotePolicy, Arc<Client>)> {
    let client = Arc::new(Client::new(&policy.remote)?);
    tracing::info!(endpoints = ?policy.remote.endpoints, model = %policy.remote.model, "remote policy");
    Ok((
        RemotePolicy::new(
            client.clone(),
            step_rule(policy),
            RemoteSampling {
                temperature: policy.temperature,
                top_p: policy.top_p,
            },
        ),
        client,
    ))
}

#[cfg(feature = "local")]
impl BackendKind {
    /// The Burn device of this backend.
    ///
    /// # Errors
    /// wgpu without the `wgpu` feature, or with no usable adapter.
    pub fn device(self) -> Result<burn::prelude::Device> {
        Ok(self.backend().device()?)
    }
}

#[cfg(feature = "local")]
/// Loads the configured model (GGUF file, HF folder, or a known name; the installed default
/// when none is set) into a step policy.
///
/// # Errors
/// A model that cannot be found or read, or a backend that cannot start.
pub fn load_local_policy(policy: &PolicyConfig) -> Result<LlamaPolicy> {
    use ponder_policies::models;
    let path = policy
        .model
        .as_deref()
        .map_or_else(models::default_model_path, models::resolve);
    let start = std::time::Instant::now();
    let (model, tokenizer, stored) = models::load_stored(&path, &policy.backend.device()?)?;
    let model = quantized(model, policy.backend, policy.weights, stored)?;
    tracing::info!(
        model = %path.display(),
        secs = start.elapsed().as_secs_f64(),
        weights = model.quantization().map_or("f32", |f| f.name()),
        weight_mib = model.weight_bytes() >> 20,
        "model loaded"
    );
    Ok(policy_from(model, tokenizer, policy))
}

/// The step policy of `[policy]` over a model already loaded (the sampling, step rule, chat
/// and cache settings; the model and weight format as given).
#[cfg(feature = "local")]
pub fn policy_from(
    model: ponder_policies::llama::Llama,
    tokenizer: ponder_policies::tokenizer::Tokenizer,
    policy: &PolicyConfig,
) -> LlamaPolicy {
    use ponder_policies::step_policy;
    LlamaPolicy::new(
        model,
        tokenizer,
        step_rule(policy),
        step_policy::Sampling {
            temperature: policy.temperature,
            top_p: policy.top_p,
            top_k: policy.top_k,
        },
        policy.chat,
        policy.cache_entries,
    )
    .with_cache_bytes(policy.cache_mib.saturating_mul(1 << 20))
}

/// The model with the weight format asked for on a CPU backend (`auto` picks `stored`, the
/// checkpoint's own precision: [`ponder_policies::models::stored_format`]); as loaded on a GPU
/// backend (the quantised kernels run on the host).
///
/// # Errors
/// Quantising failed (a model that loaded but cannot be read back).
#[cfg(feature = "local")]
pub fn quantized(
    model: ponder_policies::llama::Llama,
    backend: crate::config::BackendKind,
    weights: crate::config::WeightFormat,
    stored: ponder_policies::models::StoredFormat,
) -> Result<ponder_policies::llama::Llama> {
    use crate::config::{BackendKind, WeightFormat};
    use ponder_kernels::Format;
    if !matches!(backend, BackendKind::Flex | BackendKind::Ndarray) {
        return Ok(model);
    }
    let (blocks, embedding) = match weights {
        WeightFormat::Auto => (stored.blocks, stored.embedding),
        WeightFormat::Q8 => (Format::Q8, Format::Q8),
        WeightFormat::Q4 => (Format::Q4, Format::Q4),
        WeightFormat::F32 => return Ok(model),
    };
    Ok(model.quantized_parts(blocks, embedding)?)
}

/// What model-backed critics run on.
#[derive(Clone, Copy, Debug)]
pub enum Backbone<'a> {
    /// The in-process policy (heads read its hidden states, self-evaluation its logits).
    #[cfg(feature = "local")]
    Local(&'a Arc<LlamaPolicy>),
    /// The served policy (self-evaluation as LLM-as-judge through its client; no heads).
    Remote(&'a Arc<Client>),
}

/// The critic panel of `[critics]` (see [`CriticsConfig`]): one critic per kind, several of a
/// kind averaged; model-backed critics behind score caches, which are returned too (for their
/// hit counts).
///
/// # Errors
/// A head file that cannot be read or is of the wrong kind, a head with a remote policy, a
/// remote critic whose client cannot be built.
pub fn critic_panel(
    c: &CriticsConfig,
    backbone: Backbone<'_>,
    policy_cfg: &PolicyConfig,
) -> Result<(CriticPanel, Vec<Arc<CachedCritic>>)> {
    use ponder_remote::critics as remote;
    use ponder_tasks::{arith, combine};
    let caches = RefCell::new(Vec::new());
    // Model-backed critics sit behind a score cache keyed by the path's text.
    let cached = |c: Arc<dyn Critic>| -> Arc<dyn Critic> {
        let c = Arc::new(CachedCritic::new(c, 1 << 18));
        caches.borrow_mut().push(c.clone());
        c
    };
    #[cfg(feature = "local")]
    let head_critic = |path: &Path, want: CriticKind| -> Result<Arc<dyn Critic>> {
        let Backbone::Local(policy) = backbone else {
            return Err(Error::Critic {
                what: path.display().to_string(),
                message: "trained heads read the in-process model's hidden states; with a \
                          remote policy serve the critic over HTTP instead ([[critics.remote]])"
                    .into(),
            });
        };
        let h = ponder_critics::head::Head::load(path)?;
        if h.kind != want {
            return Err(Error::Critic {
                what: path.display().to_string(),
                message: format!("a {:?} head cannot be the {want:?} critic", h.kind),
            });
        }
        Ok(cached(Arc::new(ponder_critics::head::HeadCritic::new(
            &h,
            (*policy).clone(),
            &path.display().to_string(),
        )?)))
    };
    #[cfg(not(feature = "local"))]
    let head_critic = |path: &Path, _: CriticKind| -> Result<Arc<dyn Critic>> {
        Err(Error::Critic {
            what: path.display().to_string(),
            message: "trained heads need the in-process model (the `local` feature); serve \
                      the critic over HTTP instead ([[critics.remote]])"
                .into(),
        })
    };
    let in_dir = |name: &str| {
        c.weights
            .as_ref()
            .map(|d| d.join(format!("{name}.safetensors")))
            .filter(|p| p.exists())
    };
    let mut value: Vec<Arc<dyn Critic>> = Vec::new();
    let mut outcome: Vec<Arc<dyn Critic>> = Vec::new();
    let mut process: Vec<Arc<dyn Critic>> = Vec::new();
    if let Some(p) = c.value.clone().or_else(|| in_dir("value")) {
        value.push(head_critic(&p, CriticKind::Value)?);
    }
    if let Some(p) = c.outcome.clone().or_else(|| in_dir("outcome")) {
        outcome.push(head_critic(&p, CriticKind::Outcome)?);
    }
    for p in &c.process {
        process.push(match (p.as_str(), &backbone) {
            ("arithmetic", _) => Arc::new(arith::ArithmeticCritic),
            #[cfg(feature = "local")]
            ("self-eval", Backbone::Local(policy)) => cached(Arc::new(
                ponder_critics::self_eval::SelfEvalCritic::new((*policy).clone(), c.self_eval())?,
            )),
            ("self-eval", Backbone::Remote(client)) => cached(Arc::new(remote::RemoteJudge::new(
                (*client).clone(),
                c.self_eval(),
                policy_cfg.remote.template,
                20,
            ))),
            (file, _) => head_critic(Path::new(file), CriticKind::Process)?,
        });
    }
    if let Some(p) = in_dir("process") {
        process.push(head_critic(&p, CriticKind::Process)?);
    }
    for (i, r) in c.remote.iter().enumerate() {
        let mut rc = policy_cfg.remote.clone();
        if let Some(e) = &r.endpoints {
            rc.endpoints = e.clone();
        }
        if let Some(m) = &r.model {
            rc.model = m.clone();
        }
        let client = Arc::new(Client::new(&rc).map_err(|e| Error::Critic {
            what: format!("critics.remote[{i}]"),
            message: e.to_string(),
        })?);
        let critic = cached(Arc::new(remote::RemoteCritic::new(
            client,
            r.kind,
            r.format,
            &r.path,
            ScoreRange { lo: r.lo, hi: r.hi },
        )));
        match r.kind {
            CriticKind::Value => value.push(critic),
            CriticKind::Process => process.push(critic),
            CriticKind::Outcome => outcome.push(critic),
        }
    }
    let mut panel = CriticPanel::new();
    for mut list in [value, process, outcome] {
        match list.len() {
            0 => {}
            1 => panel = panel.with(list.remove(0))?,
            _ => panel = panel.with(Arc::new(combine::MeanCritic::new(list)?))?,
        }
    }
    for (kind, critic) in [CriticKind::Value, CriticKind::Process, CriticKind::Outcome]
        .into_iter()
        .filter_map(|k| panel.get(k).map(|c| (k, c.name().to_string())))
    {
        tracing::info!(?kind, critic, "critic");
    }
    Ok((panel, caches.into_inner()))
}
