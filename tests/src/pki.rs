//! Test certificates: a CA made with `rcgen` inside the test, and server and client leaves it
//! signs, written as PEM files into a temp directory (also in Puppet's `ssl_dir` layout).
//!
//! A leaf is always CA-signed: webpki refuses a self-signed leaf (CaUsedAsEndEntity).
//!
//! **Invariant:** every name a leaf carries is loopback (`localhost`, 127.0.0.1).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use tempfile::TempDir;

/// A CA that signs server and client certificates, writing PEM files into a temp directory.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: TempDir,
}

/// A certificate and its key written to disk.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA named "`name` test CA"; its certificate is at [`Pki::ca_path`].
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("self-signed CA");
        let dir = tempfile::Builder::new()
            .prefix("pki-")
            .tempdir()
            .expect("temp dir for certificates");
        let pki = Pki { ca, dir };
        std::fs::write(pki.ca_path(), pki.ca.pem()).expect("write the CA");
        pki
    }

    /// The CA certificate's PEM file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The CA certificate as PEM text.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The directory the files are written to.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A leaf for `localhost` and 127.0.0.1 with CN `name`, for server or client authentication,
    /// valid now or expired in 2021.
    pub fn leaf(&self, name: &str, server: bool, expired: bool) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("sign the leaf");
        let leaf = Leaf {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        };
        std::fs::write(&leaf.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&leaf.key, key.serialize_pem()).expect("write the key");
        leaf
    }

    /// Puppet's layout under `<dir>/ssl` for `identity`: the returned path is `ssl_dir`.
    pub fn puppet_ssl_dir(&self, identity: &str) -> PathBuf {
        let leaf = self.leaf(identity, false, false);
        let ssl = self.dir.path().join("ssl");
        std::fs::create_dir_all(ssl.join("certs")).expect("certs dir");
        std::fs::create_dir_all(ssl.join("private_keys")).expect("private_keys dir");
        std::fs::copy(self.ca_path(), ssl.join("certs/ca.pem")).expect("copy CA");
        std::fs::copy(&leaf.cert, ssl.join(format!("certs/{identity}.pem"))).expect("copy cert");
        std::fs::copy(&leaf.key, ssl.join(format!("private_keys/{identity}.pem")))
            .expect("copy key");
        ssl
    }
}
