//! Durable storage of the routes made through the admin API: an embedded transactional database
//! (redb) in the data directory. A change is acknowledged only after its transaction commits, so
//! it survives a crash right after. A failed write (a full disk) is refused with the reason and
//! the database is reopened, since redb refuses every later write after an I/O error until then;
//! what was committed before stays.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::config::RouteRule;

const ROUTES: TableDefinition<&str, &[u8]> = TableDefinition::new("routes");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LAST_VERSION: &str = "last_version";

/// A route as stored: the rule and its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRoute {
    /// The route.
    pub rule: RouteRule,
    /// Changes on every write; never reused.
    pub version: u64,
}

/// One write.
#[derive(Debug, Clone)]
pub enum Change {
    /// Insert or replace a route.
    Put(Box<StoredRoute>),
    /// Remove the route with this name.
    Delete(String),
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("route store {path}: {reason}")]
pub struct StoreError {
    path: String,
    reason: String,
}

/// The route database.
pub struct RouteStore {
    /// `None` only while a reopen after a failed write did not succeed yet.
    db: Mutex<Option<Database>>,
    file: PathBuf,
    path: String,
}

impl RouteStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let db = Database::create(path).map_err(|e| StoreError {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Ok(RouteStore {
            db: Mutex::new(Some(db)),
            file: path.to_owned(),
            path: shown,
        })
    }

    /// The open database, reopening it first if a failed write closed it.
    fn db(&self) -> Result<MutexGuard<'_, Option<Database>>, StoreError> {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if db.is_none() {
            *db = Some(Database::create(&self.file).map_err(|e| self.fail(e))?);
        }
        Ok(db)
    }

    /// After a failed write: close the database (releasing its lock), then open it again.
    fn reopen(&self, db: &mut Option<Database>) {
        drop(db.take());
        match Database::create(&self.file) {
            Ok(fresh) => *db = Some(fresh),
            Err(e) => tracing::warn!(store = %self.path, "cannot reopen the route store: {e}"),
        }
    }

    fn fail(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Every stored route, by name, and the last version handed out.
    pub fn load(&self) -> Result<(Vec<StoredRoute>, u64), StoreError> {
        let guard = self.db()?;
        let db = guard.as_ref().ok_or_else(|| self.fail("not open"))?;
        let read = db.begin_read().map_err(|e| self.fail(e))?;
        let routes = match read.open_table(ROUTES) {
            Ok(table) => {
                let mut out = Vec::new();
                for entry in table.iter().map_err(|e| self.fail(e))? {
                    let (_, value) = entry.map_err(|e| self.fail(e))?;
                    let route: StoredRoute =
                        serde_json::from_slice(value.value()).map_err(|e| self.fail(e))?;
                    out.push(route);
                }
                out
            }
            Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
            Err(e) => return Err(self.fail(e)),
        };
        let last = match read.open_table(META) {
            Ok(meta) => meta
                .get(LAST_VERSION)
                .map_err(|e| self.fail(e))?
                .map_or(0, |v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(self.fail(e)),
        };
        Ok((routes, last))
    }

    /// Applies `changes` and records `last_version`, atomically and durably.
    pub fn commit(&self, changes: &[Change], last_version: u64) -> Result<(), StoreError> {
        let mut guard = self.db()?;
        let result = guard
            .as_ref()
            .ok_or_else(|| self.fail("not open"))
            .and_then(|db| self.write(db, changes, last_version));
        if result.is_err() {
            self.reopen(&mut guard);
        }
        result
    }

    fn write(
        &self,
        db: &Database,
        changes: &[Change],
        last_version: u64,
    ) -> Result<(), StoreError> {
        let write = db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut routes = write.open_table(ROUTES).map_err(|e| self.fail(e))?;
            for change in changes {
                match change {
                    Change::Put(route) => {
                        let bytes = serde_json::to_vec(route).map_err(|e| self.fail(e))?;
                        routes
                            .insert(route.rule.name.as_str(), bytes.as_slice())
                            .map_err(|e| self.fail(e))?;
                    }
                    Change::Delete(name) => {
                        routes.remove(name.as_str()).map_err(|e| self.fail(e))?;
                    }
                }
            }
            let mut meta = write.open_table(META).map_err(|e| self.fail(e))?;
            meta.insert(LAST_VERSION, last_version)
                .map_err(|e| self.fail(e))?;
        }
        write.commit().map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str) -> RouteRule {
        serde_json::from_value(
            serde_json::json!({"name": name, "target_url": "http://127.0.0.1:1"}),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn commits_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("routerd-store-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("routes.redb");
        let _ = std::fs::remove_file(&path);
        {
            let store = RouteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(store.load().map(|(r, v)| (r.len(), v)).ok(), Some((0, 0)));
            let a = StoredRoute {
                rule: rule("a"),
                version: 1,
            };
            let b = StoredRoute {
                rule: rule("b"),
                version: 2,
            };
            store
                .commit(&[Change::Put(Box::new(a)), Change::Put(Box::new(b))], 2)
                .unwrap_or_else(|e| panic!("{e}"));
            store
                .commit(&[Change::Delete("a".into())], 2)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let store = RouteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let (routes, last) = store.load().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(last, 2);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].rule.name, "b");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
