//! Checks of what the CA hands out: the CA certificate's fingerprints against the operator's pins,
//! and the signed certificate against the CA, our key and our name.
//!
//! **Invariant:** a certificate is stored only after [`check_signed`] accepted it: issued by the
//! stored CA (signature and validity checked by webpki, as a NATS server will), for our key, with
//! our name as CN.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::RootCertStore;
use sha2::Digest as _;

/// The certificates of a PEM bundle; at least one.
pub fn certificates(pem: &[u8], what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|error| anyhow::anyhow!("{what}: not a PEM certificate: {error}"))?;
    anyhow::ensure!(!certificates.is_empty(), "{what}: holds no PEM certificate");
    Ok(certificates)
}

/// SHA-256 over the DER, as `openssl x509 -noout -fingerprint -sha256` prints it
/// (upper-case hex pairs joined by colons).
pub fn fingerprint(certificate: &[u8]) -> String {
    let digest = sha2::Sha256::digest(certificate);
    let pairs: Vec<String> = digest.iter().map(|byte| format!("{byte:02X}")).collect();
    pairs.join(":")
}

/// A `--ca-fingerprint` as 64 lower-case hex digits. Accepts colons or none, any case, and the
/// prefixes `openssl` (`sha256 Fingerprint=`) and `puppet` (`(SHA256) `) print.
pub fn parse_pin(text: &str) -> anyhow::Result<String> {
    let value = text
        .rsplit(['=', ')'])
        .next()
        .unwrap_or(text)
        .trim()
        .replace([':', ' '], "")
        .to_ascii_lowercase();
    anyhow::ensure!(
        value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "--ca-fingerprint {text:?}: not a SHA-256 fingerprint (64 hex digits, colons optional)"
    );
    Ok(value)
}

/// Every certificate of the CA bundle must match one of `pins` (a bundle's extra certificate
/// would be trusted too, so each is checked). Returns the fingerprints that match none.
pub fn unpinned(bundle: &[CertificateDer<'_>], pins: &[String]) -> Vec<String> {
    bundle
        .iter()
        .map(|certificate| fingerprint(certificate))
        .filter(|print| {
            let plain = print.replace(':', "").to_ascii_lowercase();
            !pins.contains(&plain)
        })
        .collect()
}

/// What is wrong with a certificate the CA returned.
#[derive(Debug, thiserror::Error)]
pub enum SignedError {
    #[error("it is not a certificate: {0}")]
    Unparsable(String),
    #[error("it is not issued by the CA in certs/ca.pem: {0}")]
    NotByOurCa(String),
    #[error(
        "it is for another key than ours (the CA already signed a request for this name from \
         another key: clean it on the CA with `puppetserver ca clean --certname {identity}`, \
         then enroll again)"
    )]
    OtherKey { identity: String },
    #[error("its common name is {found:?}, not {identity:?}")]
    OtherName { identity: String, found: String },
}

/// Checks the signed certificate (the first of `pem`) against the CA bundle, our public key (the
/// bit string of its SubjectPublicKeyInfo) and our name.
pub fn check_signed(
    pem: &[u8],
    ca_bundle: &[CertificateDer<'static>],
    public_key: &[u8],
    identity: &str,
) -> Result<CertificateDer<'static>, SignedError> {
    let certificate = certificates(pem, "the signed certificate")
        .map_err(|error| SignedError::Unparsable(error.to_string()))?
        .remove(0);
    let (_, parsed) = x509_parser::parse_x509_certificate(&certificate)
        .map_err(|error| SignedError::Unparsable(error.to_string()))?;
    if parsed.public_key().subject_public_key.data.as_ref() != public_key {
        return Err(SignedError::OtherKey {
            identity: identity.to_owned(),
        });
    }
    let name = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    if name != identity {
        return Err(SignedError::OtherName {
            identity: identity.to_owned(),
            found: name,
        });
    }
    let mut roots = RootCertStore::empty();
    for ca in ca_bundle {
        roots
            .add(ca.clone())
            .map_err(|error| SignedError::NotByOurCa(error.to_string()))?;
    }
    // Verified as a client certificate: that is how the NATS servers will see it.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|error| SignedError::NotByOurCa(error.to_string()))?;
    verifier
        .verify_client_cert(&certificate, &[], UnixTime::now())
        .map_err(|error| SignedError::NotByOurCa(error.to_string()))?;
    Ok(certificate)
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, PublicKeyData as _,
    };

    fn new_ca() -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
    }

    fn signed(ca: &CertifiedIssuer<'static, KeyPair>, key: &KeyPair, name: &str) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.signed_by(key, ca).expect("sign").pem()
    }

    #[test]
    fn a_certificate_is_kept_only_from_our_ca_for_our_key_and_name() {
        let ca = new_ca();
        let bundle = vec![ca.der().clone()];
        let key = KeyPair::generate().expect("key");
        let good = signed(&ca, &key, "site1");
        assert!(check_signed(good.as_bytes(), &bundle, key.der_bytes(), "site1").is_ok());

        let other_key = KeyPair::generate().expect("key");
        let cases = [
            (signed(&ca, &other_key, "site1"), "another key"),
            (signed(&ca, &key, "site2"), "common name is \"site2\""),
            (signed(&new_ca(), &key, "site1"), "not issued by the CA"),
            ("garbage".to_string(), "not a certificate"),
        ];
        for (pem, expected) in cases {
            let error = check_signed(pem.as_bytes(), &bundle, key.der_bytes(), "site1")
                .expect_err(expected);
            assert!(error.to_string().contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn pins_are_read_in_the_forms_tools_print() {
        let plain = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        for text in [
            plain.clone(),
            colons.clone(),
            format!("sha256 Fingerprint={colons}"),
            format!("(SHA256) {colons}"),
        ] {
            assert_eq!(parse_pin(&text).expect(&text), plain);
        }
        assert!(parse_pin("abcd").is_err());
        assert!(parse_pin(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn fingerprints_look_like_openssl_output() {
        let print = fingerprint(b"");
        assert_eq!(
            print,
            "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:\
             78:52:B8:55"
        );
        let certificate = CertificateDer::from(Vec::new());
        let pin = print.replace(':', "").to_ascii_lowercase();
        assert!(unpinned(std::slice::from_ref(&certificate), &[pin]).is_empty());
        assert_eq!(unpinned(&[certificate], &["00".repeat(32)]), vec![print]);
    }
}
