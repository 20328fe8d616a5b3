//! PEM files named by settings (CA bundles, client certificates and keys),
//! read and checked once at start so a wrong path or an empty file is a
//! start-up error that names the setting, never a failed handshake later.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::settings::SettingsError;

/// The certificates in a PEM file (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    certificates_in(&read(path)?)
}

/// A PEM file's certificates, each one rustls can use as a trust anchor
/// (a wrong file is refused at start, not at the first handshake).
pub fn roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = certificates(path)?;
    root_store_of(&certificates)?;
    Ok(certificates)
}

/// A PEM file's certificates as a rustls root store.
pub fn root_store(path: &Path) -> Result<rustls::RootCertStore, String> {
    root_store_of(&certificates(path)?)
}

/// The text of a PEM file of trust anchors (see `roots`).
pub fn roots_text(path: &Path) -> Result<String, String> {
    let text = read(path)?;
    root_store_of(&certificates_in(&text)?)?;
    Ok(text)
}

/// The text of a PEM file holding at least one certificate.
pub fn certificate_text(path: &Path) -> Result<String, String> {
    let text = read(path)?;
    certificates_in(&text)?;
    Ok(text)
}

/// The text of a PEM file holding a private key (PKCS#8, PKCS#1 or SEC1).
pub fn private_key_text(path: &Path) -> Result<String, String> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map_err(|_| "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned())?;
    Ok(text)
}

/// A client certificate and its key, named by two settings: both or
/// neither, else a start-up error naming the one that is set alone.
pub fn client_pair<'a>(
    (cert_name, cert): (&'static str, Option<&'a Path>),
    (key_name, key): (&'static str, Option<&'a Path>),
) -> Result<Option<(&'a Path, &'a Path)>, SettingsError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (Some(_), None) => Err(SettingsError::Invalid {
            name: cert_name,
            reason: format!("set without {key_name}"),
        }),
        (None, Some(_)) => Err(SettingsError::Invalid {
            name: key_name,
            reason: format!("set without {cert_name}"),
        }),
    }
}

/// The start-up error for the file `path` of the setting `name`: the
/// setting, the path and what is wrong with it, never its contents.
pub fn file_error(name: &'static str, path: &Path) -> impl FnOnce(String) -> SettingsError {
    let path = path.display().to_string();
    move |reason| SettingsError::Invalid {
        name,
        reason: format!("{path}: {reason}"),
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| error.to_string())
}

fn certificates_in(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())?;
    if certificates.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certificates)
}

fn root_store_of(
    certificates: &[CertificateDer<'static>],
) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate.clone())
            .map_err(|_| "holds a certificate that is not a usable CA".to_owned())?;
    }
    Ok(roots)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a wrong answer should fail loudly
mod tests {
    use super::*;

    #[test]
    fn a_client_pair_is_both_files_or_neither() {
        let cert = ("X_CLIENT_CERT", Some(Path::new("/c.pem")));
        let key = ("X_CLIENT_KEY", Some(Path::new("/k.pem")));
        let both = client_pair(cert, key).unwrap();
        assert_eq!(both, Some((Path::new("/c.pem"), Path::new("/k.pem"))));
        assert_eq!(client_pair((cert.0, None), (key.0, None)).unwrap(), None);
        let alone = client_pair(cert, (key.0, None)).unwrap_err().to_string();
        assert!(alone.contains("X_CLIENT_CERT") && alone.contains("without X_CLIENT_KEY"));
        let alone = client_pair((cert.0, None), key).unwrap_err().to_string();
        assert!(alone.contains("X_CLIENT_KEY") && alone.contains("without X_CLIENT_CERT"));
    }

    #[test]
    fn a_file_error_names_the_setting_and_the_path_but_not_the_contents() {
        let error =
            file_error("X_CA_FILE", Path::new("/etc/x.pem"))("holds no PEM certificate".into());
        assert_eq!(
            error.to_string(),
            "invalid setting X_CA_FILE: /etc/x.pem: holds no PEM certificate"
        );
    }
}
