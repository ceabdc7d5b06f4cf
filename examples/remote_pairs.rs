//! Step-level preference pairs from a model served over OpenAI-compatible HTTP, built without
//! Burn (the `remote` feature, and `testkit` for the mock server):
//!
//! ```sh
//! cargo run --example remote_pairs --no-default-features --features remote,testkit -- URL MODEL
//! ```
//!
//! `URL` is the server's base (`http://127.0.0.1:8000/v1` for vLLM). Without arguments it starts
//! ponder's mock OpenAI server, a test double that answers the synthetic arithmetic task, and
//! searches that task's problems through it.

use ponder::engine::extract;
use ponder::runtime::dataset::ProblemSource;
use ponder::runtime::{Config, ManyOptions, PolicyKind, Searcher};
use ponder::tasks::problems::Split;
use ponder::testkit::mock_server::{MockConfig, MockServer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = Config::default();
    config.policy.kind = PolicyKind::Remote;
    config.search.budget.simulations = 16;
    let mut _mock = None;
    let problems = if let [url, model] = &args[..] {
        config.policy.remote.endpoints = vec![url.clone()];
        config.policy.remote.model = model.clone();
        ProblemSource::Word {
            n: 4,
            level: 1,
            seed: 1,
            split: Split::Train,
        }
        .load()?
    } else {
        let server = MockServer::start(MockConfig::default())?;
        config.policy.remote.endpoints = vec![server.url()];
        config.policy.remote.model = "mock".into();
        _mock = Some(server);
        ProblemSource::Synthetic {
            n: 4,
            level: 3,
            seed: 1,
        }
        .load()?
    };
    let searcher = Searcher::new(config)?;
    let search_cfg = searcher.config().search.clone();
    let output = searcher.config().output.clone();
    let mut pairs = 0;
    searcher.search_many(
        &problems,
        &ManyOptions {
            parallel_trees: 4,
            ..ManyOptions::default()
        },
        &mut |_| {},
        &mut |_, p, r| {
            let data = extract::extract(&r?, &search_cfg, &output);
            for pair in &data.pairs {
                println!("{}", serde_json::to_string(pair)?);
            }
            eprintln!("{}: {} pairs", p.id, data.pairs.len());
            pairs += data.pairs.len();
            Ok(())
        },
    )?;
    eprintln!("{pairs} pairs from {} problems", problems.len());
    Ok(())
}
