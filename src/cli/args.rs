//! Command-line arguments (clap). Flags override the config file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ponder::engine::config::{Algorithm, AnswerRule, BackupRule, SelectionRule};

use ponder::runtime::iterate::PairLevel;
use ponder::runtime::{BackendKind, PolicyKind, Preset, WeightFormat};

const ABOUT: &str = "Monte Carlo tree search over reasoning steps: better answers at test time, \
step-level preference pairs for DPO.";

const POLICY_NOTE: &str = "By default steps come from the in-process LLM (the installed \
SmolLM2-135M-Instruct, or --model FILE.gguf or an HF folder) on math word problems, scored by the \
arithmetic checker; add the policy's self-evaluation with --critics arithmetic,self-eval and \
trained value/PRM/ORM heads with --critic-weights DIR (ponder train-critic). \
--policy synthetic runs the built-in synthetic arithmetic task instead (a scripted policy and \
noisy-oracle critics, i.e. test doubles), e.g. \"Start with 7. Add 3. Multiply by 2. What is the result?\".";

/// The `ponder` command line.
#[derive(Debug, Parser)]
#[command(name = "ponder", version, about = ABOUT, after_help = POLICY_NOTE)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
}

/// Options of every command.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Log more (-v: debug, -vv: trace). Logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// No progress bar and only warnings in the log.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// Log formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for clusters).
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Search one problem (or each problem of a dataset) and print the answer and statistics.
    #[command(after_help = POLICY_NOTE)]
    Search(SearchArgs),
    /// Compare methods (greedy, best-of-n, self-consistency, beam, MCTS presets, config files)
    /// at equal generated tokens per problem: accuracy with 95% intervals, paired tests against
    /// the best sampling baseline, a table and a plot; resumable.
    #[command(after_help = POLICY_NOTE)]
    Eval(EvalArgs),
    /// Search a dataset and write preference pairs, PRM data and SFT traces as JSONL.
    #[command(after_help = POLICY_NOTE)]
    Generate(GenerateArgs),
    /// Measure the engine.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Validate a config file and print it fully resolved (preset and defaults applied).
    CheckConfig(CheckConfigArgs),
    /// Print generated synthetic problems as JSONL (`id`, `question`, `answer`), for datasets
    /// and disjoint splits (different seeds).
    Problems(ProblemsArgs),
    /// Train a value, PRM or ORM head over the policy's backbone from labelled paths (the
    /// prm.jsonl `ponder generate` writes, or {prompt, steps, label} lines).
    TrainCritic(TrainCriticArgs),
    /// Measure critics on labelled paths: accuracy, precision, recall, AUROC and calibration
    /// error (ECE).
    EvalCritic(EvalCriticArgs),
    /// Train the policy on preference pairs by step-level DPO (LoRA) and write the merged model
    /// as an HF checkpoint folder that --model reads.
    Dpo(DpoArgs),
    /// The self-improvement loop: evaluate, search the training split, DPO on the pairs,
    /// repeat; per-round metrics (CSV, JSONL, SVG) with the B-STaR figures; resumable.
    Iterate(IterateArgs),
    /// Combine the output folders of sharded or repeated `ponder generate` runs into one:
    /// complete problems only, each once, duplicate records dropped.
    Merge(MergeArgs),
    /// Serve search over an OpenAI-compatible HTTP API (`/v1/chat/completions`,
    /// `/v1/completions`, `/v1/models`, `/health`): the model and critics load once, every
    /// request's search shares them and one batcher. `model` picks ponder-mcts, ponder-sc or
    /// ponder-greedy; `reasoning_effort` the budget; a `ponder` object overrides it.
    #[command(after_help = POLICY_NOTE)]
    Serve(ServeArgs),
    /// Draw a search tree (a `search --dump-tree` file, or one tree of `generate
    /// --dump-trees`' trees.jsonl) as one self-contained HTML page: nodes sized by visits and
    /// coloured by score, the answer path highlighted, details on click, text search.
    View(ViewArgs),
}

/// `ponder serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) flags: SearchFlags,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// Port to bind (0: any free port, printed at start).
    #[arg(long, default_value_t = 8000)]
    pub(crate) port: u16,
    /// Read the bearer token clients must send from this environment variable (never from a
    /// flag, so it stays out of process lists; never logged).
    #[arg(long, value_name = "NAME")]
    pub(crate) api_key_env: Option<String>,
    /// Searches running at once; more get 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub(crate) max_concurrent: usize,
    /// Most simulations (or samples) one request may ask for.
    #[arg(long, default_value_t = 1024)]
    pub(crate) max_simulations: u32,
    /// Wall-time cap of one search, seconds.
    #[arg(long, default_value_t = 300.0)]
    pub(crate) max_wall_seconds: f64,
    /// Largest request body, KiB.
    #[arg(long, default_value_t = 1024)]
    pub(crate) max_body_kib: usize,
    /// Requests that may wait for a search slot; more get 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub(crate) max_queue: usize,
    /// On SIGTERM / Ctrl-C, how long searches in flight may go on before they are cancelled
    /// (each answers with the best its tree holds), seconds.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) drain_seconds: f64,
    /// Append every finished tree's pairs, PRM and SFT records to this folder through the
    /// crash-safe journal `generate` uses (appended to across restarts).
    #[arg(long, value_name = "DIR")]
    pub(crate) record: Option<PathBuf>,
    /// With --record: also write the trees (`trees.jsonl`, what `ponder view` draws).
    #[arg(long, requires = "record")]
    pub(crate) record_trees: bool,
    /// With --record: sync every tree to disk before its journal line (survives an OS crash).
    #[arg(long, requires = "record")]
    pub(crate) fsync: bool,
}

/// `ponder view`.
#[derive(Debug, Args)]
pub(crate) struct ViewArgs {
    /// The tree: a JSON file (`ponder search --dump-tree`) or JSONL, one tree per line
    /// (`ponder generate --dump-trees`).
    #[arg(value_name = "TREE.json|trees.jsonl")]
    pub(crate) input: PathBuf,
    /// The problem whose tree to draw (needed when the file holds several).
    #[arg(long, value_name = "ID")]
    pub(crate) problem: Option<String>,
    /// The HTML file to write.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
}

/// `ponder merge`.
#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// The `ponder generate` output folders, in order of preference.
    #[arg(required = true, value_name = "DIR")]
    pub(crate) inputs: Vec<PathBuf>,
    /// The merged folder.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Replace files already in --out.
    #[arg(long)]
    pub(crate) force: bool,
}

/// `ponder iterate`.
#[derive(Debug, Args)]
pub(crate) struct IterateArgs {
    /// Output folder (resumed when it holds an earlier run's stages).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Rounds of search + DPO.
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// The starting policy (default: the installed SmolLM2-135M-Instruct).
    #[arg(long, value_name = "FILE|DIR")]
    pub(crate) model: Option<PathBuf>,
    /// Operations per word problem (1-5).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=5))]
    pub(crate) level: u32,
    /// Training problems searched each round.
    #[arg(long, default_value_t = 60)]
    pub(crate) train_size: usize,
    /// Held-out test problems.
    #[arg(long, default_value_t = 40)]
    pub(crate) test_size: usize,
    /// Problem generator seed.
    #[arg(long, default_value_t = 1)]
    pub(crate) problem_seed: u64,
    /// Simulations per training search.
    #[arg(long, default_value_t = 16)]
    pub(crate) simulations: u32,
    /// Simulations of the MCTS evaluation.
    #[arg(long, default_value_t = 8)]
    pub(crate) eval_simulations: u32,
    /// Samples of the self-consistency evaluation.
    #[arg(long, default_value_t = 4)]
    pub(crate) sc_n: u32,
    /// Token cap per step.
    #[arg(long, default_value_t = 48)]
    pub(crate) max_step_tokens: u32,
    /// Step-level (MCTS-DPO) or trajectory-level pairs.
    #[arg(long, value_enum, default_value_t = PairLevel::Step)]
    pub(crate) pairs: PairLevel,
    /// At most this many pairs per round (0 = all).
    #[arg(long, default_value_t = 0)]
    pub(crate) max_pairs: usize,
    /// DPO β.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) beta: f32,
    /// DPO epochs per round.
    #[arg(long, default_value_t = 2)]
    pub(crate) dpo_epochs: usize,
    /// DPO learning rate.
    #[arg(long, default_value_t = 5e-4)]
    pub(crate) lr: f64,
    /// Pairs per optimiser step.
    #[arg(long, default_value_t = 4)]
    pub(crate) accumulate: usize,
    #[command(flatten)]
    pub(crate) lora: LoraArgs,
    /// Trees searched at once.
    #[arg(long, default_value_t = 4)]
    pub(crate) parallel_trees: u32,
    /// Workers per tree.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: u32,
    /// Search seed.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Also retrain the value, PRM and ORM heads on each round's trees (on the round's policy)
    /// and search with them from the next round on.
    #[arg(long)]
    pub(crate) train_critics: bool,
}

/// The preference loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DpoLoss {
    /// DPO's sigmoid loss with each pair's conservative label smoothing.
    Sigmoid,
    /// IPO's squared loss.
    Ipo,
}

/// What DPO trains, and in which precision (`ponder dpo`, `ponder iterate`).
#[derive(Debug, Args)]
pub(crate) struct LoraArgs {
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub(crate) rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub(crate) alpha: f32,
    /// Projections with adapters.
    #[arg(long, value_delimiter = ',', default_value = "q,k,v,o,gate,up,down")]
    pub(crate) targets: Vec<String>,
    /// Full fine-tuning: train every weight of the targeted projections (a dense update each)
    /// instead of low-rank adapters; embeddings and norms stay frozen.
    #[arg(long)]
    pub(crate) full: bool,
    /// Training precision: f32, or mixed f16/bf16 (frozen weights and activations in half
    /// precision; norms, the loss and the trained parameters in f32).
    #[arg(long, value_enum, default_value_t = TrainPrecision::F32)]
    pub(crate) precision: TrainPrecision,
}

/// Training precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum TrainPrecision {
    /// Everything in f32.
    F32,
    /// Mixed precision with f16.
    F16,
    /// Mixed precision with bf16.
    Bf16,
}

impl TrainPrecision {
    /// The trainer's setting.
    pub(crate) fn get(self) -> ponder::policies::dpo::Precision {
        use ponder::policies::dpo::Precision;
        match self {
            TrainPrecision::F32 => Precision::F32,
            TrainPrecision::F16 => Precision::F16,
            TrainPrecision::Bf16 => Precision::Bf16,
        }
    }
}

impl LoraArgs {
    /// The adapter config.
    pub(crate) fn config(&self) -> anyhow::Result<ponder::policies::lora::LoraConfig> {
        use ponder::policies::lora::{LoraConfig, Target};
        if self.rank == 0 {
            anyhow::bail!("--rank must be positive");
        }
        Ok(LoraConfig {
            rank: self.rank,
            alpha: self.alpha,
            targets: self
                .targets
                .iter()
                .map(|t| Target::parse(t.trim()))
                .collect::<Result<Vec<_>, _>>()?,
            full: self.full,
        })
    }
}

/// `ponder dpo`.
#[derive(Debug, Args)]
pub(crate) struct DpoArgs {
    /// Pairs JSONL files (`ponder generate`'s pairs.jsonl, or TRL prompt/chosen/rejected).
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub(crate) pairs: Vec<PathBuf>,
    /// The policy to train (default: the installed SmolLM2-135M-Instruct).
    #[arg(long, value_name = "FILE|DIR")]
    pub(crate) model: Option<PathBuf>,
    /// Burn backend to train on (wgpu needs a build with `--features wgpu`).
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub(crate) backend: BackendKind,
    /// Output folder: the merged HF checkpoint, adapter.safetensors, dpo-report.json.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// β.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) beta: f32,
    /// The loss.
    #[arg(long, value_enum, default_value_t = DpoLoss::Sigmoid)]
    pub(crate) loss: DpoLoss,
    /// Divide each step's log-probability by its token count.
    #[arg(long)]
    pub(crate) length_norm: bool,
    #[command(flatten)]
    pub(crate) lora: LoraArgs,
    /// Peak learning rate (AdamW; linear warm-up, cosine decay).
    #[arg(long, default_value_t = 5e-4)]
    pub(crate) lr: f64,
    /// Passes over the pairs.
    #[arg(long, default_value_t = 2)]
    pub(crate) epochs: usize,
    /// Pairs per optimiser step.
    #[arg(long, default_value_t = 4)]
    pub(crate) accumulate: usize,
    /// At most this many pairs (0 = all), in file order.
    #[arg(long, default_value_t = 0)]
    pub(crate) limit: usize,
    /// Seed of the adapters and the pair order.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}

/// Which head `train-critic` trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum HeadKind {
    /// Expected outcome of a partial path (soft Monte-Carlo targets, squared error).
    Value,
    /// Correctness of the latest step (Monte-Carlo labels, cross-entropy).
    Prm,
    /// Correctness of a complete path (cross-entropy).
    Orm,
}

/// `ponder train-critic`.
#[derive(Debug, Args)]
pub(crate) struct TrainCriticArgs {
    /// Which heads (comma-separated; the paths are encoded once for all of them).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub(crate) kind: Vec<HeadKind>,
    /// Labelled JSONL files.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub(crate) data: Vec<PathBuf>,
    /// Output folder: `<kind>.safetensors` (value/process/outcome) and `<kind>-report.json`.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// The backbone (default: the installed SmolLM2-135M-Instruct).
    #[arg(long, value_name = "FILE")]
    pub(crate) model: Option<PathBuf>,
    /// Hidden units of the head.
    #[arg(long, default_value_t = 128)]
    pub(crate) hidden: usize,
    /// Most epochs (early stopping usually ends sooner).
    #[arg(long, default_value_t = 200)]
    pub(crate) epochs: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub(crate) lr: f64,
    /// Share of problems held out for early stopping and the report.
    #[arg(long, default_value_t = 0.2)]
    pub(crate) val_share: f64,
    /// Seed of the weights, split and shuffles.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}

/// `ponder eval-critic`.
#[derive(Debug, Args)]
pub(crate) struct EvalCriticArgs {
    /// Labelled JSONL files.
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub(crate) data: Vec<PathBuf>,
    /// Critics to measure: `arithmetic`, `self-eval`, or trained head files (repeatable).
    #[arg(long = "critic", required = true, value_name = "CRITIC")]
    pub(crate) critics: Vec<String>,
    /// The backbone (default: the installed SmolLM2-135M-Instruct).
    #[arg(long, value_name = "FILE")]
    pub(crate) model: Option<PathBuf>,
    /// Score threshold for accuracy, precision and recall.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) threshold: f32,
    /// At most this many examples (0 = all), taken in file order.
    #[arg(long, default_value_t = 0)]
    pub(crate) limit: usize,
    /// Print one JSON object per critic.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Which generated problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProblemKind {
    /// "Start with 7. Add 3. Multiply by 2. What is the result?" (the synthetic task's).
    Arithmetic,
    /// Grade-school word problems ("Tom has 5 apples. Then Tom buys 3 more. ...").
    Word,
}

/// A split of the word problems (by question hash: never overlapping).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SplitArg {
    /// Every question.
    All,
    /// 70% of the question space.
    Train,
    /// 10%.
    Dev,
    /// 20%.
    Test,
}

impl SplitArg {
    pub(crate) fn split(self) -> ponder::critics::problems::Split {
        use ponder::critics::problems::Split;
        match self {
            SplitArg::All => Split::All,
            SplitArg::Train => Split::Train,
            SplitArg::Dev => Split::Dev,
            SplitArg::Test => Split::Test,
        }
    }
}

/// `ponder problems`.
#[derive(Debug, Args)]
pub(crate) struct ProblemsArgs {
    /// Which problems.
    #[arg(long, value_enum, default_value_t = ProblemKind::Arithmetic)]
    pub(crate) kind: ProblemKind,
    /// Which split (word problems).
    #[arg(long, value_enum, default_value_t = SplitArg::All)]
    pub(crate) split: SplitArg,
    /// How many problems.
    #[arg(long, short = 'n', default_value_t = 100)]
    pub(crate) count: usize,
    /// Operations per problem (difficulty).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) level: u32,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    pub(crate) problem_seed: u64,
}

/// Where problems come from.
#[derive(Debug, Args)]
pub(crate) struct ProblemArgs {
    /// A JSONL dataset, one problem per line.
    #[arg(long, value_name = "FILE")]
    pub(crate) dataset: Option<PathBuf>,
    /// Field holding the question in dataset lines.
    #[arg(long, default_value = "question")]
    pub(crate) question_field: String,
    /// Field holding the gold answer (GSM8K's `#### N` is understood).
    #[arg(long, default_value = "answer")]
    pub(crate) answer_field: String,
    /// Field holding the problem id (line number if absent).
    #[arg(long, default_value = "id")]
    pub(crate) id_field: String,
    /// Generate this many synthetic problems instead of reading a dataset.
    #[arg(long, value_name = "N", conflicts_with = "dataset")]
    pub(crate) synthetic: Option<usize>,
    /// Operations per synthetic problem (difficulty).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) level: u32,
    /// Seed of the synthetic problem generator (use different seeds for disjoint splits).
    #[arg(long, default_value_t = 1)]
    pub(crate) problem_seed: u64,
}

/// Search settings that can be given as flags (they override the config file).
#[derive(Debug, Args)]
pub(crate) struct SearchFlags {
    /// TOML config file (see the README); flags override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Start from a paper's settings.
    #[arg(long, value_enum)]
    pub(crate) preset: Option<Preset>,
    /// The algorithm.
    #[arg(long, value_enum)]
    pub(crate) algorithm: Option<Algorithm>,
    /// Simulations per tree (per move in move-by-move mode).
    #[arg(long, short = 's')]
    pub(crate) simulations: Option<u32>,
    /// Worker threads per tree.
    #[arg(long, short = 't')]
    pub(crate) threads: Option<u32>,
    /// Run seed.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Selection rule.
    #[arg(long, value_enum)]
    pub(crate) selection: Option<SelectionRule>,
    /// Backup rule.
    #[arg(long, value_enum)]
    pub(crate) backup: Option<BackupRule>,
    /// Answer rule (MCTS).
    #[arg(long, value_enum)]
    pub(crate) answer_rule: Option<AnswerRule>,
    /// Virtual loss weight (0 = off).
    #[arg(long)]
    pub(crate) virtual_loss: Option<f64>,
    /// Depth limit.
    #[arg(long)]
    pub(crate) max_depth: Option<u32>,
    /// Wall-clock limit per tree, seconds.
    #[arg(long)]
    pub(crate) wall_seconds: Option<f64>,
    /// Generated-token limit per tree.
    #[arg(long)]
    pub(crate) max_tokens: Option<u64>,
    /// Samples for best-of-N / self-consistency.
    #[arg(long)]
    pub(crate) n: Option<u32>,
    /// Largest batch the batcher forms.
    #[arg(long)]
    pub(crate) max_batch: Option<usize>,
    /// How long a batch waits to fill, milliseconds.
    #[arg(long)]
    pub(crate) max_wait_ms: Option<f64>,
    /// Which policy proposes steps (default: the LLM).
    #[arg(long, value_enum)]
    pub(crate) policy: Option<PolicyKind>,
    /// A GGUF model file or HF folder, or an installed model by name: smollm2-135m (the
    /// default) or qwen2.5-0.5b (`scripts/setup.sh --model qwen2.5-0.5b`).
    #[arg(long, value_name = "FILE|NAME")]
    pub(crate) model: Option<PathBuf>,
    /// Burn backend for the model (wgpu needs a build with `--features wgpu`).
    #[arg(long, value_enum)]
    pub(crate) backend: Option<BackendKind>,
    /// How the model's matrix weights are held on a CPU backend: the checkpoint's own
    /// precision (`auto`: 4-bit for a 4-bit GGUF, else int8), `q8`, `q4` or `f32`.
    #[arg(long, value_enum)]
    pub(crate) weights: Option<WeightFormat>,
    /// OpenAI-compatible base URLs for `--policy remote`, up to `/v1` (repeat or comma-separate
    /// for several servers; requests are spread over them).
    #[arg(long = "endpoint", value_delimiter = ',', value_name = "URL")]
    pub(crate) endpoints: Option<Vec<String>>,
    /// The served model's name (the `model` field of remote requests).
    #[arg(long, value_name = "NAME")]
    pub(crate) remote_model: Option<String>,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    pub(crate) temperature: Option<f32>,
    /// Token cap per step.
    #[arg(long)]
    pub(crate) max_step_tokens: Option<u32>,
    /// Worked examples before the question in the math task's prompt (0-3; `task.shots`).
    #[arg(long, value_name = "N")]
    pub(crate) shots: Option<usize>,
    /// Process critics of the LLM search, averaged: `arithmetic`, `self-eval` and/or trained
    /// PRM head files, or `none` (default: arithmetic).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub(crate) critics: Option<Vec<String>>,
    /// A folder of trained critic heads (`ponder train-critic --out`): its value, process and
    /// outcome heads join the search.
    #[arg(long, value_name = "DIR")]
    pub(crate) critic_weights: Option<PathBuf>,
    /// Trees searched at once (sharing one batcher).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub(crate) parallel_trees: u32,
}

/// `ponder search`.
#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// The question (omit with --dataset or --synthetic).
    pub(crate) question: Option<String>,
    /// The gold answer of the question, if known (enables the correctness check).
    #[arg(long)]
    pub(crate) gold: Option<String>,
    #[command(flatten)]
    pub(crate) problems: ProblemArgs,
    #[command(flatten)]
    pub(crate) flags: SearchFlags,
    /// Write the whole tree as JSON here (single problem).
    #[arg(long, value_name = "FILE")]
    pub(crate) dump_tree: Option<PathBuf>,
    /// Write the tree as Graphviz DOT here (single problem).
    #[arg(long, value_name = "FILE")]
    pub(crate) dot: Option<PathBuf>,
    /// Print one JSON object per problem instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `ponder eval`.
#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    pub(crate) problems: ProblemArgs,
    /// Generate this many grade-school word problems (of --level, from --split) instead of
    /// reading a dataset.
    #[arg(long, value_name = "N", conflicts_with_all = ["dataset", "synthetic"])]
    pub(crate) word: Option<usize>,
    /// The split of the generated word problems.
    #[arg(long, value_enum, default_value_t = SplitArg::Dev)]
    pub(crate) split: SplitArg,
    /// Only the first N problems of the input.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,
    #[command(flatten)]
    pub(crate) flags: SearchFlags,
    /// Methods to compare: greedy, best-of-n, self-consistency, weighted-vote (self-consistency
    /// with each vote weighted by its leaf score), beam, mcts:alphallm,
    /// mcts:mcts-dpo, or a config file's search settings as NAME=FILE.toml (or FILE.toml).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "greedy,self-consistency,best-of-n,mcts:alphallm"
    )]
    pub(crate) methods: Vec<String>,
    /// Generated tokens per problem: each method runs at each budget, stopped there.
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024")]
    pub(crate) budgets: Vec<u64>,
    /// Seeds (each method runs once per seed).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub(crate) seeds: Vec<u64>,
    /// Output folder: records.jsonl, manifest.json, summary.csv, comparisons.csv, table.md,
    /// plot.svg. A rerun resumes; new methods, budgets or seeds are added.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Only rebuild the tables and the plot from the folder's records (for example while a run
    /// is going on elsewhere).
    #[arg(long)]
    pub(crate) report_only: bool,
}

/// `ponder generate`.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    #[command(flatten)]
    pub(crate) problems: ProblemArgs,
    #[command(flatten)]
    pub(crate) flags: SearchFlags,
    /// Output folder (created if missing): pairs.jsonl, prm.jsonl, sft.jsonl, stats.json,
    /// manifest.json.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Also write every tree to trees.jsonl.
    #[arg(long)]
    pub(crate) dump_trees: bool,
    /// Start over: replace existing output files instead of resuming the run in the folder.
    #[arg(long)]
    pub(crate) force: bool,
    /// Only this shard of the input: `i/n` takes the problems whose index modulo n is i
    /// (0 <= i < n), for array jobs; combine the folders with `ponder merge`.
    #[arg(long, value_name = "I/N")]
    pub(crate) shard: Option<String>,
    /// Sync every problem's records to disk before its journal line (survives power loss, not
    /// only a killed process; slower).
    #[arg(long)]
    pub(crate) fsync: bool,
}

/// `ponder bench`.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Simulations per second of the tree with a zero-cost evaluator.
    Tree(BenchTreeArgs),
    /// Wall time of a synthetic dataset search when every model call sleeps like a server:
    /// one tree at a time with one thread (how peers step a tree) against many simulations and
    /// trees in flight through the batcher.
    Latency(BenchLatencyArgs),
    /// The LLM policy: decoding tokens/s at batch 1 and batch N, and how much the tree-shared KV
    /// cache saves on a search.
    Policy(BenchPolicyArgs),
    /// The remote policy against a local mock OpenAI server that answers after a fixed delay:
    /// one tree at a time with one request in flight (how peers step a tree) against many trees
    /// and simulations in flight.
    Remote(BenchRemoteArgs),
    /// `ponder serve` under load: requests/s, p50/p99 latency and tokens/s at each number of
    /// concurrent clients, against a server started in process with the config's model (or
    /// against a running one, --url).
    Serve(Box<BenchServeArgs>),
}

/// `ponder bench serve`.
#[derive(Debug, Args)]
pub(crate) struct BenchServeArgs {
    #[command(flatten)]
    pub(crate) problems: ProblemArgs,
    #[command(flatten)]
    pub(crate) flags: SearchFlags,
    /// Concurrent clients, one load level each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub(crate) clients: Vec<usize>,
    /// Requests per level (default: 4 per client, at least 16).
    #[arg(long)]
    pub(crate) requests: Option<u64>,
    /// The served profile every request names (its budget: --simulations, default 16).
    #[arg(long, default_value = "ponder-mcts")]
    pub(crate) profile: String,
    /// A running server (`host:port`) to load instead of one started in process.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) url: Option<String>,
    /// With --url: read the bearer token from this environment variable.
    #[arg(long, value_name = "NAME", requires = "url")]
    pub(crate) api_key_env: Option<String>,
    /// Write the levels as JSON here too.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
}

/// `ponder bench remote`.
#[derive(Debug, Args)]
pub(crate) struct BenchRemoteArgs {
    /// The server's delay per request, milliseconds.
    #[arg(long, default_value_t = 100.0)]
    pub(crate) latency_ms: f64,
    /// Synthetic problems.
    #[arg(long, default_value_t = 8)]
    pub(crate) problems: usize,
    /// Operations per problem.
    #[arg(long, default_value_t = 3)]
    pub(crate) level: u32,
    /// Simulations per tree.
    #[arg(long, short = 's', default_value_t = 16)]
    pub(crate) simulations: u32,
    /// Worker threads per tree in the parallel run.
    #[arg(long, short = 't', default_value_t = 4)]
    pub(crate) threads: u32,
    /// Trees at once in the parallel run.
    #[arg(long, default_value_t = 8)]
    pub(crate) parallel_trees: u32,
    /// Requests in flight per endpoint in the parallel run.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Check a real OpenAI-compatible server instead of timing the mock: probe what it honours
    /// (`n`, `stop`, log-probabilities, finish reasons, requests served at once), then search
    /// `--problems` level-1 word problems through it and check every stored step against the
    /// step rule and its token cap (exits non-zero on a violation).
    #[arg(long, value_name = "URL")]
    pub(crate) endpoint: Option<String>,
    /// The served model's name (the `model` field of requests), with --endpoint.
    #[arg(long, value_name = "NAME")]
    pub(crate) remote_model: Option<String>,
    /// How the prompt is rendered for the completions API, with --endpoint: plain, chatml,
    /// llama3, mistral, llama2, zephyr.
    #[arg(long, value_name = "NAME", value_parser = parse_template)]
    pub(crate) template: Option<ponder::policies::remote::Template>,
    /// A TOML config file for the search through --endpoint (flags override it).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

fn parse_template(s: &str) -> Result<ponder::policies::remote::Template, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        format!("unknown template `{s}` (plain, chatml, llama3, mistral, llama2, zephyr)")
    })
}

/// `ponder bench policy`.
#[derive(Debug, Args)]
pub(crate) struct BenchPolicyArgs {
    /// A GGUF model file or HF folder, or an installed model by name: smollm2-135m (the
    /// default) or qwen2.5-0.5b (`scripts/setup.sh --model qwen2.5-0.5b`).
    #[arg(long, value_name = "FILE|NAME")]
    pub(crate) model: Option<PathBuf>,
    /// Burn backend (wgpu needs a build with `--features wgpu`).
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub(crate) backend: BackendKind,
    /// Matrix weights on a CPU backend: the checkpoint's precision (`auto`), `q8`, `q4`, `f32`.
    #[arg(long, value_enum, default_value_t = WeightFormat::Auto)]
    pub(crate) weights: WeightFormat,
    /// Tokens decoded per stream.
    #[arg(long, default_value_t = 32)]
    pub(crate) tokens: usize,
    /// Batch sizes of the batched runs (after the single-stream run), e.g. `8,64`.
    #[arg(long, value_delimiter = ',', default_value = "8", value_parser = clap::value_parser!(u32).range(2..=256))]
    pub(crate) batch: Vec<u32>,
    /// Benchmark a model of this exact shape with random weights built in memory
    /// (smollm2-135m, qwen2.5-0.5b, llama-1b) instead of a model file: for machines without
    /// the weights. Its tokenizer is byte-level, so the prompt is longer than the real one's.
    #[arg(long, value_name = "ARCH", value_parser = clap::builder::PossibleValuesParser::new(ponder::testkit::tiny_llama::Shape::NAMES), conflicts_with = "model")]
    pub(crate) random: Option<String>,
    /// With `--random`: also write the model as a GGUF file, for `search`, `dpo` and the rest.
    #[arg(long, value_name = "FILE", requires = "random")]
    pub(crate) save: Option<PathBuf>,
    /// Simulations of the KV-reuse search.
    #[arg(long, default_value_t = 12)]
    pub(crate) simulations: u32,
    /// Depth limit of the KV-reuse search.
    #[arg(long, default_value_t = 8)]
    pub(crate) depth: u32,
}

/// `ponder bench latency`.
#[derive(Debug, Args)]
pub(crate) struct BenchLatencyArgs {
    /// Fixed latency of every model call, milliseconds.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) latency_ms: f64,
    /// Extra latency per request in a batch, milliseconds.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) per_request_ms: f64,
    /// Synthetic problems.
    #[arg(long, default_value_t = 8)]
    pub(crate) problems: usize,
    /// Simulations per tree.
    #[arg(long, short = 's', default_value_t = 32)]
    pub(crate) simulations: u32,
    /// Worker threads per tree in the parallel run.
    #[arg(long, short = 't', default_value_t = 8)]
    pub(crate) threads: u32,
    /// Trees at once in the parallel run.
    #[arg(long, default_value_t = 4)]
    pub(crate) parallel_trees: u32,
    /// Largest batch in the parallel run.
    #[arg(long, default_value_t = 64)]
    pub(crate) max_batch: usize,
    /// Batch deadline in the parallel run, milliseconds.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) max_wait_ms: f64,
}

/// `ponder bench tree`.
#[derive(Debug, Args)]
pub(crate) struct BenchTreeArgs {
    /// Worker threads.
    #[arg(long, short = 't', default_value_t = 1)]
    pub(crate) threads: u32,
    /// Simulations per run.
    #[arg(long, short = 's', default_value_t = 1_000_000)]
    pub(crate) simulations: u32,
    /// Runs; the median is printed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(crate) repeat: u32,
    /// Children per node.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) width: u32,
    /// Depth limit; paths end there and later simulations re-back-up their leaves.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub(crate) depth: u32,
}

/// `ponder check-config`.
#[derive(Debug, Args)]
pub(crate) struct CheckConfigArgs {
    /// The file.
    pub(crate) file: PathBuf,
}
