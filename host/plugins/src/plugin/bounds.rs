//! A call's bounds and how it failed: the deadline (`within` for a call that suspends, the epoch
//! check that interrupts a guest past it or makes a long one yield), the wait for a slot of the
//! concurrency cap, and the [`CallFailure`] a failed call is named by.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use wasmtime::{Store, StoreContextMut, UpdateDeadline};

use crate::gate::SlotWait;
use crate::state::PluginState;

/// Why a call failed; the failure policy decides what it means for the request.
#[derive(Debug)]
pub enum CallFailure {
    /// The deadline passed.
    Deadline,
    /// The instance hit its memory cap.
    MemoryCap,
    /// The guest trapped (or instantiation failed).
    Trap(String),
    /// The guest answered something we refuse (too large, invalid).
    BadResult(String),
    /// The plugin's concurrency cap (or the shared instance pool) stayed full until the
    /// deadline.
    Overloaded(String),
    /// The circuit breaker is open: the plugin kept failing, so it is not called for now.
    CircuitOpen,
}

impl CallFailure {
    /// A short machine-readable name: `deadline`, `memory_cap`, `trap`, `bad_result`,
    /// `overloaded` or `circuit_open`.
    pub fn kind(&self) -> &'static str {
        match self {
            CallFailure::Deadline => "deadline",
            CallFailure::MemoryCap => "memory_cap",
            CallFailure::Trap(_) => "trap",
            CallFailure::BadResult(_) => "bad_result",
            CallFailure::Overloaded(_) => "overloaded",
            CallFailure::CircuitOpen => "circuit_open",
        }
    }
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Deadline => f.write_str("deadline exceeded"),
            CallFailure::MemoryCap => f.write_str("memory cap exceeded"),
            CallFailure::Trap(t) => write!(f, "trap: {t}"),
            CallFailure::BadResult(r) => write!(f, "rejected result: {r}"),
            CallFailure::Overloaded(r) => write!(f, "overloaded: {r}"),
            CallFailure::CircuitOpen => {
                f.write_str("circuit breaker open (the plugin kept failing; not called for now)")
            }
        }
    }
}

/// Runs `fut` until `deadline_at`; `None` when the deadline came first (the future is dropped).
/// Most calls finish in their first poll, so only one that suspends (an epoch yield, a wait in
/// WASI) pays for a timer. A future of its own, not an `async fn`: a call's future is
/// allocated and copied once per call, and an `async fn` would hold the guest's future twice
/// (the argument and its pinned copy) beside the timer.
pub(super) fn within<F: Future>(deadline_at: Instant, wait: &SlotWait, fut: F) -> Within<'_, F> {
    Within {
        fut,
        until: deadline_at,
        wait,
        timer: None,
    }
}

pin_project_lite::pin_project! {
    /// The future [`within`] returns.
    pub(super) struct Within<'a, F> {
        #[pin]
        fut: F,
        until: Instant,
        wait: &'a SlotWait,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        let until = *this.until;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until.into())));
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The guest is waiting for a slot of the cap: that time is not its own.
            match this.wait.extended_until() {
                Some(later) if later > *this.until => {
                    *this.until = later;
                    timer.as_mut().reset(later.into());
                }
                _ => return Poll::Ready(None),
            }
        }
    }
}

/// Called by wasmtime at every epoch tick while guest code runs: past the deadline the guest is
/// interrupted; before it, the call yields to the executor, so a long call shares its thread.
pub(super) fn epoch_check(
    mut store: StoreContextMut<'_, PluginState>,
) -> wasmtime::Result<UpdateDeadline> {
    let now = Instant::now();
    let state = store.data_mut();
    if let Some(since) = state.slot_wait_since.take() {
        // Back from waiting for a slot: run on with it, the wait added to the deadline.
        match state.slot_wait.take_granted() {
            Some(permit) => {
                state.slot = Some(permit);
                state.deadline_at += now.saturating_duration_since(since);
                // The timer bounding the call moves with the deadline.
                state.slot_wait.extend_until(Some(state.deadline_at));
            }
            None => {
                state.overloaded = true;
                return Ok(UpdateDeadline::Interrupt);
            }
        }
    }
    if now >= state.deadline_at {
        return Ok(UpdateDeadline::Interrupt);
    }
    if now < state.yield_from {
        return Ok(UpdateDeadline::Continue(1));
    }
    // Still running a tick in: from here on the call needs a slot of the cap, and it yields
    // at every tick, so a long call shares its worker with the requests queued behind it.
    if state.slot.is_none()
        && let Some(cap) = &state.cap
    {
        match cap.clone().try_acquire_owned() {
            Ok(permit) => state.slot = Some(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return Ok(UpdateDeadline::Interrupt),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                if state.queue.is_zero() {
                    state.overloaded = true;
                    return Ok(UpdateDeadline::Interrupt);
                }
                let queue = state.queue;
                let left = state.deadline_at.saturating_duration_since(now);
                state.slot_wait_since = Some(now);
                state.slot_wait.extend_until(Some(now + queue + left));
                let wait = state.slot_wait.clone();
                let cap = cap.clone();
                return Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(async move {
                        if let Ok(Ok(permit)) =
                            tokio::time::timeout(queue, cap.acquire_owned()).await
                        {
                            wait.grant(permit);
                        }
                    }),
                ));
            }
        }
    }
    // tokio's yield, not wasmtime's plain one: a task that wakes itself goes to the back of
    // a worker's queue, but the worker polls its sockets only every few dozen tasks, so a
    // spinning guest yielding every tick would leave other connections unread for tens of
    // milliseconds; `yield_now` lets the worker poll its I/O first.
    Ok(UpdateDeadline::YieldCustom(
        1,
        Box::pin(tokio::task::yield_now()),
    ))
}

/// Names a failed call: its memory cap, routerd's own want of a slot, the deadline, or a trap.
pub(super) fn classify(store: &Store<PluginState>, e: &wasmtime::Error) -> CallFailure {
    let state = store.data();
    if state.memory_cap_hit {
        return CallFailure::MemoryCap;
    }
    if state.overloaded {
        return CallFailure::Overloaded(format!(
            "the call ran past its first tick while max_concurrent calls already did, and none ended within queue_ms ({} ms)",
            state.queue.as_millis()
        ));
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => CallFailure::Deadline,
        // The root cause is the trap itself ("wasm trap: ..."); the wasm backtrace stays out
        // of the one-line log.
        _ => CallFailure::Trap(crate::joined_lines(&e.root_cause().to_string())),
    }
}
