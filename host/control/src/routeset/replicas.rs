//! Tables for a dry run's replay, built with plugin replicas: each plugin a route uses is a
//! replica of the loaded version (its counters its own, its store a copy of the live one), so
//! replaying thousands of requests moves no live counter and writes nothing the live plugins
//! read. The table being served and the planned one get replicas of their own, so both start
//! from the same store contents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{ChangeError, Plan, PlannedDocument, RouteSet, document};
use routerd_plugins::{Plugin, PluginRegistry};
use routerd_routing::external::{Lookup, PluginSource};
use routerd_routing::{BuildMode, RouteTable};

/// Replicas of the loaded plugins, made as a table build asks for them; plugin `swap.0`
/// answered by `swap.1` instead (a candidate version, isolated already, or none).
struct Replicas<'a> {
    loaded: &'a PluginRegistry,
    swap: Option<&'a (String, Option<Arc<Plugin>>)>,
    made: Mutex<HashMap<String, Option<Arc<Plugin>>>>,
}

impl Replicas<'_> {
    fn lookup(&self, name: &str, kind_ok: impl Fn(&Plugin) -> bool) -> Lookup<Arc<Plugin>> {
        let found = match self.swap {
            Some((swapped, with)) if swapped == name => with.clone(),
            _ => self.replica(name),
        };
        match found {
            None => Lookup::Missing,
            Some(p) if !kind_ok(&p) => Lookup::WrongKind,
            Some(p) => Lookup::Found(p),
        }
    }

    fn replica(&self, name: &str) -> Option<Arc<Plugin>> {
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        made.entry(name.to_owned())
            .or_insert_with(|| {
                self.loaded.get(name)?;
                match self.loaded.replica(name) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(
                            plugin = name,
                            "no replica for a dry run (its routes are left out of the replay): {e}"
                        );
                        None
                    }
                }
            })
            .clone()
    }
}

impl PluginSource<Plugin> for Replicas<'_> {
    fn predicate(&self, name: &str) -> Lookup<Arc<Plugin>> {
        self.lookup(name, |p| p.kind.predicate)
    }

    fn filter(&self, name: &str) -> Lookup<Arc<Plugin>> {
        self.lookup(name, |p| p.kind.filter)
    }
}

impl RouteSet {
    /// The table being served and the one `plan` would serve, each built again with plugin
    /// replicas of its own, for a dry run to replay requests through. Blocks (replicas are
    /// instantiated): call it off the runtime's threads.
    pub fn replay_tables(
        &self,
        plan: &Plan,
    ) -> Result<(RouteTable<Plugin>, RouteTable<Plugin>), ChangeError> {
        let current = {
            let state = self.lock();
            PlannedDocument::of(&document(&state.file, &state.api))
        };
        let build = |doc: &PlannedDocument, swap| {
            let replicas = Replicas {
                loaded: self.plugins(),
                swap,
                made: Mutex::new(HashMap::new()),
            };
            RouteTable::build_in(
                &doc.as_doc(),
                &replicas,
                BuildMode::ExcludeMissingPlugins,
                &self.endpoints,
                None,
            )
            .map_err(|e| ChangeError::from_validation(&e))
        };
        Ok((
            build(&current, None)?,
            build(&plan.document, plan.swap.as_ref())?,
        ))
    }
}
