//! The API-server baseline: how long kube-apiserver (and etcd) take for the operator's Kubernetes writes of a
//! create phase when no operator runs, so that the operator's time to all Ready can be read as a ratio to what
//! the API path alone costs on the same machine at the same moment.
//!
//! What it writes, exactly: the create phase's writes by the operator as kube-apiserver counted them (verb and
//! resource, 2xx only), the same number of each, spread over N StreamingConnections created beforehand (untimed)
//! in the namespace `bench-baseline`:
//! - `PATCH`/`PUT streamingconnections` → a JSON merge patch of an annotation (the operator's is the finalizer);
//! - `APPLY`/`PATCH`/`PUT streamingconnections/status` → a server-side apply of a status shaped like the
//!   operator's (ids, inlet, a `Ready` condition), each write with a new `observedGeneration` so that none is a
//!   no-op;
//! - `APPLY`/`PATCH`/`PUT configmaps` → a server-side apply of a ConfigMap with the six published keys and an
//!   owner reference to the object (a counter annotation changes on every write);
//! - `POST events` → an `events.k8s.io/v1` Event about the object.
//!
//! Other write kinds are listed as skipped. The client is unthrottled, as the operator's kube client is (kube-rs
//! has no client-side rate limit and the operator sets none), and runs the objects through as many concurrent
//! workers as the operator's `--max-concurrent-reconciles`, each object's writes one after the other, the way
//! one reconcile makes them.

use std::collections::BTreeMap;
use std::time::Instant;

use aep_streaming_operator::api::StreamingConnection;
use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;

const FIELD_MANAGER: &str = "aep-bench-baseline";
pub const NAMESPACE: &str = "bench-baseline";

/// A kind of write the baseline can repeat.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Write {
    /// Metadata of the object (the operator's finalizer patch).
    Object,
    /// The status subresource.
    Status,
    /// The published ConfigMap.
    ConfigMap,
    /// An Event about the object.
    Event,
}

fn write_kind(key: &str) -> Option<Write> {
    let mut words = key.split_whitespace();
    let (verb, resource) = (words.next()?, words.next()?);
    if words.next().is_some() {
        return None; // a non-2xx answer, e.g. `PATCH streamingconnections (422)`
    }
    match (verb, resource) {
        ("PATCH" | "PUT", "streamingconnections") => Some(Write::Object),
        ("APPLY" | "PATCH" | "PUT", "streamingconnections/status") => Some(Write::Status),
        ("APPLY" | "PATCH" | "PUT", "configmaps") => Some(Write::ConfigMap),
        ("POST", "events") => Some(Write::Event),
        _ => None,
    }
}

/// Each object's writes, in the order a create makes them: metadata, the first status write, the ConfigMap, the
/// other status writes, the event. `totals` are spread evenly (the first objects take the remainder).
fn plan(totals: &BTreeMap<Write, u64>, objects: usize) -> Vec<Vec<Write>> {
    (0..objects)
        .map(|index| {
            let count = |kind: Write| {
                let total = totals.get(&kind).copied().unwrap_or(0) as usize;
                total / objects + usize::from(index < total % objects)
            };
            let statuses = count(Write::Status);
            let mut writes = vec![Write::Object; count(Write::Object)];
            writes.extend(std::iter::repeat_n(Write::Status, statuses.min(1)));
            writes.extend(std::iter::repeat_n(
                Write::ConfigMap,
                count(Write::ConfigMap),
            ));
            writes.extend(std::iter::repeat_n(
                Write::Status,
                statuses.saturating_sub(1),
            ));
            writes.extend(std::iter::repeat_n(Write::Event, count(Write::Event)));
            writes
        })
        .collect()
}

fn name(index: usize) -> String {
    format!("base-{index:05}")
}

/// A 64-hex inlet id that differs per object.
fn inlet_id(index: usize) -> String {
    format!("{index:064x}")
}

async fn perform(client: &Client, index: usize, writes: &[Write]) -> anyhow::Result<()> {
    let name = name(index);
    let connections: Api<StreamingConnection> = Api::namespaced(client.clone(), NAMESPACE);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let events: Api<Event> = Api::namespaced(client.clone(), NAMESPACE);
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let inlet = inlet_id(index);
    let connection_id = format!("00000000-0000-4000-8000-{index:012}");
    let mut uid = None;
    for (step, write) in writes.iter().enumerate() {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        match write {
            Write::Object => {
                let patch = json!({"metadata": {"annotations": {"bench.aep-operator.dev/write": step.to_string()}}});
                let object = connections
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                uid = object.meta().uid.clone();
            }
            Write::Status => {
                let status = json!({
                    "apiVersion": StreamingConnection::api_version(&()),
                    "kind": StreamingConnection::kind(&()),
                    "metadata": {"name": name},
                    "status": {
                        "observedGeneration": step + 1,
                        "connectionId": connection_id,
                        "etag": "\"a500e689-0000-0200-0000-5e31df730000\"",
                        "inletId": inlet,
                        "inletUrl": format!("http://127.0.0.1/collection/{inlet}"),
                        "state": "enabled",
                        "configMapName": format!("{name}-inlet"),
                        "lastSyncedAt": now,
                        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                        "message": "the connection exists and its inlet is published",
                                        "observedGeneration": 1, "lastTransitionTime": now}],
                    },
                });
                connections
                    .patch_status(&name, &apply, &Patch::Apply(&status))
                    .await?;
            }
            Write::ConfigMap => {
                let uid = match &uid {
                    Some(uid) => uid.clone(),
                    None => {
                        let uid_now = connections.get(&name).await?.meta().uid.clone();
                        uid = uid_now.clone();
                        uid_now.unwrap_or_default()
                    }
                };
                let config_map = json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {
                        "name": format!("{name}-inlet"),
                        "annotations": {"bench.aep-operator.dev/write": step.to_string()},
                        "ownerReferences": [{"apiVersion": StreamingConnection::api_version(&()),
                            "kind": StreamingConnection::kind(&()), "name": name, "uid": uid,
                            "controller": true, "blockOwnerDeletion": true}],
                    },
                    "data": {
                        "INLET_URL": format!("http://127.0.0.1/collection/{inlet}"),
                        "INLET_ID": inlet, "CONNECTION_ID": connection_id,
                        "AUTHENTICATION_REQUIRED": "false", "DATA_TYPE": "xdm", "SANDBOX": "prod",
                    },
                });
                config_maps
                    .patch(&format!("{name}-inlet"), &apply, &Patch::Apply(&config_map))
                    .await?;
            }
            Write::Event => {
                let event: Event = serde_json::from_value(json!({
                    // Named as kube-runtime's recorder names them: the object's name, a dot, a suffix.
                    "metadata": {"name": format!("{name}.{step:x}")},
                    "eventTime": k8s_openapi::jiff::Timestamp::now().to_string(),
                    "reportingController": "aep-bench-baseline",
                    "reportingInstance": "aep-bench-baseline",
                    "action": "Create", "reason": "Created", "type": "Normal",
                    "note": format!("created connection {connection_id}"),
                    "regarding": {"apiVersion": StreamingConnection::api_version(&()),
                        "kind": StreamingConnection::kind(&()), "namespace": NAMESPACE, "name": name},
                }))?;
                events.create(&PostParams::default(), &event).await?;
            }
        }
    }
    Ok(())
}

/// The writes it will make and the kinds it cannot repeat, from the create phase's operator writes.
pub struct Plan {
    per_object: Vec<Vec<Write>>,
    pub repeated: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
}

impl Plan {
    pub fn new(operator_writes: &BTreeMap<String, u64>, objects: usize) -> Self {
        let mut totals = BTreeMap::new();
        let (mut repeated, mut skipped) = (BTreeMap::new(), BTreeMap::new());
        for (key, count) in operator_writes {
            match write_kind(key) {
                Some(kind) => {
                    *totals.entry(kind).or_default() += count;
                    repeated.insert(key.clone(), *count);
                }
                None => {
                    skipped.insert(key.clone(), *count);
                }
            }
        }
        Self {
            per_object: plan(&totals, objects),
            repeated,
            skipped,
        }
    }

    pub fn total(&self) -> usize {
        self.per_object.iter().map(Vec::len).sum()
    }
}

/// Creates the namespace and N objects (untimed, `concurrency` requests at a time).
pub async fn prepare(client: &Client, objects: usize, concurrency: usize) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    namespaces
        .patch(
            NAMESPACE,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&namespace),
        )
        .await?;
    let connections: Api<StreamingConnection> = Api::namespaced(client.clone(), NAMESPACE);
    futures::stream::iter(0..objects)
        .map(|index| {
            let connections = connections.clone();
            async move {
                let object: StreamingConnection = serde_json::from_value(json!({
                    "apiVersion": StreamingConnection::api_version(&()),
                    "kind": StreamingConnection::kind(&()),
                    "metadata": {"name": name(index), "namespace": NAMESPACE},
                    "spec": {"sandbox": "prod", "credentialsRef": {"name": "aep-credentials"}},
                }))?;
                connections.create(&PostParams::default(), &object).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await
        .context("creating the baseline's objects")
}

/// Runs the plan with `workers` objects in flight; returns the seconds it took.
pub async fn run(client: &Client, plan: &Plan, workers: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    futures::stream::iter(plan.per_object.iter().enumerate())
        .map(|(index, writes)| perform(client, index, writes))
        .buffer_unordered(workers.max(1))
        .try_collect::<()>()
        .await
        .context("the baseline's writes")?;
    Ok(started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_create_writes_become_the_same_number_of_each_kind_in_create_order() {
        let writes = BTreeMap::from([
            ("PATCH streamingconnections".to_owned(), 3),
            ("APPLY streamingconnections/status".to_owned(), 7),
            ("APPLY configmaps".to_owned(), 3),
            ("POST events".to_owned(), 3),
            ("PATCH streamingconnections (422)".to_owned(), 1),
        ]);
        let plan = Plan::new(&writes, 3);
        assert_eq!(plan.total(), 16);
        assert_eq!(
            plan.skipped,
            BTreeMap::from([("PATCH streamingconnections (422)".to_owned(), 1)])
        );
        use Write::*;
        assert_eq!(
            plan.per_object[0],
            [Object, Status, ConfigMap, Status, Status, Event]
        );
        assert_eq!(
            plan.per_object[2],
            [Object, Status, ConfigMap, Status, Event]
        );
    }
}
