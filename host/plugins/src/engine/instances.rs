//! The warm instances of every plugin, as the engine sees them: a cache. Each plugin's idle
//! instances are registered here; when the instance pool runs short, a call evicts the least
//! recently used idle instance of any plugin, and only when every slot is held by a running
//! call does it wait for one (signalled as instances are dropped or go idle).

use crate::clock::now_ms;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::{EngineKind, PluginEngine};

/// One plugin's idle warm instances, oldest first.
pub(crate) struct IdlePool<T> {
    pub(crate) instances: Mutex<Vec<T>>,
    /// When an instance was last taken, in [`now_ms`].
    pub(crate) last_used: AtomicU64,
}

impl<T> IdlePool<T> {
    pub(crate) fn new() -> Self {
        IdlePool {
            instances: Mutex::new(Vec::new()),
            last_used: AtomicU64::new(now_ms()),
        }
    }

    pub(crate) fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }
}

/// Something that can give up its oldest idle instance.
pub(crate) trait Evictable: Send + Sync {
    /// When it was last used, and whether it has an idle instance.
    fn last_used(&self) -> Option<u64>;
    /// Drops its oldest idle instance; false when it had none.
    fn evict_oldest(&self) -> bool;
}

impl<T: Send> Evictable for IdlePool<T> {
    fn last_used(&self) -> Option<u64> {
        let has = self.instances.lock().is_ok_and(|v| !v.is_empty());
        has.then(|| self.last_used.load(Ordering::Relaxed))
    }

    fn evict_oldest(&self) -> bool {
        let oldest = match self.instances.lock() {
            Ok(mut v) if !v.is_empty() => Some(v.remove(0)),
            _ => None,
        };
        // Dropped outside the lock: freeing a store returns its slots to the pool.
        oldest.is_some()
    }
}

/// Tells calls waiting for an instance slot that one may be free: an instance was dropped
/// (its slot went back to the pool) or became idle (so it can be evicted). Signals cost an
/// atomic load while nobody waits, so the calls that return instances do not contend on a lock.
#[derive(Default)]
pub(crate) struct SlotSignal {
    waiting: AtomicUsize,
    notify: tokio::sync::Notify,
}

impl SlotSignal {
    /// A slot may be free now.
    pub(crate) fn freed(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Starts listening: every [`SlotSignal::freed`] after this returns wakes the listener.
    pub(crate) fn listen(self: &Arc<Self>) -> SlotListener {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        SlotListener {
            signal: self.clone(),
        }
    }
}

/// A call's registration as a waiter for a free slot.
pub(crate) struct SlotListener {
    signal: Arc<SlotSignal>,
}

impl SlotListener {
    /// A future that completes at the next [`SlotSignal::freed`]. Enable it (`enable`) before
    /// trying for a slot, so a slot freed between a failed try and the wait is not missed.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.signal.notify.notified()
    }
}

impl Drop for SlotListener {
    fn drop(&mut self) {
        self.signal.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Held by every instance, after its store: dropped with the instance, once the store (and
/// so the instance's slot) is gone, and says so to the calls waiting for a slot.
pub(crate) struct SlotReturn(pub(crate) Arc<SlotSignal>);

impl Drop for SlotReturn {
    fn drop(&mut self) {
        self.0.freed();
    }
}

impl PluginEngine {
    /// Registers a plugin's idle instances (on the engine of `kind`) for eviction.
    pub(crate) fn register_idle(&self, kind: EngineKind, pool: Weak<dyn Evictable>) {
        if let Ok(mut pools) = self.idle_pools.lock() {
            pools.retain(|(_, p)| p.strong_count() > 0);
            pools.push((kind, pool));
        }
    }

    /// Drops the least recently used idle instance of any plugin on the engine of `kind`;
    /// false only when no plugin on it has an idle instance. A pool whose last idle instance
    /// was taken by a call between the choice and the eviction is passed over for the next.
    pub(crate) fn evict_one(&self, kind: EngineKind) -> bool {
        let mut candidates: Vec<(u64, Arc<dyn Evictable>)> = {
            let Ok(mut pools) = self.idle_pools.lock() else {
                return false;
            };
            pools.retain(|(_, p)| p.strong_count() > 0);
            pools
                .iter()
                .filter(|(k, _)| *k == kind)
                .filter_map(|(_, p)| {
                    let p = p.upgrade()?;
                    let used = p.last_used()?;
                    Some((used, p))
                })
                .collect()
        };
        candidates.sort_unstable_by_key(|(used, _)| *used);
        candidates.into_iter().any(|(_, p)| p.evict_oldest())
    }

    /// Where a call that found every instance slot of `kind` in use waits for one to free.
    pub(crate) fn slots_of(&self, kind: EngineKind) -> &Arc<SlotSignal> {
        &self.runtime(kind).slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PoolLimits;

    /// A pool that says it has an idle instance, but whose last one a call takes before the
    /// eviction reaches it (as when two calls pick the same least recently used victim).
    struct TakenMeanwhile;

    impl Evictable for TakenMeanwhile {
        fn last_used(&self) -> Option<u64> {
            Some(0)
        }

        fn evict_oldest(&self) -> bool {
            false
        }
    }

    /// The race the many-plugins spread hit 68 times in two rounds: the least recently used
    /// pool lost its idle instance to another call between the choice and the eviction. The
    /// eviction goes on to the next pool instead of reporting the pool full.
    #[test]
    fn eviction_passes_over_a_victim_emptied_meanwhile() {
        let engine = PluginEngine::new(&PoolLimits::default(), None).expect("an engine");
        let raced: Arc<dyn Evictable> = Arc::new(TakenMeanwhile);
        let idle = Arc::new(IdlePool::<u8>::new());
        if let Ok(mut v) = idle.instances.lock() {
            v.push(7);
        }
        let other: Arc<dyn Evictable> = idle.clone();
        engine.register_idle(EngineKind::Standard, Arc::downgrade(&raced));
        engine.register_idle(EngineKind::Standard, Arc::downgrade(&other));
        assert!(engine.evict_one(EngineKind::Standard));
        assert!(idle.instances.lock().is_ok_and(|v| v.is_empty()));
        assert!(
            !engine.evict_one(EngineKind::Standard),
            "nothing idle is left"
        );
    }
}
