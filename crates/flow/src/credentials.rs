//! Adobe credentials read from a Kubernetes Secret's data, without any Kubernetes types.
//!
//! The Secret keys are fixed by the design (`clientId`, `clientSecret`, `orgId`, `scopes`, `apiKey`,
//! `accessToken`). The secret values live in [`SecretString`], whose `Debug` and `Display` never show
//! them, so a `{:?}` of [`Credentials`] anywhere (logs, panics, test failures) cannot leak one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Secret key holding the OAuth client id (also the default `x-api-key`).
pub(crate) const KEY_CLIENT_ID: &str = "clientId";
/// Secret key holding the OAuth client secret.
pub(crate) const KEY_CLIENT_SECRET: &str = "clientSecret";
/// Secret key holding the IMS organization id (`...@AdobeOrg`).
pub(crate) const KEY_ORG_ID: &str = "orgId";
/// Optional Secret key: comma-separated OAuth scopes.
pub(crate) const KEY_SCOPES: &str = "scopes";
/// Optional Secret key: the `x-api-key` value when it differs from the client id.
pub(crate) const KEY_API_KEY: &str = "apiKey";
/// Optional Secret key: a static bearer token, used when there is no client secret.
pub(crate) const KEY_ACCESS_TOKEN: &str = "accessToken";

/// The scopes an AEP server-to-server credential needs, used when the Secret has no `scopes`.
pub(crate) const DEFAULT_SCOPES: &str =
    "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session";

/// Why a credentials Secret could not be used. Messages name the key, never its value. Naming
/// the failure for users (a condition reason) is the caller's business.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// A required key is absent.
    #[error("the credentials Secret has no key `{key}`")]
    MissingKey {
        /// The Secret key.
        key: &'static str,
    },
    /// A key's value is not UTF-8 text.
    #[error("the credentials Secret key `{key}` is not valid UTF-8")]
    NotUtf8 {
        /// The Secret key.
        key: &'static str,
    },
    /// A required key (or `scopes`, when present) is blank.
    #[error("the credentials Secret key `{key}` is empty")]
    Empty {
        /// The Secret key.
        key: &'static str,
    },
    /// A value that is sent as a header holds characters no header may contain.
    #[error(
        "the credentials Secret key `{key}` contains characters that are not allowed in an HTTP header"
    )]
    InvalidValue {
        /// The Secret key.
        key: &'static str,
    },
    /// Neither way of authorizing is configured.
    #[error(
        "the credentials Secret has neither `{KEY_CLIENT_SECRET}` (OAuth server-to-server) nor `{KEY_ACCESS_TOKEN}` (static token): set one"
    )]
    NoSecretOrToken,
}

/// A secret string whose `Debug`/`Display` are redacted. Only [`SecretString::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretString(String);

impl SecretString {
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the one place that must send it on the wire.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How requests are authorized.
#[derive(Clone)]
pub(crate) enum Auth {
    /// OAuth server-to-server: mint tokens from IMS with `client_credentials`.
    ClientCredentials {
        client_secret: SecretString,
        scopes: String,
    },
    /// A bearer token given as is; it cannot be re-minted.
    StaticToken(SecretString),
}

/// Credentials for one Adobe organization, cheap to clone.
#[derive(Clone)]
pub struct Credentials {
    inner: Arc<Inner>,
}

struct Inner {
    client_id: String,
    org_id: String,
    api_key: String,
    auth: Auth,
    cache_key: String,
}

impl Credentials {
    /// Builds credentials from a Secret's `data`. `cache_key` identifies this version of the Secret
    /// (the controller passes `"<uid>/<resourceVersion>"`), so that a changed Secret gets a new token.
    ///
    /// Values are trimmed, because `kubectl create secret --from-file` keeps a file's trailing newline.
    /// Optional keys that are present but blank count as absent, since templating tools often render
    /// unset values that way.
    pub fn from_secret_data(
        data: &BTreeMap<String, Vec<u8>>,
        cache_key: impl Into<String>,
    ) -> Result<Self, CredentialsError> {
        let client_id = required(data, KEY_CLIENT_ID)?;
        let org_id = required(data, KEY_ORG_ID)?;
        let client_secret = optional(data, KEY_CLIENT_SECRET)?;
        let access_token = optional(data, KEY_ACCESS_TOKEN)?;
        let api_key = optional(data, KEY_API_KEY)?.unwrap_or_else(|| client_id.clone());
        let scopes = match optional(data, KEY_SCOPES)? {
            Some(raw) => {
                normalize_scopes(&raw).ok_or(CredentialsError::Empty { key: KEY_SCOPES })?
            }
            None => DEFAULT_SCOPES.to_owned(),
        };

        header_safe(KEY_CLIENT_ID, &client_id)?;
        header_safe(KEY_ORG_ID, &org_id)?;
        header_safe(KEY_API_KEY, &api_key)?;

        let auth = match (client_secret, access_token) {
            (Some(secret), _) => Auth::ClientCredentials {
                client_secret: SecretString::new(secret),
                scopes,
            },
            (None, Some(token)) => {
                header_safe(KEY_ACCESS_TOKEN, &token)?;
                Auth::StaticToken(SecretString::new(token))
            }
            (None, None) => return Err(CredentialsError::NoSecretOrToken),
        };

        Ok(Self {
            inner: Arc::new(Inner {
                client_id,
                org_id,
                api_key,
                auth,
                cache_key: cache_key.into(),
            }),
        })
    }

    /// The IMS organization id, sent as `x-gw-ims-org-id`.
    pub fn org_id(&self) -> &str {
        &self.inner.org_id
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The identity of the Secret version these credentials came from; the token cache is keyed by it.
    pub fn cache_key(&self) -> &str {
        &self.inner.cache_key
    }

    /// The `x-api-key` value (the client id unless the Secret sets `apiKey`).
    pub fn api_key(&self) -> &str {
        &self.inner.api_key
    }

    /// True when requests use a static `accessToken` rather than tokens minted from IMS.
    pub fn uses_static_token(&self) -> bool {
        matches!(self.inner.auth, Auth::StaticToken(_))
    }

    pub(crate) fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// Every secret value these credentials hold, so that error text can be scrubbed of them.
    pub(crate) fn secret_values(&self) -> impl Iterator<Item = &str> {
        let value = match &self.inner.auth {
            Auth::ClientCredentials { client_secret, .. } => client_secret.expose(),
            Auth::StaticToken(token) => token.expose(),
        };
        std::iter::once(value)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.inner.auth {
            Auth::ClientCredentials { .. } => "client_credentials",
            Auth::StaticToken(_) => "static_token",
        };
        let mut debug = f.debug_struct("Credentials");
        debug
            .field("client_id", &self.inner.client_id)
            .field("org_id", &self.inner.org_id)
            .field(
                "api_key_is_client_id",
                &(self.inner.api_key == self.inner.client_id),
            )
            .field("mode", &mode);
        if let Auth::ClientCredentials { scopes, .. } = &self.inner.auth {
            debug.field("scopes", scopes);
        }
        debug
            .field("secret", &"<redacted>")
            .field("cache_key", &self.inner.cache_key)
            .finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client {} of organization {}",
            self.inner.client_id, self.inner.org_id
        )
    }
}

fn read(
    data: &BTreeMap<String, Vec<u8>>,
    key: &'static str,
) -> Result<Option<String>, CredentialsError> {
    let Some(bytes) = data.get(key) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(bytes).map_err(|_| CredentialsError::NotUtf8 { key })?;
    Ok(Some(text.trim().to_owned()))
}

fn required(
    data: &BTreeMap<String, Vec<u8>>,
    key: &'static str,
) -> Result<String, CredentialsError> {
    match read(data, key)? {
        None => Err(CredentialsError::MissingKey { key }),
        Some(value) if value.is_empty() => Err(CredentialsError::Empty { key }),
        Some(value) => Ok(value),
    }
}

fn optional(
    data: &BTreeMap<String, Vec<u8>>,
    key: &'static str,
) -> Result<Option<String>, CredentialsError> {
    Ok(read(data, key)?.filter(|value| !value.is_empty()))
}

/// Trims each comma-separated scope and drops empty ones; `None` when nothing is left.
fn normalize_scopes(raw: &str) -> Option<String> {
    let scopes: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|scope| !scope.is_empty())
        .collect();
    (!scopes.is_empty()).then(|| scopes.join(","))
}

fn header_safe(key: &'static str, value: &str) -> Result<(), CredentialsError> {
    http::HeaderValue::from_str(value)
        .map(drop)
        .map_err(|_| CredentialsError::InvalidValue { key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.as_bytes().to_vec()))
            .collect()
    }

    const SECRET: &str = "p8e-SUPER-SECRET-VALUE";
    const TOKEN: &str = "eyJhbGciOi.STATIC-TOKEN-VALUE";

    #[test]
    fn oauth_credentials_default_the_api_key_and_scopes() {
        let credentials = Credentials::from_secret_data(
            &secret(&[
                ("clientId", "client-1\n"),
                ("clientSecret", SECRET),
                ("orgId", "ORG@AdobeOrg"),
            ]),
            "uid/1",
        )
        .unwrap();
        assert_eq!(credentials.client_id(), "client-1");
        assert_eq!(credentials.api_key(), "client-1");
        assert_eq!(credentials.org_id(), "ORG@AdobeOrg");
        assert_eq!(credentials.cache_key(), "uid/1");
        assert!(!credentials.uses_static_token());
        match credentials.auth() {
            Auth::ClientCredentials { scopes, .. } => assert_eq!(scopes, DEFAULT_SCOPES),
            Auth::StaticToken(_) => panic!("expected client credentials"),
        }
    }

    #[test]
    fn explicit_scopes_and_api_key_are_used() {
        let credentials = Credentials::from_secret_data(
            &secret(&[
                ("clientId", "client-1"),
                ("clientSecret", SECRET),
                ("orgId", "ORG@AdobeOrg"),
                ("apiKey", "other-key"),
                ("scopes", " openid , AdobeID,, session "),
            ]),
            "k",
        )
        .unwrap();
        assert_eq!(credentials.api_key(), "other-key");
        match credentials.auth() {
            Auth::ClientCredentials { scopes, .. } => assert_eq!(scopes, "openid,AdobeID,session"),
            Auth::StaticToken(_) => panic!("expected client credentials"),
        }
    }

    #[test]
    fn access_token_is_used_only_without_a_client_secret() {
        let static_mode = Credentials::from_secret_data(
            &secret(&[
                ("clientId", "c"),
                ("orgId", "o"),
                ("clientSecret", " "),
                ("accessToken", TOKEN),
            ]),
            "k",
        )
        .unwrap();
        assert!(static_mode.uses_static_token());

        let oauth_mode = Credentials::from_secret_data(
            &secret(&[
                ("clientId", "c"),
                ("orgId", "o"),
                ("clientSecret", SECRET),
                ("accessToken", TOKEN),
            ]),
            "k",
        )
        .unwrap();
        assert!(!oauth_mode.uses_static_token());
    }

    #[test]
    fn missing_empty_and_non_utf8_keys_are_named() {
        let missing = Credentials::from_secret_data(
            &secret(&[("orgId", "o"), ("clientSecret", SECRET)]),
            "k",
        )
        .unwrap_err();
        assert_eq!(missing, CredentialsError::MissingKey { key: "clientId" });

        let empty = Credentials::from_secret_data(
            &secret(&[("clientId", "c"), ("orgId", "  "), ("clientSecret", SECRET)]),
            "k",
        )
        .unwrap_err();
        assert_eq!(empty, CredentialsError::Empty { key: "orgId" });

        let mut data = secret(&[("clientId", "c"), ("orgId", "o")]);
        data.insert("clientSecret".into(), vec![0xff, 0xfe]);
        let not_utf8 = Credentials::from_secret_data(&data, "k").unwrap_err();
        assert_eq!(
            not_utf8,
            CredentialsError::NotUtf8 {
                key: "clientSecret"
            }
        );

        let neither =
            Credentials::from_secret_data(&secret(&[("clientId", "c"), ("orgId", "o")]), "k")
                .unwrap_err();
        assert_eq!(neither, CredentialsError::NoSecretOrToken);

        let blank_scopes = Credentials::from_secret_data(
            &secret(&[
                ("clientId", "c"),
                ("orgId", "o"),
                ("clientSecret", SECRET),
                ("scopes", " , "),
            ]),
            "k",
        )
        .unwrap_err();
        assert_eq!(blank_scopes, CredentialsError::Empty { key: "scopes" });
    }

    #[test]
    fn header_unsafe_values_are_rejected_by_key_without_echoing_them() {
        let error = Credentials::from_secret_data(
            &secret(&[
                ("clientId", "c"),
                ("orgId", "o"),
                ("accessToken", "a\u{1}b"),
            ]),
            "k",
        )
        .unwrap_err();
        assert_eq!(error, CredentialsError::InvalidValue { key: "accessToken" });
        assert!(!error.to_string().contains("a\u{1}b"));
    }

    #[test]
    fn debug_and_display_never_show_the_secret_or_token() {
        for data in [
            secret(&[("clientId", "c"), ("orgId", "o"), ("clientSecret", SECRET)]),
            secret(&[("clientId", "c"), ("orgId", "o"), ("accessToken", TOKEN)]),
        ] {
            let credentials = Credentials::from_secret_data(&data, "k").unwrap();
            for text in [
                format!("{credentials:?}"),
                format!("{credentials:#?}"),
                credentials.to_string(),
            ] {
                assert!(!text.contains(SECRET), "{text}");
                assert!(!text.contains(TOKEN), "{text}");
            }
        }
    }
}
