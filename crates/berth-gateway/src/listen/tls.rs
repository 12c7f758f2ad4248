//! TLS for TCP listeners (rustls), with dockerd's meaning of its flags: `--tls` serves
//! TLS, `--tlsverify` also requires a client certificate signed by `--tlscacert`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::error::ListenError;

/// TLS settings of a TCP listener.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA bundle (PEM) that client certificates must chain to; `Some` = `--tlsverify`.
    pub client_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// Builds the acceptor; errors name the file at fault.
    pub fn acceptor(&self) -> Result<TlsAcceptor, ListenError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| tls_error(&self.cert, &format!("reading certificates: {e}")))?;
        if certs.is_empty() {
            return Err(tls_error(&self.cert, "no certificate in file"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| tls_error(&self.key, &format!("reading the private key: {e}")))?;
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(&self.cert, &e.to_string()))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca)
                    .map_err(|e| tls_error(ca, &format!("reading the CA: {e}")))?
                {
                    let cert = cert.map_err(|e| tls_error(ca, &format!("reading the CA: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| tls_error(ca, &format!("adding the CA: {e}")))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| tls_error(ca, &format!("client verifier: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| tls_error(&self.key, &format!("certificate and key: {e}")))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn tls_error(path: &Path, what: &str) -> ListenError {
    ListenError::config(path, what)
}

/// The subject of the client's certificate, as an RFC 4514 string (`CN=alice,O=dev`).
pub(crate) fn peer_subject(conn: &rustls::ServerConnection) -> Option<String> {
    let cert = conn.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.subject().to_string())
}
