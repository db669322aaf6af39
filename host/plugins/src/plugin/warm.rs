//! One plugin's instances: a call takes an idle one or starts a new one (evicting another
//! plugin's idle instance, least recently used, when the shared pool is full, and waiting for a
//! slot only when every one is in a call), and a successful call puts it back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::Plugin;
use super::bounds::{CallFailure, classify, epoch_check, within};
use crate::contract::Guest;
use crate::engine::{EPOCH_TICK, SlotReturn};
use crate::gate::SlotWait;
use crate::settings::InstanceMode;
use crate::state::PluginState;

/// One instance with its store.
pub(crate) struct Warm {
    pub(super) store: Store<PluginState>,
    /// Its exports, by the contract version it speaks.
    pub(super) guest: Guest,
    /// The store's [`SlotWait`], also held here for the timer that bounds each call.
    pub(super) slot_wait: Arc<SlotWait>,
    /// Last, so it is dropped after the store: tells waiting calls the slot is free.
    _returned: SlotReturn,
}

/// The time a call's new instance may take to start (the guest's start functions included).
/// It is the instance's budget, not the call's: the deadline bounds the guest's own run, and
/// a start slowed by the host (page faults, a busy worker) must not count against it. A plugin
/// that loaded starts in well under a millisecond to a few; this only bounds one that hangs.
pub(super) const INSTANTIATE_ALLOWANCE: Duration = Duration::from_secs(1);

/// Evictions one attempt to instantiate may make before it waits for a slot instead: each
/// frees a slot, so more mean other calls keep taking the freed slots first.
const MAX_EVICTIONS_PER_ATTEMPT: usize = 64;

impl Plugin {
    /// A new instance, its start bounded by `allowance`. When the shared pool is full, idle
    /// instances of any plugin are evicted, least recently used first; only when every slot
    /// is held by a running call does it wait, up to `queue`, for one of them to end: then the
    /// call is overloaded, which is routerd's capacity, never the plugin's failure.
    pub(super) async fn instantiate(
        &self,
        allowance: Duration,
        queue: Duration,
    ) -> Result<Warm, CallFailure> {
        if let Some(done) = self.try_instantiate(allowance).await {
            return done;
        }
        let listener = self.engine.slots_of(self.engine_kind).listen();
        let until = Instant::now() + queue;
        loop {
            let mut freed = std::pin::pin!(listener.notified());
            freed.as_mut().enable();
            if let Some(done) = self.try_instantiate(allowance).await {
                return done;
            }
            if tokio::time::timeout_at(until.into(), freed).await.is_err() {
                return Err(CallFailure::Overloaded(format!(
                    "every plugin instance slot stayed in use by running calls for queue_ms ({} ms); raise --plugin-instances",
                    queue.as_millis()
                )));
            }
        }
    }

    /// One attempt at a new instance; `None` when the pool is full and no plugin has an idle
    /// instance left to evict.
    async fn try_instantiate(&self, allowance: Duration) -> Option<Result<Warm, CallFailure>> {
        for _ in 0..=MAX_EVICTIONS_PER_ATTEMPT {
            let until = Instant::now() + allowance;
            let mut store = Store::new(
                &self.engine.runtime(self.engine_kind).engine,
                PluginState::new(self.name.clone(), self.memory_cap, &self.services),
            );
            store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
            {
                let data = store.data_mut();
                data.deadline_at = until;
                data.yield_from = Instant::now() + EPOCH_TICK;
                data.cap = Some(self.cap.slots());
                data.queue = self.queue;
            }
            store.epoch_deadline_callback(epoch_check);
            // Start functions run too: the deadline is armed before instantiating.
            store.set_epoch_deadline(1);
            let wait = store.data().slot_wait.clone();
            let running = self.ticker.guest_run();
            let started = within(until, &wait, self.pre.instantiate_async(&mut store)).await;
            drop(running);
            let instance = match started {
                None => return Some(Err(CallFailure::Deadline)),
                Some(Ok(i)) => i,
                Some(Err(e)) if e.is::<wasmtime::PoolConcurrencyLimitError>() => {
                    drop(store);
                    if self.engine.evict_one(self.engine_kind) {
                        continue;
                    }
                    return None;
                }
                Some(Err(e)) => return Some(Err(classify(&store, &e))),
            };
            return Some(self.ready(store, &instance, wait));
        }
        None
    }

    /// A started instance with its exports looked up.
    fn ready(
        &self,
        mut store: Store<PluginState>,
        instance: &wasmtime::component::Instance,
        slot_wait: Arc<SlotWait>,
    ) -> Result<Warm, CallFailure> {
        let guest = self
            .indices
            .load(&mut store, instance)
            .map_err(|e| CallFailure::Trap(crate::one_line(&e)))?;
        Ok(Warm {
            store,
            guest,
            slot_wait,
            _returned: SlotReturn(self.engine.slots_of(self.engine_kind).clone()),
        })
    }

    /// An instance for a call: an idle one, or a new one (waiting up to `queue` for a slot).
    pub(super) async fn take(
        &self,
        allowance: Duration,
        queue: Duration,
    ) -> Result<Warm, CallFailure> {
        self.idle.touch();
        if self.settings.mode == InstanceMode::Reuse
            && let Some(w) = self.idle.instances.lock().ok().and_then(|mut v| v.pop())
        {
            return Ok(w);
        }
        // Boxed: starting an instance is a future of several KiB, and every call's future
        // would otherwise be that large (allocated and copied per call) to hold it.
        Box::pin(self.instantiate(allowance, queue)).await
    }

    pub(super) fn put_back(&self, mut warm: Warm) {
        if self.settings.mode != InstanceMode::Reuse {
            return;
        }
        let data = warm.store.data_mut();
        data.request = None;
        data.response = None;
        let kept = match self.idle.instances.lock() {
            Ok(mut idle) if idle.len() < self.settings.max_idle => {
                idle.push(warm);
                None
            }
            _ => Some(warm),
        };
        match kept {
            // Dropped outside the lock; its slot's return is signalled as it goes.
            Some(dropped) => drop(dropped),
            // Idle now, so evictable by a call waiting for a slot.
            None => self.engine.slots_of(self.engine_kind).freed(),
        }
    }
}
