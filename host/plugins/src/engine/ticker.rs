//! The epoch ticker: a thread that advances the engines' epochs every [`EPOCH_TICK`], the
//! resolution of every call deadline. Epochs matter only while guest code runs, so it ticks
//! only while some plugin is loaded (each holds a [`TickerUse`]) and guest code has run lately
//! (each call and instance start holds a [`GuestRun`]): a router whose plugins get no traffic
//! for [`IDLE_TICKS`] ticks parks it instead of waking every millisecond. It ends with the
//! engines.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{Engine, EngineWeak};

use super::PluginEngine;
use crate::PluginError;

/// How often the epoch advances: the resolution of every call deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Ticks without any guest code starting or running after which the ticker parks until some
/// does: long enough that steady traffic never pays for waking it.
const IDLE_TICKS: u32 = 100;

/// The epoch ticker's switch: it advances the epochs only while a plugin is loaded.
pub(super) struct Ticker {
    /// Loaded plugins (each holds a [`TickerUse`]).
    live: AtomicUsize,
    /// Set when the engine goes away.
    closed: AtomicBool,
    /// Guest runs (calls, instance starts) begun and ended.
    began: AtomicU64,
    ended: AtomicU64,
    /// Set while the thread is parked for want of guest runs: the next run wakes it.
    idle: AtomicBool,
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
            began: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            idle: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let switch = ticker.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                let mut quiet = 0u32;
                let mut last_began = 0u64;
                loop {
                    if switch.closed.load(Ordering::Acquire) {
                        break;
                    }
                    if switch.live.load(Ordering::Acquire) == 0 {
                        std::thread::park();
                        continue;
                    }
                    let began = switch.began.load(Ordering::SeqCst);
                    let running = began != switch.ended.load(Ordering::SeqCst);
                    quiet = if running || began != last_began {
                        0
                    } else {
                        quiet + 1
                    };
                    last_began = began;
                    if quiet >= IDLE_TICKS && switch.park_while_idle() {
                        quiet = 0;
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

    /// Parks the thread until a guest run begins; false (without parking) when one has begun
    /// since the caller looked. The flag and the run count are each written before the other
    /// is read (`SeqCst` on both sides), so either this sees the run or the run sees the flag
    /// and unparks: no run goes untimed.
    fn park_while_idle(&self) -> bool {
        self.idle.store(true, Ordering::SeqCst);
        if self.began.load(Ordering::SeqCst) != self.ended.load(Ordering::SeqCst)
            || self.closed.load(Ordering::Acquire)
        {
            self.idle.store(false, Ordering::SeqCst);
            return false;
        }
        std::thread::park();
        self.idle.store(false, Ordering::SeqCst);
        true
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

impl TickerUse {
    /// Guest code is about to run (a call, an instance's start): the epochs advance until the
    /// result is dropped, the parked ticker woken if need be.
    pub(crate) fn guest_run(&self) -> GuestRun<'_> {
        let ticker = &self.0;
        ticker.began.fetch_add(1, Ordering::SeqCst);
        if ticker.idle.load(Ordering::SeqCst) {
            ticker.wake();
        }
        GuestRun(ticker)
    }
}

/// Guest code running (see [`TickerUse::guest_run`]).
pub(crate) struct GuestRun<'a>(&'a Ticker);

impl Drop for GuestRun<'_> {
    fn drop(&mut self) {
        self.0.ended.fetch_add(1, Ordering::SeqCst);
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
    use std::sync::atomic::Ordering;

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

    /// With a plugin loaded but no guest code running, the ticker parks after its idle ticks;
    /// a run wakes it, and it stays awake while the run lasts.
    #[test]
    fn the_epoch_ticker_parks_while_no_guest_code_runs() {
        use std::time::{Duration, Instant};
        let engine = PluginEngine::new(&PoolLimits::default(), None).expect("an engine");
        let held = engine.ticker_use();
        let until = Instant::now() + Duration::from_secs(10);
        while !engine.ticker.idle.load(Ordering::SeqCst) {
            assert!(Instant::now() < until, "the ticker never went idle");
            std::thread::sleep(Duration::from_millis(20));
        }
        let run = held.guest_run();
        let until = Instant::now() + Duration::from_secs(10);
        while engine.ticker.idle.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < until,
                "a guest run did not wake the ticker"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // While the run lasts the ticker never parks again.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!engine.ticker.idle.load(Ordering::SeqCst));
        drop(run);
    }
}
