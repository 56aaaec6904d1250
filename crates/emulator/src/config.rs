//! What an emulator instance is started with: listen address, the OAuth clients it knows, its sandboxes and
//! the knobs that make it behave like a slow or provisioning-lagged Adobe.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Client id of the credential every emulator knows unless told otherwise.
pub const DEMO_CLIENT_ID: &str = "demo-client";
/// Secret of the demo credential.
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";
/// IMS organization of the demo credential.
pub const DEMO_ORG_ID: &str = "DEMO0000000000000000000@AdobeOrg";
/// Sandboxes known when none is configured, `prod` first as on a fresh AEP organization.
pub const DEFAULT_SANDBOXES: [&str; 2] = ["prod", "dev"];
/// IMS answers `expires_in: 86399` for server-to-server tokens (reference §4.1).
pub(crate) const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(86_399);

/// The default [`EmulatorConfig::max_page_size`]: the only maximum Adobe publishes, the filter-request schema's.
pub const DEFAULT_MAX_PAGE_SIZE: usize = 1000;

/// How to start an emulator. `Default` gives a random local port, the demo client and sandboxes `prod`/`dev`.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Base URL that clients use to reach the emulator, used in `inletUrl` and `Location`.
    /// `None` means `http://<bound address>`.
    pub public_url: Option<String>,
    /// OAuth server-to-server credentials that IMS accepts; each belongs to one organization.
    pub clients: Vec<ClientCredential>,
    /// Sandbox names valid in `x-sandbox-name`, the same for every organization.
    pub sandboxes: Vec<String>,
    /// Lifetime of issued access tokens.
    pub token_ttl: Duration,
    /// Latency added to every non-admin request.
    pub latency: Duration,
    /// Time after creation before a connection's inlet appears in GET and accepts data.
    pub inlet_delay: Duration,
    /// File that keeps the connections across restarts; `None` keeps them in memory only.
    pub state_file: Option<PathBuf>,
    /// Whether the emulator starts (and resets) with the demo dataset ([`crate::DEMO_DATASET_ID`]) in the demo
    /// org's `prod` sandbox.
    pub demo_dataset: bool,
    /// Accept what real clients send where Adobe's tutorials and spec disagree, instead of holding requests to
    /// the published contract: unknown query parameters are ignored, the `~` filter operator works, the inlet
    /// takes any `Content-Type` and no `syncValidation` rate limit applies. Off by default (see docs/emulator.md).
    pub lenient: bool,
    /// The largest `limit` a Flow Service list accepts; a larger one is `FLOW-1453-400`. Adobe documents no
    /// maximum for `GET` lists; 1000 is the cap of the filter-request (`/search`) schema.
    pub max_page_size: usize,
    /// Organizations for which PATCH of connections is not enabled: their PATCH answers `FLOW-1445-400`
    /// ("PATCH Connection Feature not enabled").
    pub patch_disabled_orgs: Vec<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            public_url: None,
            clients: vec![ClientCredential::demo()],
            sandboxes: DEFAULT_SANDBOXES.iter().map(|s| (*s).to_owned()).collect(),
            token_ttl: DEFAULT_TOKEN_TTL,
            latency: Duration::ZERO,
            inlet_delay: Duration::ZERO,
            state_file: None,
            demo_dataset: true,
            lenient: false,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            patch_disabled_orgs: Vec::new(),
        }
    }
}

/// One OAuth server-to-server credential: what IMS checks and which organization its tokens act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredential {
    /// The client id, also the `x-api-key` value.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// The IMS organization, `…@AdobeOrg`.
    pub org_id: String,
}

impl ClientCredential {
    /// The demo credential (`demo-client:demo-secret:DEMO0000000000000000000@AdobeOrg`).
    pub fn demo() -> Self {
        Self {
            client_id: DEMO_CLIENT_ID.to_owned(),
            client_secret: DEMO_CLIENT_SECRET.to_owned(),
            org_id: DEMO_ORG_ID.to_owned(),
        }
    }
}

/// Why a `ID:SECRET:ORG` string is not a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientCredentialParseError {
    /// Fewer than three `:`-separated parts.
    #[error("expected ID:SECRET:ORG, got {0:?}")]
    WrongShape(String),
    /// One of the parts is empty.
    #[error("client id, secret and org must all be non-empty in {0:?}")]
    EmptyPart(String),
    /// Organization ids always look like `…@AdobeOrg`.
    #[error("org {0:?} is not an IMS organization id (it must contain '@', e.g. 1234@AdobeOrg)")]
    NotAnOrg(String),
}

impl FromStr for ClientCredential {
    type Err = ClientCredentialParseError;

    /// Parses `ID:SECRET:ORG`. The id and secret may not contain `:`; everything after the second `:` is the org.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.splitn(3, ':');
        let (Some(client_id), Some(client_secret), Some(org_id)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(ClientCredentialParseError::WrongShape(text.to_owned()));
        };
        if client_id.is_empty() || client_secret.is_empty() || org_id.is_empty() {
            return Err(ClientCredentialParseError::EmptyPart(text.to_owned()));
        }
        if !org_id.contains('@') {
            return Err(ClientCredentialParseError::NotAnOrg(org_id.to_owned()));
        }
        Ok(Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            org_id: org_id.to_owned(),
        })
    }
}

impl std::fmt::Display for ClientCredential {
    /// Never prints the secret: this ends up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:***:{}", self.client_id, self.org_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_id_secret_org() {
        let credential: ClientCredential = "a:b:C@AdobeOrg".parse().unwrap();
        assert_eq!(credential.client_id, "a");
        assert_eq!(credential.client_secret, "b");
        assert_eq!(credential.org_id, "C@AdobeOrg");
    }

    #[test]
    fn rejects_missing_parts_and_orgs_without_at() {
        assert!("a:b".parse::<ClientCredential>().is_err());
        assert!("a::C@AdobeOrg".parse::<ClientCredential>().is_err());
        assert!("a:b:C".parse::<ClientCredential>().is_err());
    }

    #[test]
    fn display_hides_the_secret() {
        assert_eq!(
            ClientCredential::demo().to_string(),
            format!("demo-client:***:{DEMO_ORG_ID}")
        );
    }
}
