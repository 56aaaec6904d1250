//! The connection store: every connection with the organization and sandbox it lives in, the per-inlet delivery
//! records, and the state file that lets the connections survive a restart.
//!
//! One `Mutex<Store>` guards it all; handlers hold it only for in-memory work, never across an `.await`, so
//! concurrent creates serialize cheaply. Persistence happens after the lock is released (see [`Persister`]).

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Path under the public URL where inlets live; `inletUrl` is `<public-url>/collection/<inletId>`.
pub(crate) const INLET_PATH_PREFIX: &str = "/collection/";
/// Names in `auth.params` that the emulator reads or writes (reference §1.2, §1.3).
pub(crate) const PARAM_INLET_ID: &str = "inletId";
/// The URL clients post events to; server-owned like `inletId`.
pub(crate) const PARAM_INLET_URL: &str = "inletUrl";
/// A label of the source; the connection's name when the request gives none.
pub(crate) const PARAM_SOURCE_ID: &str = "sourceId";
/// The inlet's name; the connection's name when the request gives none.
pub(crate) const PARAM_NAME: &str = "name";
/// `xdm` or `raw`: what the inlet accepts.
pub(crate) const PARAM_DATA_TYPE: &str = "dataType";
/// Whether the inlet requires an IMS bearer token.
pub(crate) const PARAM_AUTHENTICATION_REQUIRED: &str = "authenticationRequired";
/// `dataType` values: the XDM envelope, or arbitrary JSON mapped by Data Prep.
pub(crate) const DATA_TYPE_XDM: &str = "xdm";
/// See [`DATA_TYPE_XDM`].
pub(crate) const DATA_TYPE_RAW: &str = "raw";
/// Written into the state file so that a file of another kind is refused instead of misread.
const STATE_FILE_FORMAT: &str = "aep-emulator-state";
const STATE_FILE_VERSION: u32 = 1;
/// How many message bodies each inlet keeps for `GET /_emulator/inlets/{inletId}`: enough for tests to look at
/// what arrived, bounded so that a benchmark cannot exhaust memory.
pub(crate) const KEPT_MESSAGES_PER_INLET: usize = 100;

/// A connection as the emulator stores it. `inletId`/`inletUrl` are not in `params`: they are server-owned and
/// only shown once the inlet is provisioned (`inlet_ready_at`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredConnection {
    pub(crate) id: String,
    /// Creation order; the default list order and the tie-breaker of every other order.
    pub(crate) seq: u64,
    pub(crate) org_id: String,
    pub(crate) sandbox_name: String,
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    pub(crate) connection_spec: Value,
    pub(crate) spec_name: String,
    pub(crate) params: Map<String, Value>,
    pub(crate) state: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) created_by: String,
    pub(crate) updated_by: String,
    pub(crate) created_client: String,
    pub(crate) updated_client: String,
    /// With its inner quotes, as Flow Service sends it: `"\"…\""`.
    pub(crate) etag: String,
    pub(crate) inlet_id: String,
    /// Epoch ms from which the inlet exists (`--inlet-delay-ms` after creation).
    pub(crate) inlet_ready_at: i64,
}

impl StoredConnection {
    /// Whether the inlet has been provisioned at `now_ms`.
    pub(crate) fn inlet_ready(&self, now_ms: i64) -> bool {
        now_ms >= self.inlet_ready_at
    }

    /// Whether the inlet needs a bearer token (`authenticationRequired`, default false).
    pub(crate) fn authentication_required(&self) -> bool {
        self.params
            .get(PARAM_AUTHENTICATION_REQUIRED)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Whether the inlet expects XDM envelopes (every `dataType` but `raw`).
    pub(crate) fn expects_xdm(&self) -> bool {
        self.params.get(PARAM_DATA_TYPE).and_then(Value::as_str) != Some(DATA_TYPE_RAW)
    }

    /// `<public-url>/collection/<inletId>`.
    pub(crate) fn inlet_url(&self, public_url: &str) -> String {
        format!("{public_url}{INLET_PATH_PREFIX}{}", self.inlet_id)
    }

    /// The object as `GET /connections/{id}` shows it. The inlet fields appear only when `show_inlet`.
    pub(crate) fn render(&self, public_url: &str, show_inlet: bool) -> Value {
        let mut params = self.params.clone();
        if show_inlet {
            params.insert(PARAM_INLET_ID.to_owned(), json!(self.inlet_id));
            params.insert(
                PARAM_INLET_URL.to_owned(),
                json!(self.inlet_url(public_url)),
            );
        }
        let mut object = json!({
            "id": self.id,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "createdBy": self.created_by,
            "updatedBy": self.updated_by,
            "createdClient": self.created_client,
            "updatedClient": self.updated_client,
            "sandboxId": sandbox_id(&self.org_id, &self.sandbox_name),
            "sandboxName": self.sandbox_name,
            "imsOrgId": self.org_id,
            "name": self.name,
            "connectionSpec": self.connection_spec,
            "state": self.state,
            "auth": { "specName": self.spec_name, "params": params },
            "version": self.etag,
            "etag": self.etag,
        });
        if let Some(description) = &self.description {
            object["description"] = json!(description);
        }
        object
    }
}

/// A stable, made-up sandbox id: real sandboxes have one and clients may show it, but nothing keys on it.
pub(crate) fn sandbox_id(org_id: &str, sandbox_name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{org_id}/{sandbox_name}").as_bytes());
    let hex = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// What an inlet has received, for tests that assert delivery.
#[derive(Debug, Clone, Default)]
pub(crate) struct InletRecord {
    /// The connection the inlet belongs to.
    pub(crate) connection_id: String,
    /// Messages accepted (one per single POST, one per valid batch entry).
    pub(crate) messages: u64,
    /// Requests answered 200/207.
    pub(crate) requests: u64,
    /// Batch entries answered with a per-message 400.
    pub(crate) rejected: u64,
    /// Epoch ms of the last accepted request.
    pub(crate) last_received_at: Option<i64>,
    /// The last [`KEPT_MESSAGES_PER_INLET`] accepted messages, oldest first.
    pub(crate) recent: VecDeque<Value>,
}

impl InletRecord {
    /// The counters, without the kept messages: what `GET /_emulator/state` shows per inlet.
    pub(crate) fn summary(&self) -> Value {
        json!({
            "connectionId": self.connection_id,
            "messages": self.messages,
            "requests": self.requests,
            "rejected": self.rejected,
            "lastReceivedAt": self.last_received_at,
        })
    }
}

/// All mutable emulator data that belongs to connections.
#[derive(Debug, Default)]
pub(crate) struct Store {
    connections: HashMap<String, StoredConnection>,
    /// inletId → connection id, for the inlet routes.
    by_inlet: HashMap<String, String>,
    next_seq: u64,
    /// Bumped by every persisted mutation; the persister writes a snapshot at least this new.
    pub(crate) generation: u64,
    /// inletId → what that inlet received. In memory only: never written to the state file.
    pub(crate) inlets: HashMap<String, InletRecord>,
    /// Datasets, source and target connections, mapping sets, flows and runs.
    pub(crate) dataflow: super::dataflows::DataflowStore,
}

/// The state file's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateFile {
    format: String,
    version: u32,
    next_seq: u64,
    connections: Vec<StoredConnection>,
    #[serde(flatten)]
    dataflow: super::dataflows::PersistedDataflows,
}

/// Why the state file (`--state-file`) could not be used. The emulator refuses to start rather than
/// lose connections a previous run created, so each variant names the file and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// The file exists but could not be read (permissions, a directory in its place).
    #[error("cannot read state file {path}: {source}")]
    Read {
        /// The state file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid JSON, or not the shape the emulator writes: it is left untouched.
    #[error(
        "state file {path} is corrupt ({source}); fix or remove it, the emulator will not discard it"
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// Where the JSON stopped making sense.
        source: serde_json::Error,
    },
    /// The file is JSON but not something this emulator can load: another format or version, or a
    /// connection id that appears twice.
    #[error(
        "state file {path} is not an aep-emulator state file of version {STATE_FILE_VERSION}: {detail}"
    )]
    Unsupported {
        /// The state file.
        path: PathBuf,
        /// What was found: the format and version, or the duplicated id.
        detail: String,
    },
    /// The file (or its temporary sibling, written first and renamed over it) could not be written.
    #[error("cannot write state file {path}: {source}")]
    Write {
        /// The state file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl Store {
    /// The next creation sequence number.
    pub(crate) fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Add or replace a connection, and index its inlet.
    pub(crate) fn insert(&mut self, connection: StoredConnection) {
        self.by_inlet
            .insert(connection.inlet_id.clone(), connection.id.clone());
        self.connections.insert(connection.id.clone(), connection);
    }

    /// The connection with this id, only if it lives in this org and sandbox (others are invisible: 404).
    pub(crate) fn get_scoped(
        &self,
        id: &str,
        org_id: &str,
        sandbox: &str,
    ) -> Option<&StoredConnection> {
        self.connections
            .get(id)
            .filter(|c| c.org_id == org_id && c.sandbox_name == sandbox)
    }

    /// [`Store::get_scoped`], to change the connection.
    pub(crate) fn get_scoped_mut(
        &mut self,
        id: &str,
        org_id: &str,
        sandbox: &str,
    ) -> Option<&mut StoredConnection> {
        self.connections
            .get_mut(id)
            .filter(|c| c.org_id == org_id && c.sandbox_name == sandbox)
    }

    /// A connection of any org or sandbox, to change it from the admin API.
    pub(crate) fn get_any_mut(&mut self, id: &str) -> Option<&mut StoredConnection> {
        self.connections.get_mut(id)
    }

    /// Delete a connection and its inlet index entry; `None` if there is none with that id.
    pub(crate) fn remove(&mut self, id: &str) -> Option<StoredConnection> {
        let removed = self.connections.remove(id)?;
        self.by_inlet.remove(&removed.inlet_id);
        Some(removed)
    }

    /// The connection owning this inlet, whatever its org or sandbox (inlet URLs are global).
    pub(crate) fn by_inlet(&self, inlet_id: &str) -> Option<&StoredConnection> {
        self.by_inlet
            .get(inlet_id)
            .and_then(|id| self.connections.get(id))
    }

    /// Connections of one org and sandbox, in creation order.
    pub(crate) fn scoped(&self, org_id: &str, sandbox: &str) -> Vec<&StoredConnection> {
        let mut found: Vec<_> = self
            .connections
            .values()
            .filter(|c| c.org_id == org_id && c.sandbox_name == sandbox)
            .collect();
        found.sort_by_key(|c| c.seq);
        found
    }

    /// Every connection, in creation order.
    pub(crate) fn all(&self) -> Vec<&StoredConnection> {
        let mut found: Vec<_> = self.connections.values().collect();
        found.sort_by_key(|c| c.seq);
        found
    }

    /// Forget every connection and delivery record (admin reset). The generation keeps counting so that the
    /// persister writes the empty state.
    pub(crate) fn clear(&mut self) {
        self.connections.clear();
        self.by_inlet.clear();
        self.inlets.clear();
        self.dataflow.clear();
    }

    /// Load from a state file; a missing file is an empty store, anything unreadable is an error.
    pub(crate) fn load(path: &Path) -> Result<Self, StateFileError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(StateFileError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let file: StateFile =
            serde_json::from_slice(&bytes).map_err(|source| StateFileError::Corrupt {
                path: path.to_owned(),
                source,
            })?;
        if file.format != STATE_FILE_FORMAT || file.version != STATE_FILE_VERSION {
            return Err(StateFileError::Unsupported {
                path: path.to_owned(),
                detail: format!("found format {:?} version {}", file.format, file.version),
            });
        }
        let mut store = Self {
            next_seq: file.next_seq,
            ..Self::default()
        };
        for connection in file.connections {
            if store.connections.contains_key(&connection.id) {
                return Err(StateFileError::Unsupported {
                    path: path.to_owned(),
                    detail: format!("connection id {} appears twice", connection.id),
                });
            }
            store.next_seq = store.next_seq.max(connection.seq);
            store.insert(connection);
        }
        store.dataflow.restore(file.dataflow);
        store.next_seq = store.next_seq.max(store.dataflow.max_seq());
        Ok(store)
    }

    /// The state file's bytes for the current content.
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        let file = StateFile {
            format: STATE_FILE_FORMAT.to_owned(),
            version: STATE_FILE_VERSION,
            next_seq: self.next_seq,
            connections: self.all().into_iter().cloned().collect(),
            dataflow: self.dataflow.persisted(),
        };
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec_pretty(&file).expect("state serializes")
    }
}

/// Replace `path` atomically: write a temporary file in the same directory, flush it to disk, rename it over.
/// A crash leaves either the old or the new file, never half of one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateFileError> {
    let write_error = |source| StateFileError::Write {
        path: path.to_owned(),
        source,
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = directory.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map_err(write_error)
}

/// Writes the store after mutations. Concurrent mutations coalesce: whoever holds the write lock writes the newest
/// snapshot, and later callers whose generation is already on disk return at once. A handler answers only after
/// its own mutation is on disk, so a restart right after any answer keeps it.
#[derive(Debug)]
pub(crate) struct Persister {
    path: PathBuf,
    written_generation: tokio::sync::Mutex<u64>,
}

impl Persister {
    /// A persister for `path`, whose content is already the store at `written_generation`.
    pub(crate) fn new(path: PathBuf, written_generation: u64) -> Self {
        Self {
            path,
            written_generation: tokio::sync::Mutex::new(written_generation),
        }
    }

    /// Make sure a snapshot at least as new as `generation` is on disk.
    pub(crate) async fn persist(
        &self,
        store: &std::sync::Mutex<Store>,
        generation: u64,
    ) -> Result<(), StateFileError> {
        let mut written = self.written_generation.lock().await;
        if *written >= generation {
            return Ok(());
        }
        let (bytes, snapshot_generation) = {
            let store = store.lock().expect("store lock");
            (store.snapshot(), store.generation)
        };
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|join| StateFileError::Write {
                path: self.path.clone(),
                source: std::io::Error::other(join.to_string()),
            })??;
        *written = snapshot_generation;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(id: &str, seq: u64) -> StoredConnection {
        StoredConnection {
            id: id.to_owned(),
            seq,
            org_id: "O@AdobeOrg".to_owned(),
            sandbox_name: "prod".to_owned(),
            name: "n".to_owned(),
            description: None,
            connection_spec: json!({"id": "x", "version": "1.0"}),
            spec_name: "Streaming Connection".to_owned(),
            params: Map::new(),
            state: "enabled".to_owned(),
            created_at: 1,
            updated_at: 1,
            created_by: "c".to_owned(),
            updated_by: "c".to_owned(),
            created_client: "c".to_owned(),
            updated_client: "c".to_owned(),
            etag: "\"e\"".to_owned(),
            inlet_id: format!("inlet-{id}"),
            inlet_ready_at: 0,
        }
    }

    #[test]
    fn snapshot_round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut store = Store::default();
        let seq = store.take_seq();
        store.insert(connection("a", seq));
        write_atomically(&path, &store.snapshot()).unwrap();
        let loaded = Store::load(&path).unwrap();
        assert_eq!(loaded.all(), store.all());
        assert_eq!(loaded.by_inlet("inlet-a").unwrap().id, "a");
        assert_eq!(loaded.next_seq, 1);
    }

    #[test]
    fn missing_file_is_empty_and_garbage_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(Store::load(&path).unwrap().all().is_empty());
        std::fs::write(&path, b"{not json").unwrap();
        let error = Store::load(&path).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("corrupt"), "{error}");
    }

    #[test]
    fn render_hides_the_inlet_until_provisioned() {
        let c = connection("a", 1);
        assert!(
            c.render("http://x", false)["auth"]["params"]
                .get("inletUrl")
                .is_none()
        );
        assert_eq!(
            c.render("http://x", true)["auth"]["params"]["inletUrl"],
            "http://x/collection/inlet-a"
        );
    }
}
