//! A CA of the test's own (rcgen), for the TLS tests: PostgreSQL's and the
//! SMTP relay's server certificates, and client certificates.

/// Made fresh: a CA and a certificate for the name `localhost` (not for
/// 127.0.0.1: a name that does not match) signed by it.
pub struct TestCa {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn generate() -> TestCa {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "intake test CA");
        let issuer = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let server = server_params.signed_by(&server_key, &issuer).unwrap();
        TestCa {
            ca_pem: issuer.pem(),
            server_cert_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
            issuer,
        }
    }

    /// A client certificate signed by this CA: (certificate PEM, key PEM).
    pub fn client_certificate(&self, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (certificate.pem(), key.serialize_pem())
    }
}
