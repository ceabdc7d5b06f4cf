//! `ponder serve`: flags over `ponder::serve`.

use anyhow::{Context, Result};

use crate::cli::args::ServeArgs;

pub(crate) fn run(a: ServeArgs) -> Result<()> {
    let cfg = super::run::resolve_config(&a.flags)?;
    let api_key = match &a.api_key_env {
        Some(name) => Some(
            std::env::var(name)
                .with_context(|| format!("--api-key-env {name}: the variable is not set"))?,
        ),
        None => None,
    };
    let serve_cfg = ponder::serve::ServeConfig {
        api_key,
        max_concurrent: a.max_concurrent,
        max_body_bytes: a.max_body_kib.saturating_mul(1024),
        max_simulations: a.max_simulations,
        max_wall_seconds: a.max_wall_seconds,
        model_name: "ponder".into(),
        max_queue: a.max_queue,
        drain_seconds: a.drain_seconds,
    };
    serve_cfg.validate()?;
    let searcher = super::run::searcher(&cfg, &[])?;
    let recorder = match &a.record {
        Some(dir) => {
            let about = serde_json::json!({
                "task": searcher.models().task.name(),
                "policy": searcher.models().policy.name(),
                "config": cfg,
            });
            let r = ponder::runtime::record::Recorder::open(
                dir,
                &cfg.output,
                a.record_trees,
                a.fsync,
                about,
            )?;
            tracing::info!(dir = %dir.display(), "recording every finished tree");
            Some(std::sync::Arc::new(r))
        }
        None => None,
    };
    let app = ponder::serve::App::start_with(
        serve_cfg,
        cfg.search.clone(),
        cfg.batch.clone(),
        searcher.models().clone(),
        ponder::serve::Extras {
            loaded: Some(searcher.loaded().clone()),
            recorder,
            output: cfg.output.clone(),
        },
    )?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", a.host, a.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let bound = listener.local_addr()?;
        // The one line a supervisor or test reads to find the port.
        println!("listening on http://{bound}");
        tracing::info!(%bound, "serving");
        ponder::serve::serve(listener, app, shutdown()).await?;
        tracing::info!("stopped: in-flight searches finished");
        Ok(())
    })
}

/// Ctrl-C or SIGTERM: stop taking connections; requests in flight finish.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
