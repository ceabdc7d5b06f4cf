//! The search executor: one thread owns the models (and the batcher, when the policy wants
//! batches) for the server's life; each request's search runs on a thread of its own in that
//! scope, so every concurrent search feeds the same batcher.

use ponder_engine::{
    BatchConfig, Batcher, Evaluator, Models, Problem, SearchConfig, SearchReport, TreeId, search,
};

/// One search to run and where its result goes.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) problem: Problem,
    pub(crate) search: SearchConfig,
    pub(crate) tree: TreeId,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<SearchReport, String>>,
}

/// Starts the executor; it runs until every sender of the returned channel is dropped.
pub(crate) fn spawn(
    models: Models,
    batch: BatchConfig,
) -> std::io::Result<crossbeam_channel::Sender<Job>> {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    std::thread::Builder::new()
        .name("ponder-serve-executor".into())
        .spawn(move || {
            let run = |b: Option<&Batcher>| {
                std::thread::scope(|s| {
                    for job in rx.iter() {
                        let models = &models;
                        s.spawn(move || {
                            let eval = match b {
                                Some(b) => Evaluator::batched(models, b),
                                None => Evaluator::direct(models),
                            };
                            let r = search(job.problem, job.tree, &job.search, eval)
                                .map_err(|e| e.to_string());
                            // The client may have gone: nothing to tell it then.
                            let _ = job.reply.send(r);
                        });
                    }
                });
            };
            if models.policy.wants_batches() && batch.max_batch > 1 {
                if let Err(e) = Batcher::run(&models, &batch, |b| run(Some(b))) {
                    tracing::error!(error = %e, "the batcher stopped");
                }
            } else {
                run(None);
            }
        })?;
    Ok(tx)
}
