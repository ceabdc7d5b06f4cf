//! The configuration (the TOML file and the CLI's flags both become a [`Config`]): a preset, then `[search]`, `[batch]`, `[output]` and `[synthetic]`
//! tables over it. Unknown keys are errors; every value is validated with its dotted name.

use std::path::Path;

use ponder_engine::extract::OutputConfig;
use ponder_engine::{BatchConfig, SearchConfig};
use ponder_testkit::synthetic::SyntheticSpec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Starting points that reproduce the papers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// AlphaLLM eta-MCTS: UCT, progressive widening, mean-of-leaf-scores backup.
    #[default]
    Alphallm,
    /// MCTS-DPO: PUCT with LM priors, full expansion, Q = r + V, move-by-move.
    MctsDpo,
}

impl Preset {
    pub fn search(self) -> SearchConfig {
        match self {
            Preset::Alphallm => SearchConfig::alphallm(),
            Preset::MctsDpo => SearchConfig::mcts_dpo(),
        }
    }
}

/// Which policy proposes steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// The in-process LLM (a GGUF model; the installed SmolLM2-135M-Instruct by default) on math
    /// word problems.
    #[default]
    Llm,
    /// The synthetic arithmetic task's scripted policy and oracle critics (test doubles).
    Synthetic,
    /// A model served over OpenAI-compatible HTTP (`[policy.remote]`: vLLM, SGLang, llama.cpp's
    /// server, TGI, Ollama) on math word problems.
    Remote,
}

/// The Burn backend the model runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend.
    #[default]
    Flex,
    /// Burn's ndarray backend (deprecated upstream, removed in Burn 0.23).
    Ndarray,
    /// wgpu (GPU, or a software Vulkan adapter); needs a build with `--features wgpu`.
    Wgpu,
}

impl BackendKind {
    /// The library's backend.
    #[cfg(feature = "local")]
    pub fn backend(self) -> ponder_policies::backend::Backend {
        use ponder_policies::backend::Backend;
        match self {
            BackendKind::Flex => Backend::Flex,
            BackendKind::Ndarray => Backend::Ndarray,
            BackendKind::Wgpu => Backend::Wgpu,
        }
    }
}

/// How a local model's matrix weights are held on a CPU backend (GPU backends and training
/// always use f32 tensors).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum WeightFormat {
    /// The checkpoint's own precision: `q4` for a GGUF stored at 4 bits (`Q4_0`, `Q4_1`,
    /// `Q4_K`, ...), `q8` otherwise.
    #[default]
    Auto,
    /// int8 blocks (GGUF's `Q8_0`) multiplied by ponder's kernels over all cores: 3.6x less
    /// memory than f32, 2-3x faster decoding.
    Q8,
    /// 4-bit blocks with a scale and minimum each (`Q4_1`'s scheme): 5.3x less memory than
    /// f32; exact for 4-bit checkpoints, lossy for others.
    Q4,
    /// f32 tensors on the backend.
    F32,
}

/// The policy and its model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// `llm` or `synthetic`.
    pub kind: PolicyKind,
    /// A GGUF file; the installed default model when absent.
    pub model: Option<std::path::PathBuf>,
    /// Burn backend.
    pub backend: BackendKind,
    /// How the matrix weights are held on a CPU backend (`auto`, `q8`, `q4` or `f32`; GPUs
    /// use f32).
    pub weights: WeightFormat,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Nucleus mass (1 = off).
    pub top_p: f32,
    /// Top-k (0 = off).
    pub top_k: usize,
    /// Wrap the task prompt in the model's chat template.
    pub chat: bool,
    /// Paths whose KV state the policy keeps.
    pub cache_entries: usize,
    /// Megabytes of keys and values the KV cache may hold.
    pub cache_mib: usize,
    /// Where a step ends.
    pub step: ponder_engine::StepRule,
    /// The servers of `kind = "remote"`.
    pub remote: ponder_remote::RemoteConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            kind: PolicyKind::Llm,
            model: None,
            backend: BackendKind::Flex,
            weights: WeightFormat::Auto,
            temperature: 0.8,
            top_p: 1.0,
            top_k: 0,
            chat: true,
            cache_entries: 4096,
            cache_mib: 2048,
            step: ponder_engine::StepRule {
                max_tokens: 64,
                ..ponder_engine::StepRule::default()
            },
            remote: ponder_remote::RemoteConfig::default(),
        }
    }
}

impl PolicyConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && (0.0..=10.0).contains(&self.temperature)) {
            return Err(Error::config(
                "policy.temperature",
                "must be between 0 and 10",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::config("policy.top_p", "must be in (0, 1]"));
        }
        if self.cache_mib == 0 {
            return Err(Error::config("policy.cache_mib", "must be at least 1"));
        }
        if self.cache_entries == 0 {
            return Err(Error::config("policy.cache_entries", "must be at least 1"));
        }
        if self.step.max_tokens == 0 || self.step.max_tokens > 4096 {
            return Err(Error::config(
                "policy.step.max_tokens",
                "must be between 1 and 4096",
            ));
        }
        if self.kind == PolicyKind::Remote {
            self.remote.validate()?;
        }
        Ok(())
    }
}

/// The critics of an LLM search (`[critics]`). Each entry of `process` is `arithmetic` (the
/// exact calculation checker), `self-eval` (the policy judging its latest step) or a trained
/// head file; several are averaged. `value` and `outcome` are trained head files
/// (`ponder train-critic`). `weights` names a folder of heads: its `value.safetensors`,
/// `process.safetensors` and `outcome.safetensors` are used where present.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CriticsConfig {
    /// A value head file.
    pub value: Option<std::path::PathBuf>,
    /// Process critics, averaged.
    pub process: Vec<String>,
    /// An outcome head file.
    pub outcome: Option<std::path::PathBuf>,
    /// A folder of trained heads.
    pub weights: Option<std::path::PathBuf>,
    /// The self-evaluation prompt and answer tokens.
    pub self_eval: SelfEvalToml,
    /// Critics served over HTTP (`[[critics.remote]]`), next to the ones above.
    pub remote: Vec<RemoteCriticToml>,
}

/// `[[critics.remote]]`: a value model, PRM or ORM behind a scoring endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteCriticToml {
    /// `value`, `process` or `outcome`.
    pub kind: ponder_engine::CriticKind,
    /// Base URLs (up to `/v1`); the policy's endpoints when absent.
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// The `model` field; the policy's when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// Request path under the base URL (`/score`, or `/pooling` for vLLM).
    #[serde(default = "default_score_path")]
    pub path: String,
    /// `ponder` (`{"inputs": [{"prompt", "steps"}]}` -> `{"scores": [..]}`) or `vllm-pooling`.
    #[serde(default)]
    pub format: ponder_remote::critics::ScoreFormat,
    /// Lowest raw score.
    #[serde(default)]
    pub lo: f32,
    /// Highest raw score.
    #[serde(default = "one")]
    pub hi: f32,
}

fn default_score_path() -> String {
    "/score".into()
}

fn one() -> f32 {
    1.0
}

impl Default for CriticsConfig {
    fn default() -> Self {
        CriticsConfig {
            value: None,
            process: vec!["arithmetic".into()],
            outcome: None,
            weights: None,
            self_eval: SelfEvalToml::default(),
            remote: Vec::new(),
        }
    }
}

/// `[critics.self_eval]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfEvalToml {
    /// The judging prompt, with `{question}`, `{previous}` and `{step}`.
    pub prompt: String,
    /// What the judge's reply is forced to start with.
    pub reply_prefix: String,
    /// Tokens meaning "correct".
    pub yes: Vec<String>,
    /// Tokens meaning "incorrect".
    pub no: Vec<String>,
    /// Wrap the prompt in the chat template (off for few-shot completion prompts).
    pub chat: bool,
}

impl Default for SelfEvalToml {
    fn default() -> Self {
        let d = ponder_tasks::judge::SelfEvalConfig::default();
        SelfEvalToml {
            prompt: d.prompt,
            reply_prefix: d.reply_prefix,
            yes: d.yes,
            no: d.no,
            chat: d.chat,
        }
    }
}

impl CriticsConfig {
    pub fn validate(&self) -> Result<()> {
        for (i, p) in self.process.iter().enumerate() {
            if p.is_empty() {
                return Err(Error::config(format!("critics.process[{i}]"), "empty"));
            }
        }
        if !self.self_eval.prompt.contains("{step}") {
            return Err(Error::config(
                "critics.self_eval.prompt",
                "has no `{step}` placeholder",
            ));
        }
        for (i, r) in self.remote.iter().enumerate() {
            if !(r.lo.is_finite() && r.hi.is_finite() && r.lo < r.hi) {
                return Err(Error::config(
                    format!("critics.remote[{i}].lo"),
                    "need lo < hi (and both finite)",
                ));
            }
            if !r.path.starts_with('/') {
                return Err(Error::config(
                    format!("critics.remote[{i}].path"),
                    "must start with `/`",
                ));
            }
            if r.endpoints.as_ref().is_some_and(Vec::is_empty) {
                return Err(Error::config(
                    format!("critics.remote[{i}].endpoints"),
                    "empty",
                ));
            }
        }
        if self.self_eval.yes.is_empty() || self.self_eval.no.is_empty() {
            return Err(Error::config(
                "critics.self_eval.yes",
                "need at least one token each in `yes` and `no`",
            ));
        }
        Ok(())
    }

    pub fn self_eval(&self) -> ponder_tasks::judge::SelfEvalConfig {
        ponder_tasks::judge::SelfEvalConfig {
            prompt: self.self_eval.prompt.clone(),
            reply_prefix: self.self_eval.reply_prefix.clone(),
            yes: self.self_eval.yes.clone(),
            no: self.self_eval.no.clone(),
            chat: self.self_eval.chat,
        }
    }
}

/// Knobs of the synthetic arithmetic world (a test double: a scripted policy and noisy-oracle
/// critics whose truth is known).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Probability that a sampled step is right.
    pub p_correct: f64,
    /// Probability that the greedy step is right.
    pub p_greedy: f64,
    /// How informative the policy's log-probs are (0..1).
    pub prior_quality: f64,
    /// Critic noise amplitude.
    pub critic_noise: f32,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        let s = SyntheticSpec::default();
        SyntheticConfig {
            p_correct: s.p_correct,
            p_greedy: s.p_greedy,
            prior_quality: s.prior_quality,
            critic_noise: s.critic_noise,
        }
    }
}

impl SyntheticConfig {
    pub fn validate(&self) -> Result<()> {
        for (f, x) in [
            ("synthetic.p_correct", self.p_correct),
            ("synthetic.p_greedy", self.p_greedy),
            ("synthetic.prior_quality", self.prior_quality),
            ("synthetic.critic_noise", f64::from(self.critic_noise)),
        ] {
            if !(x.is_finite() && (0.0..=1.0).contains(&x)) {
                return Err(Error::config(
                    f,
                    format!("must be between 0 and 1, got {x}"),
                ));
            }
        }
        Ok(())
    }

    pub fn spec(&self) -> SyntheticSpec {
        SyntheticSpec {
            p_correct: self.p_correct,
            p_greedy: self.p_greedy,
            prior_quality: self.prior_quality,
            critic_noise: self.critic_noise,
        }
    }
}

/// Everything a config file can set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The preset the `[search]` table is applied over.
    #[serde(default)]
    pub preset: Preset,
    /// Search settings.
    #[serde(default)]
    pub search: SearchConfig,
    /// Batcher settings.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Output extraction settings.
    #[serde(default)]
    pub output: OutputConfig,
    /// The policy.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The synthetic world.
    #[serde(default)]
    pub synthetic: SyntheticConfig,
    /// The critics of an LLM search.
    #[serde(default)]
    pub critics: CriticsConfig,
    /// The math task's prompt (LLM and remote policies).
    #[serde(default)]
    pub task: TaskConfig,
}

/// The math task's prompt: the instruction after the question, and worked examples before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    /// The instruction after the question.
    pub instruction: String,
    /// How many of the built-in worked examples come first (0 = zero-shot, at most 3).
    pub shots: usize,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            instruction: ponder_tasks::math::DEFAULT_INSTRUCTION.into(),
            shots: 0,
        }
    }
}

impl TaskConfig {
    /// The task.
    pub fn task(&self) -> ponder_tasks::math::MathTask {
        ponder_tasks::math::MathTask::few_shot(self.shots).with_instruction(&self.instruction)
    }

    fn validate(&self) -> Result<()> {
        let most = ponder_tasks::math::WORKED_EXAMPLES.len();
        if self.shots > most {
            return Err(Error::config(
                "task.shots",
                format!("at most {most} built-in examples"),
            ));
        }
        if self.instruction.trim().is_empty() {
            return Err(Error::config("task.instruction", "empty"));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::from_preset(Preset::default())
    }
}

/// Overlays `over` onto `base`, table by table.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

impl Config {
    pub fn from_preset(preset: Preset) -> Self {
        Config {
            preset,
            search: preset.search(),
            batch: BatchConfig::default(),
            output: OutputConfig::default(),
            policy: PolicyConfig::default(),
            synthetic: SyntheticConfig::default(),
            critics: CriticsConfig::default(),
            task: TaskConfig::default(),
        }
    }

    /// Parses TOML text: the preset's values first, the file's tables over them.
    pub fn parse(text: &str, preset_override: Option<Preset>) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text).map_err(Error::toml)?;
        let preset = match (preset_override, table.remove("preset")) {
            (Some(p), _) => p,
            (None, Some(v)) => {
                Preset::deserialize(v).map_err(|e| Error::config("preset", e.to_string()))?
            }
            (None, None) => Preset::default(),
        };
        let mut base = toml::Value::try_from(Config::from_preset(preset))
            .expect("the built-in presets serialise");
        merge(&mut base, toml::Value::Table(table));
        let cfg: Config = base.try_into().map_err(Error::toml)?;
        Ok(cfg)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path, preset_override: Option<Preset>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, preset_override).map_err(|e| Error::InFile {
            path: path.display().to_string(),
            source: Box::new(e),
        })
    }

    /// Validates every section.
    pub fn validate(&self) -> Result<()> {
        let prefixed = |section: &str, e: ponder_engine::Error| match e {
            ponder_engine::Error::Config { field, message } if !field.starts_with(section) => {
                Error::config(format!("{section}.{field}"), message)
            }
            other => other.into(),
        };
        self.search.validate().map_err(|e| prefixed("search", e))?;
        self.batch.validate()?;
        self.output.validate()?;
        self.policy.validate()?;
        self.synthetic.validate()?;
        self.critics.validate()?;
        self.task.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_then_file() {
        let c = Config::parse(
            "preset = \"mcts-dpo\"\n[search.budget]\nsimulations = 7\n",
            None,
        )
        .unwrap();
        assert_eq!(c.search.budget.simulations, 7);
        assert!(c.search.move_by_move.enabled, "preset value kept");
        c.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = Config::parse("[search]\nsimulatoins = 3\n", None).unwrap_err();
        assert!(format!("{e}").contains("simulatoins"), "{e:#}");
    }

    #[test]
    fn bad_values_are_named() {
        let c = Config::parse("[search.selection]\nc = -1.0\n", None).unwrap();
        let e = c.validate().unwrap_err();
        assert!(format!("{e}").contains("`search.selection.c`"), "{e:#}");
        let c = Config::parse("[synthetic]\np_correct = 2.0\n", None).unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("synthetic.p_correct")
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let c = Config::default();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(Config::parse(&text, None).unwrap(), c);
    }
}

#[cfg(test)]
mod roundtrip {
    use super::*;
    use proptest::prelude::*;

    /// Every numeric leaf of a table, by path.
    fn leaves(v: &toml::Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, toml::Value)>) {
        match v {
            toml::Value::Table(t) => {
                for (k, x) in t {
                    path.push(k.clone());
                    leaves(x, path, out);
                    path.pop();
                }
            }
            toml::Value::Float(_) | toml::Value::Integer(_) => out.push((path.clone(), v.clone())),
            _ => {}
        }
    }

    fn set(v: &mut toml::Value, path: &[String], x: toml::Value) {
        match path {
            [] => *v = x,
            [k, rest @ ..] => {
                if let Some(slot) = v.get_mut(k.as_str()) {
                    set(slot, rest, x);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// A preset with any of its numbers changed: either refused with the field named, or
        /// valid and unchanged through TOML text and back.
        #[test]
        fn a_valid_config_survives_toml(
            mcts_dpo in any::<bool>(),
            changes in prop::collection::vec((any::<prop::sample::Index>(), -1e3f64..1e3, 0i64..5000), 1..6),
        ) {
            let preset = if mcts_dpo { Preset::MctsDpo } else { Preset::Alphallm };
            let mut v = toml::Value::try_from(Config::from_preset(preset)).unwrap();
            let mut all = Vec::new();
            leaves(&v, &mut Vec::new(), &mut all);
            for (i, f, n) in changes {
                let (path, old) = &all[i.index(all.len())];
                let x = match old {
                    toml::Value::Float(_) => toml::Value::Float(f),
                    _ => toml::Value::Integer(n),
                };
                set(&mut v, path, x);
            }
            let text = toml::to_string(&v).unwrap();
            let Ok(cfg) = Config::parse(&text, None) else { return Ok(()) };
            match cfg.validate() {
                // Refused with the field named.
                Err(e) => prop_assert!(e.to_string().contains("invalid config field `"), "{e}"),
                Ok(()) => {
                    let again = toml::to_string(&cfg).unwrap();
                    let back = Config::parse(&again, None).unwrap();
                    prop_assert_eq!(&cfg, &back, "{}", again);
                }
            }
        }
    }
}
