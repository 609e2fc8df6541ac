//! Loading web configuration files: what exporter-toolkit accepts loads, the rest is refused
//! with the file and key named. (Certificates and real clients: tests/e2e/web_config.rs.)

use super::*;

fn load_text(text: &str) -> anyhow::Result<WebSettings> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("web.yml");
    std::fs::write(&path, text).expect("write the web config");
    load(&path)
}

#[test]
fn an_empty_file_means_plain_http_without_auth() {
    let settings = load_text("").expect("an empty file is valid");
    assert!(settings.tls.is_none() && settings.users.is_empty());
}

#[test]
fn basic_auth_users_without_tls_load_with_their_hashes() {
    let hash = bcrypt::hash("secret", 4).expect("hash");
    let settings = load_text(&format!("basic_auth_users:\n  alice: {hash:?}\n")).expect("valid");
    assert!(settings.tls.is_none());
    assert_eq!(settings.users.get("alice"), Some(&hash));
}

#[test]
fn problems_name_the_file_and_the_key() {
    let cases: &[(&str, &str)] = &[
        (
            "tls_server_config:\n  key_fil: a\n",
            "unknown field `key_fil`",
        ),
        (
            "basic_auth_users:\n  bob: \"$2y$10$short\"\n",
            "basic_auth_users.bob: is not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  key_file: k.pem\n",
            "cert_file and key_file are both required",
        ),
        (
            "http_server_config:\n  headers: {}\n",
            "unknown field `headers`",
        ),
    ];
    for (text, expected) in cases {
        let error = format!("{:#}", load_text(text).expect_err(text));
        assert!(error.starts_with("web_config_file "), "{error}");
        assert!(error.contains(expected), "{text}: {error}");
        assert!(!error.contains("$2y$"), "a hash leaked into {error}");
    }
}

#[test]
fn client_auth_types_are_exporter_toolkits() {
    for (name, verifies, mandatory) in [
        ("NoClientCert", false, false),
        ("RequestClientCert", false, false),
        ("RequireAnyClientCert", false, true),
        ("VerifyClientCertIfGiven", true, false),
        ("RequireAndVerifyClientCert", true, true),
    ] {
        let mode = ClientAuth::parse(name).expect(name);
        assert_eq!(
            (mode.verifies(), mode.mandatory()),
            (verifies, mandatory),
            "{name}"
        );
    }
    assert_eq!(ClientAuth::parse("RequireClientCert"), None);
}

#[test]
fn the_dummy_hash_of_unknown_users_is_a_real_bcrypt_hash() {
    assert_eq!(
        bcrypt::verify("anything", server::DUMMY_HASH).ok(),
        Some(false)
    );
}
