//! A small in-memory Kubernetes API server for reconciler tests: it keeps objects as JSON, applies
//! the patches the operator sends (server-side apply, JSON patch for finalizers, status
//! subresource) and records every call in order, so a test can assert the exact call sequence.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Default)]
struct State {
    /// Objects by request path without the query (`/api/v1/namespaces/ns/secrets/name`).
    objects: BTreeMap<String, Value>,
    calls: Vec<String>,
    events: Vec<(String, String)>,
    resource_version: u64,
}

/// The fake server; clone it freely, all clones share one state.
#[derive(Clone, Default)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
}

const GROUP_PATH: &str = "/apis/streaming.aep-operator.dev/v1alpha1";

impl FakeApiServer {
    /// A kube client whose every request goes to this fake.
    pub fn client(&self) -> kube::Client {
        let server = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(request).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Stores an object (a Secret, ConfigMap or StreamingConnection) as the API server would return it.
    pub fn insert(&self, object: &impl serde::Serialize) {
        let mut value = serde_json::to_value(object).unwrap();
        let mut state = self.state.lock().unwrap();
        state.resource_version += 1;
        value["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
        let path = object_path(&value);
        state.objects.insert(path, value);
    }

    /// The stored object at `path` relative to the namespace, e.g. `configmaps/web-inlet`.
    pub fn get(&self, namespace: &str, kind_path: &str) -> Option<Value> {
        let state = self.state.lock().unwrap();
        let core = format!("/api/v1/namespaces/{namespace}/{kind_path}");
        let custom = format!("{GROUP_PATH}/namespaces/{namespace}/{kind_path}");
        state
            .objects
            .get(&core)
            .or_else(|| state.objects.get(&custom))
            .cloned()
    }

    /// Changes the stored object at `kind_path` (see [`Self::get`]) as a client outside the operator
    /// would, with a new resourceVersion.
    pub fn edit(&self, namespace: &str, kind_path: &str, change: impl FnOnce(&mut Value)) {
        let mut object = self
            .get(namespace, kind_path)
            .unwrap_or_else(|| panic!("no {kind_path} in {namespace}"));
        change(&mut object);
        self.insert(&object);
    }

    /// Every call so far, as `VERB path` (queries stripped), events included.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Every call that changed something (not GET), events excluded.
    pub fn writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|call| !call.starts_with("GET ") && !call.contains("/events"))
            .collect()
    }

    /// `(type, reason)` of every event published, in order.
    pub fn events(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().events.clone()
    }

    /// Forgets the calls and events recorded so far (objects stay).
    pub fn clear_calls(&self) {
        let mut state = self.state.lock().unwrap();
        state.calls.clear();
        state.events.clear();
    }

    async fn handle(&self, request: Request<Body>) -> Response<Full<Bytes>> {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = request
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        let mut state = self.state.lock().unwrap();
        state.calls.push(format!("{method} {path}"));

        if path.ends_with("/events") && method == Method::POST {
            state.events.push((
                body["type"].as_str().unwrap_or("").into(),
                body["reason"].as_str().unwrap_or("").into(),
            ));
            return respond(StatusCode::CREATED, body);
        }
        if path.contains("/events/") {
            return respond(StatusCode::OK, body);
        }

        let (object_path, subresource) = match path.strip_suffix("/status") {
            Some(base)
                if base.contains("/streamingconnections/")
                    || base.contains("/streamingdataflows/") =>
            {
                (base.to_string(), Some("status"))
            }
            _ => (path.clone(), None),
        };
        match method {
            Method::GET
                if object_path.ends_with("/streamingconnections")
                    || object_path.ends_with("/streamingdataflows")
                    || object_path.ends_with("/secrets") =>
            {
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|(p, _)| p.starts_with(&object_path))
                    .map(|(_, v)| v.clone())
                    .collect();
                respond(
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}),
                )
            }
            Method::GET => match state.objects.get(&object_path) {
                Some(object) => respond(StatusCode::OK, object.clone()),
                None => not_found(&object_path),
            },
            Method::DELETE => match state.objects.remove(&object_path) {
                Some(object) => respond(StatusCode::OK, object),
                None => not_found(&object_path),
            },
            Method::PATCH => {
                state.resource_version += 1;
                let version = state.resource_version.to_string();
                let existing = state.objects.get(&object_path).cloned();
                let mut object = match (existing, subresource) {
                    (Some(object), _) => object,
                    (None, Some(_)) => return not_found(&object_path),
                    (None, None) if content_type.contains("apply-patch") => {
                        let mut fresh = body.clone();
                        fresh["metadata"]["uid"] = json!(format!("uid-{version}"));
                        fresh
                    }
                    (None, None) => return not_found(&object_path),
                };
                if content_type.contains("json-patch") {
                    // The API server treats an absent list as null for a JSON patch `test`.
                    if object["metadata"].get("finalizers").is_none() {
                        object["metadata"]["finalizers"] = Value::Null;
                    }
                    let patch: json_patch::Patch = serde_json::from_value(body).unwrap();
                    if json_patch::patch(&mut object, &patch).is_err() {
                        return respond(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            status_body(422, "Invalid", "patch test failed"),
                        );
                    }
                } else if subresource == Some("status") {
                    object["status"] = body["status"].clone();
                } else {
                    merge(&mut object, &body);
                }
                object["metadata"]["resourceVersion"] = json!(version);
                state.objects.insert(object_path, object.clone());
                respond(StatusCode::OK, object)
            }
            _ => respond(
                StatusCode::METHOD_NOT_ALLOWED,
                status_body(405, "MethodNotAllowed", "not supported by the fake"),
            ),
        }
    }
}

/// Merges `patch` into `target` (maps merge, everything else replaces), like an apply of owned fields.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn object_path(value: &Value) -> String {
    if value["kind"] == "CustomResourceDefinition" {
        let name = value["metadata"]["name"].as_str().expect("named object");
        return format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
    }
    let namespace = value["metadata"]["namespace"]
        .as_str()
        .expect("namespaced object");
    let name = value["metadata"]["name"].as_str().expect("named object");
    match value["kind"].as_str() {
        Some("Secret") => format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
        Some("ConfigMap") => format!("/api/v1/namespaces/{namespace}/configmaps/{name}"),
        Some("StreamingConnection") => {
            format!("{GROUP_PATH}/namespaces/{namespace}/streamingconnections/{name}")
        }
        Some("StreamingDataflow") => {
            format!("{GROUP_PATH}/namespaces/{namespace}/streamingdataflows/{name}")
        }
        other => panic!("the fake does not store {other:?}"),
    }
}

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
        .unwrap()
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message})
}

fn not_found(path: &str) -> Response<Full<Bytes>> {
    respond(
        StatusCode::NOT_FOUND,
        status_body(404, "NotFound", &format!("{path} not found")),
    )
}
