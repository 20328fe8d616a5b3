//! TLS to the SMTP relay with the partner's own CA (and, for a relay that
//! asks for one, a client certificate).
//!
//! The URL stays the source of the mode, by lettre's own rule: `smtps://` is
//! TLS from the first byte, `smtp://…?tls=required` is STARTTLS that must
//! succeed, `smtp://` without `tls` is plain text and `tls=opportunistic`
//! falls back to plain text when the relay offers no STARTTLS. With a CA
//! file or a client certificate only the first two are accepted: the files
//! say the operator expects TLS, and the other two would send the e-mail,
//! with its address, in the clear; that is a start-up error, not a guess.
//!
//! A CA file replaces the built-in roots (libpq's `sslrootcert`: only this
//! CA): a partner with an internal CA wants its relay and nothing a public
//! CA signed for that name. Without one, lettre's built-in roots (Mozilla's,
//! compiled in) are used as before.

use std::path::Path;

use common::pem::file_error;
use common::settings::SettingsError;
use lettre::transport::smtp::client::{
    Certificate, CertificateStore, Identity, Tls, TlsParameters,
};
use rustls::pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretString};

use super::EmailSetupError;

/// The relay's TLS material, read and checked at start.
#[derive(Clone, Debug, Default)]
pub struct SmtpTls {
    /// The certificates of `INTAKE_SMTP_CA_FILE`; `None`: the built-in roots.
    pub roots: Option<Vec<CertificateDer<'static>>>,
    pub client: Option<ClientIdentity>,
}

/// `INTAKE_SMTP_CLIENT_CERT` and `INTAKE_SMTP_CLIENT_KEY`.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    /// The file's first certificate: lettre presents one certificate, no
    /// chain, so the relay must know the CA that signed it.
    certificate: CertificateDer<'static>,
    /// The key file as read (PEM).
    key_pem: SecretString,
}

impl SmtpTls {
    /// Reads the files the settings name; each error names its setting and
    /// the path, never the contents.
    pub fn from_files(
        ca_file: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<SmtpTls, SettingsError> {
        let roots = ca_file
            .map(|path| common::pem::roots(path).map_err(file_error(CA_FILE, path)))
            .transpose()?;
        let pair = common::pem::client_pair((CLIENT_CERT, client_cert), (CLIENT_KEY, client_key))?;
        let client = match pair {
            None => None,
            Some((cert, key)) => Some(ClientIdentity {
                certificate: read_client_certificate(cert)?,
                key_pem: read_client_key(key)?,
            }),
        };
        Ok(SmtpTls { roots, client })
    }

    fn is_empty(&self) -> bool {
        self.roots.is_none() && self.client.is_none()
    }

    /// The setting that asks for TLS, for the error when the URL does not.
    fn named_by(&self) -> &'static str {
        if self.roots.is_some() {
            CA_FILE
        } else {
            CLIENT_CERT
        }
    }

    fn parameters(&self, host: &str) -> Result<TlsParameters, lettre::transport::smtp::Error> {
        let mut builder = TlsParameters::builder(host.to_owned());
        if let Some(roots) = &self.roots {
            builder = builder.certificate_store(CertificateStore::None);
            for root in roots {
                builder = builder.add_root_certificate(Certificate::from_der(root.to_vec())?);
            }
        }
        if let Some(client) = &self.client {
            // With the rustls backend lettre takes the certificate bytes as
            // they are, DER, whatever the name `from_pem` says (0.11.23);
            // the key it parses from PEM. The client-certificate test
            // catches a lettre that changes this.
            let identity = Identity::from_pem(
                client.certificate.as_ref(),
                client.key_pem.expose_secret().as_bytes(),
            )?;
            builder = builder.identify_with(identity);
        }
        builder.build()
    }
}

const CA_FILE: &str = "INTAKE_SMTP_CA_FILE";
const CLIENT_CERT: &str = "INTAKE_SMTP_CLIENT_CERT";
const CLIENT_KEY: &str = "INTAKE_SMTP_CLIENT_KEY";

fn read_client_certificate(path: &Path) -> Result<CertificateDer<'static>, SettingsError> {
    let mut chain = common::pem::certificates(path).map_err(file_error(CLIENT_CERT, path))?;
    Ok(chain.remove(0))
}

fn read_client_key(path: &Path) -> Result<SecretString, SettingsError> {
    let text = common::pem::private_key_text(path).map_err(file_error(CLIENT_KEY, path))?;
    Ok(SecretString::from(text))
}

/// The transport's TLS when `tls` has material: lettre's mode for `url`
/// with these parameters; `None`: lettre's own choice from the URL.
pub fn transport_tls(url: &str, tls: &SmtpTls) -> Result<Option<Tls>, EmailSetupError> {
    if tls.is_empty() {
        return Ok(None);
    }
    let url = url::Url::parse(url)
        .map_err(|_| EmailSetupError::Smtp("INTAKE_SMTP_URL is not a URL".into()))?;
    let host = url
        .host_str()
        .ok_or_else(|| EmailSetupError::Smtp("INTAKE_SMTP_URL names no host".into()))?;
    // lettre's rule (connection_url.rs): the first `tls` pair counts.
    let mode = url
        .query_pairs()
        .find(|(key, _)| key == "tls")
        .map(|(_, value)| value.into_owned());
    let wrap: fn(TlsParameters) -> Tls = match (url.scheme(), mode.as_deref()) {
        ("smtps", _) => Tls::Wrapper,
        ("smtp", Some("required")) => Tls::Required,
        _ => {
            return Err(EmailSetupError::Smtp(format!(
                "{} needs TLS to the relay: smtps://host:465 or smtp://host:587?tls=required \
                 (this INTAKE_SMTP_URL could send in plain text)",
                tls.named_by()
            )));
        }
    };
    let parameters = tls.parameters(host).map_err(|error| {
        EmailSetupError::Smtp(format!("cannot set up TLS to the relay: {error}"))
    })?;
    Ok(Some(wrap(parameters)))
}

/// Why a send failed in TLS, in a few words (no certificate contents, no
/// address); `None`: not a TLS failure.
pub fn failure_reason(error: &lettre::transport::smtp::Error) -> Option<String> {
    use rustls::CertificateError as Cert;
    let reason = match rustls_error(error)? {
        rustls::Error::InvalidCertificate(
            Cert::NotValidForName | Cert::NotValidForNameContext { .. },
        ) => "certificate not valid for the relay's name".to_owned(),
        rustls::Error::InvalidCertificate(
            Cert::Expired
            | Cert::ExpiredContext { .. }
            | Cert::NotValidYet
            | Cert::NotValidYetContext { .. },
        ) => "certificate expired or not yet valid".to_owned(),
        rustls::Error::InvalidCertificate(_) => "certificate not trusted".to_owned(),
        rustls::Error::AlertReceived(alert) => format!("the relay refused it ({alert:?})"),
        _ => "TLS error".to_owned(),
    };
    Some(format!("SMTP TLS handshake failed: {reason}"))
}

/// The rustls error under lettre's, which tokio-rustls wraps in an
/// `io::Error` (whose `source()` skips it, hence `get_ref`).
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        cause = current.source();
    }
    None
}
