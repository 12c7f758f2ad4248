//! Mutual TLS to a remote dockerd's `tcp://host:2376`, with the docker client's
//! `--tlsverify`: the server's certificate must chain to `tlscacert` and name the host
//! of the endpoint; berth shows `tlscert`/`tlskey` as its client certificate.
//!
//! The guest stream is the TLS stream itself (no relay task): the gateway reads and
//! writes it through rustls, and its half-close is TLS `close_notify` followed by
//! `shutdown(SHUT_WR)` (docs/conventions.md).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::{GuestStream, LeanSocket};

/// Where a TLS machine's certificates are, as the docker client's flags name them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// `tlscacert`: the CA the engine's certificate must chain to.
    pub ca: PathBuf,
    /// `tlscert`: berth's client certificate.
    pub cert: PathBuf,
    /// `tlskey`: its private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files of a `DOCKER_CERT_PATH` / `~/.docker/machine/certs` directory.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// Why a TLS configuration could not be loaded; names the file at fault.
#[derive(Debug, thiserror::Error)]
#[error("{}: {what}", path.display())]
pub struct TlsConfigError {
    path: PathBuf,
    what: String,
}

/// A loaded client configuration for one engine.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Loads `files` for an engine at `host` (a DNS name or an IP address, checked
    /// against the certificate's subject alternative names).
    pub fn load(files: &TlsFiles, host: &str) -> Result<Self, TlsConfigError> {
        let err = |path: &Path, what: String| TlsConfigError {
            path: path.to_owned(),
            what,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&files.ca)
            .map_err(|e| err(&files.ca, format!("reading the CA: {e}")))?
        {
            let cert = cert.map_err(|e| err(&files.ca, format!("reading the CA: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| err(&files.ca, format!("adding the CA: {e}")))?;
        }
        if roots.is_empty() {
            return Err(err(&files.ca, "no certificate in file".into()));
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| err(&files.cert, format!("reading the certificate: {e}")))?;
        if chain.is_empty() {
            return Err(err(&files.cert, "no certificate in file".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| err(&files.key, format!("reading the private key: {e}")))?;
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err(&files.ca, e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| err(&files.key, format!("certificate and key: {e}")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|e| err(Path::new(host), format!("not a host name: {e}")))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// Handshakes over `tcp` (a [`LeanSocket`]: no `read(2)` that finds nothing after
    /// each short read, as tokio's `TcpStream` makes).
    pub(crate) async fn connect(&self, tcp: LeanSocket) -> io::Result<GuestStream> {
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await?;
        Ok(GuestStream::transported(tls))
    }
}

/// A handshake failure in words that say what to fix: a certificate from another CA,
/// or one that does not name the host berth connects to.
pub(crate) fn describe(e: &io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(cert)) => {
            use rustls::CertificateError as C;
            match cert {
                C::UnknownIssuer | C::BadSignature => {
                    "the engine's certificate is not signed by the machine's tlscacert".to_owned()
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "the engine's certificate does not name the endpoint's host".to_owned()
                }
                C::Expired | C::ExpiredContext { .. } => {
                    "the engine's certificate has expired".to_owned()
                }
                other => format!("the engine's certificate was refused ({other:?})"),
            }
        }
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}
