//! The handler skeleton the dataflow collections share, written once: find an object in the caller's org and
//! sandbox, list a collection a page at a time, commit a change to the store, and create, patch (with
//! `If-Match`) and delete the Flow Service objects that source connections, target connections and flows are.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::app::{AppState, now_ms};
use super::catalog::StoredDataset;
use super::connections::{Caller, authorize, header_text, parse_body};
use super::dataflows::{
    DataflowStore, FlowObject, Problem, Refusal, check_if_match, in_creation_order, object_body,
    parse_patch, relink,
};
use super::errors::FlowServiceProblem;
use super::listing::ListRequest;
use super::mapping::StoredMappingSet;
use super::runs::StoredRun;
use super::state::Store;

/// A stored object that belongs to one org and sandbox, in the store's creation order.
pub(crate) trait Scoped {
    /// The owning organization.
    fn org_id(&self) -> &str;
    /// The owning sandbox.
    fn sandbox_name(&self) -> &str;
    /// Creation order.
    fn seq(&self) -> u64;

    /// Whether the object lives in the caller's org and sandbox: anywhere else it is invisible (404).
    fn in_scope(&self, caller: &Caller) -> bool {
        self.org_id() == caller.org_id && self.sandbox_name() == caller.sandbox
    }
}

/// `Scoped` for stored objects with `org_id`, `sandbox_name` and `seq` fields.
macro_rules! scoped_by_fields {
    ($($stored:ty),+) => {$(
        impl Scoped for $stored {
            fn org_id(&self) -> &str {
                &self.org_id
            }

            fn sandbox_name(&self) -> &str {
                &self.sandbox_name
            }

            fn seq(&self) -> u64 {
                self.seq
            }
        }
    )+};
}

scoped_by_fields!(FlowObject, StoredDataset, StoredMappingSet, StoredRun);

/// Object `id` of `objects` if the caller may see it, else the not-found problem of `kind`.
pub(crate) fn find<'a, T: Scoped>(
    objects: &'a HashMap<String, T>,
    id: &str,
    caller: &Caller,
    kind: &'static str,
) -> Result<&'a T, Problem> {
    objects
        .get(id)
        .filter(|object| object.in_scope(caller))
        .ok_or_else(|| Problem::not_found(kind, id))
}

/// [`find`], for a change.
pub(crate) fn find_mut<'a, T: Scoped>(
    objects: &'a mut HashMap<String, T>,
    id: &str,
    caller: &Caller,
    kind: &'static str,
) -> Result<&'a mut T, Problem> {
    objects
        .get_mut(id)
        .filter(|object| object.in_scope(caller))
        .ok_or_else(|| Problem::not_found(kind, id))
}

/// The objects the caller may see, in creation order.
pub(crate) fn visible<'a, T: Scoped>(
    objects: &'a HashMap<String, T>,
    caller: &Caller,
) -> Vec<&'a T> {
    in_creation_order(objects, T::seq)
        .into_iter()
        .filter(|object| object.in_scope(caller))
        .collect()
}

/// One page of the objects the caller may see, with the shared listing's query parameters and its
/// `_links.next` pointed at `collection` (`/flows`, `/runs`, …).
pub(crate) fn page<T: Scoped>(
    objects: &HashMap<String, T>,
    caller: &Caller,
    request: &ListRequest,
    collection: &str,
    render: impl Fn(&T) -> Value,
) -> Value {
    let rendered = visible(objects, caller)
        .into_iter()
        .map(|object| (object.seq(), render(object)))
        .collect();
    relink(request.respond(rendered), collection)
}

/// `GET` of a collection → 200 with one page of the objects the caller may see (see [`page`]).
pub(crate) fn list<T: Scoped>(
    app: &AppState,
    query: Option<&str>,
    headers: &HeaderMap,
    collection: &str,
    objects: impl Fn(&DataflowStore) -> &HashMap<String, T>,
    render: impl Fn(&Store, &T, i64) -> Value,
) -> Result<Response, Refusal> {
    let caller = authorize(app, headers, false)?;
    let request = ListRequest::parse(query, super::listing::ListRules::of(app))?;
    let now = now_ms();
    let store = app.store.lock().expect("store lock");
    let page = page(
        objects(&store.dataflow),
        &caller,
        &request,
        collection,
        |object| render(&store, object, now),
    );
    Ok(Json(page).into_response())
}

/// `200 {items: [object]}`, the answer of every Flow Service item GET.
pub(crate) fn items(object: Value) -> Response {
    Json(json!({ "items": [object] })).into_response()
}

/// `GET` of one object the caller may see → 200 `{items: [object]}`, else the not-found problem of `kind`.
pub(crate) fn get_one<T: Scoped>(
    app: &AppState,
    id: &str,
    headers: &HeaderMap,
    kind: &'static str,
    objects: impl Fn(&DataflowStore) -> &HashMap<String, T>,
    render: impl Fn(&Store, &T) -> Value,
) -> Result<Response, Refusal> {
    let caller = authorize(app, headers, false)?;
    let store = app.store.lock().expect("store lock");
    let object = find(objects(&store.dataflow), id, &caller, kind)?;
    Ok(items(render(&store, object)))
}

/// The first value of query parameter `name`, trimmed.
pub(crate) fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query_values(query, name)
        .first()
        .map(|value| value.trim().to_owned())
}

/// The values of query parameter `name`, in order.
pub(crate) fn query_values(query: Option<&str>, name: &str) -> Vec<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .collect()
}

/// `200 {id, etag}`, the answer of every Flow Service change.
pub(crate) fn id_and_etag(id: &str, etag: &str) -> Response {
    Json(json!({ "id": id, "etag": etag })).into_response()
}

/// Apply `change` to the store, count a new generation and wait until it is on disk; nothing changes and
/// nothing is written when `change` refuses.
pub(crate) async fn commit<T>(
    app: &AppState,
    change: impl FnOnce(&mut Store) -> Result<T, Refusal>,
) -> Result<T, Refusal> {
    let (value, generation) = {
        let mut store = app.store.lock().expect("store lock");
        let value = change(&mut store)?;
        store.generation += 1;
        (value, store.generation)
    };
    app.persist(generation).await?;
    Ok(value)
}

/// `DELETE` of an object the caller may see → 204, after `in_use` (which may refuse) had its say.
pub(crate) async fn delete<T: Scoped>(
    app: &AppState,
    id: &str,
    headers: &HeaderMap,
    kind: &'static str,
    objects: impl Fn(&mut DataflowStore) -> &mut HashMap<String, T>,
    in_use: impl FnOnce(&Store) -> Result<(), Refusal>,
) -> Result<Response, Refusal> {
    let caller = authorize(app, headers, false)?;
    commit(app, |store| {
        find(objects(&mut store.dataflow), id, &caller, kind)?;
        in_use(store)?;
        objects(&mut store.dataflow).remove(id);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The Flow Service objects: source connections, target connections and flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collection {
    /// `/sourceConnections`.
    SourceConnections,
    /// `/targetConnections`.
    TargetConnections,
    /// `/flows`.
    Flows,
}

impl Collection {
    /// The collection's name in paths and `report.type`.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::SourceConnections => "sourceConnections",
            Self::TargetConnections => "targetConnections",
            Self::Flows => "flows",
        }
    }

    /// The collection's objects.
    pub(crate) fn objects(self, store: &DataflowStore) -> &HashMap<String, FlowObject> {
        match self {
            Self::SourceConnections => &store.source_connections,
            Self::TargetConnections => &store.target_connections,
            Self::Flows => &store.flows,
        }
    }

    /// The collection's objects, for a change.
    pub(crate) fn objects_mut(self, store: &mut DataflowStore) -> &mut HashMap<String, FlowObject> {
        match self {
            Self::SourceConnections => &mut store.source_connections,
            Self::TargetConnections => &mut store.target_connections,
            Self::Flows => &mut store.flows,
        }
    }

    /// Create an object of the caller's org and sandbox from the fields `fields` makes of a valid body.
    pub(crate) async fn create(
        self,
        app: &AppState,
        headers: &HeaderMap,
        body: &Bytes,
        fields: impl FnOnce(&Map<String, Value>, &Store, &Caller) -> Result<Map<String, Value>, Problem>,
    ) -> Result<FlowObject, Refusal> {
        let caller = authorize(app, headers, true)?;
        let request = object_body(body)?;
        let now = now_ms();
        commit(app, |store| {
            let fields = fields(&request, store, &caller)?;
            let seq = store.take_seq();
            let object = FlowObject::new(&caller, seq, now, fields);
            self.objects_mut(&mut store.dataflow)
                .insert(object.id.clone(), object.clone());
            Ok(object)
        })
        .await
    }

    /// `PATCH` with `If-Match` → 200 `{id, etag}`: `If-Match` must be there before the body is read (`1403-400`)
    /// and match the stored etag; the body is a JSON Patch on the `patchable` paths, and `validate` checks (and
    /// may complete) the patched fields before they are stored.
    pub(crate) async fn patch(
        self,
        app: &AppState,
        id: &str,
        headers: &HeaderMap,
        body: &Bytes,
        patchable: impl Fn(&str) -> bool,
        validate: impl FnOnce(
            &Store,
            &Caller,
            &FlowObject,
            Map<String, Value>,
        ) -> Result<Map<String, Value>, Refusal>,
    ) -> Result<Response, Refusal> {
        let caller = authorize(app, headers, true)?;
        if header_text(headers, "if-match").is_none() {
            return Err(FlowServiceProblem::if_match_missing().into());
        }
        let patch = parse_patch(parse_body(body)?, patchable)?;
        let now = now_ms();
        let etag = commit(app, |store| {
            let object = find(self.objects(&store.dataflow), id, &caller, self.kind())?;
            check_if_match(headers, &object.etag)?;
            let mut document = Value::Object(object.fields.clone());
            json_patch::patch(&mut document, &patch).map_err(Problem::invalid_patch)?;
            let Value::Object(fields) = document else {
                return Err(Problem::invalid_patch("the patch must leave an object").into());
            };
            let fields = validate(store, &caller, object, fields)?;
            let object = self
                .objects_mut(&mut store.dataflow)
                .get_mut(id)
                .expect("checked above");
            object.fields = fields;
            object.touch(&caller, now);
            Ok(object.etag.clone())
        })
        .await?;
        Ok(id_and_etag(id, &etag))
    }
}
