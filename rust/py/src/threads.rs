//! Dedicated rayon pools, one per thread count, so cloudkit never touches the global pool
//! that other extensions in the same process may have configured.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::PyResult;
use rayon::{ThreadPool, ThreadPoolBuilder};

/// Environment variable read when no `threads` argument is given.
const THREADS_ENV: &str = "CLOUDKIT_NUM_THREADS";

struct PoolCache {
    /// Process the pools were built in: a forked child (a DataLoader worker) has none of
    /// their threads, so it must build its own.
    pid: u32,
    /// `(requested threads, pool)`; 0 requests rayon's default.
    pools: Vec<(usize, Arc<ThreadPool>)>,
}

static POOLS: Mutex<PoolCache> = Mutex::new(PoolCache {
    pid: 0,
    pools: Vec::new(),
});

/// The thread count to use: the argument, else `CLOUDKIT_NUM_THREADS`, else 0 (rayon default).
fn requested_threads(threads: Option<usize>) -> PyResult<usize> {
    if let Some(threads) = threads {
        if threads == 0 {
            return Err(PyValueError::new_err(
                "threads must be at least 1, got 0 (leave it out to use every core)",
            ));
        }
        return Ok(threads);
    }
    match std::env::var(THREADS_ENV) {
        Ok(value) if !value.trim().is_empty() => match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(PyValueError::new_err(format!(
                "{THREADS_ENV} must be a positive integer, got {value:?}"
            ))),
        },
        _ => Ok(0),
    }
}

/// The pool for `threads` (see [`requested_threads`]), built on first use.
pub fn thread_pool(threads: Option<usize>) -> PyResult<Arc<ThreadPool>> {
    let requested = requested_threads(threads)?;
    let mut cache = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let pid = std::process::id();
    if cache.pid != pid {
        // Pools inherited through fork have no threads; dropping them could wait forever.
        std::mem::forget(std::mem::take(&mut cache.pools));
        cache.pid = pid;
    }
    if let Some((_, pool)) = cache.pools.iter().find(|(n, _)| *n == requested) {
        return Ok(Arc::clone(pool));
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(requested)
        .thread_name(|i| format!("cloudkit-{i}"))
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start worker threads: {e}")))?;
    let pool = Arc::new(pool);
    cache.pools.push((requested, Arc::clone(&pool)));
    Ok(pool)
}
