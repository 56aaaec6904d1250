//! [`FlowClient`]: the connection operations, with authentication, rate limiting, a concurrency cap,
//! retries of reads and metrics hooks around every request.
//!
//! Writes are sent once (plus one resend after a 401, when a fresh token is minted, because a 401
//! means the request was not processed): the reconciler owns the retry of writes, since only it can
//! look before writing again. Reads are retried here with backoff, honouring `Retry-After`.
//!
//! A 429 closes the door for the whole integration (see the `throttle` module): until its
//! `Retry-After` has passed, every call with the same credentials fails fast without sending
//! anything, and a read's own retries sleep past the window rather than into it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use http::{HeaderValue, Method};
use url::Url;

use super::connections::{
    self, Connection, ConnectionUpdate, CreatedConnection, NewConnection,
    STREAMING_CONNECTION_SPEC_ID,
};
use super::credentials::Credentials;
use super::error::{ErrorDetails, FlowError, FlowErrorKind};
use super::http::{
    CONTENT_TYPE_JSON, HEADER_API_KEY, HEADER_ORG_ID, HEADER_REQUEST_ID, HEADER_SANDBOX_NAME,
    Response, build_client, execute,
};
use super::observer::{FlowObserver, NoopObserver, OUTCOME_ERROR, Operation, outcome_for_status};
use super::throttle::{Integration, Throttle};
use super::token::{AccessToken, TokenProvider};

mod dataflow_calls;

/// Adobe's production Platform gateway.
pub(crate) const DEFAULT_PLATFORM_URL: &str = "https://platform.adobe.io";
/// Adobe's IMS endpoint for server-to-server tokens.
pub(crate) const DEFAULT_IMS_URL: &str = "https://ims-na1.adobelogin.com";
/// Flow Service calls per second across the process, unless configured.
pub(crate) const DEFAULT_QPS: f64 = 10.0;
/// Flow Service calls in flight at once, unless configured.
pub(crate) const DEFAULT_MAX_CONCURRENCY: usize = 8;
/// Time allowed to open a connection, unless configured.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a whole request, body included, unless configured.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where Flow Service lives under the platform URL.
const FLOW_SERVICE_PATH: &str = "data/foundation/flowservice/";
/// Where Catalog lives under the platform URL.
const CATALOG_PATH: &str = "data/foundation/catalog/";
/// Where Data Prep (mapping sets) lives under the platform URL: `/conversion`, as the API reference
/// has it, not the tutorial's shorter `/data/foundation/mappingSets`.
const CONVERSION_PATH: &str = "data/foundation/conversion/";
/// Where the token endpoint lives under the IMS URL.
const IMS_TOKEN_PATH: &str = "ims/token/v3";

/// Retries of a failed read after the first attempt. Few, because the reconciler retries too, and
/// the client should not sit on a worker for long.
const READ_RETRIES: usize = 3;
const READ_RETRY_MIN_DELAY: Duration = Duration::from_millis(200);
const READ_RETRY_MAX_DELAY: Duration = Duration::from_secs(5);
/// A 429 asking for more than this is handed to the caller at once: its per-object backoff (never
/// sooner than `Retry-After`) spaces the attempts out further than retries in here would.
const RATE_LIMITED_READ_MAX_WAIT: Duration = Duration::from_secs(2);
/// A `Retry-After` longer than this is handed to the caller (which can requeue) instead of waited out.
const READ_RETRY_MAX_WAIT: Duration = Duration::from_secs(10);
/// Stops a lookup that a misbehaving server pages forever (a million objects at 100 a page).
const MAX_LIST_PAGES: usize = 10_000;

/// How the client reaches Adobe and how hard it may push.
#[derive(Clone)]
pub struct FlowClientConfig {
    /// `--platform-url`: the gateway in front of Flow Service.
    pub platform_url: Url,
    /// `--ims-url`: where tokens are minted (`{ims_url}/ims/token/v3`).
    pub ims_url: Url,
    /// `--flow-service-qps`: requests per second for the whole process (every attempt, retries
    /// included), IMS token requests counted with Flow Service calls: a broken Secret must not be
    /// able to hammer IMS faster than the operator may call Flow Service. `<= 0` is unlimited.
    pub qps: f64,
    /// Requests in flight at once, IMS token requests included; `0` is unlimited.
    pub max_concurrency: usize,
    /// How long establishing a connection (TCP and TLS) may take.
    pub connect_timeout: Duration,
    /// Covers a whole request: connect, send, and reading the response body.
    pub request_timeout: Duration,
    /// `--ca-file`: extra trusted CA certificates (PEM), added to the built-in roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Receives one call per HTTP request, for metrics.
    pub observer: Option<Arc<dyn FlowObserver>>,
}

impl Default for FlowClientConfig {
    fn default() -> Self {
        Self {
            platform_url: Url::parse(DEFAULT_PLATFORM_URL)
                .expect("the default platform URL parses"),
            ims_url: Url::parse(DEFAULT_IMS_URL).expect("the default IMS URL parses"),
            qps: DEFAULT_QPS,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            extra_ca_pem: None,
            observer: None,
        }
    }
}

impl std::fmt::Debug for FlowClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowClientConfig")
            .field("platform_url", &self.platform_url.as_str())
            .field("ims_url", &self.ims_url.as_str())
            .field("qps", &self.qps)
            .field("max_concurrency", &self.max_concurrency)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("extra_ca", &self.extra_ca_pem.is_some())
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// Who is calling and where: the credentials and the sandbox (`x-sandbox-name`) of one request.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Whose token and headers (`x-api-key`, `x-gw-ims-org-id`) the request carries.
    pub credentials: &'a Credentials,
    /// The sandbox the request acts in, sent as `x-sandbox-name`.
    pub sandbox: &'a str,
}

/// The Flow Service and IMS client. Cheap to clone; clones share the token cache, rate limit and
/// concurrency cap.
#[derive(Clone)]
pub struct FlowClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `{platform}/data/foundation/flowservice/`, always with its trailing slash.
    flow_base: Url,
    /// `{platform}/data/foundation/catalog/`, always with its trailing slash.
    catalog_base: Url,
    /// `{platform}/data/foundation/conversion/`, always with its trailing slash.
    conversion_base: Url,
    tokens: TokenProvider,
    /// Shared with `tokens`, so that IMS requests count against the same limits.
    throttle: Arc<Throttle>,
    observer: Arc<dyn FlowObserver>,
    /// The `limit` of every list page: [`connections::LIST_PAGE_SIZE`], or the fallback for good once
    /// Flow Service refused it (`FLOW-1453-400`) and took the fallback. Shared by clones, like the
    /// throttle.
    page_size: AtomicU32,
}

impl std::fmt::Debug for FlowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowClient")
            .field("flow_base", &self.inner.flow_base.as_str())
            .finish_non_exhaustive()
    }
}

/// An HTTP request before it is authorized: everything but the token.
struct Call<'a> {
    operation: Operation,
    scope: &'a Scope<'a>,
    method: Method,
    url: Url,
    body: Option<Bytes>,
    if_match: Option<&'a str>,
}

impl FlowClient {
    /// Builds the client. Fails on a URL that cannot carry a path or a CA file that is not PEM.
    pub fn new(config: FlowClientConfig) -> Result<Self, FlowError> {
        let flow_base = join_base(&config.platform_url, FLOW_SERVICE_PATH, "platform")?;
        let catalog_base = join_base(&config.platform_url, CATALOG_PATH, "platform")?;
        let conversion_base = join_base(&config.platform_url, CONVERSION_PATH, "platform")?;
        let token_url = join_base(&config.ims_url, IMS_TOKEN_PATH, "IMS")?;
        let http = build_client(
            config.connect_timeout,
            config.request_timeout,
            config.extra_ca_pem.as_deref(),
        )?;
        let observer = config
            .observer
            .unwrap_or_else(|| Arc::new(NoopObserver) as Arc<dyn FlowObserver>);
        let throttle = Arc::new(Throttle::new(config.qps, config.max_concurrency));
        Ok(Self {
            inner: Arc::new(Inner {
                tokens: TokenProvider::new(
                    http.clone(),
                    token_url,
                    Arc::clone(&observer),
                    Arc::clone(&throttle),
                ),
                http,
                flow_base,
                catalog_base,
                conversion_base,
                throttle,
                observer,
                page_size: AtomicU32::new(connections::LIST_PAGE_SIZE),
            }),
        })
    }

    /// `POST /connections` with the streaming body. Not retried: on an error whose
    /// [`FlowError::maybe_committed`] is true, look the connection up by name before creating again.
    pub async fn create_connection(
        &self,
        scope: &Scope<'_>,
        request: &NewConnection,
    ) -> Result<CreatedConnection, FlowError> {
        let body = connections::create_body(request);
        self.create_flow_object(scope, self.connections_url(), &body)
            .await
    }

    /// `GET /connections/{id}`: an error of kind [`FlowErrorKind::NotFound`] when it does not exist.
    pub async fn get_connection(
        &self,
        scope: &Scope<'_>,
        id: &str,
    ) -> Result<Connection, FlowError> {
        let operation = Operation::Get;
        require_id(operation, id)?;
        let response = self
            .read(operation, scope, || self.connection_url(id))
            .await?;
        match connections::parse_get(&response.body) {
            // The id read back must be the one asked for, and a UUID unless the caller asked for
            // exactly that id (then the response teaches the caller nothing it did not hold).
            Ok(Some(connection)) if !connection.id.eq_ignore_ascii_case(id) => {
                let problem = if connections::is_connection_id(&connection.id) {
                    "a connection with another `id` than the one requested"
                } else {
                    "a connection whose `id` is not a UUID"
                };
                Err(unusable_success(operation, &response, problem))
            }
            Ok(Some(connection)) => Ok(connection),
            // An empty `items` is how some list-shaped endpoints say "no such id".
            Ok(None) => Err(FlowError::new(
                FlowErrorKind::NotFound,
                operation,
                ErrorDetails {
                    status: Some(response.status),
                    request_id: response.header(HEADER_REQUEST_ID).map(str::to_owned),
                    ..ErrorDetails::transport("the response has no items")
                },
            )),
            Err(()) => Err(unusable_success(
                operation,
                &response,
                "no `items` array with a connection",
            )),
        }
    }

    /// Every streaming connection named exactly `name`, following every page.
    ///
    /// The server filters with `property=name==<name>` and `property=connectionSpec.id==<streaming
    /// spec>`; the result is filtered again here on exact equality, because Flow Service's filter
    /// language reads a comma as OR (a name with a comma is therefore looked up by spec only).
    pub async fn find_connections_by_name(
        &self,
        scope: &Scope<'_>,
        name: &str,
    ) -> Result<Vec<Connection>, FlowError> {
        self.list_all(
            scope,
            self.connections_url(),
            |page_size, token| connections::list_by_name_query(name, page_size, token),
            |body| {
                connections::parse_list_page(body).map(|page| (page.items, page.continuation_token))
            },
            |connection: &Connection| {
                connection.name == name
                    && (connection.connection_spec_id.is_empty()
                        || connection.connection_spec_id == STREAMING_CONNECTION_SPEC_ID)
            },
        )
        .await
    }

    /// `PATCH /connections/{id}` with `If-Match: <etag>` and a JSON Patch of the changed fields.
    /// A stale etag gives [`FlowErrorKind::PreconditionFailed`]: read again, re-apply, retry.
    pub async fn update_connection(
        &self,
        scope: &Scope<'_>,
        id: &str,
        etag: &str,
        update: &ConnectionUpdate,
    ) -> Result<CreatedConnection, FlowError> {
        let operation = Operation::Update;
        require_id(operation, id)?;
        if update.is_empty() {
            // Flow Service would reject an empty patch (1455-400); say so without a round trip.
            return Err(FlowError::new(
                FlowErrorKind::Invalid,
                operation,
                ErrorDetails::transport("the update changes nothing"),
            ));
        }
        let body = json_bytes(&connections::patch_operations(update));
        let response = self
            .send(Call {
                operation,
                scope,
                method: Method::PATCH,
                url: self.connection_url(id),
                body: Some(body),
                if_match: Some(etag),
            })
            .await?;
        connections::parse_created(&response.body)
            .ok_or_else(|| unusable_success(operation, &response, "no `id` and `etag`"))
    }

    /// `DELETE /connections/{id}`. A 404 is success: the connection is already gone.
    pub async fn delete_connection(&self, scope: &Scope<'_>, id: &str) -> Result<(), FlowError> {
        require_id(Operation::Delete, id)?;
        self.delete_at(scope, self.connection_url(id)).await
    }

    /// Makes sure these credentials have a usable token (the cached one, or one minted now, within
    /// the same rate limit and failure memory as every other call). A caller about to record that
    /// it is creating something checks this first, so that credentials IMS rejects never get that far.
    pub async fn authenticate(&self, credentials: &Credentials) -> Result<(), FlowError> {
        self.inner.tokens.token(credentials).await.map(|_| ())
    }

    /// Drops the cached token of these credentials (their Secret changed or was deleted).
    pub fn forget_token(&self, credentials: &Credentials) {
        self.inner.tokens.forget(credentials);
    }

    /// The `limit` list pages are asked for now.
    fn page_size(&self) -> u32 {
        self.inner.page_size.load(Ordering::Relaxed)
    }

    /// The smaller `limit` to retry with after Flow Service refused `refused`; `None` when there is
    /// nothing smaller to try.
    fn smaller_page_size(refused: u32) -> Option<u32> {
        (refused > connections::FALLBACK_LIST_PAGE_SIZE)
            .then_some(connections::FALLBACK_LIST_PAGE_SIZE)
    }

    /// Keeps `page_size` for every later list of this client (and its clones): Flow Service refused
    /// the larger one and took this one.
    fn remember_page_size(&self, page_size: u32) {
        self.inner.page_size.fetch_min(page_size, Ordering::Relaxed);
    }

    fn connections_url(&self) -> Url {
        self.inner
            .flow_base
            .join("connections")
            .expect("a relative path joins onto a base URL")
    }

    fn connection_url(&self, id: &str) -> Url {
        let mut url = self.connections_url();
        // Pushing a segment percent-encodes it, so an id cannot change the path.
        url.path_segments_mut()
            .expect("the base URL was checked to carry a path")
            .push(id);
        url
    }

    /// A read, retried on transient failures with exponential backoff and jitter; a `Retry-After` is
    /// waited out when it is short, otherwise handed to the caller.
    ///
    /// Inside a 429 window the read fails fast. Its retries never wake up inside a window (whether
    /// this read's 429 or another call's opened it), and a failed token request is handed to the
    /// caller at once: the token cache already holds IMS back, and retrying here would only wait.
    async fn read(
        &self,
        operation: Operation,
        scope: &Scope<'_>,
        url: impl Fn() -> Url,
    ) -> Result<Response, FlowError> {
        let integration = Integration::of(scope.credentials);
        self.inner.throttle.check(operation, &integration)?;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(READ_RETRY_MIN_DELAY)
            .with_max_delay(READ_RETRY_MAX_DELAY)
            .with_max_times(READ_RETRIES)
            .with_jitter()
            .build();
        loop {
            let error = match self
                .send(Call {
                    operation,
                    scope,
                    method: Method::GET,
                    url: url(),
                    body: None,
                    if_match: None,
                })
                .await
            {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            let retryable = matches!(
                error.kind(),
                FlowErrorKind::Unavailable | FlowErrorKind::RateLimited
            ) && error.operation() == Some(operation);
            if !retryable {
                return Err(error);
            }
            let Some(backoff_delay) = backoff.next() else {
                return Err(error);
            };
            let window = self
                .inner
                .throttle
                .remaining(&integration)
                .unwrap_or_default();
            let delay = error.retry_after().unwrap_or(backoff_delay).max(window);
            let most = if error.kind() == FlowErrorKind::RateLimited {
                RATE_LIMITED_READ_MAX_WAIT
            } else {
                READ_RETRY_MAX_WAIT
            };
            if delay > most {
                return Err(error);
            }
            tracing::debug!(
                operation = operation.as_str(),
                kind = ?error.kind(),
                delay_ms = delay.as_millis() as u64,
                "retrying a Flow Service read"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends a call with a token, minting a new token and resending once if Flow Service answers 401
    /// (the token expired or was revoked early). Static tokens cannot be re-minted.
    async fn send(&self, call: Call<'_>) -> Result<Response, FlowError> {
        let credentials = call.scope.credentials;
        let mut reminted = false;
        loop {
            let token = self.inner.tokens.token(credentials).await?;
            match self.send_once(&call, &token).await {
                Err(error)
                    if error.kind() == FlowErrorKind::Unauthorized
                        && !reminted
                        && !credentials.uses_static_token() =>
                {
                    tracing::debug!(
                        operation = call.operation.as_str(),
                        client_id = credentials.client_id(),
                        "Flow Service rejected the token; minting a new one"
                    );
                    self.inner.tokens.invalidate(credentials, &token);
                    reminted = true;
                }
                result => return result,
            }
        }
    }

    async fn send_once(&self, call: &Call<'_>, token: &AccessToken) -> Result<Response, FlowError> {
        let operation = call.operation;
        let credentials = call.scope.credentials;
        let sandbox = HeaderValue::from_str(call.scope.sandbox).map_err(|_| {
            FlowError::new(
                FlowErrorKind::Invalid,
                operation,
                ErrorDetails::transport("the sandbox name is not a valid HTTP header value"),
            )
        })?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| {
                FlowError::new(
                    FlowErrorKind::Unauthorized,
                    operation,
                    ErrorDetails::transport("the access token is not a valid HTTP header value"),
                )
            })?;
        // Keeps the value out of hyper's debug output and HPACK tables.
        authorization.set_sensitive(true);

        // Our own id for the attempt, for the logs and for an error that has no response to take
        // Adobe's request id from (a timeout). Not sent: no published operation declares an
        // `x-request-id` request header (aep-openapi-facts.json), and the client depends on nothing
        // undocumented; Adobe's own id comes back in the response (`x-request-id`, `report.request-id`).
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone())
            .header(http::header::AUTHORIZATION, authorization)
            .header(HEADER_API_KEY, credentials.api_key())
            .header(HEADER_ORG_ID, credentials.org_id())
            .header(HEADER_SANDBOX_NAME, sandbox)
            .header(http::header::ACCEPT, CONTENT_TYPE_JSON);
        if let Some(etag) = call.if_match {
            let if_match = HeaderValue::from_str(etag).map_err(|_| {
                FlowError::new(
                    FlowErrorKind::Invalid,
                    operation,
                    ErrorDetails::transport("the etag is not a valid HTTP header value"),
                )
            })?;
            request = request.header(http::header::IF_MATCH, if_match);
        }
        if let Some(body) = &call.body {
            request = request
                .header(http::header::CONTENT_TYPE, CONTENT_TYPE_JSON)
                .body(body.clone());
        }

        let integration = Integration::of(credentials);
        let _permit = self.inner.throttle.admit(operation, &integration).await?;
        let started = std::time::Instant::now();
        let result = execute(operation, request).await;
        let elapsed = started.elapsed();
        let outcome = match &result {
            Ok(response) => outcome_for_status(response.status),
            Err(_) => OUTCOME_ERROR,
        };
        self.inner.observer.on_request(operation, outcome, elapsed);

        let secrets = || {
            credentials
                .secret_values()
                .chain(std::iter::once(token.expose()))
        };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(
                    operation = operation.as_str(),
                    kind = ?error.kind(),
                    elapsed_ms = elapsed.as_millis() as u64,
                    "Flow Service request failed without a response"
                );
                // Transport messages come from our own stack and never contain credentials, but scrub
                // them anyway: the cost is nil and a future change to an error's text cannot leak one.
                return Err(error
                    .redact(secrets())
                    .with_fallback_request_id(&request_id));
            }
        };
        tracing::debug!(
            operation = operation.as_str(),
            status = response.status,
            elapsed_ms = elapsed.as_millis() as u64,
            request_id = response.header(HEADER_REQUEST_ID).unwrap_or(&request_id),
            "Flow Service request"
        );
        let window =
            self.inner
                .throttle
                .record(&integration, response.status, response.retry_after());
        if response.is_success() {
            return Ok(response);
        }
        let error = response
            .into_error(operation, secrets())
            .with_fallback_request_id(&request_id);
        Err(match (window, error.retry_after()) {
            // A 429 without `Retry-After`: the caller waits as long as this client will.
            (Some(window), None) => error.with_retry_after(window),
            _ => error,
        })
    }
}

fn join_base(base: &Url, path: &str, which: &str) -> Result<Url, FlowError> {
    if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
        return Err(FlowError::configuration(format!(
            "the {which} URL {base} must be an http or https URL"
        )));
    }
    let mut base = base.clone();
    // Without a trailing slash, `join` would replace the last path segment instead of appending.
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.set_query(None);
    base.set_fragment(None);
    base.join(path).map_err(|error| {
        FlowError::configuration(format!(
            "the {which} URL {base} cannot be extended with {path}: {error}"
        ))
    })
}

/// An empty id would address the collection (`/connections/`) instead of one connection.
fn require_id(operation: Operation, id: &str) -> Result<(), FlowError> {
    if id.trim().is_empty() {
        return Err(FlowError::new(
            FlowErrorKind::Invalid,
            operation,
            ErrorDetails::transport("the connection id is empty"),
        ));
    }
    Ok(())
}

fn json_bytes(value: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("a JSON value always serializes"))
}

/// A 2xx whose body is not what the contract promises. For a write the change was applied.
fn unusable_success(operation: Operation, response: &Response, problem: &str) -> FlowError {
    FlowError::new(
        FlowErrorKind::UnexpectedResponse,
        operation,
        ErrorDetails {
            status: Some(response.status),
            request_id: response.header(HEADER_REQUEST_ID).map(str::to_owned),
            ..ErrorDetails::transport(format!("the response body has {problem}"))
        },
    )
    .committed_if(operation.is_write())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_gain_the_service_paths() {
        let platform = Url::parse("https://platform.adobe.io").unwrap();
        assert_eq!(
            join_base(&platform, FLOW_SERVICE_PATH, "platform")
                .unwrap()
                .as_str(),
            "https://platform.adobe.io/data/foundation/flowservice/"
        );
        let prefixed = Url::parse("http://127.0.0.1:8080/aep?x=1").unwrap();
        assert_eq!(
            join_base(&prefixed, IMS_TOKEN_PATH, "IMS")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/aep/ims/token/v3"
        );
        let bad = Url::parse("mailto:someone@example.com").unwrap();
        assert_eq!(
            join_base(&bad, FLOW_SERVICE_PATH, "platform")
                .unwrap_err()
                .kind(),
            FlowErrorKind::Configuration
        );
    }

    #[test]
    fn connection_ids_cannot_escape_the_path() {
        let client = FlowClient::new(FlowClientConfig::default()).unwrap();
        assert_eq!(
            client.connection_url("../flows?x").as_str(),
            "https://platform.adobe.io/data/foundation/flowservice/connections/..%2Fflows%3Fx"
        );
    }

    #[test]
    fn default_config_matches_the_flags() {
        let config = FlowClientConfig::default();
        assert_eq!(config.platform_url.as_str(), "https://platform.adobe.io/");
        assert_eq!(config.ims_url.as_str(), "https://ims-na1.adobelogin.com/");
        assert_eq!(config.qps, 10.0);
        assert_eq!(config.max_concurrency, 8);
        assert_eq!(config.connect_timeout, Duration::from_secs(5));
        assert_eq!(config.request_timeout, Duration::from_secs(30));
    }

    /// The reconciler runs these futures on a multi-threaded runtime, so they must be `Send`.
    #[allow(dead_code)]
    fn operations_are_send(
        client: &FlowClient,
        scope: &Scope<'_>,
        new: &NewConnection,
        update: &ConnectionUpdate,
    ) {
        fn send<T: Send>(_: T) {}
        send(client.create_connection(scope, new));
        send(client.get_connection(scope, "id"));
        send(client.find_connections_by_name(scope, "name"));
        send(client.update_connection(scope, "id", "etag", update));
        send(client.delete_connection(scope, "id"));
    }
}
