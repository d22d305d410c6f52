//! The threads that run heavy lookups (aggregates, many rows): one per core,
//! below the CPU priority of the async workers.
//!
//! Heavy lookups take milliseconds of CPU each. On the async workers they
//! would hold the threads that read requests off the connections; on equal
//! footing beside them, on a machine with as many busy lookup threads as
//! cores, the workers wait for a time slice before they can even refuse a
//! request at the door. At a lower priority (nice 10) the kernel runs a
//! worker as soon as it wakes, so refusals and light lookups stay quick
//! while heavy lookups use all the CPU left. Measured with the overload test
//! (debug build, 2 cores, twice capacity): refusals at the door answered in
//! p99 10.7 ms from tokio's blocking pool, against the figures in
//! RELIABILITY.md from this pool.

use std::sync::Arc;

use crate::error::Error;

pub(crate) struct HeavyPool {
    pool: rayon::ThreadPool,
}

impl HeavyPool {
    /// `threads` lookup threads, each lowering its own priority as it starts
    /// (where the platform refuses, it logs and runs at normal priority).
    pub(crate) fn new(threads: usize) -> anyhow::Result<Arc<HeavyPool>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("fstore-lookup-{i}"))
            .start_handler(|_| lower_priority())
            .panic_handler(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = what, "A lookup panicked; it is answered INTERNAL.");
            })
            .build()?;
        Ok(Arc::new(HeavyPool { pool }))
    }

    /// Run `lookup` on a lookup thread; a panic inside it answers INTERNAL.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        lookup: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let _ = tx.send(lookup());
        });
        rx.await.unwrap_or_else(|_| Err(Error::internal("running a lookup", anyhow::anyhow!("it panicked"))))
    }
}

/// Nice 10 on Linux (the crate maps 0..=99 onto nice 19..=-20; 22 is 10):
/// a tenth of a normal thread's weight when the CPU is contended, and no
/// change when it is not.
fn lower_priority() {
    use thread_priority::{set_current_thread_priority, ThreadPriority, ThreadPriorityValue};
    let below_normal = ThreadPriorityValue::try_from(22u8).map(ThreadPriority::Crossplatform);
    if let Err(e) = below_normal
        .map_err(|e| format!("{e:?}"))
        .and_then(|p| set_current_thread_priority(p).map_err(|e| format!("{e:?}")))
    {
        tracing::warn!(
            error = e,
            "Could not lower the priority of a lookup thread; it runs at normal priority."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_run_answer_and_a_panic_is_internal() {
        let pool = HeavyPool::new(2).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            assert_eq!(pool.run(|| Ok(41 + 1)).await.unwrap(), 42);
            let name = pool.run(|| Ok(std::thread::current().name().map(str::to_string))).await.unwrap();
            assert!(name.unwrap().starts_with("fstore-lookup-"));
            let failed = pool.run(|| -> Result<(), Error> { panic!("boom") }).await.unwrap_err();
            assert_eq!(failed.code(), crate::error::Code::Internal);
            assert_eq!(pool.run(|| Ok("still serving")).await.unwrap(), "still serving");
        });
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lookup_threads_run_below_normal_priority() {
        let pool = HeavyPool::new(1).unwrap();
        // /proc/thread-self/stat: field 19 is the nice value.
        let nice = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(pool.run(|| {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            Ok(after_name.split(' ').nth(16).unwrap().parse::<i32>().unwrap())
        }));
        assert_eq!(nice.unwrap(), 10);
    }
}
