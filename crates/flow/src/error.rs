//! The one error type of the Flow Service client, shaped by what the caller should do next.
//!
//! Each variant has a fixed reason (for conditions, events and metric labels) and says whether waiting
//! helps ([`FlowError::is_permanent`]), how long to wait ([`FlowError::retry_after`]) and whether a
//! write may have been applied anyway ([`FlowError::maybe_committed`]), because the reconciler must
//! never create a connection twice. Messages carry the status, Flow error code, request id and the
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
    /// The request id from the body or the `x-request-id` header, else the one the client sent, for
    /// Adobe support.
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

/// Why the Flow Service client failed, grouped by what the caller should do.
///
/// `Clone`, because one failed token mint is handed to every caller that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlowError {
    /// The connection (or the resource the request names) does not exist.
    #[error("{operation}: not found ({details})")]
    NotFound {
        operation: Operation,
        details: ErrorDetails,
    },
    /// The `If-Match` etag is stale: read the connection again, re-apply the change, retry.
    #[error("{operation}: the etag is stale, read the connection again and retry ({details})")]
    PreconditionFailed {
        operation: Operation,
        details: ErrorDetails,
    },
    /// Adobe rejected the credentials, even after minting a fresh token: permanent until the Secret
    /// changes.
    #[error(
        "{operation}: Adobe rejected the credentials, check the credentials Secret ({details})"
    )]
    Unauthorized {
        operation: Operation,
        details: ErrorDetails,
    },
    /// The credentials are valid but lack a permission, product profile or sandbox access.
    #[error(
        "{operation}: forbidden, the credential lacks a permission, product profile or sandbox access ({details})"
    )]
    Forbidden {
        operation: Operation,
        details: ErrorDetails,
    },
    /// The request was rejected as invalid (a 400): permanent until the spec changes.
    #[error("{operation}: rejected as invalid ({details})")]
    Invalid {
        operation: Operation,
        details: ErrorDetails,
    },
    /// Adobe asked the client to slow down; wait `retry_after` when it is known.
    #[error("{operation}: rate limited by Adobe{} ({details})", retry_hint(.retry_after))]
    RateLimited {
        operation: Operation,
        retry_after: Option<Duration>,
        details: ErrorDetails,
    },
    /// A 5xx, a timeout or a connection failure: transient. For a write, `maybe_committed` says
    /// whether the request may have reached the server and been applied. `retry_after` is the
    /// server's `Retry-After`, or how long the client holds back before trying again (after a failed
    /// token request), when either is known.
    #[error("{operation}: Adobe is unavailable or unreachable{}{} ({details})", committed_hint(*.maybe_committed), retry_hint(.retry_after))]
    Unavailable {
        operation: Operation,
        maybe_committed: bool,
        retry_after: Option<Duration>,
        details: ErrorDetails,
    },
    /// A response the client cannot use: an unexpected status, or a success body without the fields
    /// the contract promises.
    #[error("{operation}: unexpected response{} ({details})", committed_hint(*.maybe_committed))]
    UnexpectedResponse {
        operation: Operation,
        maybe_committed: bool,
        details: ErrorDetails,
    },
    /// The credentials Secret cannot be used as it is.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The client configuration is wrong (a URL, the CA file, a sandbox name that is no header value).
    #[error("Flow Service client configuration: {0}")]
    Configuration(String),
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(", retry after {}s", wait.as_secs_f64().ceil()),
        None => String::new(),
    }
}

fn committed_hint(maybe_committed: bool) -> &'static str {
    if maybe_committed {
        "; the request may have been applied"
    } else {
        ""
    }
}

impl FlowError {
    /// A fixed, bounded reason for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "NotFound",
            Self::PreconditionFailed { .. } => "PreconditionFailed",
            Self::Unauthorized { .. } => "CredentialsInvalid",
            Self::Forbidden { .. } => "Forbidden",
            Self::Invalid { .. } => "InvalidSpec",
            Self::RateLimited { .. } => "RateLimited",
            Self::Unavailable { .. } => "FlowServiceUnavailable",
            Self::UnexpectedResponse { .. } => "UnexpectedResponse",
            Self::Credentials(_) => "SecretInvalid",
            Self::Configuration(_) => "ConfigurationInvalid",
        }
    }

    /// True when retrying the same request cannot succeed until something changes (the Secret, the
    /// spec, a permission in Adobe, the operator's flags); the caller should wait for that change
    /// rather than back off and retry.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Unauthorized { .. }
                | Self::Forbidden { .. }
                | Self::Invalid { .. }
                | Self::Credentials(_)
                | Self::Configuration(_)
        )
    }

    /// How long to wait before trying again, when known: Adobe's `Retry-After`, or the rest of a
    /// window in which the client sends nothing (after a 429, or after a failed token request).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The same text as `Display`, without anything that changes from attempt to attempt: no
    /// request id, no remaining wait, and the server's message with ids, hashes and timestamps
    /// replaced by `…`. For condition messages, which should change only when the problem does.
    pub fn stable_message(&self) -> String {
        let mut stable = self.clone();
        if let Some(details) = stable.details_mut() {
            *details = details.stable();
        }
        if let Self::RateLimited { retry_after, .. } | Self::Unavailable { retry_after, .. } =
            &mut stable
        {
            *retry_after = None;
        }
        stable.to_string()
    }

    /// This error with `retry_after` set, for the variants that carry one.
    pub(crate) fn with_retry_after(mut self, wait: Duration) -> Self {
        if let Self::RateLimited { retry_after, .. } | Self::Unavailable { retry_after, .. } =
            &mut self
        {
            *retry_after = Some(wait);
        }
        self
    }

    /// True when a write may have reached the server and been applied although it failed (a timeout
    /// or reset after sending, a 5xx): the caller must look before writing again. False when the
    /// request certainly changed nothing (a connect error, any 4xx, a 429).
    pub fn maybe_committed(&self) -> bool {
        match self {
            Self::Unavailable {
                maybe_committed, ..
            }
            | Self::UnexpectedResponse {
                maybe_committed, ..
            } => *maybe_committed,
            _ => false,
        }
    }

    /// The operation that failed, when a request was involved.
    pub fn operation(&self) -> Option<Operation> {
        self.details_with_operation()
            .map(|(operation, _)| operation)
    }

    /// What the server or transport said, when a request was involved.
    pub fn details(&self) -> Option<&ErrorDetails> {
        self.details_with_operation().map(|(_, details)| details)
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
        if let Some(details) = self.details_mut()
            && details.request_id.is_none()
        {
            details.request_id = Some(request_id.to_owned());
        }
        self
    }

    fn details_mut(&mut self) -> Option<&mut ErrorDetails> {
        match self {
            Self::NotFound { details, .. }
            | Self::PreconditionFailed { details, .. }
            | Self::Unauthorized { details, .. }
            | Self::Forbidden { details, .. }
            | Self::Invalid { details, .. }
            | Self::RateLimited { details, .. }
            | Self::Unavailable { details, .. }
            | Self::UnexpectedResponse { details, .. } => Some(details),
            Self::Credentials(_) | Self::Configuration(_) => None,
        }
    }

    fn details_with_operation(&self) -> Option<(Operation, &ErrorDetails)> {
        match self {
            Self::NotFound { operation, details }
            | Self::PreconditionFailed { operation, details }
            | Self::Unauthorized { operation, details }
            | Self::Forbidden { operation, details }
            | Self::Invalid { operation, details }
            | Self::RateLimited {
                operation, details, ..
            }
            | Self::Unavailable {
                operation, details, ..
            }
            | Self::UnexpectedResponse {
                operation, details, ..
            } => Some((*operation, details)),
            Self::Credentials(_) | Self::Configuration(_) => None,
        }
    }

    /// Maps a non-success HTTP response to the error that says what to do. Pure, so that the whole
    /// table is unit-tested.
    pub(crate) fn from_status(
        operation: Operation,
        status: u16,
        details: ErrorDetails,
        retry_after: Option<Duration>,
    ) -> Self {
        let code_is = |wanted: &str| {
            details
                .error_code
                .as_deref()
                .is_some_and(|code| code.ends_with(wanted))
        };
        // A write that got a 5xx (or an unexpected status) may still have been applied: the gateway can
        // time out after the backend committed, and "commit then fail" is exactly what must not lead
        // to a second create.
        let write = operation.is_write();
        match status {
            // IMS answers every client-side problem with the credentials (unknown client, wrong secret,
            // scope not granted) with a 4xx; all of them need the Secret to change.
            400..=499 if operation == Operation::Token && status != 408 && status != 429 => {
                Self::Unauthorized { operation, details }
            }
            400 if TOKEN_INVALID_CODES.iter().any(|code| code_is(code)) => {
                Self::Unauthorized { operation, details }
            }
            401 => Self::Unauthorized { operation, details },
            403 => Self::Forbidden { operation, details },
            404 if code_is(SANDBOX_NOT_FOUND_CODE) => Self::Invalid { operation, details },
            404 | 410 => Self::NotFound { operation, details },
            // The server gave up waiting for the request, so it did not process it.
            408 => Self::Unavailable {
                operation,
                maybe_committed: false,
                retry_after,
                details,
            },
            412 => Self::PreconditionFailed { operation, details },
            // Nothing was applied, and waiting for the object to settle is the cure.
            400 if TRANSITIONAL_STATE_CODES.iter().any(|code| code_is(code)) => Self::Unavailable {
                operation,
                maybe_committed: false,
                retry_after,
                details,
            },
            429 => Self::RateLimited {
                operation,
                retry_after,
                details,
            },
            400..=499 => Self::Invalid { operation, details },
            500..=599 => Self::Unavailable {
                operation,
                maybe_committed: write,
                retry_after,
                details,
            },
            _ => Self::UnexpectedResponse {
                operation,
                maybe_committed: write,
                details,
            },
        }
    }
}

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
        assert_eq!(map(Get, 404, Some("FLOW-1101-404")).reason(), "NotFound");
        assert_eq!(
            map(Update, 412, Some("FLOW-1404-412")).reason(),
            "PreconditionFailed"
        );
        assert_eq!(map(Get, 401, Some("401013")).reason(), "CredentialsInvalid");
        assert_eq!(map(Get, 403, Some("FLOW-2120-403")).reason(), "Forbidden");
        assert_eq!(
            map(Create, 400, Some("FLOW-1413-400")).reason(),
            "InvalidSpec"
        );
        assert_eq!(map(Create, 422, None).reason(), "InvalidSpec");
        assert_eq!(map(Create, 429, None).reason(), "RateLimited");
        assert_eq!(map(Create, 503, None).reason(), "FlowServiceUnavailable");
        assert_eq!(map(Get, 408, None).reason(), "FlowServiceUnavailable");
        assert_eq!(map(Create, 302, None).reason(), "UnexpectedResponse");
    }

    #[test]
    fn codes_refine_the_status() {
        assert_eq!(
            map(Operation::Create, 404, Some("FLOW-2100-404")).reason(),
            "InvalidSpec"
        );
        assert_eq!(
            map(Operation::Get, 400, Some("FLOW-2115-400")).reason(),
            "CredentialsInvalid"
        );
        assert_eq!(
            map(Operation::Get, 400, Some("FLOW-2114-400")).reason(),
            "CredentialsInvalid"
        );
    }

    #[test]
    fn ims_client_errors_mean_the_credentials_are_wrong() {
        for status in [400, 401, 403] {
            let error = map(Operation::Token, status, Some("invalid_client"));
            assert_eq!(error.reason(), "CredentialsInvalid");
            assert!(error.is_permanent());
        }
        assert_eq!(map(Operation::Token, 429, None).reason(), "RateLimited");
        assert_eq!(
            map(Operation::Token, 500, None).reason(),
            "FlowServiceUnavailable"
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
    fn permanence_follows_the_variant() {
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
