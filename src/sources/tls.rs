//! TLS for the sources' peers (mqtts:// brokers, upsd after STARTTLS): rustls with the ring
//! provider, the peer's CA from `ca_file` (else the system roots), an optional client
//! certificate.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("no usable CA certificate in {0} (expected PEM `CERTIFICATE` blocks)")]
    NoCa(PathBuf),
    #[error("no system CA certificates found; set ca_file")]
    NoSystemRoots,
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |message: String| TlsError::File {
        path: path.to_path_buf(),
        message,
    };
    CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(e.to_string()))
}

/// A client certificate and its key (PEM files).
pub struct ClientAuth<'a> {
    pub cert_file: &'a Path,
    pub key_file: &'a Path,
}

/// Builds the client TLS config. Reads files: call it when (re)connecting, not when
/// validating config.
pub fn client_config(
    ca_file: Option<&Path>,
    client_auth: Option<ClientAuth<'_>>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(ca) => {
            let (added, _) = roots.add_parsable_certificates(certs(ca)?);
            if added == 0 {
                return Err(TlsError::NoCa(ca.to_path_buf()));
            }
        }
        None => {
            let (added, _) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client_auth {
        Some(auth) => {
            let chain = certs(auth.cert_file)?;
            let key = PrivateKeyDer::from_pem_file(auth.key_file).map_err(|e| TlsError::File {
                path: auth.key_file.to_path_buf(),
                message: e.to_string(),
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
