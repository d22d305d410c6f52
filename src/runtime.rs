//! The running server, apart from its network protocols: one owner for what
//! outlives a request and the order things start and stop in.
//!
//! - **Start** ([`Runtime::start`]): the stream consumers; then, in the
//!   background, the data of view definitions no longer in use is dropped.
//! - **Ready** ([`Runtime::prepare`]): parquet sources whose views are empty
//!   are loaded and the block cache is warmed; the gRPC adapter reports
//!   SERVING on health only after this.
//! - **Change** ([`Runtime::apply`], also on SIGHUP): definitions are applied,
//!   stream consumers restarted when their sources changed, and sources of
//!   views that start empty loaded.
//! - **Stop** ([`Runtime::stop`]): after the gRPC server has drained, the
//!   consumers write what they hold and leave their group.
//!
//! `serve` is a thin adapter over this: it speaks gRPC and HTTP, and asks
//! the runtime for everything else.

use std::sync::{Arc, Mutex};

use crate::definitions::{self, ApplyError, ApplyReport};
use crate::engine::Engine;
use crate::ingest::parquet;
use crate::stream::stats::StreamStats;
use crate::stream::Streams;

pub struct Runtime {
    pub(crate) engine: Arc<Engine>,
    /// The running stream consumers, which a definitions apply may restart.
    streams: Mutex<Option<Streams>>,
}

impl Runtime {
    /// Start the stream consumers, and drop (in the background) the data of
    /// view definitions changed or removed while the server was stopped.
    pub fn start(engine: Arc<Engine>) -> Arc<Runtime> {
        {
            // Never served, so it can go in the background.
            let engine = engine.clone();
            std::thread::spawn(move || {
                if let Err(e) = definitions::drop_unused_views(&engine) {
                    tracing::error!(error = format!("{e:#}"), "Could not drop unused views' data.");
                }
            });
        }
        let streams = Streams::start(&engine);
        Arc::new(Runtime { engine, streams: Mutex::new(Some(streams)) })
    }

    /// Get ready to serve (blocking): load the parquet sources whose views
    /// are empty (a fresh store, or changed definitions), then warm the block
    /// cache. Failures are logged; the server serves anyway.
    pub fn prepare(&self) {
        let engine = &self.engine;
        if engine.config.server.load_sources_on_start {
            parquet::load_empty_sources(engine);
        }
        if engine.config.store.warm_cache_on_start {
            if let Err(err) = warm_cache(engine) {
                tracing::warn!(error = %format!("{err:#}"), "Warming the block cache failed; serving cold.");
            }
        }
    }

    /// Apply definitions (blocking), then follow them: restart the stream
    /// consumers if their sources changed, and load the parquet sources of
    /// views that start empty (in the background).
    pub fn apply(
        &self,
        files: Option<Vec<fstore_dsl::SourceFile>>,
        dry_run: bool,
    ) -> Result<ApplyReport, ApplyError> {
        let mut report = definitions::apply(&self.engine, files, dry_run)?;
        if !report.applied {
            return Ok(report);
        }
        if report.restart_streams {
            let mut streams = self.lock_streams();
            if let Some(running) = streams.take() {
                running.stop();
            }
            *streams = Some(Streams::start(&self.engine));
            report.notes.push("stream consumers restarted on the new definitions".into());
        }
        if self.engine.config.server.load_sources_on_start {
            let engine = self.engine.clone();
            std::thread::spawn(move || parquet::load_empty_sources(&engine));
        }
        Ok(report)
    }

    /// SIGHUP: re-read the definitions directory and apply it, until the
    /// task is aborted.
    pub async fn reload_on_sighup(self: Arc<Self>) {
        #[cfg(unix)]
        {
            let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!("Cannot listen for SIGHUP; use `fstore apply` to reload definitions.");
                return;
            };
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the definitions directory.");
                let runtime = self.clone();
                match tokio::task::spawn_blocking(move || runtime.apply(None, false)).await {
                    Ok(Ok(report)) if report.applied => {}
                    Ok(Ok(_)) => tracing::info!("Definitions unchanged."),
                    Ok(Err(e)) => {
                        tracing::error!("Reload refused; the running definitions keep serving.\n{e}")
                    }
                    Err(e) => tracing::error!(error = %e, "The reload task failed."),
                }
            }
        }
    }

    /// Every stream source's figures, in source order.
    pub fn stream_stats(&self) -> Vec<Arc<StreamStats>> {
        self.lock_streams().as_ref().map(|s| s.stats().to_vec()).unwrap_or_default()
    }

    /// Stop (blocking), once nothing is served any more: the stream
    /// consumers write what they hold, commit and leave their group.
    pub fn stop(&self) {
        if let Some(running) = self.lock_streams().take() {
            running.stop();
        }
    }

    fn lock_streams(&self) -> std::sync::MutexGuard<'_, Option<Streams>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Read every serving generation into the block cache, up to three
/// quarters of it, so that a server that starts under load does not answer
/// its first seconds from disk and decompression (BENCHMARKS.md, "Restart
/// under load").
fn warm_cache(engine: &Engine) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let generations = engine.generations();
    let registry = engine.registry();
    let prefixes: Vec<_> = registry
        .views
        .iter()
        .filter_map(|v| {
            Some(crate::store::keys::view_prefix(v.fingerprint, *generations.get(&v.fingerprint)?))
        })
        .collect();
    drop(generations);
    let budget = (engine.config.store.block_cache_mb as u64) << 20;
    let read = engine.store.warm_cache(&prefixes, budget / 4 * 3)?;
    tracing::info!(
        views = prefixes.len(),
        mb_read = read >> 20,
        block_cache_mb = engine.store.property("rocksdb.block-cache-usage").unwrap_or(0) >> 20,
        seconds = started.elapsed().as_secs_f64(),
        "Warmed the block cache."
    );
    Ok(())
}
