//! A development PKI (rcgen): a CA, a server certificate for localhost, one client certificate
//! per partner, and CRLs. `passerelle dev-pki` and the demo write one into the data directory;
//! the tests make theirs (expired, revoked, another CA) with the same code.
//!
//! **Never for production**: the CA key sits beside the certificates it signs.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A certificate and its key, in PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial: Vec<u8>,
}

/// A certificate authority that can issue certificates and CRLs.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub key_pem: String,
}

fn serial() -> SerialNumber {
    let mut bytes = crate::random::bytes::<16>();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Passerelle development PKI");
    dn.push(DnType::CommonName, common_name);
    dn
}

impl Authority {
    /// A new CA, valid for ten years.
    pub fn new(common_name: &str) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        params.serial_number = Some(serial());
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Authority { cert_pem: cert.pem(), key_pem, issuer: Issuer::new(params, key) })
    }

    /// Loads a CA written by [`Authority::new`] (its certificate and key in PEM).
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Authority { cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned(), issuer })
    }

    fn issue(&self, mut params: CertificateParams) -> Result<Issued, rcgen::Error> {
        let s = serial();
        params.serial_number = Some(s.clone());
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), serial: s.to_bytes() })
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid for two years.
    pub fn server(&self, names: &[&str]) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name = name(names.first().copied().unwrap_or("localhost"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(730);
        self.issue(params)
    }

    /// A client certificate with common name `cn` (and the same DNS SAN), valid between
    /// `not_before` and `not_after`.
    pub fn client(
        &self,
        cn: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn);
        if let Ok(dns) = cn.to_owned().try_into() {
            params.subject_alt_names = vec![SanType::DnsName(dns)];
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = not_before;
        params.not_after = not_after;
        self.issue(params)
    }

    /// A client certificate valid for a year from yesterday.
    pub fn client_now(&self, cn: &str) -> Result<Issued, rcgen::Error> {
        self.client(cn, OffsetDateTime::now_utc() - Duration::days(1), OffsetDateTime::now_utc() + Duration::days(365))
    }

    /// A CRL revoking `serials`, valid for thirty days.
    pub fn crl(&self, serials: &[&[u8]]) -> Result<String, rcgen::Error> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(30),
            crl_number: serial(),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer)?.pem()
    }
}

/// Where `passerelle dev-pki` writes, relative to the data directory.
pub const DIR: &str = "pki";

/// The files of a development PKI.
#[derive(Debug, Clone)]
pub struct DevPkiFiles {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub crl: PathBuf,
}

impl DevPkiFiles {
    pub fn at(data_dir: &Path) -> Self {
        let dir = data_dir.join(DIR);
        DevPkiFiles {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            crl: dir.join("ca.crl.pem"),
            dir,
        }
    }

    pub fn client_cert(&self, partner: &str) -> PathBuf {
        self.dir.join("clients").join(format!("{partner}.pem"))
    }

    pub fn client_key(&self, partner: &str) -> PathBuf {
        self.dir.join("clients").join(format!("{partner}-key.pem"))
    }
}

/// Writes a development PKI for `partners` under `data_dir/pki`, keeping what already exists
/// (so the demo's partners keep their certificates across runs). Returns the files and whether
/// anything was created.
pub fn write_dev_pki(data_dir: &Path, partners: &[&str]) -> anyhow::Result<(DevPkiFiles, bool)> {
    let files = DevPkiFiles::at(data_dir);
    let ca_key = files.dir.join("ca-key.pem");
    let mut created = false;
    let ca = if files.ca_cert.exists() && ca_key.exists() {
        Authority::load(&std::fs::read_to_string(&files.ca_cert)?, &std::fs::read_to_string(&ca_key)?)?
    } else {
        let ca = Authority::new("Passerelle development partner CA")?;
        crate::secrets::write_private(&ca_key, ca.key_pem.as_bytes())?;
        crate::secrets::write_private(&files.ca_cert, ca.cert_pem.as_bytes())?;
        created = true;
        ca
    };
    if !files.server_cert.exists() || !files.server_key.exists() {
        let server = ca.server(&["localhost", "127.0.0.1", "::1"])?;
        crate::secrets::write_private(&files.server_key, server.key_pem.as_bytes())?;
        crate::secrets::write_private(&files.server_cert, server.cert_pem.as_bytes())?;
        created = true;
    }
    if !files.crl.exists() {
        crate::secrets::write_private(&files.crl, ca.crl(&[])?.as_bytes())?;
        created = true;
    }
    for partner in partners {
        if files.client_cert(partner).exists() && files.client_key(partner).exists() {
            continue;
        }
        let client = ca.client_now(partner)?;
        crate::secrets::write_private(&files.client_key(partner), client.key_pem.as_bytes())?;
        crate::secrets::write_private(&files.client_cert(partner), client.cert_pem.as_bytes())?;
        created = true;
    }
    Ok((files, created))
}
