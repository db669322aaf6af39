//! The epoch ticker: a thread that advances the engines' epochs every [`EPOCH_TICK`], the
//! resolution of every call deadline. It runs only while some plugin is loaded (each holds a
//! [`TickerUse`]) and parks otherwise, so a router without plugins has no thread waking every
//! millisecond; it ends with the engines.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{Engine, EngineWeak};

use super::PluginEngine;
use crate::PluginError;

/// How often the epoch advances: the resolution of every call deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The epoch ticker's switch: it advances the epochs only while a plugin is loaded.
pub(super) struct Ticker {
    /// Loaded plugins (each holds a [`TickerUse`]).
    live: AtomicUsize,
    /// Set when the engine goes away.
    closed: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

impl Ticker {
    /// Starts the thread for `engines`. Weak handles let it end with the engines. While no
    /// plugin is loaded no call can run, and it parks: a plugin's load wakes it (see
    /// [`PluginEngine::ticker_use`]). An unpark that comes between the check and the park is
    /// not lost: it makes the park return at once.
    pub(super) fn start(engines: [&Engine; 2]) -> Result<Arc<Ticker>, PluginError> {
        let weak: [EngineWeak; 2] = engines.map(Engine::weak);
        let ticker = Arc::new(Ticker {
            live: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let switch = ticker.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                loop {
                    if switch.closed.load(Ordering::Acquire) {
                        break;
                    }
                    if switch.live.load(Ordering::Acquire) == 0 {
                        std::thread::park();
                        continue;
                    }
                    let engines = weak.each_ref().map(|w| w.upgrade());
                    if engines.iter().all(Option::is_none) {
                        break;
                    }
                    for engine in engines.iter().flatten() {
                        engine.increment_epoch();
                    }
                    drop(engines);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| PluginError::engine(wasmtime::Error::from(e)))?;
        let _ = ticker.thread.set(thread.thread().clone());
        Ok(ticker)
    }

    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// Ends the thread (the engine is going away).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake();
    }
}

/// Keeps the epoch ticker running while it lives: held by every loaded plugin, whose calls'
/// deadlines are counted in epochs.
pub(crate) struct TickerUse(Arc<Ticker>);

impl Drop for TickerUse {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PluginEngine {
    /// Keeps the epochs advancing while the result lives (a loaded plugin holds one).
    pub(crate) fn ticker_use(&self) -> TickerUse {
        if self.ticker.live.fetch_add(1, Ordering::AcqRel) == 0 {
            self.ticker.wake();
        }
        TickerUse(self.ticker.clone())
    }

    /// Whether the epoch ticker is running (some plugin is loaded).
    #[cfg(test)]
    pub(super) fn ticking(&self) -> bool {
        self.ticker.live.load(Ordering::Acquire) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PluginEngine, PoolLimits};

    #[test]
    fn the_epoch_ticker_runs_only_while_a_plugin_holds_it() {
        let engine = PluginEngine::new(&PoolLimits::default(), None).expect("an engine");
        assert!(!engine.ticking());
        let first = engine.ticker_use();
        let second = engine.ticker_use();
        assert!(engine.ticking());
        drop(first);
        assert!(engine.ticking());
        drop(second);
        assert!(!engine.ticking());
        let held = engine.ticker_use();
        drop(engine);
        drop(held);
    }
}
