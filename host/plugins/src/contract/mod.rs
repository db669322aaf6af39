//! The versions of the `router:plugin` contract routerd speaks, side by side: the host bindings
//! of each (`v2` from `wit/v0.2/`, `v3` from `wit/`), which one a component speaks (read from
//! its exports), and a call into either. The rest of the runtime sees one shape: a call names a
//! route's args by their `config` number; a 0.3 instance is given the args once (`configure`)
//! before its first call naming them, a 0.2 one is handed them on every call.

pub mod v2;
pub mod v3;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use crate::state::PluginState;
use routerd_routing::FilterPhases;
pub use v2::router::plugin::types::{HeaderOp, Reply, RequestAction, RequestEdits, ResponseEdits};

/// A route's args and the number calls name them by.
#[derive(Clone, Copy)]
pub(crate) struct Config<'a> {
    pub(crate) id: u32,
    pub(crate) args: &'a [String],
}

/// A call into the guest.
pub(crate) enum Call<'a> {
    /// Check (and, for 0.3, keep) a route's args; at load.
    Configure {
        filter: bool,
        config: Config<'a>,
    },
    Matches(Config<'a>),
    OnRequest(Config<'a>),
    OnResponse(Config<'a>),
}

/// What a call answered.
pub(crate) enum Outcome {
    Configured(Result<FilterPhases, String>),
    Matched(bool),
    Action(RequestAction),
    Edits(ResponseEdits),
}

/// The numbers a plugin's route args go by: the same args get the same number, so routes
/// reloaded with unchanged args reuse what instances already configured.
#[derive(Default)]
pub(crate) struct ConfigIds(Mutex<HashMap<Arc<[String]>, u32>>);

impl ConfigIds {
    /// The number of `args`, a new one for args not seen before.
    pub(crate) fn id(&self, args: &[String]) -> u32 {
        // A panic elsewhere cannot leave the map half-changed: keep using it, never hand two
        // different args one number.
        let mut ids = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(id) = ids.get(args) {
            return *id;
        }
        let id = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        ids.insert(args.into(), id);
        id
    }
}

/// The `config` numbers one 0.3 instance has been given, for predicates and filters apart.
#[derive(Default)]
pub(crate) struct Configured {
    predicate: Vec<u64>,
    filter: Vec<u64>,
}

impl Configured {
    fn set(&mut self, filter: bool) -> &mut Vec<u64> {
        if filter {
            &mut self.filter
        } else {
            &mut self.predicate
        }
    }

    fn has(&mut self, filter: bool, id: u32) -> bool {
        let (word, bit) = (id as usize / 64, id % 64);
        self.set(filter)
            .get(word)
            .is_some_and(|w| w & (1 << bit) != 0)
    }

    fn add(&mut self, filter: bool, id: u32) {
        let (word, bit) = (id as usize / 64, id % 64);
        let set = self.set(filter);
        if set.len() <= word {
            set.resize(word + 1, 0);
        }
        set[word] |= 1 << bit;
    }
}

/// Where a component's exports are, by the contract version it speaks.
pub(crate) enum Indices {
    V2 {
        predicate: Option<v2::exports::router::plugin::predicate::GuestIndices>,
        filter: Option<v2::exports::router::plugin::filter::GuestIndices>,
    },
    V3 {
        predicate: Option<v3::exports::router::plugin::predicate::GuestIndices>,
        filter: Option<v3::exports::router::plugin::filter::GuestIndices>,
    },
}

impl Indices {
    /// The exports of the newest version the component has any of; `None` when it exports
    /// neither a predicate nor a filter of any version.
    pub(crate) fn new(pre: &InstancePre<PluginState>) -> Option<Indices> {
        use v2::exports::router::plugin as e2;
        use v3::exports::router::plugin as e3;
        let predicate = e3::predicate::GuestIndices::new(pre).ok();
        let filter = e3::filter::GuestIndices::new(pre).ok();
        if predicate.is_some() || filter.is_some() {
            return Some(Indices::V3 { predicate, filter });
        }
        let predicate = e2::predicate::GuestIndices::new(pre).ok();
        let filter = e2::filter::GuestIndices::new(pre).ok();
        (predicate.is_some() || filter.is_some()).then_some(Indices::V2 { predicate, filter })
    }

    /// `0.2` or `0.3`.
    pub(crate) fn version(&self) -> &'static str {
        match self {
            Indices::V2 { .. } => "0.2",
            Indices::V3 { .. } => "0.3",
        }
    }

    /// Whether it exports a predicate and a filter.
    pub(crate) fn exports(&self) -> (bool, bool) {
        match self {
            Indices::V2 { predicate, filter } => (predicate.is_some(), filter.is_some()),
            Indices::V3 { predicate, filter } => (predicate.is_some(), filter.is_some()),
        }
    }

    /// The exports of a started instance.
    pub(crate) fn load(
        &self,
        store: &mut Store<PluginState>,
        instance: &Instance,
    ) -> wasmtime::Result<Guest> {
        // Each export's functions, looked up in the instance when the component has it.
        macro_rules! lookup {
            ($indices:expr) => {
                $indices
                    .as_ref()
                    .map(|ix| ix.load(&mut *store, instance))
                    .transpose()?
            };
        }
        Ok(match self {
            Indices::V2 { predicate, filter } => Guest::V2 {
                predicate: lookup!(predicate),
                filter: lookup!(filter),
            },
            Indices::V3 { predicate, filter } => Guest::V3 {
                predicate: lookup!(predicate),
                filter: lookup!(filter),
                configured: Configured::default(),
            },
        })
    }
}

/// One instance's exports, by contract version.
pub(crate) enum Guest {
    V2 {
        predicate: Option<v2::exports::router::plugin::predicate::Guest>,
        filter: Option<v2::exports::router::plugin::filter::Guest>,
    },
    V3 {
        predicate: Option<v3::exports::router::plugin::predicate::Guest>,
        filter: Option<v3::exports::router::plugin::filter::Guest>,
        configured: Configured,
    },
}

fn not_a(filter: bool) -> String {
    if filter {
        "this plugin is not a filter".into()
    } else {
        "this plugin is not a predicate".into()
    }
}

fn proceed() -> RequestAction {
    RequestAction::Proceed(RequestEdits {
        headers: Vec::new(),
        path: None,
        query: None,
    })
}

fn no_edits() -> ResponseEdits {
    ResponseEdits {
        status: None,
        headers: Vec::new(),
    }
}

impl Guest {
    /// Runs `call` in this instance.
    pub(crate) async fn invoke(
        &mut self,
        store: &mut Store<PluginState>,
        call: &Call<'_>,
    ) -> wasmtime::Result<Outcome> {
        match self {
            Guest::V2 { predicate, filter } => invoke_v2(store, predicate, filter, call).await,
            Guest::V3 {
                predicate,
                filter,
                configured,
            } => invoke_v3(store, predicate, filter, configured, call).await,
        }
    }
}

async fn invoke_v2(
    store: &mut Store<PluginState>,
    predicate: &Option<v2::exports::router::plugin::predicate::Guest>,
    filter: &Option<v2::exports::router::plugin::filter::Guest>,
    call: &Call<'_>,
) -> wasmtime::Result<Outcome> {
    let store = &mut *store;
    Ok(match (call, predicate, filter) {
        (
            Call::Configure {
                filter: is_filter,
                config,
            },
            p,
            f,
        ) => {
            let valid = match (is_filter, p, f) {
                (false, Some(p), _) => p.call_validate(&mut *store, config.args).await?,
                (true, _, Some(f)) => f.call_validate(&mut *store, config.args).await?,
                _ => Err(not_a(*is_filter)),
            };
            // 0.2 has no phases to declare: both run.
            Outcome::Configured(valid.map(|()| FilterPhases::BOTH))
        }
        (Call::Matches(c), Some(p), _) => Outcome::Matched(p.call_matches(store, c.args).await?),
        (Call::Matches(_), None, _) => Outcome::Matched(false),
        (Call::OnRequest(c), _, Some(f)) => {
            Outcome::Action(f.call_on_request(store, c.args).await?)
        }
        (Call::OnResponse(c), _, Some(f)) => {
            Outcome::Edits(f.call_on_response(store, c.args).await?)
        }
        (Call::OnRequest(_), _, None) => Outcome::Action(proceed()),
        (Call::OnResponse(_), _, None) => Outcome::Edits(no_edits()),
    })
}

/// A 0.3 instance gets a route's args (`configure`) before its first call naming them; a
/// refusal then, of args it accepted at load, fails the call.
async fn invoke_v3(
    store: &mut Store<PluginState>,
    predicate: &Option<v3::exports::router::plugin::predicate::Guest>,
    filter: &Option<v3::exports::router::plugin::filter::Guest>,
    configured: &mut Configured,
    call: &Call<'_>,
) -> wasmtime::Result<Outcome> {
    let store = &mut *store;
    let (is_filter, config) = match call {
        Call::Configure { filter, config } => (*filter, *config),
        Call::Matches(c) => (false, *c),
        Call::OnRequest(c) | Call::OnResponse(c) => (true, *c),
    };
    let load = matches!(call, Call::Configure { .. });
    if load || !configured.has(is_filter, config.id) {
        let answer = match (is_filter, predicate, filter) {
            (false, Some(p), _) => p
                .call_configure(&mut *store, config.id, config.args)
                .await?
                .map(|()| FilterPhases::BOTH),
            (true, _, Some(f)) => f
                .call_configure(&mut *store, config.id, config.args)
                .await?
                .map(|p| FilterPhases {
                    request: p.contains(v3::exports::router::plugin::filter::Phases::REQUEST),
                    response: p.contains(v3::exports::router::plugin::filter::Phases::RESPONSE),
                }),
            _ => Err(not_a(is_filter)),
        };
        match answer {
            Ok(_) => configured.add(is_filter, config.id),
            Err(reason) if !load => wasmtime::bail!(
                "configure refused route args it accepted when the route was loaded: {reason}"
            ),
            Err(_) => {}
        }
        if load {
            return Ok(Outcome::Configured(answer));
        }
    }
    Ok(match (call, predicate, filter) {
        (Call::Matches(c), Some(p), _) => Outcome::Matched(p.call_matches(store, c.id).await?),
        (Call::Matches(_), None, _) => Outcome::Matched(false),
        (Call::OnRequest(c), _, Some(f)) => Outcome::Action(f.call_on_request(store, c.id).await?),
        (Call::OnResponse(c), _, Some(f)) => Outcome::Edits(f.call_on_response(store, c.id).await?),
        (Call::OnRequest(_), _, None) => Outcome::Action(proceed()),
        (Call::OnResponse(_), _, None) | (Call::Configure { .. }, _, _) => {
            Outcome::Edits(no_edits())
        }
    })
}
