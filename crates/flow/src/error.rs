//! The one error type of the Flow Service client, shaped by what the caller should do next.
//!
//! One struct with a [`FlowErrorKind`] (the way reqwest builds its error), so that the message and
//! the redaction are written once. The kind says what to do, not what to call it: naming a failure
//! for users is the caller's business. The error says whether waiting helps
//! ([`FlowError::is_permanent`]), how long to wait ([`FlowError::retry_after`]) and whether a write
//! may have been applied anyway ([`FlowError::maybe_committed`]), because the reconciler must never
//! create a connection twice. Messages carry the status, Flow error code, request id and the
//! server's message (truncated and scrubbed of credential values), never a token or secret.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::credentials::CredentialsError;
use super::observer::Operation;
use super::redact::redact_text;

/// Longest server message kept in an error, in characters: enough to read, too short to flood a
/// condition message or an event.
const MAX_MESSAGE_CHARS: usize = 300;

/// Stands for a value that changes from attempt to attempt in [`FlowError::stable_message`].
const VOLATILE: &str = "…";
/// Hex runs at least this long are ids, hashes or tokens rather than words.
const MIN_VOLATILE_HEX: usize = 16;
/// Digit runs at least this long are epoch timestamps or transaction ids rather than codes.
const MIN_VOLATILE_DIGITS: usize = 10;
/// Said instead of an HTML error page that has neither a title nor a heading.
const HTML_PAGE: &str = "HTML error page";

/// Flow Service codes (the `FLOW-<code>-<status>` suffix) that need a mapping other than their status.
/// A 404 for a sandbox that does not exist is a spec problem, not a deleted connection.
const SANDBOX_NOT_FOUND_CODE: &str = "2100-404";
/// An empty or invalid token is reported as a 400 by Flow Service, yet minting a new one is the cure.
const TOKEN_INVALID_CODES: [&str; 2] = ["2114-400", "2115-400"];
/// The object is in a transitional state (`1416`: only `enabled`, `disabled` or `initializing` allow
/// it; `1420`/`1421`: `disabling`/`updating`; `1457`/`1458`: `delete-finalizing`), so the change is
/// refused for now: the reference (§9, §13) says to back off and retry, so these 400s are transient.
pub(crate) const TRANSITIONAL_STATE_CODES: [&str; 5] =
    ["1416-400", "1420-400", "1421-400", "1457-400", "1458-400"];

/// What the server (or the transport) said about a failed request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorDetails {
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The Flow Service error code (`FLOW-1101-404`), gateway code (`401013`) or IMS error
    /// (`invalid_client`), when the body has one.
    pub error_code: Option<String>,
    /// The request id from the body or the `x-request-id` header, for Adobe support; else the
    /// client's own id for the attempt (in its logs; not sent, so Adobe does not know it).
    pub request_id: Option<String>,
    /// The server's message, or the transport failure, truncated and scrubbed of credential values.
    pub message: Option<String>,
}

impl ErrorDetails {
    /// Details of a failure that produced no response.
    pub(crate) fn transport(message: impl Into<String>) -> Self {
        Self {
            message: Some(clean_message(&message.into())),
            ..Self::default()
        }
    }

    /// Details read from an error response: its status, JSON body (any of the Flow problem, gateway
    /// and IMS shapes, or plain text) and `x-request-id` header.
    #[cfg(test)]
    pub(crate) fn from_response(status: u16, body: &[u8], header_request_id: Option<&str>) -> Self {
        Self::from_response_redacted::<&str>(status, body, header_request_id, &[])
    }

    /// [`Self::from_response`], with every form of the given credential values scrubbed before the
    /// text is shortened (so that truncation cannot keep half a secret).
    pub(crate) fn from_response_redacted<S: AsRef<str>>(
        status: u16,
        body: &[u8],
        header_request_id: Option<&str>,
        secrets: &[S],
    ) -> Self {
        let clean = |text: &str| clean_message(&redact_text(text, secrets));
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let (error_code, request_id, message) = match &json {
            Some(value @ Value::Object(_)) => (
                body_error_code(value),
                body_request_id(value),
                body_message(value),
            ),
            _ => (None, None, plain_text(body)),
        };
        Self {
            status: Some(status),
            error_code: error_code.map(|code| clean(&code)),
            request_id: request_id
                .or_else(|| header_request_id.map(str::to_owned))
                .map(|id| clean(&id)),
            message: message.map(|text| clean(&text)),
        }
    }

    /// Replaces every occurrence of the given credential values, as they are or encoded (base64,
    /// percent-encoding, another letter case), so that a server echoing a token back cannot leak it
    /// into a condition or a log.
    pub(crate) fn redact<'a>(mut self, secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let secrets: Vec<&str> = secrets.into_iter().collect();
        for field in [
            &mut self.message,
            &mut self.error_code,
            &mut self.request_id,
        ]
        .into_iter()
        .flatten()
        {
            *field = redact_text(field, &secrets);
        }
        self
    }

    /// These details without what changes from attempt to attempt: no request id, and the message
    /// with ids, hashes, timestamps and the like replaced by `…`.
    fn stable(&self) -> Self {
        Self {
            status: self.status,
            error_code: self.error_code.clone(),
            request_id: None,
            message: self.message.as_deref().map(scrub_volatile),
        }
    }
}

impl fmt::Display for ErrorDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(status) = self.status {
            parts.push(format!("HTTP {status}"));
        }
        if let Some(code) = &self.error_code {
            parts.push(format!("error code {code}"));
        }
        if let Some(id) = &self.request_id {
            parts.push(format!("request id {id}"));
        }
        let head = parts.join(", ");
        match (&self.message, head.is_empty()) {
            (Some(message), true) => f.write_str(message),
            (Some(message), false) => write!(f, "{head}: {message}"),
            (None, false) => f.write_str(&head),
            (None, true) => f.write_str("no details"),
        }
    }
}

/// What kind of failure a [`FlowError`] is, by what the caller should do next. The client only
/// classifies; naming a failure for users (a condition reason) is the caller's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowErrorKind {
    /// The connection (or the resource the request names) does not exist.
    NotFound,
    /// The `If-Match` etag is stale: read the connection again, re-apply the change, retry.
    PreconditionFailed,
    /// Adobe rejected the credentials, even after minting a fresh token: permanent until the Secret
    /// changes.
    Unauthorized,
    /// The credentials are valid but lack a permission, product profile or sandbox access.
    Forbidden,
    /// The request was rejected as invalid (a 400): permanent until the spec changes.
    Invalid,
    /// Adobe asked the client to slow down; wait [`FlowError::retry_after`] when it is known.
    RateLimited,
    /// A 5xx, a timeout or a connection failure: transient. For a write,
    /// [`FlowError::maybe_committed`] says whether the request may have reached the server and been
    /// applied.
    Unavailable,
    /// A response the client cannot use: an unexpected status, or a success body without the fields
    /// the contract promises.
    UnexpectedResponse,
    /// The credentials Secret cannot be used as it is; no request was sent.
    Credentials,
    /// The client configuration is wrong (a URL, the CA file); no request was sent.
    Configuration,
}

impl FlowErrorKind {
    /// True when retrying the same request cannot succeed until something changes (the Secret, the
    /// spec, a permission in Adobe, the operator's flags).
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            Self::Unauthorized
                | Self::Forbidden
                | Self::Invalid
                | Self::Credentials
                | Self::Configuration
        )
    }

    /// What went wrong, as the message says it after the operation.
    fn summary(self) -> &'static str {
        match self {
            Self::NotFound => "not found",
            Self::PreconditionFailed => "the etag is stale, read the connection again and retry",
            Self::Unauthorized => "Adobe rejected the credentials, check the credentials Secret",
            Self::Forbidden => {
                "forbidden, the credential lacks a permission, product profile or sandbox access"
            }
            Self::Invalid => "rejected as invalid",
            Self::RateLimited => "rate limited by Adobe",
            Self::Unavailable => "Adobe is unavailable or unreachable",
            Self::UnexpectedResponse => "unexpected response",
            Self::Credentials | Self::Configuration => "",
        }
    }

    /// The kinds that carry the server's `Retry-After` (or the client's own wait).
    fn waits(self) -> bool {
        matches!(self, Self::RateLimited | Self::Unavailable)
    }

    /// The kinds of a failed write that may nevertheless have been applied.
    fn may_commit(self) -> bool {
        matches!(self, Self::Unavailable | Self::UnexpectedResponse)
    }
}

/// Why the Flow Service client failed: a [`FlowErrorKind`] that says what to do, the operation and
/// what the server or transport said, and for some kinds how long to wait and whether a write may
/// have been applied anyway.
///
/// `Clone`, because one failed token mint is handed to every caller that waited for it.
#[derive(Clone)]
pub struct FlowError {
    inner: Box<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    kind: FlowErrorKind,
    /// The request that failed; `None` for the kinds that fail before any request.
    operation: Option<Operation>,
    /// What the server or transport said; `None` when no request was involved.
    details: Option<ErrorDetails>,
    /// Only ever true for the kinds of [`FlowErrorKind::may_commit`].
    maybe_committed: bool,
    /// Only ever set for the kinds of [`FlowErrorKind::waits`].
    retry_after: Option<Duration>,
    /// For [`FlowErrorKind::Credentials`]: what is wrong with the Secret.
    credentials: Option<CredentialsError>,
    /// For [`FlowErrorKind::Configuration`]: what is wrong with the configuration.
    configuration: Option<String>,
}

impl FlowError {
    /// A failed request of `kind`, neither possibly applied nor with a wait. The client makes its
    /// own errors; this is for code that stands in for it, such as tests of its callers.
    pub fn new(kind: FlowErrorKind, operation: Operation, details: ErrorDetails) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                operation: Some(operation),
                details: Some(details),
                maybe_committed: false,
                retry_after: None,
                credentials: None,
                configuration: None,
            }),
        }
    }

    /// The client configuration is wrong: `what` says how.
    pub fn configuration(what: impl Into<String>) -> Self {
        let mut error = Self::without_request(FlowErrorKind::Configuration);
        error.inner.configuration = Some(what.into());
        error
    }

    fn without_request(kind: FlowErrorKind) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                operation: None,
                details: None,
                maybe_committed: false,
                retry_after: None,
                credentials: None,
                configuration: None,
            }),
        }
    }

    /// This error marked as possibly applied when `maybe` is true, for the kinds that can be
    /// ([`FlowErrorKind::Unavailable`], [`FlowErrorKind::UnexpectedResponse`]).
    pub(crate) fn committed_if(mut self, maybe: bool) -> Self {
        self.inner.maybe_committed = maybe && self.inner.kind.may_commit();
        self
    }

    /// This error with `retry_after` set, for the kinds that carry one.
    pub(crate) fn with_retry_after(self, wait: Duration) -> Self {
        self.with_optional_retry_after(Some(wait))
    }

    fn with_optional_retry_after(mut self, wait: Option<Duration>) -> Self {
        if self.inner.kind.waits() {
            self.inner.retry_after = wait;
        }
        self
    }

    /// What kind of failure this is: what the caller should do next.
    pub fn kind(&self) -> FlowErrorKind {
        self.inner.kind
    }

    /// True when retrying the same request cannot succeed until something changes (the Secret, the
    /// spec, a permission in Adobe, the operator's flags); the caller should wait for that change
    /// rather than back off and retry.
    pub fn is_permanent(&self) -> bool {
        self.inner.kind.is_permanent()
    }

    /// How long to wait before trying again, when known: Adobe's `Retry-After`, or the rest of a
    /// window in which the client sends nothing (after a 429, or after a failed token request).
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// True when a write may have reached the server and been applied although it failed (a timeout
    /// or reset after sending, a 5xx): the caller must look before writing again. False when the
    /// request certainly changed nothing (a connect error, any 4xx, a 429).
    pub fn maybe_committed(&self) -> bool {
        self.inner.maybe_committed
    }

    /// True when the server answered (even with an error), or the request certainly changed nothing:
    /// a write that failed this way cannot still be committed later, so a lookup need not wait for
    /// it to settle.
    pub fn was_answered(&self) -> bool {
        !self.maybe_committed() || self.details().is_some_and(|d| d.status.is_some())
    }

    /// The same text as `Display`, without anything that changes from attempt to attempt: no
    /// request id, no remaining wait, and the server's message with ids, hashes and timestamps
    /// replaced by `…`. For condition messages, which should change only when the problem does.
    pub fn stable_message(&self) -> String {
        let mut stable = self.clone();
        if let Some(details) = &mut stable.inner.details {
            *details = details.stable();
        }
        stable.inner.retry_after = None;
        stable.to_string()
    }

    /// The operation that failed, when a request was involved.
    pub fn operation(&self) -> Option<Operation> {
        self.inner.operation
    }

    /// What the server or transport said, when a request was involved.
    pub fn details(&self) -> Option<&ErrorDetails> {
        self.inner.details.as_ref()
    }

    /// The HTTP status of the failed response, when one arrived.
    pub fn status(&self) -> Option<u16> {
        self.details().and_then(|details| details.status)
    }

    /// The Flow Service, gateway or IMS error code, when the body had one.
    pub fn error_code(&self) -> Option<&str> {
        self.details()
            .and_then(|details| details.error_code.as_deref())
    }

    /// The request id Adobe assigned, when the response had one.
    pub fn request_id(&self) -> Option<&str> {
        self.details()
            .and_then(|details| details.request_id.as_deref())
    }

    /// Fills in the request id the client sent when the response carried none (or there was no
    /// response), so that every failure can be traced in Adobe's logs.
    pub(crate) fn with_fallback_request_id(mut self, request_id: &str) -> Self {
        if let Some(details) = &mut self.inner.details
            && details.request_id.is_none()
        {
            details.request_id = Some(request_id.to_owned());
        }
        self
    }

    /// Scrubs every form of the given credential values out of what the server or transport said.
    pub(crate) fn redact<'a>(mut self, secrets: impl IntoIterator<Item = &'a str>) -> Self {
        if let Some(details) = self.inner.details.take() {
            self.inner.details = Some(details.redact(secrets));
        }
        self
    }

    /// Maps a non-success HTTP response to the error that says what to do. Pure, so that the whole
    /// table is unit-tested.
    pub(crate) fn from_status(
        operation: Operation,
        status: u16,
        details: ErrorDetails,
        retry_after: Option<Duration>,
    ) -> Self {
        use FlowErrorKind::*;
        let code_is = |wanted: &str| {
            details
                .error_code
                .as_deref()
                .is_some_and(|code| code.ends_with(wanted))
        };
        let transitional =
            status == 400 && TRANSITIONAL_STATE_CODES.iter().any(|code| code_is(code));
        let kind = match status {
            // IMS answers every client-side problem with the credentials (unknown client, wrong secret,
            // scope not granted) with a 4xx; all of them need the Secret to change.
            400..=499 if operation == Operation::Token && status != 408 && status != 429 => {
                Unauthorized
            }
            400 if TOKEN_INVALID_CODES.iter().any(|code| code_is(code)) => Unauthorized,
            401 => Unauthorized,
            403 => Forbidden,
            404 if code_is(SANDBOX_NOT_FOUND_CODE) => Invalid,
            404 | 410 => NotFound,
            // The server gave up waiting for the request, so it did not process it.
            408 => Unavailable,
            412 => PreconditionFailed,
            // Nothing was applied, and waiting for the object to settle is the cure.
            400 if transitional => Unavailable,
            429 => RateLimited,
            400..=499 => Invalid,
            500..=599 => Unavailable,
            _ => UnexpectedResponse,
        };
        // A write that got a 5xx (or an unexpected status) may still have been applied: the gateway can
        // time out after the backend committed, and "commit then fail" is exactly what must not lead
        // to a second create.
        let maybe_committed = operation.is_write() && status != 408 && !transitional;
        Self::new(kind, operation, details)
            .committed_if(maybe_committed)
            .with_optional_retry_after(retry_after)
    }
}

impl From<CredentialsError> for FlowError {
    fn from(error: CredentialsError) -> Self {
        let mut flow = Self::without_request(FlowErrorKind::Credentials);
        flow.inner.credentials = Some(error);
        flow
    }
}

/// The one place a failure is put into words: `<operation>: <what went wrong>[; the request may have
/// been applied][, retry after Ns] (<status, error code, request id: server message>)`. Details are
/// scrubbed of credential values when the error is made, so nothing here can leak one.
impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        if let Some(credentials) = &inner.credentials {
            return fmt::Display::fmt(credentials, f);
        }
        if let Some(what) = &inner.configuration {
            return write!(f, "Flow Service client configuration: {what}");
        }
        if let Some(operation) = inner.operation {
            write!(f, "{operation}: ")?;
        }
        f.write_str(inner.kind.summary())?;
        if inner.maybe_committed {
            f.write_str("; the request may have been applied")?;
        }
        if let Some(wait) = inner.retry_after {
            write!(f, ", retry after {}s", wait.as_secs_f64().ceil())?;
        }
        match &inner.details {
            Some(details) => write!(f, " ({details})"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let mut debug = f.debug_struct("FlowError");
        debug.field("kind", &inner.kind);
        if let Some(operation) = inner.operation {
            debug.field("operation", &operation);
        }
        if let Some(details) = &inner.details {
            debug.field("details", details);
        }
        if inner.maybe_committed {
            debug.field("maybe_committed", &true);
        }
        if let Some(wait) = inner.retry_after {
            debug.field("retry_after", &wait);
        }
        if let Some(credentials) = &inner.credentials {
            debug.field("credentials", credentials);
        }
        if let Some(what) = &inner.configuration {
            debug.field("configuration", what);
        }
        debug.finish()
    }
}

// Like the `#[error(transparent)]` it replaces for credentials errors: no source, since the message
// already says everything (a chain would print it twice).
impl std::error::Error for FlowError {}

/// The error code of a Flow problem body (`type` ends in `FLOW-<code>-<status>`), a gateway body
/// (`error_code`) or an IMS body (`error`).
fn body_error_code(body: &Value) -> Option<String> {
    let from_type = body
        .get("type")
        .and_then(Value::as_str)
        .and_then(|kind| kind.rsplit('/').next())
        .filter(|segment| segment.contains('-') && segment.chars().any(|c| c.is_ascii_digit()))
        .map(str::to_owned);
    from_type
        .or_else(|| scalar(body.get("error_code")))
        .or_else(|| scalar(body.get("code")))
        .or_else(|| scalar(body.get("error")))
}

fn body_request_id(body: &Value) -> Option<String> {
    let report = body.get("report");
    [
        report.and_then(|r| r.get("request-id")),
        report.and_then(|r| r.get("requestId")),
        body.get("request-id"),
        body.get("requestId"),
    ]
    .into_iter()
    .find_map(scalar)
}

fn body_message(body: &Value) -> Option<String> {
    let report = body.get("report");
    [
        report.and_then(|r| r.get("detailed-message")),
        report.and_then(|r| r.get("message")),
        body.get("errorMessage"),
        body.get("detail"),
        body.get("message"),
        body.get("error_description"),
        body.get("title"),
    ]
    .into_iter()
    .flatten()
    .find_map(|value| value.as_str().filter(|text| !text.trim().is_empty()))
    .map(str::to_owned)
}

fn scalar(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.trim().is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A body that is not JSON: its text, or for an HTML page (a proxy's 502/503) only its title or
/// first heading, never the markup.
fn plain_text(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if looks_like_html(text) {
        return Some(html_summary(text));
    }
    Some(text.to_owned())
}

fn looks_like_html(text: &str) -> bool {
    let lowered = text.trim_start_matches('\u{feff}').to_ascii_lowercase();
    lowered.starts_with("<!doctype") || lowered.starts_with("<html") || lowered.contains("<body")
}

/// The text of the page's `<title>`, else of its first `<h1>`…`<h6>`, else [`HTML_PAGE`].
fn html_summary(html: &str) -> String {
    let lowered = html.to_ascii_lowercase();
    let element_text = |tag: &str| -> Option<String> {
        let open = format!("<{tag}");
        let mut from = 0;
        // `<title` must not match `<titles>`, nor `<h1` match `<h10>` (which does not exist anyway).
        let start = loop {
            let at = from + lowered[from..].find(&open)?;
            let after = at + open.len();
            match lowered.as_bytes().get(after) {
                Some(b'>' | b' ' | b'\t' | b'\n' | b'\r' | b'/') => break at,
                _ => from = after,
            }
        };
        let content_start = start + lowered[start..].find('>')? + 1;
        let close = format!("</{tag}");
        let content_end = content_start + lowered[content_start..].find(&close)?;
        let text = decode_entities(&strip_tags(&html[content_start..content_end]));
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        (!text.is_empty()).then_some(text)
    };
    ["title", "h1", "h2", "h3", "h4", "h5", "h6"]
        .into_iter()
        .find_map(element_text)
        .unwrap_or_else(|| HTML_PAGE.to_owned())
}

/// Drops everything between `<` and `>`.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The few entities an error page title uses; anything else is left as written.
fn decode_entities(text: &str) -> String {
    [
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&apos;", "'"),
        ("&nbsp;", " "),
        ("&amp;", "&"),
    ]
    .into_iter()
    .fold(text.to_owned(), |text, (entity, plain)| {
        text.replace(entity, plain)
    })
}

/// Replaces each word of `message` that looks like it changes from attempt to attempt (it holds a
/// UUID, a long hex or digit run, a date or a time of day) with `…`. Conservative: it may hide a
/// stable id too, which costs a little detail in a condition, never its stability.
fn scrub_volatile(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if is_volatile(word) {
            out.push_str(VOLATILE);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in message.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '_') {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn is_volatile(word: &str) -> bool {
    let word = word.trim_end_matches(['.', ':']);
    if word.is_empty() {
        return false;
    }
    let runs: Vec<&str> = word.split(['-', ':', '.', '_']).collect();
    let long_hex = runs
        .iter()
        .any(|run| run.len() >= MIN_VOLATILE_HEX && run.bytes().all(|b| b.is_ascii_hexdigit()));
    let long_digits = runs
        .iter()
        .any(|run| run.len() >= MIN_VOLATILE_DIGITS && run.bytes().all(|b| b.is_ascii_digit()));
    long_hex || long_digits || contains_uuid(word) || contains_date_or_time(word)
}

/// True when `word` contains `8-4-4-4-12` hex digits.
fn contains_uuid(word: &str) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let bytes = word.as_bytes();
    (0..bytes.len()).any(|start| {
        let mut at = start;
        GROUPS.iter().enumerate().all(|(index, &len)| {
            if index > 0 {
                if bytes.get(at) != Some(&b'-') {
                    return false;
                }
                at += 1;
            }
            let group_ok = bytes
                .get(at..at + len)
                .is_some_and(|group| group.iter().all(u8::is_ascii_hexdigit));
            at += len;
            group_ok
        })
    })
}

/// True when `word` contains `dddd-dd-dd` (a date) or `dd:dd` (a time of day).
fn contains_date_or_time(word: &str) -> bool {
    let shape = |pattern: &str| {
        let bytes = word.as_bytes();
        bytes.windows(pattern.len()).any(|window| {
            window.iter().zip(pattern.bytes()).all(|(&b, p)| match p {
                b'd' => b.is_ascii_digit(),
                other => b == other,
            })
        })
    };
    shape("dddd-dd-dd") || shape("dd:dd")
}

/// One line, no control characters, at most [`MAX_MESSAGE_CHARS`] characters.
fn clean_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_CHARS + 3));
    let mut last_was_space = false;
    for (count, c) in text.trim().chars().enumerate() {
        if count == MAX_MESSAGE_CHARS {
            out.push('…');
            break;
        }
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_was_space {
            continue;
        }
        last_was_space = c == ' ';
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(status: u16, code: Option<&str>) -> ErrorDetails {
        ErrorDetails {
            status: Some(status),
            error_code: code.map(str::to_owned),
            ..ErrorDetails::default()
        }
    }

    fn map(operation: Operation, status: u16, code: Option<&str>) -> FlowError {
        FlowError::from_status(operation, status, details(status, code), None)
    }

    #[test]
    fn statuses_map_to_what_the_caller_should_do() {
        use Operation::*;
        assert_eq!(
            map(Get, 404, Some("FLOW-1101-404")).kind(),
            FlowErrorKind::NotFound
        );
        assert_eq!(
            map(Update, 412, Some("FLOW-1404-412")).kind(),
            FlowErrorKind::PreconditionFailed
        );
        assert_eq!(
            map(Get, 401, Some("401013")).kind(),
            FlowErrorKind::Unauthorized
        );
        assert_eq!(
            map(Get, 403, Some("FLOW-2120-403")).kind(),
            FlowErrorKind::Forbidden
        );
        assert_eq!(
            map(Create, 400, Some("FLOW-1413-400")).kind(),
            FlowErrorKind::Invalid
        );
        assert_eq!(map(Create, 422, None).kind(), FlowErrorKind::Invalid);
        assert_eq!(map(Create, 429, None).kind(), FlowErrorKind::RateLimited);
        assert_eq!(map(Create, 503, None).kind(), FlowErrorKind::Unavailable);
        assert_eq!(map(Get, 408, None).kind(), FlowErrorKind::Unavailable);
        assert_eq!(
            map(Create, 302, None).kind(),
            FlowErrorKind::UnexpectedResponse
        );
    }

    #[test]
    fn codes_refine_the_status() {
        assert_eq!(
            map(Operation::Create, 404, Some("FLOW-2100-404")).kind(),
            FlowErrorKind::Invalid
        );
        assert_eq!(
            map(Operation::Get, 400, Some("FLOW-2115-400")).kind(),
            FlowErrorKind::Unauthorized
        );
        assert_eq!(
            map(Operation::Get, 400, Some("FLOW-2114-400")).kind(),
            FlowErrorKind::Unauthorized
        );
    }

    #[test]
    fn ims_client_errors_mean_the_credentials_are_wrong() {
        for status in [400, 401, 403] {
            let error = map(Operation::Token, status, Some("invalid_client"));
            assert_eq!(error.kind(), FlowErrorKind::Unauthorized);
            assert!(error.is_permanent());
        }
        assert_eq!(
            map(Operation::Token, 429, None).kind(),
            FlowErrorKind::RateLimited
        );
        assert_eq!(
            map(Operation::Token, 500, None).kind(),
            FlowErrorKind::Unavailable
        );
    }

    #[test]
    fn only_ambiguous_write_failures_may_be_committed() {
        assert!(map(Operation::Create, 500, None).maybe_committed());
        assert!(map(Operation::Create, 504, None).maybe_committed());
        assert!(map(Operation::Update, 502, None).maybe_committed());
        assert!(!map(Operation::Get, 503, None).maybe_committed());
        assert!(!map(Operation::Create, 400, None).maybe_committed());
        assert!(!map(Operation::Create, 429, None).maybe_committed());
        assert!(!map(Operation::Create, 408, None).maybe_committed());
        assert!(!map(Operation::Create, 401, None).maybe_committed());
    }

    #[test]
    fn permanence_follows_the_kind() {
        assert!(map(Operation::Create, 400, None).is_permanent());
        assert!(map(Operation::Create, 401, None).is_permanent());
        assert!(map(Operation::Create, 403, None).is_permanent());
        assert!(!map(Operation::Create, 429, None).is_permanent());
        assert!(!map(Operation::Create, 503, None).is_permanent());
        assert!(!map(Operation::Get, 404, None).is_permanent());
        assert!(!map(Operation::Update, 412, None).is_permanent());
        assert!(FlowError::from(CredentialsError::NoSecretOrToken).is_permanent());
    }

    #[test]
    fn retry_after_is_kept_on_rate_limits() {
        let error = FlowError::from_status(
            Operation::List,
            429,
            details(429, None),
            Some(Duration::from_secs(7)),
        );
        assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
        assert!(error.to_string().contains("retry after 7s"), "{error}");
    }

    #[test]
    fn flow_problem_bodies_are_read() {
        let body = br#"{ "type": "https://ns.adobe.com/aep/errors/FLOW-1101-404",
            "title": "Resource not found", "status": 404,
            "report": { "detailed-message": "Resource with given id does not exist",
                        "request-id": "req-123" },
            "errorMessage": "other" }"#;
        let details = ErrorDetails::from_response(404, body, Some("header-id"));
        assert_eq!(details.error_code.as_deref(), Some("FLOW-1101-404"));
        assert_eq!(details.request_id.as_deref(), Some("req-123"));
        assert_eq!(
            details.message.as_deref(),
            Some("Resource with given id does not exist")
        );
        let error = FlowError::from_status(Operation::Get, 404, details, None);
        assert_eq!(error.error_code(), Some("FLOW-1101-404"));
        assert_eq!(error.request_id(), Some("req-123"));
        assert_eq!(error.status(), Some(404));
        assert_eq!(
            error.to_string(),
            "get connection: not found (HTTP 404, error code FLOW-1101-404, request id req-123: Resource with given id does not exist)"
        );
    }

    #[test]
    fn gateway_ims_and_plain_bodies_are_read() {
        let gateway = ErrorDetails::from_response(
            401,
            br#"{"error_code":"401013","message":"Oauth token is not valid"}"#,
            Some("hdr-1"),
        );
        assert_eq!(gateway.error_code.as_deref(), Some("401013"));
        assert_eq!(gateway.request_id.as_deref(), Some("hdr-1"));
        assert_eq!(gateway.message.as_deref(), Some("Oauth token is not valid"));

        let ims = ErrorDetails::from_response(
            400,
            br#"{"error":"invalid_client","error_description":"invalid client_id parameter"}"#,
            None,
        );
        assert_eq!(ims.error_code.as_deref(), Some("invalid_client"));
        assert_eq!(ims.message.as_deref(), Some("invalid client_id parameter"));

        let content_type = ErrorDetails::from_response(
            400,
            br#"{"type":"/placeholder/type/uri","status":400,"title":"BadRequestError","detail":"A valid content-type must be specified"}"#,
            None,
        );
        assert_eq!(content_type.error_code, None);
        assert_eq!(
            content_type.message.as_deref(),
            Some("A valid content-type must be specified")
        );

        let html = ErrorDetails::from_response(502, b"<html>\n  Bad   gateway\n</html>", None);
        assert_eq!(html.message.as_deref(), Some("HTML error page"));

        let plain = ErrorDetails::from_response(502, b"upstream  connect error\n", None);
        assert_eq!(plain.message.as_deref(), Some("upstream connect error"));
    }

    #[test]
    fn html_error_pages_keep_only_their_title_or_first_heading() {
        let nginx = b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n<TITLE>502 Bad Gateway</TITLE>\n\
            <style>body { color: red }</style></head>\n<body><center><h1>502 Bad Gateway</h1></center>\n\
            <hr><center>nginx/1.25.3</center><script>alert(1)</script></body></html>";
        let details = ErrorDetails::from_response(502, nginx, None);
        assert_eq!(details.message.as_deref(), Some("502 Bad Gateway"));

        let heading_only =
            b"<html><body><H2 class=\"x\">Service &amp; gateway\n <em>unavailable</em></H2>\
            <p>Request 9f86d081884c7d65 failed</p></body></html>";
        let details = ErrorDetails::from_response(503, heading_only, None);
        assert_eq!(
            details.message.as_deref(),
            Some("Service & gateway unavailable")
        );

        let bare = b"  <p>oops</p><body><div>nothing useful</div></body>";
        let details = ErrorDetails::from_response(503, bare, None);
        assert_eq!(details.message.as_deref(), Some("HTML error page"));

        let error = FlowError::from_status(
            Operation::Get,
            503,
            ErrorDetails::from_response(503, nginx, None),
            None,
        );
        assert!(!error.to_string().contains('<'), "{error}");
    }

    #[test]
    fn long_messages_are_truncated() {
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(5000));
        let details = ErrorDetails::from_response(500, long.as_bytes(), None);
        let message = details.message.unwrap();
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
    }

    #[test]
    fn the_client_request_id_fills_in_only_when_the_server_gave_none() {
        let without = FlowError::from_status(Operation::Get, 503, details(503, None), None)
            .with_fallback_request_id("ours");
        assert_eq!(without.request_id(), Some("ours"));
        let with = FlowError::from_status(
            Operation::Get,
            503,
            ErrorDetails {
                request_id: Some("theirs".into()),
                ..details(503, None)
            },
            None,
        )
        .with_fallback_request_id("ours");
        assert_eq!(with.request_id(), Some("theirs"));
    }

    fn details_with(request_id: &str, message: &str) -> ErrorDetails {
        ErrorDetails {
            status: Some(404),
            error_code: Some("FLOW-1101-404".into()),
            request_id: Some(request_id.into()),
            message: Some(message.into()),
        }
    }

    #[test]
    fn stable_messages_ignore_the_request_id() {
        let first = FlowError::from_status(
            Operation::Get,
            404,
            details_with("req-1", "Resource with given id does not exist"),
            None,
        );
        let second = FlowError::from_status(
            Operation::Get,
            404,
            details_with("req-2", "Resource with given id does not exist"),
            None,
        );
        assert_ne!(first.to_string(), second.to_string());
        assert!(first.to_string().contains("request id req-1"), "{first}");
        assert_eq!(first.stable_message(), second.stable_message());
        assert_eq!(
            first.stable_message(),
            "get connection: not found (HTTP 404, error code FLOW-1101-404: Resource with given id does not exist)"
        );
    }

    #[test]
    fn stable_messages_scrub_ids_timestamps_and_the_remaining_wait() {
        let at = |request_id: &str, message: &str, wait: u64| {
            FlowError::from_status(
                Operation::Update,
                429,
                details_with(request_id, message),
                Some(Duration::from_secs(wait)),
            )
        };
        let first = at(
            "a",
            "The supplied version 'f50185ed-0000-0200-0000-637e8fad0000' does not match entity \
             a59d368a-1152-4673-a46e-bd52e8cdb9a9 at 2024-05-01T12:34:56.789Z (xaction 1584479347507:2153:240, \
             trace 667b41cf2dbf3509927da1eb)",
            7,
        );
        let second = at(
            "b",
            "The supplied version '0100d610-0000-0200-0000-5f3f23450000' does not match entity \
             c0ffee00-1152-4673-a46e-bd52e8cdb9a9 at 2024-05-01T12:35:01Z (xaction 1584479352001:2153:241, \
             trace 00000000000000009927da1e)",
            3,
        );
        assert_ne!(first.to_string(), second.to_string());
        assert_eq!(first.stable_message(), second.stable_message());
        assert_eq!(
            first.stable_message(),
            "update connection: rate limited by Adobe (HTTP 404, error code FLOW-1101-404: The supplied \
             version '…' does not match entity … at … (xaction …, trace …))"
        );
        // Codes, statuses and ordinary numbers stay.
        let kept = FlowError::from_status(
            Operation::Create,
            400,
            details_with(
                "c",
                "FLOW-2105-400: sandbox prod, limit 1000 exceeded, spec 1.0",
            ),
            None,
        );
        assert!(
            kept.stable_message()
                .ends_with("FLOW-2105-400: sandbox prod, limit 1000 exceeded, spec 1.0)"),
            "{}",
            kept.stable_message()
        );
    }

    #[test]
    fn errors_without_details_have_their_display_as_stable_message() {
        let error = FlowError::from(CredentialsError::NoSecretOrToken);
        assert_eq!(error.stable_message(), error.to_string());
    }

    #[test]
    fn echoed_credentials_are_redacted() {
        let body =
            br#"{"message":"token eyJhbGciOiJSUzI1NiJ9.SECRET is not valid for secret p8e-xyz"}"#;
        let details = ErrorDetails::from_response(401, body, None).redact([
            "eyJhbGciOiJSUzI1NiJ9.SECRET",
            "p8e-xyz",
            "ab",
        ]);
        assert_eq!(
            details.message.as_deref(),
            Some("token <redacted> is not valid for secret <redacted>")
        );
    }

    #[test]
    fn encoded_echoes_are_redacted_before_the_message_is_shortened() {
        let secret = "s3cr3t-VALUE-0123456789abcdef";
        // base64 of the secret, percent-encoded with lower-case escapes, re-cased: each a leak.
        let base64 = "czNjcjN0LVZBTFVFLTAxMjM0NTY3ODlhYmNkZWY";
        let body = format!(
            r#"{{"message":"{pad} a={base64}= b={base64} c={upper} d={percent}"}}"#,
            pad = "x".repeat(200),
            upper = secret.to_ascii_uppercase(),
            percent = "s3cr3t%2dVALUE%2d0123456789abcdef",
        );
        let details = ErrorDetails::from_response_redacted(400, body.as_bytes(), None, &[secret]);
        let message = details.message.unwrap();
        assert!(
            message.ends_with("a=<redacted> b=<redacted> c=<redacted> d=<redacted>"),
            "{message}"
        );

        // A secret that straddles the truncation point is removed whole, not cut in half.
        let body = format!(r#"{{"message":"{} {secret}"}}"#, "y".repeat(290));
        let details = ErrorDetails::from_response_redacted(400, body.as_bytes(), None, &[secret]);
        let message = details.message.unwrap();
        assert!(!message.contains("s3cr3t"), "{message}");
    }
}
