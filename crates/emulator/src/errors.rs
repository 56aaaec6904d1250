//! The Adobe error bodies (reference §2, §3.3, §4.1), one constructor per documented condition, so that every
//! handler answers with exactly the shapes a client written from Adobe's docs expects.
//!
//! Four families, because four different Adobe components answer: the adobe.io gateway (`error_code`), Flow
//! Service (`FLOW-xxxx-yyy` problem bodies), IMS (OAuth `error`) and the streaming inlet (DCS problem bodies).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Prefix of the `type` of every Flow Service problem body.
pub(crate) const FLOW_ERROR_TYPE_PREFIX: &str = "https://ns.adobe.com/aep/errors/FLOW-";
/// Header carrying the id that Flow problem bodies repeat in `report.request-id`.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";
/// `type` of the inlet's 401 (seed document, reference §3.3).
pub(crate) const INLET_AUTHORIZATION_TYPE: &str =
    "https://ns.adobe.com/adobecloud/problem/data-collection-service-authorization";
/// `type` of the inlet's other problem bodies (reference §3.3, sync validation).
pub(crate) const INLET_PROBLEM_TYPE: &str =
    "http://ns.adobe.com/adobecloud/problem/data-collection-service/inlet";

tokio::task_local! {
    /// The id of the request being served, set by the front door around each handler so that error bodies can
    /// repeat it without every handler threading it through.
    pub(crate) static REQUEST_ID: String;
}

/// The current request's id, or a fresh one outside a request (unit tests).
pub(crate) fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string())
}

/// An adobe.io gateway rejection: `{"error_code": "<6 digits>", "message": …}`. The gateway answers before
/// Flow Service sees the request (token, API key, organization), so these never carry a request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GatewayError {
    /// 400, 401 or 403.
    pub(crate) status: StatusCode,
    /// The six-digit `error_code`, e.g. `"403010"`.
    pub(crate) code: &'static str,
    /// The gateway's fixed `message` text, verbatim.
    pub(crate) message: &'static str,
}

impl GatewayError {
    pub(crate) const TOKEN_MISSING: Self =
        Self::new(StatusCode::FORBIDDEN, "403010", "Oauth token is missing.");
    pub(crate) const TOKEN_INVALID: Self = Self::new(
        StatusCode::UNAUTHORIZED,
        "401013",
        "Oauth token is not valid",
    );
    pub(crate) const API_KEY_MISSING: Self =
        Self::new(StatusCode::FORBIDDEN, "403000", "Api Key is required");
    pub(crate) const API_KEY_INVALID: Self =
        Self::new(StatusCode::FORBIDDEN, "403003", "Api Key is invalid");
    pub(crate) const ORG_MISSING: Self =
        Self::new(StatusCode::BAD_REQUEST, "400003", "Missing header");
    pub(crate) const ORG_NOT_ENTITLED: Self =
        Self::new(StatusCode::FORBIDDEN, "403025", "Profile is not valid");

    const fn new(status: StatusCode, code: &'static str, message: &'static str) -> Self {
        Self {
            status,
            code,
            message,
        }
    }
}

/// An error answer of Flow Service itself: a problem body with `type` `…/FLOW-<code>-<status>`, a title, the
/// message and a `report` that repeats the request id. (Named apart from the client's `aep_flow::FlowError`,
/// which is the client's reading of such an answer, among other failures.)
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlowServiceProblem {
    /// The HTTP status, also the `<status>` part of `type`.
    pub(crate) status: StatusCode,
    /// The four-digit catalogue code, e.g. `"1101"`.
    pub(crate) code: &'static str,
    /// The catalogue's short `title`, e.g. `"Resource not found"`.
    pub(crate) title: &'static str,
    /// The text with this request's details (ids, parameter names) filled in, repeated as `errorMessage`,
    /// `errorDetails` and `report.detailed-message`.
    pub(crate) message: String,
    /// For not-found errors: the id that was looked up, repeated in `report.id` as Flow Service does.
    pub(crate) resource_id: Option<String>,
}

/// The Flow Service problem envelope (reference §2.5) with `report.request-id` set to the current request's id;
/// `resource` (`report.type`, `report.id`) names the resource a not-found answer is about.
pub(crate) fn flow_problem_body(
    status: StatusCode,
    code: &str,
    title: &str,
    message: &str,
    resource: Option<(&str, &str)>,
) -> Value {
    let mut report = json!({ "detailed-message": message, "request-id": current_request_id() });
    if let Some((kind, id)) = resource {
        report["id"] = json!(id);
        report["type"] = json!(kind);
    }
    json!({
        "type": format!("{FLOW_ERROR_TYPE_PREFIX}{code}-{}", status.as_u16()),
        "title": title,
        "status": status.as_u16(),
        "report": report,
        "errorMessage": message,
        "errorDetails": message,
    })
}

impl FlowServiceProblem {
    fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            message: message.into(),
            resource_id: None,
        }
    }

    /// `1101-404`: no connection with this id in the caller's organization and sandbox.
    pub(crate) fn not_found(id: &str) -> Self {
        Self {
            resource_id: Some(id.to_owned()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "1101",
                "Resource not found",
                format!(
                    "The requested connections resource {id} is not found. Resource with given id does not exist."
                ),
            )
        }
    }

    /// `1403-400`: PATCH without `If-Match`.
    pub(crate) fn if_match_missing() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1403",
            "Header is missing",
            "The header 'If-Match' is missing in the request. Provide the header and try again.",
        )
    }

    /// `1404-412`: `If-Match` names an older version than the stored one.
    pub(crate) fn version_mismatch(supplied: &str, current: &str) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "1404",
            "Version not matching",
            format!(
                "The supplied version '{supplied}' does not match the current version on entity '{current}'. \
                 Make sure the supplied version matches the current version of the entity and try again."
            ),
        )
    }

    /// `1405-400`: POST or PATCH with no body.
    pub(crate) fn empty_body() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1405",
            "Invalid request",
            "The request body cannot be null or empty. Provide a request body and try again.",
        )
    }

    /// `1401-400`: `limit` and `count` together.
    pub(crate) fn limit_with_count() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1401",
            "Invalid request",
            "The limit and count parameters cannot be given together in the same request. \
             Provide either the limit or the count parameter and try again.",
        )
    }

    /// `1413-400`: missing or unknown `connectionSpec.id`.
    pub(crate) fn invalid_spec_id(detail: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1413",
            "Invalid request",
            format!(
                "The provided spec id is invalid: {detail}. Provide a valid spec id and try again."
            ),
        )
    }

    /// `1414-400`: a PATCH touching `connectionSpec`.
    pub(crate) fn spec_not_updatable() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1414",
            "Invalid request",
            "The connection spec of a connection cannot be updated.",
        )
    }

    /// `1415-400`: `auth.specName` missing or not an auth spec of the connection spec.
    pub(crate) fn auth_spec_not_found(spec_name: Option<&str>, spec_id: &str) -> Self {
        let shown = spec_name.unwrap_or("");
        Self::new(
            StatusCode::BAD_REQUEST,
            "1415",
            "Invalid request",
            format!("Auth spec '{shown}' not found for connection spec id {spec_id}."),
        )
    }

    /// `1455-400`: a PATCH document that is not a valid patch for a connection.
    pub(crate) fn invalid_patch(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1455",
            "Invalid request",
            format!("An error has occurred while validating patch instructions: {detail}"),
        )
    }

    /// A malformed or invalid request body: `1000-400` "Bad request", the generic code of the sources error
    /// catalogue (help/sources/errors/sources-errors.md). The Flow Service catalogue has no code for it, and
    /// its `1400` is a 500 (internal error).
    pub(crate) fn invalid_body(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1000",
            "Bad request",
            format!("The request body is invalid: {detail}"),
        )
    }

    /// `1449-400`: a `property` filter on a field that cannot be a path.
    pub(crate) fn invalid_filter_field(field: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1449",
            "Invalid request",
            format!("Invalid field '{field}' in the filter."),
        )
    }

    /// `1450-400`: a `property` filter whose operator is not one of `== != > >= < <= ~`.
    pub(crate) fn invalid_filter_operator(expression: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1450",
            "Invalid request",
            format!("Invalid operator in the filter '{expression}'."),
        )
    }

    /// `1451-400`: a query parameter the operation does not know ("Invalid params testParam provided in query
    /// params").
    pub(crate) fn unknown_parameter(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1451",
            "Invalid request",
            format!("Invalid params {name} provided in query params."),
        )
    }

    /// `1453-400`: a query parameter with a value the operation does not take ("Invalid query value
    /// createdAt== provided in query param"): a `limit` out of range, a foreign `continuationToken`.
    pub(crate) fn invalid_parameter(name: &str, detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1453",
            "Invalid request",
            format!("Invalid query value {name} provided in query param: {detail}"),
        )
    }

    /// `1440-400`: a filter operator the service does not implement ("Operator '~' not implemented").
    pub(crate) fn operator_not_implemented(operator: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1440",
            "Invalid request",
            format!("Operator '{operator}' not implemented."),
        )
    }

    /// `1416-400`: the connection is in a state (`updating`, `disabling`, `enabled-finalizing`,
    /// `delete-finalizing`, …) in which it can be neither updated nor deleted. The catalogue's wording
    /// (flow-service-errors.md, [S8] of flow-service-api.md §1.5/§1.6).
    pub(crate) fn state_forbids_change() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1416",
            "Invalid request",
            "Delete or Update can only be applied on connection with enabled, disabled or initializing state.",
        )
    }

    /// `1445-400`: PATCH of connections is not enabled for the organization.
    pub(crate) fn patch_not_enabled() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1445",
            "Invalid request",
            "PATCH Connection Feature not enabled.",
        )
    }

    /// `1432-400`: a bad `orderby`.
    pub(crate) fn invalid_orderby(value: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "1432",
            "Invalid request",
            format!(
                "Invalid orderby '{value}'. Use a single field, optionally prefixed with '+' or '-'."
            ),
        )
    }

    /// `2105-400`: no `x-sandbox-name`.
    pub(crate) fn sandbox_missing() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "2105",
            "Bad request",
            "The header x-sandbox-name is missing in the request. Provide the header and try again.",
        )
    }

    /// `2100-404`: `x-sandbox-name` names no sandbox of the organization.
    pub(crate) fn sandbox_not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "2100",
            "Sandbox not found",
            format!(
                "Sandbox '{name}' is not found. Verify the x-sandbox-name header and try again."
            ),
        )
    }

    /// `1102-500`: the emulator itself failed (e.g. it could not write its state file).
    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "1102",
            "Internal Error",
            format!("An internal error has occurred: {detail}"),
        )
    }

    /// The body, with `report.request-id` set to the current request's id.
    pub(crate) fn body(&self) -> Value {
        let resource = self.resource_id.as_deref().map(|id| ("connections", id));
        flow_problem_body(self.status, self.code, self.title, &self.message, resource)
    }

    /// The generic Flow body an injected fault answers with when its rule gives none.
    pub(crate) fn for_status(status: StatusCode) -> Self {
        let (code, title) = match status.as_u16() {
            503 => ("1103", "Service Unavailable"),
            504 => ("1104", "Gateway Timeout"),
            s if s >= 500 => ("1102", "Internal Error"),
            // The generic codes of the sources error catalogue (help/sources/errors/sources-errors.md).
            400 => ("1000", "Bad request"),
            401 => ("1001", "Unauthorized"),
            403 => ("1002", "Forbidden"),
            404 => ("1003", "Resource not found"),
            408 => ("1006", "Request Timeout"),
            412 => ("1404", "Version not matching"),
            415 => ("1004", "Unsupported Media Type"),
            // No catalogue has a code for the others (429 included: Adobe documents no 429 for Flow
            // Service): `0000`, which no catalogue uses, rather than a code that means something else.
            _ => ("0000", "Injected fault"),
        };
        Self::new(
            status,
            code,
            title,
            format!("Injected fault: HTTP {}", status.as_u16()),
        )
    }
}

/// Everything a route can answer with instead of success.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ApiError {
    /// The adobe.io gateway rejected the headers.
    Gateway(GatewayError),
    /// Missing or non-JSON `Content-Type` on POST/PATCH: the gateway's `BadRequestError` body.
    ContentType,
    /// Flow Service rejected the request.
    Flow(FlowServiceProblem),
    /// IMS rejected a token request: `{"error", "error_description"}`.
    Ims {
        status: StatusCode,
        error: &'static str,
        description: String,
    },
    /// The inlet refused a message; the body is the inlet's own problem shape.
    Inlet { status: StatusCode, body: Value },
}

impl ApiError {
    /// The inlet's 401, exactly as the seed document shows it (including the string `"status"`).
    pub(crate) fn inlet_unauthorized() -> Self {
        Self::Inlet {
            status: StatusCode::UNAUTHORIZED,
            body: json!({
                "type": INLET_AUTHORIZATION_TYPE,
                "status": "401",
                "title": "Authorization",
                "report": { "message": "[id] Ims service token is empty" }
            }),
        }
    }

    /// An inlet problem body (404, 400, 413): same `type` as the documented sync-validation error.
    pub(crate) fn inlet_problem(status: StatusCode, title: &str, message: String) -> Self {
        Self::Inlet {
            status,
            body: json!({
                "type": INLET_PROBLEM_TYPE,
                "status": status.as_u16(),
                "title": title,
                "report": { "message": message }
            }),
        }
    }

    /// The inlet's 404: unknown inlet, deleted connection, or not provisioned yet.
    pub(crate) fn inlet_not_found(inlet_id: &str) -> Self {
        Self::inlet_problem(
            StatusCode::NOT_FOUND,
            "Not Found",
            format!("inletId: [{inlet_id}] The inlet does not exist."),
        )
    }

    /// The HTTP status this error answers with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Gateway(e) => e.status,
            Self::ContentType => StatusCode::BAD_REQUEST,
            Self::Flow(e) => e.status,
            Self::Ims { status, .. } | Self::Inlet { status, .. } => *status,
        }
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Value {
        match self {
            Self::Gateway(e) => json!({ "error_code": e.code, "message": e.message }),
            Self::ContentType => json!({
                "type": "/placeholder/type/uri",
                "status": 400,
                "title": "BadRequestError",
                "detail": "A valid content-type must be specified"
            }),
            Self::Flow(e) => e.body(),
            Self::Ims {
                error, description, ..
            } => json!({ "error": error, "error_description": description }),
            Self::Inlet { body, .. } => body.clone(),
        }
    }
}

impl From<FlowServiceProblem> for ApiError {
    fn from(error: FlowServiceProblem) -> Self {
        Self::Flow(error)
    }
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        Self::Gateway(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if matches!(self, Self::Ims { .. }) {
            forbid_caching(&mut response);
        }
        response
    }
}

/// OAuth responses must not be cached (RFC 6749 §5.1), errors included.
pub(crate) fn forbid_caching(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_problem_body_has_the_documented_fields() {
        let body = FlowServiceProblem::not_found("abc").body();
        assert_eq!(
            body["type"],
            "https://ns.adobe.com/aep/errors/FLOW-1101-404"
        );
        assert_eq!(body["status"], 404);
        assert_eq!(body["title"], "Resource not found");
        assert!(
            body["report"]["detailed-message"]
                .as_str()
                .unwrap()
                .contains("abc")
        );
        assert!(body["report"]["request-id"].is_string());
        assert_eq!(body["errorMessage"], body["errorDetails"]);
    }

    #[test]
    fn inlet_401_has_a_string_status() {
        let body = ApiError::inlet_unauthorized().body();
        assert_eq!(body["status"], "401");
        assert_eq!(body["report"]["message"], "[id] Ims service token is empty");
    }
}
