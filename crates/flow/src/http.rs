//! The HTTP edge: the reqwest client, header names, response reading, transport error mapping and
//! `Retry-After` parsing. Everything that can be a pure function is one, and is unit-tested here.

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use super::error::{ErrorDetails, FlowError, FlowErrorKind};
use super::observer::Operation;

/// The OAuth client id, on every Platform API call.
pub(crate) const HEADER_API_KEY: &str = "x-api-key";
/// The IMS organization, on every Platform API call.
pub(crate) const HEADER_ORG_ID: &str = "x-gw-ims-org-id";
/// The all-lowercase sandbox name; Flow Service answers `2105-400` without it.
pub(crate) const HEADER_SANDBOX_NAME: &str = "x-sandbox-name";
/// The request id Adobe's gateway returns, quoted in errors for support cases.
pub(crate) const HEADER_REQUEST_ID: &str = "x-request-id";
/// The content type of every JSON body Flow Service accepts, JSON Patch included (per the reference).
pub(crate) const CONTENT_TYPE_JSON: &str = "application/json";

/// The largest response body the client reads. A list page of 1000 connections is a few MB; anything
/// far beyond that is a misbehaving server, not data.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Identifies the operator in Adobe's logs.
const USER_AGENT: &str = concat!("aep-streaming-operator/", env!("CARGO_PKG_VERSION"));

/// A response that arrived, with its body read in full.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The error this non-success response stands for, with credential values scrubbed from it.
    pub(crate) fn into_error<'a>(
        self,
        operation: Operation,
        secrets: impl IntoIterator<Item = &'a str>,
    ) -> FlowError {
        let retry_after = self.retry_after();
        let secrets: Vec<&str> = secrets.into_iter().collect();
        let details = ErrorDetails::from_response_redacted(
            self.status,
            &self.body,
            self.header(HEADER_REQUEST_ID),
            &secrets,
        );
        FlowError::from_status(operation, self.status, details, retry_after)
    }

    /// The `Retry-After` header, parsed (seconds or an HTTP date), when it is present and valid.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        self.header(http::header::RETRY_AFTER.as_str())
            .and_then(|value| parse_retry_after(value, SystemTime::now()))
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Builds the shared reqwest client: rustls, the configured timeouts, an optional extra trusted CA,
/// and no redirects (Flow Service never redirects, and following one could carry the bearer token to
/// another host).
pub(crate) fn build_client(
    connect_timeout: Duration,
    request_timeout: Duration,
    extra_ca_pem: Option<&[u8]>,
) -> Result<reqwest::Client, FlowError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT);
    if let Some(pem) = extra_ca_pem {
        let certificates = reqwest::Certificate::from_pem_bundle(pem).map_err(|error| {
            FlowError::configuration(format!(
                "the extra CA file is not valid PEM: {}",
                error_chain(&error)
            ))
        })?;
        if certificates.is_empty() {
            return Err(FlowError::configuration(
                "the extra CA file contains no PEM certificate",
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|error| {
        FlowError::configuration(format!(
            "cannot build the HTTP client: {}",
            error_chain(&error)
        ))
    })
}

/// Sends a request and reads the whole body (bounded), without interpreting the status.
pub(crate) async fn execute(
    operation: Operation,
    request: reqwest::RequestBuilder,
) -> Result<Response, FlowError> {
    let mut response = request
        .send()
        .await
        .map_err(|error| transport_error(operation, &error))?;
    let status = response.status().as_u16();
    let headers = std::mem::take(response.headers_mut());
    let mut body = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(FlowError::new(
                        FlowErrorKind::UnexpectedResponse,
                        operation,
                        ErrorDetails {
                            status: Some(status),
                            ..ErrorDetails::transport(format!(
                                "the response body exceeds {MAX_BODY_BYTES} bytes"
                            ))
                        },
                    )
                    .committed_if(operation.is_write()));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            // The status line arrived, so a write did reach the server.
            Err(error) => return Err(transport_error(operation, &error)),
        }
    }
    Ok(Response {
        status,
        headers,
        body: body.freeze(),
    })
}

/// Maps a failure without a (complete) response. A connect error means nothing was sent; any later
/// failure (timeout, reset, truncated body) may have happened after the server applied a write.
pub(crate) fn transport_error(operation: Operation, error: &reqwest::Error) -> FlowError {
    if error.is_builder() {
        return FlowError::configuration(format!(
            "cannot build the {operation} request: {}",
            error_chain(error)
        ));
    }
    let (maybe_committed, what) = if error.is_connect() {
        (false, "could not connect")
    } else if error.is_timeout() {
        (operation.is_write(), "timed out")
    } else {
        (operation.is_write(), "the request failed")
    };
    FlowError::new(
        FlowErrorKind::Unavailable,
        operation,
        ErrorDetails::transport(format!("{what}: {}", error_chain(error))),
    )
    .committed_if(maybe_committed)
}

/// The error and its sources on one line; reqwest's own message alone ("error sending request") does
/// not say what went wrong. Requests carry no credential in their URL, so this cannot leak one.
pub(crate) fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3). A date in the
/// past means "now"; anything else unparseable is ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Saturate absurdly long values instead of failing to parse them.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // The obsolete RFC 850 and asctime forms are still valid HTTP-dates.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:38 1994", now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = SystemTime::now();
        for value in ["", "-5", "1.5", "soon", "Sun, 99 Nov 1994 08:49:37 GMT"] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn a_bad_ca_file_is_a_configuration_error() {
        let error = build_client(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Some(b"not pem"),
        )
        .unwrap_err();
        assert_eq!(error.kind(), FlowErrorKind::Configuration);
        assert!(error.is_permanent());
    }

    #[tokio::test]
    async fn a_refused_connection_certainly_did_not_commit() {
        // Bind then drop a listener to get a port that refuses connections.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = build_client(Duration::from_secs(2), Duration::from_secs(2), None).unwrap();
        let error = execute(
            Operation::Create,
            client.post(format!("http://127.0.0.1:{port}/connections")),
        )
        .await
        .unwrap_err();
        assert_eq!(error.kind(), FlowErrorKind::Unavailable);
        assert!(!error.maybe_committed(), "{error}");
        assert!(error.to_string().contains("could not connect"), "{error}");
    }
}
