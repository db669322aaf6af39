//! The default route store: an embedded transactional database (redb) in the data directory.
//! A change is acknowledged only after its transaction commits, so it survives a crash right
//! after. A failed write (a full disk) is refused with the reason and the database is reopened,
//! since redb refuses every later write after an I/O error until then; what was committed
//! before stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Change, RouteStore, Snapshot, StoreError, StoredRoute};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const ROUTES: TableDefinition<&str, &[u8]> = TableDefinition::new("routes");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LAST_VERSION: &str = "last_version";

/// The route database.
pub struct RedbStore {
    /// `None` only while a reopen after a failed write did not succeed yet.
    db: Mutex<Option<Database>>,
    file: PathBuf,
    path: String,
}

/// The page cache's bound. The routes live in memory while served; the file is read whole at
/// start and written a route at a time, so a few MiB are plenty (redb's default, 1 GiB, let the
/// cache grow with the route set: about 370 bytes a route).
const CACHE_BYTES: usize = 4 << 20;

fn open_database(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(CACHE_BYTES).create(path)
}

impl RedbStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let db = open_database(path).map_err(|e| StoreError::Failed {
            store: format!("redb {shown}"),
            reason: e.to_string(),
        })?;
        Ok(RedbStore {
            db: Mutex::new(Some(db)),
            file: path.to_owned(),
            path: shown,
        })
    }

    /// The open database, reopening it first if a failed write closed it.
    fn db(&self) -> Result<MutexGuard<'_, Option<Database>>, StoreError> {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if db.is_none() {
            *db = Some(open_database(&self.file).map_err(|e| self.fail(e))?);
        }
        Ok(db)
    }

    /// After a failed write: close the database (releasing its lock), then open it again.
    fn reopen(&self, db: &mut Option<Database>) {
        drop(db.take());
        match open_database(&self.file) {
            Ok(fresh) => *db = Some(fresh),
            Err(e) => tracing::warn!(store = %self.path, "cannot reopen the route store: {e}"),
        }
    }

    fn fail(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Failed {
            store: self.describe(),
            reason: e.to_string(),
        }
    }

    fn read(&self) -> Result<Snapshot, StoreError> {
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
        let revision = match read.open_table(META) {
            Ok(meta) => meta
                .get(LAST_VERSION)
                .map_err(|e| self.fail(e))?
                .map_or(0, |v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(self.fail(e)),
        };
        Ok(Snapshot {
            routes,
            revision,
            stale: None,
        })
    }

    fn write(&self, db: &Database, changes: &[Change], floor: u64) -> Result<u64, StoreError> {
        let write = db.begin_write().map_err(|e| self.fail(e))?;
        let revision;
        {
            let mut meta = write.open_table(META).map_err(|e| self.fail(e))?;
            let last = meta
                .get(LAST_VERSION)
                .map_err(|e| self.fail(e))?
                .map_or(0, |v| v.value());
            revision = floor.max(last + 1);
            let mut routes = write.open_table(ROUTES).map_err(|e| self.fail(e))?;
            for change in changes {
                let found = match routes.get(change.name()).map_err(|e| self.fail(e))? {
                    Some(bytes) => Some(
                        serde_json::from_slice::<StoredRoute>(bytes.value())
                            .map_err(|e| self.fail(e))?
                            .version,
                    ),
                    None => None,
                };
                if !change.expect().satisfied_by(found) {
                    return Err(StoreError::Conflict {
                        name: change.name().to_owned(),
                        expected: change.expect(),
                        found,
                    });
                }
                match change {
                    Change::Put { rule, .. } => {
                        let stored = StoredRoute {
                            rule: Arc::clone(rule),
                            version: revision,
                        };
                        let bytes = serde_json::to_vec(&stored).map_err(|e| self.fail(e))?;
                        routes
                            .insert(rule.name.as_str(), bytes.as_slice())
                            .map_err(|e| self.fail(e))?;
                    }
                    Change::Delete { name, .. } => {
                        routes.remove(name.as_str()).map_err(|e| self.fail(e))?;
                    }
                }
            }
            meta.insert(LAST_VERSION, revision)
                .map_err(|e| self.fail(e))?;
        }
        write.commit().map_err(|e| self.fail(e))?;
        Ok(revision)
    }
}

impl RouteStore for RedbStore {
    fn describe(&self) -> String {
        format!("redb {}", self.path)
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        self.read()
    }

    fn commit(&self, changes: &[Change], floor: u64) -> Result<u64, StoreError> {
        let mut guard = self.db()?;
        let result = guard
            .as_ref()
            .ok_or_else(|| self.fail("not open"))
            .and_then(|db| self.write(db, changes, floor));
        // A refused change wrote nothing; any other failure may have left redb refusing writes.
        if let Err(e) = &result
            && !matches!(e, StoreError::Conflict { .. })
        {
            self.reopen(&mut guard);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Expect;
    use routerd_routing::config::RouteRule;

    fn rule(name: &str) -> RouteRule {
        serde_json::from_value(
            serde_json::json!({"name": name, "target_url": "http://127.0.0.1:1"}),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn put(name: &str, expect: Expect) -> Change {
        Change::Put {
            rule: Arc::new(rule(name)),
            expect,
        }
    }

    #[test]
    fn commits_survive_reopening_and_check_what_they_expect() {
        let dir = std::env::temp_dir().join(format!("routerd-store-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("routes.redb");
        let _ = std::fs::remove_file(&path);
        {
            let store = RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
            let empty = store.load().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((empty.routes.len(), empty.revision), (0, 0));
            let r = store
                .commit(&[put("a", Expect::Absent), put("b", Expect::Absent)], 1)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r, 1);
            // Creating "a" again, or changing "b" at a version it is not at, writes nothing.
            assert!(matches!(
                store.commit(&[put("a", Expect::Absent)], 0),
                Err(StoreError::Conflict { found: Some(1), .. })
            ));
            assert!(matches!(
                store.commit(&[put("c", Expect::Any), put("b", Expect::Version(7))], 0),
                Err(StoreError::Conflict { .. })
            ));
            let r = store
                .commit(
                    &[Change::Delete {
                        name: "a".into(),
                        expect: Expect::Version(1),
                    }],
                    0,
                )
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r, 2, "each commit gets a new revision");
            // The floor lifts the revision past versions handed out elsewhere.
            let r = store
                .commit(&[put("b", Expect::Present)], 10)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r, 10);
        }
        let store = RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let snap = store.load().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(snap.revision, 10);
        assert_eq!(snap.routes.len(), 1);
        assert_eq!(snap.routes[0].rule.name, "b");
        assert_eq!(snap.routes[0].version, 10);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
