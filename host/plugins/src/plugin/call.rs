//! One call into a plugin: the breaker's admission, an instance, the guest run as a future
//! under its deadline (the epoch check interrupts guest code and makes a long call yield; a
//! timer ends a call that waits in WASI), its result checked against the caps, and the outcome
//! counted. A call that fails for any reason throws its instance away.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::bounds::{CallFailure, classify, within};
use super::warm::{INSTANTIATE_ALLOWANCE, Warm};
use super::{
    LOAD_ALLOWANCE, MAX_REPLY_BODY_BYTES, MAX_RESULT_HEADER_BYTES, MAX_RESULT_HEADERS, Plugin,
};
use crate::contract::{Call, HeaderOp, Outcome, RequestAction};
use crate::engine::EPOCH_TICK;
use crate::gate::{Admission, Phase};
use routerd_routing::{ExternalRequest, ResponseHead};

/// What a call may spend: starting a new instance, waiting for a slot, running the guest.
struct Budget {
    instantiate: Duration,
    queue: Duration,
    deadline: Duration,
}

impl Budget {
    /// Load-time calls (trial instantiation, `validate`) run once, not per request: a busy
    /// machine or a big guest must not turn a slow start into a rejection.
    const LOAD: Budget = Budget {
        instantiate: LOAD_ALLOWANCE,
        queue: LOAD_ALLOWANCE,
        deadline: LOAD_ALLOWANCE,
    };
}

impl Plugin {
    /// Runs one call: breaker, an instance, the guest under the deadline, the result caps;
    /// then the outcome is counted and the instance kept only on success.
    pub(super) async fn call(
        &self,
        phase: Phase,
        call: Call<'_>,
        request: Option<ExternalRequest>,
        response: Option<ResponseHead>,
    ) -> (Result<Outcome, CallFailure>, Option<ResponseHead>) {
        self.stats.calls[phase as usize].fetch_add(1, Ordering::Relaxed);
        let begun = crate::journal::begin();
        let (result, response) = self.call_unrecorded(phase, call, request, response).await;
        let outcome = result.as_ref().map_or_else(CallFailure::kind, |_| "ok");
        crate::journal::record(begun, &self.name, phase, outcome);
        (result, response)
    }

    /// [`call`](Self::call) without the journal.
    async fn call_unrecorded(
        &self,
        phase: Phase,
        call: Call<'_>,
        request: Option<ExternalRequest>,
        response: Option<ResponseHead>,
    ) -> (Result<Outcome, CallFailure>, Option<ResponseHead>) {
        let load_time = phase == Phase::Validate;
        let admission = if load_time {
            Admission::Run
        } else {
            self.breaker.admit()
        };
        if admission == Admission::Refuse {
            self.stats.short_circuited.fetch_add(1, Ordering::Relaxed);
            return (Err(CallFailure::CircuitOpen), response);
        }
        let budget = if load_time {
            Budget::LOAD
        } else {
            Budget {
                instantiate: INSTANTIATE_ALLOWANCE,
                queue: self.queue,
                deadline: self.deadline,
            }
        };
        let (result, response) = match self.take(budget.instantiate, budget.queue).await {
            Err(failure) => (Err(failure), response),
            Ok(warm) => self.run(warm, &call, &budget, request, response).await,
        };
        self.record(&result, load_time, admission == Admission::Probe);
        (result, response)
    }

    /// Runs the guest in `warm` under the deadline, which starts now: it is the guest's own
    /// time (a new instance had its own budget), and a wait for a slot of the cap pushes it
    /// back. The instance goes back to the idle ones only when the call succeeded.
    async fn run(
        &self,
        mut warm: Warm,
        call: &Call<'_>,
        budget: &Budget,
        request: Option<ExternalRequest>,
        response: Option<ResponseHead>,
    ) -> (Result<Outcome, CallFailure>, Option<ResponseHead>) {
        // The epochs that bound the guest advance while it runs.
        let _running = self.ticker.guest_run();
        let started = Instant::now();
        let deadline_at = started + budget.deadline;
        {
            let data = warm.store.data_mut();
            data.request = request;
            data.response = response;
            data.log_lines.reset();
            data.memory_cap_hit = false;
            data.deadline_at = deadline_at;
            data.yield_from = started + EPOCH_TICK;
            data.queue = budget.queue;
        }
        warm.store.set_epoch_deadline(1);
        let Warm {
            store,
            guest,
            slot_wait,
            ..
        } = &mut warm;
        let outcome = within(deadline_at, slot_wait, guest.invoke(store, call)).await;
        // The request goes back to its caller's only reference: the proxy then reuses the head
        // it shared instead of copying it, and an idle instance holds no request alive.
        let data = warm.store.data_mut();
        data.request = None;
        // The slot, if the call took one, is free again, and the timer's extension a wait for
        // it set is over. (A call still waiting never gets here in an instance that is kept:
        // it ended at its deadline or as overloaded.)
        if data.slot.take().is_some() {
            warm.slot_wait.extend_until(None);
        }
        let response = data.response.take();
        match outcome {
            Some(Ok(out)) => {
                let checked = check_result(&out);
                self.put_back(warm);
                (checked.map(|()| out), response)
            }
            Some(Err(e)) => (Err(classify(&warm.store, &e)), response),
            // The call was still waiting (in WASI) at the deadline; its instance is dropped
            // mid-call and never reused.
            None => (Err(CallFailure::Deadline), response),
        }
    }

    /// Counts a call's failure and tells the breaker how the call went. An overloaded call
    /// says nothing about the plugin's health, not even as the probe.
    fn record(&self, result: &Result<Outcome, CallFailure>, load_time: bool, probe: bool) {
        if let Err(failure) = result {
            self.count(failure);
        }
        if load_time {
            return;
        }
        if matches!(result, Err(CallFailure::Overloaded(_))) {
            if probe {
                self.breaker.abandon_probe();
            }
            return;
        }
        if self.breaker.record(result.is_ok(), probe) {
            self.stats.breaker_opened.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                plugin = &*self.name,
                backoff_ms = self.settings.breaker_backoff_ms,
                "circuit breaker opened: {} calls in a row failed; calls fail by the plugin's policy until a probe call succeeds",
                self.settings.breaker_failures
            );
        }
    }

    fn count(&self, failure: &CallFailure) {
        let counter = match failure {
            CallFailure::Deadline => &self.stats.deadline_hits,
            CallFailure::MemoryCap => &self.stats.memory_cap_hits,
            CallFailure::Trap(_) => &self.stats.traps,
            CallFailure::BadResult(_) => &self.stats.bad_results,
            CallFailure::Overloaded(_) => &self.stats.overloaded,
            CallFailure::CircuitOpen => &self.stats.short_circuited,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Refuses results over the caps.
fn check_result(out: &Outcome) -> Result<(), CallFailure> {
    let (count, bytes, body) = match out {
        Outcome::Action(RequestAction::Proceed(e)) => (
            e.headers.len(),
            e.headers.iter().map(op_len).sum::<usize>(),
            0,
        ),
        Outcome::Action(RequestAction::Respond(r)) => (
            r.headers.len(),
            r.headers.iter().map(|(k, v)| k.len() + v.len()).sum(),
            r.body.len(),
        ),
        Outcome::Edits(e) => (e.headers.len(), e.headers.iter().map(op_len).sum(), 0),
        Outcome::Configured(_) | Outcome::Matched(_) => return Ok(()),
    };
    if count > MAX_RESULT_HEADERS || bytes > MAX_RESULT_HEADER_BYTES {
        return Err(CallFailure::BadResult(format!(
            "{count} headers / {bytes} bytes exceed the limit of {MAX_RESULT_HEADERS} headers / {MAX_RESULT_HEADER_BYTES} bytes"
        )));
    }
    if body > MAX_REPLY_BODY_BYTES {
        return Err(CallFailure::BadResult(format!(
            "a reply body of {body} bytes exceeds the limit of {MAX_REPLY_BODY_BYTES} bytes"
        )));
    }
    Ok(())
}

fn op_len(op: &HeaderOp) -> usize {
    match op {
        HeaderOp::Set((k, v)) | HeaderOp::Append((k, v)) => k.len() + v.len(),
        HeaderOp::Remove(k) => k.len(),
    }
}
