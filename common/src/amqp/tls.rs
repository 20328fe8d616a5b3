//! TLS to the broker (`amqps://` nodes): lapin's rustls, verifying the
//! broker's certificate and name against the system's roots and, where the
//! broker's certificate comes from a CA of the partner's own, the CA file
//! `INTAKE_AMQP_CA_FILE` as well; a client certificate where the broker
//! asks for one (`ssl_options.fail_if_no_peer_cert`).

use std::path::Path;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};

use crate::pem;
use crate::settings::SettingsError;

/// The TLS material of every broker connection (empty: system roots only,
/// no client certificate). Its `Debug` never shows the key.
#[derive(Clone, Default)]
pub struct AmqpTls(OwnedTLSConfig);

impl std::fmt::Debug for AmqpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTls")
            .field("ca_file", &self.0.cert_chain.is_some())
            .field("client_certificate", &self.0.identity.is_some())
            .finish()
    }
}

impl AmqpTls {
    /// Reads and checks the files of `INTAKE_AMQP_CA_FILE`,
    /// `INTAKE_AMQP_CLIENT_CERT` and `INTAKE_AMQP_CLIENT_KEY`.
    pub fn from_files(
        ca_file: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<AmqpTls, SettingsError> {
        let cert_chain = ca_file
            .map(|path| read("INTAKE_AMQP_CA_FILE", path, pem::roots_text))
            .transpose()?;
        let pair = pem::client_pair(
            ("INTAKE_AMQP_CLIENT_CERT", client_cert),
            ("INTAKE_AMQP_CLIENT_KEY", client_key),
        )?;
        let identity = match pair {
            None => None,
            Some((cert, key)) => Some(OwnedIdentity::PKCS8 {
                pem: read("INTAKE_AMQP_CLIENT_CERT", cert, pem::certificate_text)?.into_bytes(),
                key: read("INTAKE_AMQP_CLIENT_KEY", key, pem::private_key_text)?.into_bytes(),
            }),
        };
        Ok(AmqpTls(OwnedTLSConfig {
            identity,
            cert_chain,
        }))
    }

    /// Whether any TLS material was given (then every node must be `amqps://`).
    pub fn is_configured(&self) -> bool {
        self.0.cert_chain.is_some() || self.0.identity.is_some()
    }

    /// lapin's form of it.
    pub fn config(&self) -> OwnedTLSConfig {
        self.0.clone()
    }
}

fn read(
    name: &'static str,
    path: &Path,
    check: impl FnOnce(&Path) -> Result<String, String>,
) -> Result<String, SettingsError> {
    check(path).map_err(pem::file_error(name, path))
}
