//! The dataflow calls of [`FlowClient`]: Catalog datasets, source and target connections, Data Prep
//! mapping sets, flows and runs. Every call goes through the same plumbing as the connection calls
//! (`read` retries reads, `send` mints and re-mints tokens, `send_once` throttles, classifies,
//! redacts and reports to the observer), so they share the error classes, rate limit and redaction.
//!
//! Like the connection calls, writes are sent once and reads are retried: on an error whose
//! [`FlowError::maybe_committed`] is true, look the object up (by name, or through the objects that
//! reference it) before creating it again.

use http::Method;
use serde_json::Value;
use url::Url;

use super::{Call, FlowClient, MAX_LIST_PAGES, Scope, json_bytes, require_id, unusable_success};
use crate::catalog::{self, Dataset, DatasetBody};
use crate::connections::{self, Connection, CreatedConnection};
use crate::dataflows::{
    self, DATA_LAKE_CONNECTION_SPEC_ID, Flow, FlowUpdate, MappingRef, NewFlow, NewSourceConnection,
    NewTargetConnection, RAW_FLOW_SPEC_ID, SourceConnection, TargetConnection, XDM_FLOW_SPEC_ID,
};
use crate::error::{ErrorDetails, FlowError, FlowErrorKind};
use crate::http::{HEADER_REQUEST_ID, Response};
use crate::listing::{self, Filter};
use crate::mapping_sets::{self, MappingSet, NewMappingSet};
use crate::observer::Operation;
use crate::runs::{self, Run};

const SOURCE_CONNECTIONS: &str = "sourceConnections";
const TARGET_CONNECTIONS: &str = "targetConnections";
const FLOWS: &str = "flows";
const RUNS: &str = "runs";
const MAPPING_SETS: &str = "mappingSets";
const DATASETS: &str = "dataSets";

/// Something a list or GET-by-id returns, with the id the client checks.
pub(super) trait Listed {
    fn id(&self) -> &str;
}

macro_rules! listed {
    ($($kind:ty),*) => {
        $(impl Listed for $kind {
            fn id(&self) -> &str {
                &self.id
            }
        })*
    };
}

listed!(Connection, SourceConnection, TargetConnection, Flow, Run);

/// A kind of Flow Service object the dataflow calls create, read, list and delete: where it lives
/// and how one item is read, so that each call is written once for every kind.
trait FlowObject: Listed + Send + Sized {
    /// The collection under the Flow Service base: `sourceConnections`, `flows`, …
    const COLLECTION: &'static str;
    /// One item of a GET-by-id's `items` or of a list page.
    fn parse(item: &Value) -> Option<Self>;
}

/// A kind the operator looks up by name after an ambiguous create.
trait NamedFlowObject: FlowObject {
    /// The connection spec the server filters on (`property=connectionSpec.id==…`), when a single
    /// value names the operator's own.
    const CONNECTION_SPEC_ID: Option<&'static str>;
    /// The display name.
    fn name(&self) -> &str;
    /// On a spec the operator creates (or with its spec left out of a sparse list item).
    fn on_operator_spec(&self) -> bool;
}

impl FlowObject for SourceConnection {
    const COLLECTION: &'static str = SOURCE_CONNECTIONS;
    fn parse(item: &Value) -> Option<Self> {
        dataflows::parse_source_connection(item)
    }
}

impl NamedFlowObject for SourceConnection {
    const CONNECTION_SPEC_ID: Option<&'static str> =
        Some(connections::STREAMING_CONNECTION_SPEC_ID);
    fn name(&self) -> &str {
        &self.name
    }
    fn on_operator_spec(&self) -> bool {
        spec_is(
            &self.connection_spec_id,
            connections::STREAMING_CONNECTION_SPEC_ID,
        )
    }
}

impl FlowObject for TargetConnection {
    const COLLECTION: &'static str = TARGET_CONNECTIONS;
    fn parse(item: &Value) -> Option<Self> {
        dataflows::parse_target_connection(item)
    }
}

impl NamedFlowObject for TargetConnection {
    const CONNECTION_SPEC_ID: Option<&'static str> = Some(DATA_LAKE_CONNECTION_SPEC_ID);
    fn name(&self) -> &str {
        &self.name
    }
    fn on_operator_spec(&self) -> bool {
        spec_is(&self.connection_spec_id, DATA_LAKE_CONNECTION_SPEC_ID)
    }
}

impl FlowObject for Flow {
    const COLLECTION: &'static str = FLOWS;
    fn parse(item: &Value) -> Option<Self> {
        dataflows::parse_flow(item)
    }
}

impl NamedFlowObject for Flow {
    // The server filters on the name only: the two flow specs would need a comma, which the filter
    // reads as OR of whole values and the client leaves out.
    const CONNECTION_SPEC_ID: Option<&'static str> = None;
    fn name(&self) -> &str {
        &self.name
    }
    fn on_operator_spec(&self) -> bool {
        is_http_api_flow(self)
    }
}

impl FlowObject for Run {
    const COLLECTION: &'static str = RUNS;
    fn parse(item: &Value) -> Option<Self> {
        runs::parse_run(item)
    }
}

impl FlowClient {
    /// `GET /data/foundation/catalog/dataSets/{id}`: the dataset a dataflow lands in. A 404 (or an
    /// empty answer) is an error of kind [`FlowErrorKind::NotFound`].
    pub async fn get_dataset(&self, scope: &Scope<'_>, id: &str) -> Result<Dataset, FlowError> {
        let operation = Operation::Get;
        require_id(operation, id)?;
        let url = under(&self.inner.catalog_base, DATASETS, &[id]);
        let response = self.read(operation, scope, || url.clone()).await?;
        catalog::parse_dataset(&response.body, id).map_err(|problem| match problem {
            DatasetBody::Missing => not_found_in_body(operation, &response, "no dataset"),
            DatasetBody::Unusable(problem) => unusable_success(operation, &response, problem),
        })
    }

    /// `POST /sourceConnections` on the streaming spec, reading from `request.base_connection_id`.
    /// Not retried: after an error whose [`FlowError::maybe_committed`] is true, look it up with
    /// [`Self::find_source_connections_by_name`] before creating again.
    pub async fn create_source_connection(
        &self,
        scope: &Scope<'_>,
        request: &NewSourceConnection,
    ) -> Result<CreatedConnection, FlowError> {
        let body = dataflows::source_connection_body(request);
        self.create_object::<SourceConnection>(scope, &body).await
    }

    /// `GET /sourceConnections/{id}`: an error of kind [`FlowErrorKind::NotFound`] when it does not exist.
    pub async fn get_source_connection(
        &self,
        scope: &Scope<'_>,
        id: &str,
    ) -> Result<SourceConnection, FlowError> {
        self.get_object(scope, id).await
    }

    /// Every streaming source connection named exactly `name`, following every page
    /// (`property=name==…` and `property=connectionSpec.id==<streaming spec>`, compared again here).
    pub async fn find_source_connections_by_name(
        &self,
        scope: &Scope<'_>,
        name: &str,
    ) -> Result<Vec<SourceConnection>, FlowError> {
        self.find_objects_by_name(scope, name).await
    }

    /// Every source connection reading from the base connection `base_connection_id`
    /// (`property=baseConnectionId==…`, compared again here).
    pub async fn find_source_connections_by_base_connection(
        &self,
        scope: &Scope<'_>,
        base_connection_id: &str,
    ) -> Result<Vec<SourceConnection>, FlowError> {
        let filters = [Filter::new("baseConnectionId==", base_connection_id)];
        self.list_flow_objects(scope, &filters, |source: &SourceConnection| {
            source
                .base_connection_id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(base_connection_id))
        })
        .await
    }

    /// `DELETE /sourceConnections/{id}`. A 404 is success: it is already gone. A flow still using it
    /// may refuse the delete (the reference guesses `FLOW-1447-400`): delete the flow first.
    pub async fn delete_source_connection(
        &self,
        scope: &Scope<'_>,
        id: &str,
    ) -> Result<(), FlowError> {
        self.delete_object::<SourceConnection>(scope, id).await
    }

    /// `POST /targetConnections` on the Data Lake spec, bound to `request.dataset_id`. Not retried,
    /// as [`Self::create_source_connection`].
    pub async fn create_target_connection(
        &self,
        scope: &Scope<'_>,
        request: &NewTargetConnection,
    ) -> Result<CreatedConnection, FlowError> {
        let body = dataflows::target_connection_body(request);
        self.create_object::<TargetConnection>(scope, &body).await
    }

    /// `GET /targetConnections/{id}`: an error of kind [`FlowErrorKind::NotFound`] when it does not exist.
    pub async fn get_target_connection(
        &self,
        scope: &Scope<'_>,
        id: &str,
    ) -> Result<TargetConnection, FlowError> {
        self.get_object(scope, id).await
    }

    /// Every Data Lake target connection named exactly `name`, following every page.
    pub async fn find_target_connections_by_name(
        &self,
        scope: &Scope<'_>,
        name: &str,
    ) -> Result<Vec<TargetConnection>, FlowError> {
        self.find_objects_by_name(scope, name).await
    }

    /// `DELETE /targetConnections/{id}`. A 404 is success: it is already gone.
    pub async fn delete_target_connection(
        &self,
        scope: &Scope<'_>,
        id: &str,
    ) -> Result<(), FlowError> {
        self.delete_object::<TargetConnection>(scope, id).await
    }

    /// `POST /data/foundation/conversion/mappingSets` (answer 200, not 201): the new set's id and
    /// version (0). Not retried.
    ///
    /// There is no reliable way to find a mapping set again after an ambiguous failure (see
    /// [`crate::mapping_sets`]): the caller creates another one, and the first stays unused.
    pub async fn create_mapping_set(
        &self,
        scope: &Scope<'_>,
        request: &NewMappingSet,
    ) -> Result<MappingRef, FlowError> {
        let operation = Operation::Create;
        let response = self
            .send(Call {
                operation,
                scope,
                method: Method::POST,
                url: under(&self.inner.conversion_base, MAPPING_SETS, &[]),
                body: Some(json_bytes(&mapping_sets::mapping_set_body(request))),
                if_match: None,
            })
            .await?;
        let created = mapping_sets::parse_version(&response.body)
            .ok_or_else(|| unusable_success(operation, &response, "no `id` and `version`"))?;
        if !listing::is_plain_id(&created.mapping_id) {
            return Err(unusable_success(
                operation,
                &response,
                "an `id` that is not a plain id",
            ));
        }
        Ok(created)
    }

    /// `GET /mappingSets/{id}`, or `?version=N` for one version: an error of kind [`FlowErrorKind::NotFound`] when it does
    /// not exist.
    pub async fn get_mapping_set(
        &self,
        scope: &Scope<'_>,
        id: &str,
        version: Option<u64>,
    ) -> Result<MappingSet, FlowError> {
        let operation = Operation::Get;
        require_id(operation, id)?;
        let mut url = under(&self.inner.conversion_base, MAPPING_SETS, &[id]);
        if let Some(version) = version {
            url.set_query(Some(&format!("version={version}")));
        }
        let response = self.read(operation, scope, || url.clone()).await?;
        let set = mapping_sets::parse_mapping_set(&response.body)
            .map_err(|problem| unusable_success(operation, &response, problem))?;
        if !set.id.eq_ignore_ascii_case(id) || version.is_some_and(|asked| asked != set.version) {
            return Err(unusable_success(
                operation,
                &response,
                "a mapping set with another `id` or `version` than the one requested",
            ));
        }
        Ok(set)
    }

    /// `PUT /mappingSets/{id}` with the full new content: the new version, which a raw flow then
    /// names with [`Self::update_flow`]. The reference infers (does not show) that the version goes
    /// up by one; the client returns whatever version the answer carries. Not retried.
    pub async fn update_mapping_set(
        &self,
        scope: &Scope<'_>,
        id: &str,
        request: &NewMappingSet,
    ) -> Result<MappingRef, FlowError> {
        let operation = Operation::Update;
        require_id(operation, id)?;
        let response = self
            .send(Call {
                operation,
                scope,
                method: Method::PUT,
                url: under(&self.inner.conversion_base, MAPPING_SETS, &[id]),
                body: Some(json_bytes(&mapping_sets::mapping_set_body(request))),
                if_match: None,
            })
            .await?;
        match mapping_sets::parse_version(&response.body) {
            Some(updated) if updated.mapping_id.eq_ignore_ascii_case(id) => Ok(updated),
            Some(_) => Err(unusable_success(
                operation,
                &response,
                "a mapping set with another `id` than the one updated",
            )),
            None => Err(unusable_success(
                operation,
                &response,
                "no `id` and `version`",
            )),
        }
    }

    /// `POST /flows`: an XDM flow without transformations, or a raw flow with its `Mapping`; never a
    /// `state`. Not retried: after an error whose [`FlowError::maybe_committed`] is true, look it up
    /// with [`Self::find_flows_by_name`] or [`Self::find_flows_by_source_connection`].
    pub async fn create_flow(
        &self,
        scope: &Scope<'_>,
        request: &NewFlow,
    ) -> Result<CreatedConnection, FlowError> {
        let body = dataflows::flow_body(request);
        self.create_object::<Flow>(scope, &body).await
    }

    /// `GET /flows/{id}`: an error of kind [`FlowErrorKind::NotFound`] when it does not exist.
    pub async fn get_flow(&self, scope: &Scope<'_>, id: &str) -> Result<Flow, FlowError> {
        self.get_object(scope, id).await
    }

    /// Every HTTP API flow (XDM or raw flow spec) named exactly `name`, following every page. The
    /// server filters on the name only (the two flow specs would need a comma, which the filter reads
    /// as OR of whole values and the client leaves out); the spec and name are compared here.
    pub async fn find_flows_by_name(
        &self,
        scope: &Scope<'_>,
        name: &str,
    ) -> Result<Vec<Flow>, FlowError> {
        self.find_objects_by_name(scope, name).await
    }

    /// Every flow reading from the source connection `source_connection_id`
    /// (`property=sourceConnectionIds[]==…`, compared again here).
    pub async fn find_flows_by_source_connection(
        &self,
        scope: &Scope<'_>,
        source_connection_id: &str,
    ) -> Result<Vec<Flow>, FlowError> {
        let filters = [Filter::new("sourceConnectionIds[]==", source_connection_id)];
        self.list_flow_objects(scope, &filters, |flow: &Flow| {
            flow.source_connection_ids
                .iter()
                .any(|id| id.eq_ignore_ascii_case(source_connection_id))
        })
        .await
    }

    /// Every flow reading from the base connection `base_connection_id`: its source connections
    /// (`GET /sourceConnections?property=baseConnectionId==…`), then the flows of each
    /// (`GET /flows?property=sourceConnectionIds[]==…`), without duplicates.
    ///
    /// Both queries are documented forms; filtering flows directly on
    /// `inheritedAttributes.sourceConnections[].baseConnection.id` would take one request but is only
    /// inferred from the generic filter rule, so it is not used. Costs one request per source
    /// connection (plus pages): few, since each dataflow has its own source connection.
    pub async fn find_flows_by_base_connection(
        &self,
        scope: &Scope<'_>,
        base_connection_id: &str,
    ) -> Result<Vec<Flow>, FlowError> {
        let sources = self
            .find_source_connections_by_base_connection(scope, base_connection_id)
            .await?;
        let mut flows: Vec<Flow> = Vec::new();
        for source in sources {
            for flow in self
                .find_flows_by_source_connection(scope, &source.id)
                .await?
            {
                if !flows.iter().any(|known| known.id == flow.id) {
                    flows.push(flow);
                }
            }
        }
        Ok(flows)
    }

    /// `PATCH /flows/{id}` with `If-Match: <etag>` and a JSON Patch of the changed name, description
    /// and mapping version: the flow's id and new etag. A stale etag gives
    /// an error of kind [`FlowErrorKind::PreconditionFailed`]: read again, re-apply, retry. An empty update is refused
    /// without a request.
    pub async fn update_flow(
        &self,
        scope: &Scope<'_>,
        id: &str,
        etag: &str,
        update: &FlowUpdate,
    ) -> Result<CreatedConnection, FlowError> {
        let operation = Operation::Update;
        require_id(operation, id)?;
        if update.is_empty() {
            // Flow Service would reject an empty patch (1455-400); say so without a round trip.
            return Err(refused(operation, "the update changes nothing"));
        }
        let response = self
            .send(Call {
                operation,
                scope,
                method: Method::PATCH,
                url: self.flow_url(FLOWS, &[id]),
                body: Some(json_bytes(&dataflows::flow_patch_operations(update))),
                if_match: Some(etag),
            })
            .await?;
        connections::parse_created(&response.body)
            .ok_or_else(|| unusable_success(operation, &response, "no `id` and `etag`"))
    }

    /// `POST /flows/{id}/action?op=enable`, no body.
    ///
    /// Unverified for source flows: the reference documents this call for destination flows only
    /// (and no `PATCH /state` anywhere). The change is asynchronous (`enabling`, then `enabled`):
    /// read the flow again for its state and etag rather than trusting the answer's body.
    pub async fn enable_flow(&self, scope: &Scope<'_>, id: &str) -> Result<(), FlowError> {
        self.flow_action(scope, id, "enable").await
    }

    /// `POST /flows/{id}/action?op=disable`, no body; unverified for source flows, as
    /// [`Self::enable_flow`]. Refused in some states (`FLOW-1422-400`; `1420-400` while disabling,
    /// which is transient).
    pub async fn disable_flow(&self, scope: &Scope<'_>, id: &str) -> Result<(), FlowError> {
        self.flow_action(scope, id, "disable").await
    }

    /// `DELETE /flows/{id}`. A 404 is success: it is already gone. Its source and target connections
    /// stay: delete them next, then the base connection.
    pub async fn delete_flow(&self, scope: &Scope<'_>, id: &str) -> Result<(), FlowError> {
        self.delete_object::<Flow>(scope, id).await
    }

    /// The runs of a flow (`GET /runs?property=flowId==…`), following every page; with
    /// `started_after` (epoch milliseconds) only those that started later
    /// (`property=metrics.durationSummary.startedAtUTC>…`), which bounds the answer for a flow with
    /// months of hourly runs. Pick the latest with [`runs::latest_run`].
    pub async fn list_runs(
        &self,
        scope: &Scope<'_>,
        flow_id: &str,
        started_after: Option<i64>,
    ) -> Result<Vec<Run>, FlowError> {
        require_id(Operation::List, flow_id)?;
        let after = started_after.map(|at| at.to_string());
        let mut filters = vec![Filter::new("flowId==", flow_id)];
        if let Some(after) = &after {
            filters.push(Filter::new("metrics.durationSummary.startedAtUTC>", after));
        }
        self.list_flow_objects(scope, &filters, |run: &Run| {
            run.flow_id
                .as_deref()
                .is_none_or(|id| id.eq_ignore_ascii_case(flow_id))
        })
        .await
    }

    /// `{flow_base}/{collection}/{segments…}`.
    fn flow_url(&self, collection: &str, segments: &[&str]) -> Url {
        under(&self.inner.flow_base, collection, segments)
    }

    async fn flow_action(&self, scope: &Scope<'_>, id: &str, op: &str) -> Result<(), FlowError> {
        let operation = Operation::Update;
        require_id(operation, id)?;
        let mut url = self.flow_url(FLOWS, &[id, "action"]);
        url.set_query(Some(&format!("op={op}")));
        self.send(Call {
            operation,
            scope,
            method: Method::POST,
            url,
            body: None,
            if_match: None,
        })
        .await
        .map(drop)
    }

    /// A Flow Service create answered by `{"id", "etag"}`, the id a UUID.
    pub(super) async fn create_flow_object(
        &self,
        scope: &Scope<'_>,
        url: Url,
        body: &Value,
    ) -> Result<CreatedConnection, FlowError> {
        let operation = Operation::Create;
        let response = self
            .send(Call {
                operation,
                scope,
                method: Method::POST,
                url,
                body: Some(json_bytes(body)),
                if_match: None,
            })
            .await?;
        // The create happened, whatever the body says: a caller that cannot trust the id must look
        // the object up rather than create it again.
        let created = connections::parse_created(&response.body)
            .ok_or_else(|| unusable_success(operation, &response, "no `id` and `etag`"))?;
        if !connections::is_connection_id(&created.id) {
            return Err(unusable_success(
                operation,
                &response,
                "an `id` that is not a UUID",
            ));
        }
        Ok(created)
    }

    /// A Flow Service create of a `T`, answered by `{"id", "etag"}`.
    async fn create_object<T: FlowObject>(
        &self,
        scope: &Scope<'_>,
        body: &Value,
    ) -> Result<CreatedConnection, FlowError> {
        self.create_flow_object(scope, self.flow_url(T::COLLECTION, &[]), body)
            .await
    }

    /// A Flow Service GET-by-id, answered by a one-item list: the item, whose id must be the one
    /// asked for. An empty list is an error of kind [`FlowErrorKind::NotFound`].
    async fn get_object<T: FlowObject>(&self, scope: &Scope<'_>, id: &str) -> Result<T, FlowError> {
        let operation = Operation::Get;
        require_id(operation, id)?;
        let url = self.flow_url(T::COLLECTION, &[id]);
        let response = self.read(operation, scope, || url.clone()).await?;
        let (items, _) = listing::parse_page(&response.body, T::parse)
            .map_err(|problem| unusable_success(operation, &response, &problem))?;
        match items.into_iter().next() {
            None => Err(not_found_in_body(operation, &response, "no items")),
            Some(item) if !item.id().eq_ignore_ascii_case(id) => Err(unusable_success(
                operation,
                &response,
                "an item with another `id` than the one requested",
            )),
            Some(item) => Ok(item),
        }
    }

    /// Every `T` named exactly `name` on a spec the operator creates, following every page
    /// (`property=name==…`, then `property=connectionSpec.id==…` where one spec names it; both
    /// compared again here).
    async fn find_objects_by_name<T: NamedFlowObject>(
        &self,
        scope: &Scope<'_>,
        name: &str,
    ) -> Result<Vec<T>, FlowError> {
        let mut filters = vec![Filter::new("name==", name)];
        if let Some(spec_id) = T::CONNECTION_SPEC_ID {
            filters.push(Filter::new("connectionSpec.id==", spec_id));
        }
        self.list_flow_objects(scope, &filters, |item: &T| {
            item.name() == name && item.on_operator_spec()
        })
        .await
    }

    /// `DELETE` of a `T`: a 404 is success.
    async fn delete_object<T: FlowObject>(
        &self,
        scope: &Scope<'_>,
        id: &str,
    ) -> Result<(), FlowError> {
        require_id(Operation::Delete, id)?;
        self.delete_at(scope, self.flow_url(T::COLLECTION, &[id]))
            .await
    }

    /// A filtered Flow Service list of `T`: every page, the items `keep` accepts.
    async fn list_flow_objects<T: FlowObject>(
        &self,
        scope: &Scope<'_>,
        filters: &[Filter<'_>],
        keep: impl Fn(&T) -> bool + Send + Sync,
    ) -> Result<Vec<T>, FlowError> {
        self.list_all(
            scope,
            self.flow_url(T::COLLECTION, &[]),
            |page_size, token| listing::filter_query(filters, page_size, token),
            |body| listing::parse_page(body, T::parse),
            keep,
        )
        .await
    }

    /// Follows every page of a list (bounded by `MAX_LIST_PAGES`), keeping the items `keep` accepts.
    /// Only the kept items' ids are checked to be UUIDs: a stranger's odd id must not block a lookup.
    ///
    /// Pages are asked for with the client's page size; a page refused with `FLOW-1453-400` (the
    /// catalogue's "Invalid query value … provided in query param", which is how a `limit` above an
    /// undocumented maximum comes back) is asked for once more with the smaller fallback size, which
    /// the client then keeps for every list when Flow Service takes it.
    pub(super) async fn list_all<T: Listed + Send>(
        &self,
        scope: &Scope<'_>,
        collection: Url,
        query: impl Fn(u32, Option<&str>) -> String + Send + Sync,
        parse_page: impl Fn(&[u8]) -> Result<(Vec<T>, Option<String>), String> + Send + Sync,
        keep: impl Fn(&T) -> bool + Send + Sync,
    ) -> Result<Vec<T>, FlowError> {
        let operation = Operation::List;
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        let mut shrunk = false;
        for _ in 0..MAX_LIST_PAGES {
            let page_size = self.page_size();
            let page_query = query(page_size, token.as_deref());
            let result = self
                .read(operation, scope, || {
                    let mut url = collection.clone();
                    url.set_query(Some(&page_query));
                    url
                })
                .await;
            let response = match result {
                Ok(response) => response,
                Err(error) if error.is_invalid_query_value() && !shrunk => {
                    let Some(smaller) = Self::smaller_page_size(page_size) else {
                        return Err(error);
                    };
                    shrunk = true;
                    let page_query = query(smaller, token.as_deref());
                    let response = self
                        .read(operation, scope, || {
                            let mut url = collection.clone();
                            url.set_query(Some(&page_query));
                            url
                        })
                        .await?;
                    // Only a size Flow Service took is kept: the 1453 may have been about another
                    // parameter, and then the smaller page fails the same way and changes nothing.
                    tracing::warn!(
                        refused = page_size,
                        page_size = smaller,
                        "Flow Service refused the list page size; using a smaller one from now on"
                    );
                    self.remember_page_size(smaller);
                    response
                }
                Err(error) => return Err(error),
            };
            let (items, next) = parse_page(&response.body)
                .map_err(|problem| unusable_success(operation, &response, &problem))?;
            for item in items.into_iter().filter(|item| keep(item)) {
                if !connections::is_connection_id(item.id()) {
                    return Err(unusable_success(
                        operation,
                        &response,
                        "a matching item whose `id` is not a UUID",
                    ));
                }
                found.push(item);
            }
            match next {
                None => return Ok(found),
                Some(next) if token.as_deref() == Some(next.as_str()) => {
                    return Err(unusable_success(
                        operation,
                        &response,
                        "the next page has the same continuation token as this one",
                    ));
                }
                Some(next) => token = Some(next),
            }
        }
        // A status outside every class: the classification makes it an unexpected response that
        // changed nothing (a list is a read).
        Err(FlowError::from_status(
            operation,
            0,
            ErrorDetails::transport(format!(
                "the lookup did not end after {MAX_LIST_PAGES} pages"
            )),
            None,
        ))
    }

    /// A `DELETE`: 204, or a 404 meaning the object is already gone; both are success.
    pub(super) async fn delete_at(&self, scope: &Scope<'_>, url: Url) -> Result<(), FlowError> {
        let result = self
            .send(Call {
                operation: Operation::Delete,
                scope,
                method: Method::DELETE,
                url,
                body: None,
                if_match: None,
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == FlowErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// `base` + `collection` + each segment, percent-encoded so that an id cannot change the path.
fn under(base: &Url, collection: &str, segments: &[&str]) -> Url {
    let mut url = base
        .join(collection)
        .expect("a relative path joins onto a base URL");
    url.path_segments_mut()
        .expect("the base URL was checked to carry a path")
        .extend(segments);
    url
}

/// A spec id read back matches, or was left out of a sparse list item.
fn spec_is(actual: &str, wanted: &str) -> bool {
    actual.is_empty() || actual == wanted
}

/// A flow on one of the two HTTP API flow specs (or with its spec left out of the list item).
fn is_http_api_flow(flow: &Flow) -> bool {
    spec_is(&flow.flow_spec_id, XDM_FLOW_SPEC_ID) || flow.flow_spec_id == RAW_FLOW_SPEC_ID
}

/// A 2xx that says "no such object" in its body (an empty `items`, an empty Catalog object): the
/// not-found class, through the same classification as a 404.
fn not_found_in_body(operation: Operation, response: &Response, what: &str) -> FlowError {
    FlowError::from_status(
        operation,
        404,
        ErrorDetails {
            status: Some(response.status),
            request_id: response.header(HEADER_REQUEST_ID).map(str::to_owned),
            ..ErrorDetails::transport(format!("the response has {what}"))
        },
        None,
    )
}

/// A request the client refuses to send: the invalid class, through the same classification as a
/// 400, so that nothing here depends on the shape of [`FlowError`].
fn refused(operation: Operation, message: &str) -> FlowError {
    FlowError::from_status(operation, 400, ErrorDetails::transport(message), None)
}
