//! TLS for mqtts:// brokers: the sources' shared rustls setup (`sources/tls.rs`) with the
//! source's CA and optional client certificate.

use crate::config::MqttSource;
use crate::sources::tls::ClientAuth;
pub use crate::sources::tls::TlsError;
use std::sync::Arc;

/// Builds the client TLS config. Reads files: call it when (re)connecting, not when
/// validating config.
pub fn client_config(cfg: &MqttSource) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let client_auth = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert_file), Some(key_file)) => Some(ClientAuth {
            cert_file,
            key_file,
        }),
        _ => None,
    };
    crate::sources::tls::client_config(cfg.ca_file.as_deref(), client_auth)
}
