//! A tiny HTTPS server for the `--ca-file` test: a certificate for `127.0.0.1`/`localhost` signed by a
//! test CA (generated once with openssl, valid until 2126), and a hand-written HTTP/1.1 responder.
//!
//! The keys below protect nothing: they exist only so that tests can prove an extra trusted CA works.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// The test CA, which `--ca-file` would point at.
pub const TEST_CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBpDCCAUugAwIBAgIUBjQIzoJBBsYgDZ3KgztLNcjDyqgwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUYWVwLW9wZXJhdG9yIHRlc3QgQ0EwIBcNMjYxMTI4MjAzNjU5
WhgPMjEyNjExMDQyMDM2NTlaMB8xHTAbBgNVBAMMFGFlcC1vcGVyYXRvciB0ZXN0
IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAELexu2WNroniKqv4m58BT8MKU
Qt87O2qfZROR66ZXKr9t3E97XnMchaQhxp0Zt1KqKhhCyapHujEPspwrUQtRbaNj
MGEwHQYDVR0OBBYEFJZueDJvIdhVN5zxkertZw6/Sd6VMB8GA1UdIwQYMBaAFJZu
eDJvIdhVN5zxkertZw6/Sd6VMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQD
AgEGMAoGCCqGSM49BAMCA0cAMEQCIHQqtDv/nmVbgFcZVFOnosmkCeDN4ooGBxj8
f0aKeGQIAiBNFPC7FkPHPpjH0vCmzBgtcm68Q5xtPNPohrjw/jl0ug==
-----END CERTIFICATE-----
";

const SERVER_CERT_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIByjCCAXCgAwIBAgIUa1zNEa1jCGyOvLfv+8PeymkLQm4wCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUYWVwLW9wZXJhdG9yIHRlc3QgQ0EwIBcNMjYxMTI4MjAzNjU5
WhgPMjEyNjExMDQyMDM2NTlaMBQxEjAQBgNVBAMMCWxvY2FsaG9zdDBZMBMGByqG
SM49AgEGCCqGSM49AwEHA0IABHkK4OwNFR9p2RJKXdc+XZqVcOtt0EmKwLy7QSYa
zRUDj4TVAQWZ7nhT1P27bG3sgqBrWYzpzOqz4x0wyf9Zw6ujgZIwgY8wDAYDVR0T
AQH/BAIwADAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwEwGgYD
VR0RBBMwEYIJbG9jYWxob3N0hwR/AAABMB0GA1UdDgQWBBR+iYk1nBdFBygwBEIm
D2XqKfgZNDAfBgNVHSMEGDAWgBSWbngybyHYVTec8ZHq7WcOv0nelTAKBggqhkjO
PQQDAgNIADBFAiBjHWbL+6RqJvCWlNGIHw8abiYKp+e9U+pCoN6cevv0igIhANlc
QJ7TCsOjfdBLM1cDUhUe3oQGxJxDoGwXC7bt2sqr
-----END CERTIFICATE-----
";

const SERVER_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzKa8sWwe4mZBFw2g
saZVEKgGY1N3i33xhHCmEN/rX1+hRANCAAR5CuDsDRUfadkSSl3XPl2alXDrbdBJ
isC8u0EmGs0VA4+E1QEFme54U9T9u2xt7IKga1mM6czqs+MdMMn/WcOr
-----END PRIVATE KEY-----
";

/// Serves HTTPS on a random port. `/ims/...` answers a token; anything else answers `GET
/// /connections/{id}` with one connection. Returns the base URL.
pub async fn start_tls_server() -> String {
    let certs = vec![CertificateDer::from_pem_slice(SERVER_CERT_PEM.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY_PEM.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Handshake failures (an untrusting client) just end this connection.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                loop {
                    let mut request = Vec::new();
                    let mut buffer = [0_u8; 4096];
                    // Read the head; these test requests carry small bodies that arrive with it.
                    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                        match tls.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let head = String::from_utf8_lossy(&request);
                    let body = if head.starts_with("POST /ims/") {
                        r#"{"access_token":"tls-token","token_type":"bearer","expires_in":3600}"#
                            .to_owned()
                    } else {
                        r#"{"items":[{"id":"tls-1","name":"over TLS","etag":"\"e\"","state":"enabled"}]}"#.to_owned()
                    };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("https://127.0.0.1:{}", address.port())
}
