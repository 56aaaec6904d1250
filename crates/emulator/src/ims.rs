//! IMS: `POST /ims/token/v3` with `grant_type=client_credentials` (reference §4.1), and the book of issued tokens
//! that the Flow routes and authenticated inlets check bearer tokens against.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;

use super::app::AppState;
use super::errors::ApiError;

/// Route of the token endpoint.
pub(crate) const TOKEN_ROUTE: &str = "/ims/token/v3";
/// The only grant server-to-server credentials use.
const CLIENT_CREDENTIALS: &str = "client_credentials";
/// Length of the random token value; real tokens are long JWTs, clients must treat them as opaque anyway.
const TOKEN_LENGTH: usize = 96;

/// Who a valid token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenHolder {
    /// The OAuth client that asked for the token.
    pub(crate) client_id: String,
    /// The organization of that client.
    pub(crate) org_id: String,
}

#[derive(Debug)]
struct IssuedToken {
    holder: TokenHolder,
    expires_at: Instant,
}

/// Tokens issued by this emulator. Never persisted: a restarted emulator has forgotten them, like a token
/// from another IMS environment, and clients must fetch a new one (the 401013 path).
#[derive(Debug, Default)]
pub(crate) struct TokenBook {
    tokens: HashMap<String, IssuedToken>,
}

impl TokenBook {
    /// Issue a new random token valid for `ttl`.
    pub(crate) fn issue(&mut self, holder: TokenHolder, ttl: Duration) -> String {
        let now = Instant::now();
        // Drop expired tokens here so a long benchmark that fetches many tokens does not grow the book forever.
        self.tokens.retain(|_, token| token.expires_at > now);
        let value: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(TOKEN_LENGTH)
            .map(char::from)
            .collect();
        self.tokens.insert(
            value.clone(),
            IssuedToken {
                holder,
                expires_at: now + ttl,
            },
        );
        value
    }

    /// The holder of `token` if it was issued here and has not expired.
    pub(crate) fn validate(&self, token: &str) -> Option<TokenHolder> {
        self.tokens
            .get(token)
            .filter(|issued| issued.expires_at > Instant::now())
            .map(|issued| issued.holder.clone())
    }

    /// How many unexpired tokens exist (for the admin state; never the values).
    pub(crate) fn active(&self) -> usize {
        let now = Instant::now();
        self.tokens.values().filter(|t| t.expires_at > now).count()
    }
}

/// The token in an `Authorization: Bearer <token>` header value, if it has that shape.
pub(crate) fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn ims_error(status: StatusCode, error: &'static str, description: impl Into<String>) -> ApiError {
    ApiError::Ims {
        status,
        error,
        description: description.into(),
    }
}

/// `POST /ims/token/v3`. Parameters come from the form body or, as IMS also allows, the query string; the body
/// wins when both carry one.
pub(crate) async fn issue_token(
    State(app): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut parameters: HashMap<String, String> = HashMap::new();
    if let Some(query) = query {
        parameters.extend(url::form_urlencoded::parse(query.as_bytes()).into_owned());
    }
    parameters.extend(url::form_urlencoded::parse(&body).into_owned());
    let parameter = |name: &str| {
        parameters
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };

    match parameter("grant_type") {
        Some(CLIENT_CREDENTIALS) => {}
        Some(other) => {
            return ims_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("unsupported grant_type parameter: {other}"),
            )
            .into_response();
        }
        None => {
            return ims_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "missing grant_type parameter",
            )
            .into_response();
        }
    }
    let Some(client_id) = parameter("client_id") else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "missing client_id parameter",
        )
        .into_response();
    };
    let Some(credential) = app.clients.iter().find(|c| c.client_id == client_id) else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "invalid client_id parameter",
        )
        .into_response();
    };
    if parameter("client_secret") != Some(credential.client_secret.as_str()) {
        return ims_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "invalid client_secret parameter",
        )
        .into_response();
    }
    let holder = TokenHolder {
        client_id: credential.client_id.clone(),
        org_id: credential.org_id.clone(),
    };
    let access_token = app
        .tokens
        .lock()
        .expect("token lock")
        .issue(holder, app.token_ttl);
    tracing::debug!(client_id = %credential.client_id, "issued access token");
    let mut response = Json(json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": app.token_ttl.as_secs(),
    }))
    .into_response();
    super::errors::forbid_caching(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(
            bearer_token(&HeaderValue::from_static("Bearer abc")),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&HeaderValue::from_static("bearer abc")),
            Some("abc")
        );
        assert_eq!(bearer_token(&HeaderValue::from_static("Bearer ")), None);
        assert_eq!(bearer_token(&HeaderValue::from_static("Basic abc")), None);
    }

    #[test]
    fn tokens_expire() {
        let mut book = TokenBook::default();
        let holder = TokenHolder {
            client_id: "c".into(),
            org_id: "o".into(),
        };
        let live = book.issue(holder.clone(), Duration::from_secs(60));
        let dead = book.issue(holder.clone(), Duration::ZERO);
        assert_eq!(book.validate(&live), Some(holder));
        assert_eq!(book.validate(&dead), None);
        assert_eq!(book.validate("unknown"), None);
    }
}
