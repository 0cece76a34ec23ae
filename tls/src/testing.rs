//! Certificates for tests, made when a test runs (never committed): a CA and the leaf
//! certificates it signs, written as PEM files. Feature `testing` only.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair as RcgenKey, KeyUsagePurpose,
};

use crate::{Error, KeyPair};

fn failed(e: impl std::fmt::Display) -> Error {
    Error(format!("cannot make a test certificate: {e}"))
}

fn write(path: &Path, pem: &str) -> Result<(), Error> {
    std::fs::write(path, pem).map_err(|e| Error(format!("cannot write {}: {e}", path.display())))
}

/// A test CA: its certificate is at [`Authority::cert`].
pub struct Authority {
    issuer: CertifiedIssuer<'static, RcgenKey>,
    pub cert: PathBuf,
}

impl Authority {
    /// A new CA named `name`, its certificate written to `dir/<name>.pem`.
    pub fn create(dir: &Path, name: &str) -> Result<Authority, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = RcgenKey::generate().map_err(failed)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(failed)?;
        let cert = dir.join(format!("{name}.pem"));
        write(&cert, &issuer.pem())?;
        Ok(Authority { issuer, cert })
    }

    /// A certificate for `names` (DNS names or IP addresses), good for both server and
    /// client authentication, written to `dir/<file>.pem` and `dir/<file>-key.pem`.
    pub fn issue(&self, dir: &Path, file: &str, names: &[&str]) -> Result<KeyPair, Error> {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).map_err(failed)?;
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = RcgenKey::generate().map_err(failed)?;
        let cert = params.signed_by(&key, &*self.issuer).map_err(failed)?;
        let pair = KeyPair {
            cert: dir.join(format!("{file}.pem")),
            key: dir.join(format!("{file}-key.pem")),
        };
        write(&pair.key, &key.serialize_pem())?;
        write(&pair.cert, &cert.pem())?;
        Ok(pair)
    }
}
