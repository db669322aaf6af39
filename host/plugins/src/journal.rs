//! What a request's plugin calls were, for whoever asks: the proxy's tracing keeps a journal
//! for a sampled request (a span per call comes of it). The journal is task-local, so the
//! calls reached through routing's predicates and the proxy's filters are recorded in one
//! place without threading a recorder through every layer; a request without one pays a
//! thread-local read per plugin call and nothing else.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::gate::Phase;

/// One plugin call as it went.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// The phase called.
    pub phase: Phase,
    /// When the call began (its wait for an instance included).
    pub start: SystemTime,
    /// How long it took, from the wait for an instance to the result.
    pub elapsed: Duration,
    /// `ok`, or the failure's kind (`deadline`, `trap`, `overloaded`, ...).
    pub outcome: &'static str,
}

/// The calls recorded so far for one request.
pub type Journal = Arc<Mutex<Vec<CallRecord>>>;

tokio::task_local! {
    static JOURNAL: Journal;
}

/// Runs `fut` with `journal` recording the plugin calls it makes.
pub async fn recording<F: Future>(journal: Journal, fut: F) -> F::Output {
    JOURNAL.scope(journal, fut).await
}

/// When a call that begins now should be recorded: its start, if a journal is kept.
pub(crate) fn begin() -> Option<(SystemTime, std::time::Instant)> {
    JOURNAL
        .try_with(|_| ())
        .ok()
        .map(|()| (SystemTime::now(), std::time::Instant::now()))
}

/// Records a call that began at `begun` (from [`begin`]).
pub(crate) fn record(
    begun: Option<(SystemTime, std::time::Instant)>,
    plugin: &Arc<str>,
    phase: Phase,
    outcome: &'static str,
) {
    let Some((start, at)) = begun else {
        return;
    };
    let call = CallRecord {
        plugin: plugin.clone(),
        phase,
        start,
        elapsed: at.elapsed(),
        outcome,
    };
    let _ = JOURNAL.try_with(|j| {
        // A poisoned journal only loses spans; it never fails the call.
        if let Ok(mut calls) = j.lock() {
            calls.push(call);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_recorded_only_inside_a_journal() {
        let name: Arc<str> = Arc::from("geo");
        record(begin(), &name, Phase::Predicate, "ok");
        let journal = Journal::default();
        recording(journal.clone(), async {
            let begun = begin();
            assert!(begun.is_some());
            record(begun, &name, Phase::Request, "trap");
        })
        .await;
        let calls = journal.lock().map(|c| c.clone()).unwrap_or_default();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].outcome, "trap");
        assert_eq!(calls[0].phase, Phase::Request);
        assert_eq!(&*calls[0].plugin, "geo");
    }
}
