//! The search executor: one thread owns the models (and the batcher, when the policy wants
//! batches) for the server's life; each request's search runs on a thread of its own in that
//! scope, so every concurrent search feeds the same batcher.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ponder_engine::{
    BatchConfig, Batcher, Evaluator, Models, Problem, SearchConfig, SearchControl, SearchReport,
    StopReason, TreeId, search_with,
};

use ponder_runtime::record::Recorder;

use crate::Counters;

/// One search to run and where its result goes.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) problem: Problem,
    pub(crate) search: SearchConfig,
    pub(crate) tree: TreeId,
    /// Cancels the search when its client goes away; reports progress.
    pub(crate) control: Arc<SearchControl>,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<SearchReport, String>>,
}

/// Starts the executor; it runs until every sender of the returned channel is dropped.
pub(crate) fn spawn(
    models: Models,
    batch: BatchConfig,
    counters: Arc<Counters>,
    recorder: Option<Arc<Recorder>>,
) -> std::io::Result<crossbeam_channel::Sender<Job>> {
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    std::thread::Builder::new()
        .name("ponder-serve-executor".into())
        .spawn(move || {
            let run = |b: Option<&Batcher>| {
                std::thread::scope(|s| {
                    for job in rx.iter() {
                        let (models, counters, recorder) = (&models, &counters, &recorder);
                        s.spawn(move || {
                            // Relaxed: gauges and counters for `/health` and `/metrics`.
                            counters.searching.fetch_add(1, Ordering::Relaxed);
                            let eval = match b {
                                Some(b) => Evaluator::batched(models, b),
                                None => Evaluator::direct(models),
                            };
                            let r = search_with(
                                job.problem.clone(),
                                job.tree,
                                &job.search,
                                eval,
                                Some(job.control),
                            );
                            if let Some(b) = b {
                                let q = b.stats().policy;
                                counters
                                    .batch_fill_milli
                                    .store((q.fill * 1000.0) as u64, Ordering::Relaxed);
                                counters
                                    .batch_rows_milli
                                    .store((q.mean_batch * 1000.0) as u64, Ordering::Relaxed);
                            }
                            if let Ok(rep) = &r {
                                counters
                                    .tokens
                                    .fetch_add(rep.stats.tokens, Ordering::Relaxed);
                                if rep.stop == StopReason::Cancelled {
                                    counters.cancelled.fetch_add(1, Ordering::Relaxed);
                                } else if let Some(rec) = recorder {
                                    // A cancelled tree is cut short by its client: not recorded.
                                    if let Err(e) = rec.record(&job.problem, &job.search, rep) {
                                        counters.record_errors.fetch_add(1, Ordering::Relaxed);
                                        tracing::error!(
                                            "recording the tree of {}: {e}",
                                            job.problem.id
                                        );
                                    }
                                }
                            }
                            counters.searching.fetch_sub(1, Ordering::Relaxed);
                            // The client may have gone: nothing to tell it then.
                            let _ = job.reply.send(r.map_err(|e| e.to_string()));
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
