//! `ponder bench`: engine measurements.

use anyhow::{Context, Result};
use ponder::testkit::bench;

use crate::cli::args::{
    BenchCommand, BenchLatencyArgs, BenchPolicyArgs, BenchRemoteArgs, BenchServeArgs, BenchTreeArgs,
};
use ponder::runtime::{Config, PolicyKind};

pub(crate) fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Tree(a) => tree(a),
        BenchCommand::Latency(a) => latency(a),
        BenchCommand::Policy(a) => policy(a),
        BenchCommand::Remote(a) => remote(a),
        BenchCommand::Serve(a) => serve(*a),
    }
}

/// `ponder serve` under load at each number of clients: one line per level.
fn serve(a: BenchServeArgs) -> Result<()> {
    use ponder::serve::bench::{self as load, Target};
    let cfg = super::run::resolve_config(&a.flags)?;
    let problems = match super::run::load_problems(&a.problems)? {
        Some(p) => p,
        None if cfg.policy.kind == PolicyKind::Synthetic => {
            ponder::testkit::synthetic::problems(32, a.problems.level, a.problems.problem_seed)
        }
        None => anyhow::bail!(
            "give the questions to send: --dataset FILE (e.g. fixtures/gsm8k-style.jsonl) or \
             --synthetic N with --policy synthetic"
        ),
    };
    anyhow::ensure!(
        !a.clients.is_empty() && a.clients.iter().all(|&c| c > 0),
        "--clients needs positive numbers"
    );
    let budget = a.flags.simulations.unwrap_or(16);
    let bodies = problems
        .iter()
        .map(|p| {
            serde_json::json!({
                "model": a.profile,
                "messages": [{"role": "user", "content": p.question}],
                "ponder": {"simulations": budget},
            })
        })
        .collect();
    let target =
        match &a.url {
            Some(addr) => Target::Running {
                addr: addr
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string(),
                api_key: match &a.api_key_env {
                    Some(name) => Some(std::env::var(name).with_context(|| {
                        format!("--api-key-env {name}: the variable is not set")
                    })?),
                    None => None,
                },
            },
            None => {
                let searcher = super::run::searcher(&cfg, &problems)?;
                Target::InProcess(Box::new(load::InProcess {
                    base: cfg.search.clone(),
                    batch: cfg.batch.clone(),
                    models: searcher.models().clone(),
                    loaded: Some(searcher.loaded().clone()),
                }))
            }
        };
    let requests = |c: usize| a.requests.unwrap_or((4 * c as u64).max(16));
    println!(
        "bench serve: profile={} simulations={budget} policy={} questions={}",
        a.profile,
        if a.url.is_some() {
            "(remote server)".to_string()
        } else {
            format!("{:?}", cfg.policy.kind)
        },
        problems.len()
    );
    let levels = load::run(
        target,
        "/v1/chat/completions",
        bodies,
        &a.clients,
        &requests,
        &mut |l| {
            let r = &l.load;
            println!(
                "clients={:<3} requests={:<4} ok={:<4} errors={:<3} rps={:>8.2} p50={:>8.3}s p99={:>8.3}s tokens/s={:>9.1}{}",
                r.clients,
                r.requests,
                r.ok,
                r.errors,
                r.requests_per_second,
                r.p50,
                r.p99,
                r.tokens_per_second,
                l.batch_size
                    .map_or(String::new(), |f| format!(" batch={f:.1}"))
            );
        },
    )?;
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_vec_pretty(&levels)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let failed: u64 = levels.iter().map(|l| l.load.errors).sum();
    anyhow::ensure!(failed == 0, "{failed} requests were not answered with 200");
    Ok(())
}

/// The remote policy over HTTP against the mock server: sequential (one tree, one request in
/// flight), parallel (every worker sends its requests when it needs them) and parallel through
/// the client-side batcher; the ratios of their wall times.
fn remote(a: BenchRemoteArgs) -> Result<()> {
    if let Some(url) = a.endpoint.clone() {
        return conformance(&a, &url);
    }
    use ponder::testkit::mock_server::{MockConfig, MockServer};
    use ponder::testkit::synthetic;
    anyhow::ensure!(
        a.latency_ms.is_finite() && a.latency_ms >= 0.0,
        "--latency-ms must be finite and >= 0"
    );
    let server = MockServer::start(MockConfig {
        latency: std::time::Duration::from_secs_f64(a.latency_ms / 1e3),
        ..MockConfig::default()
    })?;
    let problems = synthetic::problems(a.problems, a.level, 1);
    let mut wall = [0.0f64; 3];
    let runs = [
        ("sequential", 1u32, 1u32, false),
        ("parallel", a.threads, a.parallel_trees, false),
        ("parallel-batched", a.threads, a.parallel_trees, true),
    ];
    for (i, (name, threads, trees, batched)) in runs.into_iter().enumerate() {
        let mut c = Config::default();
        c.policy.kind = PolicyKind::Remote;
        c.policy.remote.batched = batched;
        c.policy.remote.endpoints = vec![server.url()];
        c.policy.remote.model = "mock".into();
        c.policy.remote.concurrency = if i == 0 { 1 } else { a.concurrency };
        c.search.budget.simulations = a.simulations;
        c.search.parallel.threads = threads;
        c.batch.max_batch = if i == 0 { 1 } else { 256 };
        c.batch.max_wait_ms = 2.0;
        c.validate()?;
        let searcher = super::run::searcher(&c, &problems)?;
        let client = searcher.loaded().client.clone();
        let s = super::run::run_problems(&searcher, &problems, trees, true, |_, _, r| {
            r.map(|_| ()).map_err(anyhow::Error::from)
        })?;
        wall[i] = s.wall_seconds;
        let http = client.map(|c| c.stats()).unwrap_or_default();
        println!(
            "run={name} threads={threads} parallel_trees={trees} problems={} simulations={} http_requests={} wall_s={:.2} problems_per_sec={:.3} simulations_per_sec={:.1} mean_policy_batch={:.1} solve_rate={:.2}",
            s.problems,
            s.stats.simulations,
            http.attempts,
            s.wall_seconds,
            s.problems as f64 / s.wall_seconds,
            s.stats.simulations as f64 / s.wall_seconds,
            s.batch.as_ref().map_or(1.0, |b| b.policy.mean_batch),
            s.accuracy().unwrap_or(0.0)
        );
    }
    println!(
        "speedup={:.1} speedup_batched={:.1}",
        wall[0] / wall[1],
        wall[0] / wall[2]
    );
    Ok(())
}

/// `bench remote --endpoint`: the server probe, then a search whose every stored node is checked
/// against the step rule.
fn conformance(a: &BenchRemoteArgs, url: &str) -> Result<()> {
    use ponder::critics::problems::{Split, word_problems};
    use ponder::policies::conformance::{check_tree, probe};
    let mut c = match &a.config {
        Some(p) => Config::load(p, None)?,
        None => Config::default(),
    };
    c.policy.kind = PolicyKind::Remote;
    c.policy.remote.endpoints = vec![url.to_string()];
    if let Some(m) = &a.remote_model {
        c.policy.remote.model = m.clone();
    }
    if let Some(t) = a.template {
        c.policy.remote.template = t;
    }
    c.search.budget.simulations = a.simulations;
    c.search.parallel.threads = a.threads;
    c.validate()?;
    let problems = word_problems(a.problems.max(1), 1, 1, Split::Dev);
    let searcher = super::run::searcher(&c, &problems)?;
    let client = searcher
        .loaded()
        .client
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the remote policy has no client"))?;
    let prompt = searcher.models().task.prompt(&problems[0]);
    let concurrent = a.concurrency.clamp(1, 8);
    let p = probe(&client, &prompt, c.policy.step.max_tokens, concurrent)?;
    println!(
        "probe endpoint={url} model={} n_answered={}/3 stop_honoured={} logprobs={} finish_reasons={} stop_reason={} single_s={:.2} concurrent={} concurrent_s={:.2} effective_parallelism={:.2} prompt_tokens={}",
        c.policy.remote.model,
        p.n_answered,
        p.stop_honoured,
        p.logprobs,
        p.finish_reasons
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("|"),
        p.stop_reason,
        p.single_secs,
        p.concurrent,
        p.concurrent_secs,
        p.effective_parallelism,
        p.prompt_tokens
    );
    let rule = c.policy.step.clone();
    let before = client.stats();
    let (mut nodes, mut violations) = (0usize, 0usize);
    let s = super::run::run_problems(&searcher, &problems, a.parallel_trees, true, |_, p, r| {
        let r = r?;
        nodes += r.tree.node_ids().count().saturating_sub(1);
        for v in check_tree(&r.tree, &rule, rule.max_tokens) {
            violations += 1;
            println!("violation problem={} node={} {}", p.id, v.node, v.message);
        }
        Ok(())
    })?;
    let st = client.stats();
    let completion = st.completion_tokens - before.completion_tokens;
    let prompt_tokens = st.prompt_tokens - before.prompt_tokens;
    println!(
        "search problems={} simulations={} nodes={nodes} violations={violations} steps_cut={} split_steps={} requests={} retries={} short_answers={} generated_tokens={} server_completion_tokens={completion} server_prompt_tokens={prompt_tokens} prompt_per_generated={:.1} tokens_per_sec={:.1} wall_s={:.1} accuracy={:.2}",
        s.problems,
        s.stats.simulations,
        s.stats.cut_steps,
        s.stats.split_steps,
        st.attempts - before.attempts,
        st.retries - before.retries,
        st.short_answers - before.short_answers,
        s.stats.tokens,
        prompt_tokens as f64 / s.stats.tokens.max(1) as f64,
        s.tokens_per_sec,
        s.wall_seconds,
        s.accuracy().unwrap_or(0.0)
    );
    anyhow::ensure!(
        violations == 0,
        "{violations} stored nodes break the step rule"
    );
    Ok(())
}

/// Decoding speed at batch 1 and batch N (greedy, after a chat prompt), then the KV reuse of a
/// search of depth >= 5.
fn policy(a: BenchPolicyArgs) -> Result<()> {
    use ponder::policies::{gguf::Gguf, llama::Llama, models, tokenizer::Tokenizer};
    use ponder::testkit::tiny_llama::{Shape, random_gguf};
    let device = a.backend.device()?;
    let (m, tok, label, stored) = match &a.random {
        Some(name) => {
            let shape =
                Shape::named(name).ok_or_else(|| anyhow::anyhow!("unknown architecture {name}"))?;
            let bytes = random_gguf(&shape, 7);
            if let Some(p) = &a.save {
                std::fs::write(p, &bytes).with_context(|| format!("writing {}", p.display()))?;
            }
            let g = Gguf::parse(std::path::Path::new(name), bytes)?;
            let m = Llama::from_gguf(&g, &device)?;
            // Random f32 weights: `auto` keeps int8.
            let t = Tokenizer::from_gguf(&g)?;
            (m, t, format!("random:{name}"), Default::default())
        }
        None => {
            let path = a
                .model
                .as_deref()
                .map_or_else(models::default_model_path, models::resolve);
            let (m, t, stored) = models::load_stored(&path, &device)?;
            (m, t, path.display().to_string(), stored)
        }
    };
    let m = ponder::runtime::models::quantized(m, a.backend, a.weights, stored)?;
    println!(
        "model={label} backend={:?} weights={} weight_mib={} threads={} kernels={}",
        a.backend,
        m.quantization().map_or("f32", |f| f.name()),
        m.weight_bytes() >> 20,
        std::thread::available_parallelism().map_or(1, usize::from),
        ponder::kernels::Isa::best().name(),
    );
    let prompt = tok.encode(&tok.chat().render(
        None,
        "If Tom has 3 apples and buys 5 more, how many apples does he have?",
    ))?;
    let mut batches = vec![1usize];
    batches.extend(a.batch.iter().map(|&b| b as usize));
    for batch in batches {
        let r = ponder::runtime::bench::decode(&m, &prompt, a.tokens, batch)?;
        println!(
            "tokens_per_sec={:.1} batch={batch} prefill_ms={:.1} prompt_tokens={}",
            r.tokens_per_sec,
            r.prefill_secs * 1e3,
            prompt.len()
        );
    }
    // KV reuse on a search: the LLM policy expands a tree to depth >= 5.
    let mut cfg = Config::default();
    cfg.policy.kind = PolicyKind::Llm;
    cfg.policy.backend = a.backend;
    cfg.policy.weights = a.weights;
    cfg.policy.step.max_tokens = 6;
    cfg.search.budget.simulations = a.simulations;
    cfg.search.budget.max_depth = a.depth;
    cfg.search.expansion.widening.c_min_root = 2;
    cfg.search.expansion.widening.c_min = 2;
    cfg.search.expansion.descend_to_terminal = true;
    cfg.validate()?;
    let policy = std::sync::Arc::new(ponder::runtime::models::policy_from(m, tok, &cfg.policy));
    let models = ponder::engine::Models {
        policy: policy.clone(),
        rollout: None,
        critics: ponder::engine::CriticPanel::new(),
        task: std::sync::Arc::new(ponder::critics::math::MathTask::default()),
    };
    let problem = ponder::engine::Problem::new(
        "bench",
        "If Tom has 3 apples and buys 5 more, how many apples does he have?",
    );
    let r = ponder::engine::search(
        problem,
        ponder::engine::TreeId(0),
        &cfg.search,
        ponder::engine::Evaluator::direct(&models),
    )?;
    let st = policy.cache_stats();
    println!(
        "kv_reuse_ratio={:.2} depth={} nodes={} computed_tokens={} prefix_tokens={} generated_tokens={}",
        st.reuse_ratio(),
        r.stats.max_depth,
        r.stats.nodes,
        st.computed,
        st.prefix,
        st.generated
    );
    Ok(())
}

/// Prints one line per run (sequential, then parallel) and the speedup.
fn latency(a: BenchLatencyArgs) -> Result<()> {
    use ponder::testkit::{latency, synthetic};
    anyhow::ensure!(
        a.latency_ms.is_finite()
            && a.latency_ms >= 0.0
            && a.per_request_ms.is_finite()
            && a.per_request_ms >= 0.0,
        "latencies must be finite and >= 0"
    );
    let lat = latency::Latency {
        fixed: std::time::Duration::from_secs_f64(a.latency_ms / 1e3),
        per_request: std::time::Duration::from_secs_f64(a.per_request_ms / 1e3),
    };
    let mut cfg = Config::default();
    cfg.search.budget.simulations = a.simulations;
    let models = latency::slow(&synthetic::models(&cfg.synthetic.spec()), lat);
    let problems = synthetic::problems(a.problems, 4, 1);
    let mut wall = [0.0f64; 2];
    for (i, (threads, trees)) in [(1u32, 1u32), (a.threads, a.parallel_trees)]
        .into_iter()
        .enumerate()
    {
        let mut c = cfg.clone();
        c.search.parallel.threads = threads;
        c.batch.max_batch = if i == 0 { 1 } else { a.max_batch };
        c.batch.max_wait_ms = a.max_wait_ms;
        c.validate()?;
        let searcher = ponder::runtime::Searcher::from_models(c, models.clone())?;
        let s = super::run::run_problems(&searcher, &problems, trees, true, |_, _, r| {
            r.map(|_| ()).map_err(anyhow::Error::from)
        })?;
        wall[i] = s.wall_seconds;
        let fill = s.batch.as_ref().map_or(1.0, |b| b.policy.mean_batch);
        println!(
            "run={} threads={threads} parallel_trees={trees} problems={} simulations={} wall_s={:.2} simulations_per_sec={:.1} mean_policy_batch={:.1} accuracy={:.2}",
            if i == 0 { "sequential" } else { "parallel" },
            s.problems,
            s.stats.simulations,
            s.wall_seconds,
            s.stats.simulations as f64 / s.wall_seconds,
            fill,
            s.accuracy().unwrap_or(0.0)
        );
    }
    println!("speedup={:.1}", wall[0] / wall[1]);
    Ok(())
}

/// Prints `simulations_per_sec=<f> threads=<T> nodes=<n> bytes_per_node=<b>` for the median run.
fn tree(a: BenchTreeArgs) -> Result<()> {
    let mut runs = Vec::with_capacity(a.repeat as usize);
    for _ in 0..a.repeat {
        let shape = bench::Shape {
            width: a.width,
            depth: a.depth,
        };
        runs.push(bench::run(a.threads, a.simulations, shape)?);
    }
    runs.sort_by(|x, y| x.simulations_per_sec.total_cmp(&y.simulations_per_sec));
    let m = runs[runs.len() / 2];
    tracing::debug!(collisions = m.collisions, runs = runs.len(), "bench tree");
    println!(
        "simulations_per_sec={:.0} threads={} nodes={} bytes_per_node={}",
        m.simulations_per_sec, m.threads, m.nodes, m.bytes_per_node
    );
    Ok(())
}
