//! Flow Service connection types and the pure functions that turn them into request bodies and back.
//!
//! Bodies follow the streaming ("HTTP API") connection of the reference: connection spec
//! [`STREAMING_CONNECTION_SPEC_ID`] version `"1.0"`, `auth.specName` `"Streaming Connection"`. Parsing
//! is tolerant: unknown fields are ignored and missing optional ones become `None`, because Adobe adds
//! fields over time and the operator must keep reading.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::listing::{self, Filter};

/// The connection spec of streaming (HTTP API) connections.
pub const STREAMING_CONNECTION_SPEC_ID: &str = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb";
/// The version of the streaming connection spec the operator creates.
pub(crate) const STREAMING_CONNECTION_SPEC_VERSION: &str = "1.0";
/// The `auth.specName` of a streaming connection.
pub(crate) const STREAMING_AUTH_SPEC_NAME: &str = "Streaming Connection";

/// Items asked for per list page. Adobe documents no default and no maximum for the `limit` of a
/// Flow Service list (`GET /connections`, `/flows`, …: aep-openapi-facts.json gives `limit` as a bare
/// integer; only the `POST /connections/search` body caps it at 1000, flow-service-api.md §1.4), so
/// the client asks for a modest page and follows `_links.next` rather than leaning on a large one.
pub(crate) const LIST_PAGE_SIZE: u32 = 100;
/// The page size after Flow Service refused [`LIST_PAGE_SIZE`] with `FLOW-1453-400` ("Invalid query
/// value … provided in query param", the catalogue's code): 10, the documented default `limit` of Data
/// Prep's list (aep-openapi-facts.json, `GET /conversion/mappingSets`). Retried once, and remembered per
/// client when the smaller page is accepted.
pub(crate) const FALLBACK_LIST_PAGE_SIZE: u32 = 10;

/// Separates alternatives in a `property` filter value (`connectionSpec.id==a,b` means a OR b).
pub(crate) const FILTER_VALUE_SEPARATOR: char = ',';

/// Characters left as they are in a query value: RFC 3986 unreserved. Everything else, space included,
/// is percent-encoded (`%20`, never `+`, which some servers read literally).
pub(crate) const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What a streaming inlet accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// XDM envelopes (`header` + `body.xdmEntity`).
    Xdm,
    /// Any JSON, mapped to XDM by Data Prep.
    Raw,
}

impl DataType {
    /// The wire value: `xdm` or `raw`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Xdm => "xdm",
            Self::Raw => "raw",
        }
    }
}

/// A streaming connection to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConnection {
    /// The connection's name in Adobe Experience Platform.
    pub name: String,
    /// Free text shown in the Platform UI; `None` sends none.
    pub description: Option<String>,
    /// `auth.params.sourceId`; Flow Service defaults it to the name, and so does the body builder.
    pub source_id: Option<String>,
    /// What the inlet accepts.
    pub data_type: DataType,
    /// Whether callers of the inlet must send a bearer token.
    pub authentication_required: bool,
}

/// The fields of a connection the operator changes in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionUpdate {
    /// `Some` replaces the name.
    pub name: Option<String>,
    /// `Some(Some(text))` sets the description, `Some(None)` removes it, `None` leaves it.
    pub description: Option<Option<String>>,
}

impl ConnectionUpdate {
    /// True when the update changes nothing (and must not be sent).
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.description.is_none()
    }
}

/// The answer to a create or an update: the connection id and its new etag.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CreatedConnection {
    /// The connection id (a UUID).
    pub id: String,
    /// Opaque version, including its inner double quotes as Flow Service returns them.
    pub etag: String,
}

/// A connection as Flow Service returns it (`items[0]` of a GET, or one item of a list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The connection id (a UUID).
    pub id: String,
    /// The connection's name.
    pub name: String,
    /// Its description, when it has one.
    pub description: Option<String>,
    /// Opaque version for `If-Match`, including its inner double quotes as Flow Service returns it.
    pub etag: String,
    /// `enabled`, `disabled`, or a transient state such as `initializing`.
    pub state: String,
    /// The connection spec it was made from; [`STREAMING_CONNECTION_SPEC_ID`] for a streaming one.
    pub connection_spec_id: String,
    /// The sandbox it lives in, when the response names it.
    pub sandbox_name: Option<String>,
    /// Absent until Adobe has provisioned the inlet.
    pub inlet_id: Option<String>,
    /// The URL clients send data to; absent until the inlet is provisioned.
    pub inlet_url: Option<String>,
    /// `auth.params.sourceId`.
    pub source_id: Option<String>,
    /// `auth.params.dataType` as Flow Service reports it (`xdm` or `raw`), when it does.
    pub data_type: Option<String>,
    /// Whether callers of the inlet must send a bearer token.
    pub authentication_required: bool,
    /// Epoch milliseconds.
    pub created_at: Option<i64>,
    /// Epoch milliseconds.
    pub updated_at: Option<i64>,
}

/// The `POST /connections` body for a streaming connection.
pub(crate) fn create_body(request: &NewConnection) -> Value {
    let source_id = request.source_id.as_deref().unwrap_or(&request.name);
    let mut body = json!({
        "name": request.name,
        "connectionSpec": {
            "id": STREAMING_CONNECTION_SPEC_ID,
            "version": STREAMING_CONNECTION_SPEC_VERSION,
        },
        "auth": {
            "specName": STREAMING_AUTH_SPEC_NAME,
            "params": {
                "sourceId": source_id,
                "dataType": request.data_type.as_str(),
                "name": request.name,
                "authenticationRequired": request.authentication_required,
            },
        },
    });
    if let Some(description) = &request.description {
        body["description"] = Value::String(description.clone());
    }
    body
}

/// The JSON Patch (RFC 6902) array of a `PATCH /connections/{id}`, every operation in the documented
/// shape `{op, path, value}`: the published `PatchInstruction` requires all three
/// (aep-openapi-facts.json `flow.PatchInstruction`). `add` on `/description` sets it whether or not it
/// exists, which `replace` would not (the connection update example, flow-service-api.md §1.5).
///
/// Clearing a description is `replace` with an empty string, not `remove`: no Adobe example shows a
/// `remove`, and a `remove` cannot carry the required `value`; the flow update example replaces
/// `/description` with a string (flow-service-dataflow.md §12.1). The client reads an empty
/// description back as none (see `parse_connection`), so the cleared state is stable.
pub(crate) fn patch_operations(update: &ConnectionUpdate) -> Value {
    let mut operations = Vec::new();
    if let Some(name) = &update.name {
        operations.push(json!({"op": "replace", "path": "/name", "value": name}));
    }
    match &update.description {
        Some(Some(description)) => {
            operations.push(json!({"op": "add", "path": "/description", "value": description}));
        }
        Some(None) => {
            operations.push(json!({"op": "replace", "path": "/description", "value": ""}));
        }
        None => {}
    }
    Value::Array(operations)
}

/// True when `id` is a connection id as Flow Service issues them: a hyphenated UUID. Anything else
/// in a success body means the client is not talking to the service it thinks it is, and the id must
/// not be trusted (nor stored, nor used in a path).
pub(crate) fn is_connection_id(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok()
}

/// Reads `{"id", "etag"}` from a create or update response.
pub(crate) fn parse_created(body: &[u8]) -> Option<CreatedConnection> {
    serde_json::from_slice::<CreatedConnection>(body)
        .ok()
        .filter(|created| !created.id.is_empty())
}

/// Reads `items[0]` of a `GET /connections/{id}` response: `Ok(None)` when `items` is empty,
/// `Err(())` when the body is not the documented shape.
pub(crate) fn parse_get(body: &[u8]) -> Result<Option<Connection>, ()> {
    let value: Value = serde_json::from_slice(body).map_err(drop)?;
    let items = value.get("items").and_then(Value::as_array).ok_or(())?;
    match items.first() {
        None => Ok(None),
        Some(item) => parse_connection(item).map(Some).ok_or(()),
    }
}

/// One page of `GET /connections`: its items and the continuation token of the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListPage {
    pub(crate) items: Vec<Connection>,
    pub(crate) continuation_token: Option<String>,
}

/// Reads a list page. The next page is `_links.next.href`, a relative URL such as
/// `/connections?continuationToken=abc`; `_links: {}` means this was the last page.
pub(crate) fn parse_list_page(body: &[u8]) -> Result<ListPage, String> {
    let (items, continuation_token) = listing::parse_page(body, parse_connection)?;
    Ok(ListPage {
        items,
        continuation_token,
    })
}

/// The `continuationToken` query parameter of a (relative or absolute) next-page href.
pub(crate) fn continuation_token_of(href: &str) -> Option<String> {
    // A relative href needs some base to parse against; only its query matters.
    let base = url::Url::parse("http://next.invalid/").ok()?;
    let url = base.join(href.trim()).ok()?;
    url.query_pairs()
        .find(|(key, _)| key == "continuationToken")
        .map(|(_, value)| value.into_owned())
        .filter(|token| !token.is_empty())
}

/// The query of one page of a lookup by name: `property=name==<name>` and
/// `property=connectionSpec.id==<streaming spec>` (repeated `property` means AND), the page size, and
/// the continuation token of every page after the first.
///
/// A comma in a filter value means OR and cannot be escaped, so a name containing one would match
/// its pieces instead of itself; such a name is looked up by connection spec only, and the caller
/// filters on the exact name (slower, but it never misses the connection and so never leads to a
/// duplicate create).
///
/// Filters are resent with the token rather than following `_links.next.href` verbatim, so that a
/// server whose href carries only the token cannot widen the lookup to every connection.
pub(crate) fn list_by_name_query(
    name: &str,
    page_size: u32,
    continuation_token: Option<&str>,
) -> String {
    listing::filter_query(
        &[
            Filter::new("name==", name),
            Filter::new("connectionSpec.id==", STREAMING_CONNECTION_SPEC_ID),
        ],
        page_size,
        continuation_token,
    )
}

fn parse_connection(item: &Value) -> Option<Connection> {
    let text = |pointer: &str| {
        item.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let params = |key: &str| text(&format!("/auth/params/{key}"));
    let id = text("/id").filter(|id| !id.is_empty())?;
    Some(Connection {
        id,
        name: text("/name").unwrap_or_default(),
        // An empty description is how a cleared one comes back (see `patch_operations`).
        description: text("/description").filter(|description| !description.is_empty()),
        // `version` carries the same value as `etag` in every documented example.
        etag: text("/etag")
            .or_else(|| text("/version"))
            .unwrap_or_default(),
        state: text("/state").unwrap_or_default(),
        connection_spec_id: text("/connectionSpec/id").unwrap_or_default(),
        sandbox_name: text("/sandboxName"),
        inlet_id: params("inletId").filter(|id| !id.is_empty()),
        inlet_url: params("inletUrl").filter(|url| !url.is_empty()),
        source_id: params("sourceId"),
        data_type: params("dataType"),
        authentication_required: match item.pointer("/auth/params/authenticationRequired") {
            Some(Value::Bool(flag)) => *flag,
            Some(Value::String(flag)) => flag.eq_ignore_ascii_case("true"),
            _ => false,
        },
        created_at: item.get("createdAt").and_then(Value::as_i64),
        updated_at: item.get("updatedAt").and_then(Value::as_i64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn new_connection() -> NewConnection {
        NewConnection {
            name: "Web events".into(),
            description: Some("Clickstream".into()),
            source_id: None,
            data_type: DataType::Xdm,
            authentication_required: true,
        }
    }

    #[test]
    fn create_body_is_the_streaming_body_of_the_reference() {
        assert_eq!(
            create_body(&new_connection()),
            json!({
                "name": "Web events",
                "description": "Clickstream",
                "connectionSpec": {"id": "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb", "version": "1.0"},
                "auth": {
                    "specName": "Streaming Connection",
                    "params": {
                        "sourceId": "Web events",
                        "dataType": "xdm",
                        "name": "Web events",
                        "authenticationRequired": true,
                    },
                },
            })
        );
    }

    #[test]
    fn create_body_uses_the_given_source_id_and_omits_a_missing_description() {
        let request = NewConnection {
            description: None,
            source_id: Some("storefront".into()),
            data_type: DataType::Raw,
            authentication_required: false,
            ..new_connection()
        };
        let body = create_body(&request);
        assert_eq!(body.get("description"), None);
        assert_eq!(body["auth"]["params"]["sourceId"], "storefront");
        assert_eq!(body["auth"]["params"]["dataType"], "raw");
        assert_eq!(body["auth"]["params"]["authenticationRequired"], false);
    }

    #[test]
    fn data_type_serializes_lowercase() {
        assert_eq!(serde_json::to_value(DataType::Xdm).unwrap(), json!("xdm"));
        assert_eq!(
            serde_json::from_value::<DataType>(json!("raw")).unwrap(),
            DataType::Raw
        );
    }

    #[test]
    fn patch_operations_cover_name_and_description() {
        let update = ConnectionUpdate {
            name: Some("New".into()),
            description: Some(Some("Text".into())),
        };
        assert_eq!(
            patch_operations(&update),
            json!([
                {"op": "replace", "path": "/name", "value": "New"},
                {"op": "add", "path": "/description", "value": "Text"},
            ])
        );
        let remove = ConnectionUpdate {
            name: None,
            description: Some(None),
        };
        // Every operation carries `value`, as the published PatchInstruction requires.
        assert_eq!(
            patch_operations(&remove),
            json!([{"op": "replace", "path": "/description", "value": ""}])
        );
        assert!(ConnectionUpdate::default().is_empty());
        assert_eq!(patch_operations(&ConnectionUpdate::default()), json!([]));
    }

    #[test]
    fn the_documented_get_response_is_parsed() {
        let body = json!({"items": [{
            "id": "a59d368a-1152-4673-a46e-bd52e8cdb9a9",
            "createdAt": 1669238699119_i64, "updatedAt": 1669238699120_i64,
            "sandboxName": "prod", "imsOrgId": "ORG@AdobeOrg",
            "name": "ACME", "description": "ACME streaming",
            "connectionSpec": {"id": STREAMING_CONNECTION_SPEC_ID, "version": "1.0"},
            "state": "enabled",
            "auth": {"specName": "Streaming Connection", "params": {
                "sourceId": "ACME",
                "inletUrl": "https://dcs.adobedc.net/collection/667b",
                "authenticationRequired": false,
                "inletId": "667b", "dataType": "xdm", "name": "ACME"}},
            "version": "\"f501\"", "etag": "\"f501\"",
            "lastOperation": {"started": 0, "updated": 0, "operation": "create"}
        }]});
        let connection = parse_get(body.to_string().as_bytes()).unwrap().unwrap();
        assert_eq!(
            connection,
            Connection {
                id: "a59d368a-1152-4673-a46e-bd52e8cdb9a9".into(),
                name: "ACME".into(),
                description: Some("ACME streaming".into()),
                etag: "\"f501\"".into(),
                state: "enabled".into(),
                connection_spec_id: STREAMING_CONNECTION_SPEC_ID.into(),
                sandbox_name: Some("prod".into()),
                inlet_id: Some("667b".into()),
                inlet_url: Some("https://dcs.adobedc.net/collection/667b".into()),
                source_id: Some("ACME".into()),
                data_type: Some("xdm".into()),
                authentication_required: false,
                created_at: Some(1669238699119),
                updated_at: Some(1669238699120),
            }
        );
    }

    #[test]
    fn a_sparse_item_still_parses_and_version_stands_in_for_etag() {
        let body = br#"{"items":[{"id":"x","version":"\"v1\""}]}"#;
        let connection = parse_get(body).unwrap().unwrap();
        assert_eq!(connection.etag, "\"v1\"");
        assert_eq!(connection.inlet_url, None);
        assert!(!connection.authentication_required);
        assert_eq!(parse_get(br#"{"items":[]}"#), Ok(None));
        assert_eq!(parse_get(br#"{"nope":1}"#), Err(()));
        assert_eq!(parse_get(br#"{"items":[{"name":"no id"}]}"#), Err(()));
    }

    #[test]
    fn created_responses_need_an_id() {
        let created = parse_created(br#"{"id":"abc","etag":"\"e1\""}"#).unwrap();
        assert_eq!(created.etag, "\"e1\"");
        assert_eq!(parse_created(br#"{"id":"","etag":"e"}"#), None);
        assert_eq!(parse_created(b"{}"), None);
    }

    #[test]
    fn connection_ids_are_hyphenated_uuids() {
        assert!(is_connection_id("a59d368a-1152-4673-a46e-bd52e8cdb9a9"));
        assert!(is_connection_id("A59D368A-1152-4673-A46E-BD52E8CDB9A9"));
        for id in [
            "",
            "abc",
            "a59d368a11524673a46ebd52e8cdb9a9",
            "{a59d368a-1152-4673-a46e-bd52e8cdb9a9}",
            "urn:uuid:a59d368a-1152-4673-a46e-bd52e8cdb9a9",
            "a59d368a-1152-4673-a46e-bd52e8cdb9a9/../x",
            "g59d368a-1152-4673-a46e-bd52e8cdb9a9",
        ] {
            assert!(!is_connection_id(id), "{id}");
        }
    }

    #[test]
    fn list_pages_yield_the_continuation_token() {
        let page = parse_list_page(
            br#"{"items":[{"id":"a"},{"id":"b"}],"_links":{"next":{"href":"/connections?continuationToken=tok%2B1&limit=2"}}}"#,
        )
        .unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.continuation_token.as_deref(), Some("tok+1"));

        let last = parse_list_page(br#"{"items":[],"_links":{}}"#).unwrap();
        assert_eq!(last.continuation_token, None);
        let absolute = parse_list_page(
            br#"{"items":[],"_links":{"next":{"href":"https://platform.adobe.io/data/foundation/flowservice/connections?continuationToken=abc"}}}"#,
        )
        .unwrap();
        assert_eq!(absolute.continuation_token.as_deref(), Some("abc"));
        assert!(
            parse_list_page(br#"{"items":[],"_links":{"next":{"href":"/connections"}}}"#).is_err()
        );
    }

    #[test]
    fn lookup_query_encodes_the_name_and_keeps_the_filter_operator() {
        assert_eq!(
            list_by_name_query("Web events/α=1&x+y", LIST_PAGE_SIZE, None),
            "property=name==Web%20events%2F%CE%B1%3D1%26x%2By\
             &property=connectionSpec.id==bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb&limit=100"
        );
        // A comma would split the name into alternatives: look up by spec only.
        assert_eq!(
            list_by_name_query("a, b", FALLBACK_LIST_PAGE_SIZE, None),
            "property=connectionSpec.id==bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb&limit=10"
        );
        assert!(
            list_by_name_query("n", LIST_PAGE_SIZE, Some("a b"))
                .ends_with("&continuationToken=a%20b")
        );
    }
}
