//! NATS decentralised (JWT) authentication for tests: an operator, its accounts and their users,
//! as `nsc` would make them, plus the nats-server configuration that trusts them and the user
//! `.creds` files clients connect with.
//!
//! JWTs are encoded here (the claim layout of nats-io/jwt v2): a `{"typ":"JWT","alg":"ed25519-nkey"}`
//! header, claims with `jti` (base32 of the SHA-512/256 of the claims without it), `iat`, `iss`,
//! `sub`, `name` and a `nats` object, each part base64url without padding, signed with ed25519 by
//! the issuer's nkey. Everything is made fresh in the test; nothing is read from outside.
//!
//! **Never** use these for anything but tests: seeds are written to plain files in temp dirs.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nkeys::KeyPair;
use serde_json::{json, Value};
use sha2::{Digest, Sha512_256};
use tempfile::TempDir;

/// An operator with its system account; issues accounts and writes the server configuration.
pub struct Operator {
    key: KeyPair,
    jwt: String,
    system: Account,
    dir: TempDir,
}

/// An account signed by an operator; issues users.
pub struct Account {
    key: KeyPair,
    jwt: String,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Operator")
            .field("public_key", &self.key.public_key())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Account")
            .field("public_key", &self.key.public_key())
            .finish_non_exhaustive()
    }
}

/// How a user JWT is made by [`Account::user_creds`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserKind {
    /// A valid user of the account.
    #[default]
    Valid,
    /// A user whose JWT expired an hour ago.
    Expired,
    /// A user JWT with the seed of another user key in the file (the nonce signature fails).
    WrongSeed,
}

impl Operator {
    /// A fresh operator named `name` and its system account (`SYS`, no JetStream).
    pub fn new(name: &str) -> Operator {
        let key = KeyPair::new_operator();
        let system_key = KeyPair::new_account();
        let system = Account {
            jwt: encode(
                &key,
                &system_key.public_key(),
                "SYS",
                account_nats(false),
                None,
            ),
            key: system_key,
        };
        let nats = json!({
            "type": "operator",
            "version": 2,
            "system_account": system.public_key(),
        });
        let jwt = encode(&key, &key.public_key(), name, nats, None);
        let dir = tempfile::Builder::new()
            .prefix("nats-jwt-")
            .tempdir()
            .expect("create a temp dir for the operator's files");
        Operator {
            key,
            jwt,
            system,
            dir,
        }
    }

    /// A new account of this operator; `jetstream` gives it unlimited JetStream (otherwise none).
    pub fn account(&self, name: &str, jetstream: bool) -> Account {
        let key = KeyPair::new_account();
        let jwt = encode(
            &self.key,
            &key.public_key(),
            name,
            account_nats(jetstream),
            None,
        );
        Account { key, jwt }
    }

    /// The operator JWT.
    pub fn jwt(&self) -> &str {
        &self.jwt
    }

    /// The directory holding the operator JWT and the creds files written by [`write_creds`](Self::write_creds).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// nats-server configuration (for `NatsServer::start_with_config`) trusting this operator, with a
    /// memory resolver preloaded with the system account and `accounts`.
    pub fn server_config(&self, accounts: &[&Account]) -> String {
        let path = self.dir.path().join("operator.jwt");
        std::fs::write(&path, &self.jwt).expect("write the operator JWT");
        let mut preload = format!("  {}: \"{}\"\n", self.system.public_key(), self.system.jwt);
        for account in accounts {
            preload.push_str(&format!(
                "  {}: \"{}\"\n",
                account.public_key(),
                account.jwt
            ));
        }
        format!(
            "operator: {:?}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n{preload}}}\n",
            path.display().to_string(),
            self.system.public_key()
        )
    }

    /// Writes `creds` to `<dir>/<name>.creds` and returns its path.
    pub fn write_creds(&self, name: &str, creds: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.creds"));
        std::fs::write(&path, creds).expect("write a creds file");
        path
    }
}

impl Account {
    /// The account's public key (`A...`).
    pub fn public_key(&self) -> String {
        self.key.public_key()
    }

    /// The account JWT.
    pub fn jwt(&self) -> &str {
        &self.jwt
    }

    /// The text of a `.creds` file for a new user `name` of this account.
    pub fn user_creds(&self, name: &str, kind: UserKind) -> String {
        let user = KeyPair::new_user();
        let expires = (kind == UserKind::Expired).then(|| now() - 3600);
        let nats = json!({
            "pub": {},
            "sub": {},
            "subs": -1,
            "data": -1,
            "payload": -1,
            "type": "user",
            "version": 2,
        });
        let jwt = encode(&self.key, &user.public_key(), name, nats, expires);
        let seed = match kind {
            UserKind::WrongSeed => KeyPair::new_user().seed(),
            UserKind::Valid | UserKind::Expired => user.seed(),
        }
        .expect("a generated user key has a seed");
        creds_text(&jwt, &seed)
    }
}

/// A `.creds` file's text: the decorated user JWT, then the decorated user seed.
pub fn creds_text(user_jwt: &str, user_seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

/// The `nats` object of an account JWT: no limits, JetStream unlimited or disabled.
fn account_nats(jetstream: bool) -> Value {
    let storage = if jetstream { -1 } else { 0 };
    json!({
        "limits": {
            "subs": -1,
            "data": -1,
            "payload": -1,
            "imports": -1,
            "exports": -1,
            "wildcards": true,
            "conn": -1,
            "leaf": -1,
            "mem_storage": storage,
            "disk_storage": storage,
            "streams": storage,
            "consumer": storage,
        },
        "default_permissions": { "pub": {}, "sub": {} },
        "type": "account",
        "version": 2,
    })
}

fn now() -> i64 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    i64::try_from(seconds).expect("seconds since 1970 fit in i64")
}

/// A signed JWT: `issuer` signs claims about `subject` with the given `nats` object.
pub fn encode(
    issuer: &KeyPair,
    subject: &str,
    name: &str,
    nats: Value,
    expires: Option<i64>,
) -> String {
    let mut claims = json!({
        "iat": now(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
    });
    if let Some(expires) = expires {
        claims["exp"] = json!(expires);
    }
    // As nats-io/jwt: the ID is the hash of the standard claims before the ID and `nats` are added.
    let digest = Sha512_256::digest(claims.to_string().as_bytes());
    claims["jti"] = json!(base32_unpadded(&digest));
    claims["nats"] = nats;
    let header = base64url_unpadded(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let payload = base64url_unpadded(claims.to_string().as_bytes());
    let signed = format!("{header}.{payload}");
    let signature = issuer
        .sign(signed.as_bytes())
        .expect("a generated key with a seed signs");
    format!("{signed}.{}", base64url_unpadded(&signature))
}

/// RFC 4648 §5 (URL- and filename-safe alphabet), without `=` padding.
fn base64url_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    encode_bits(bytes, 6, ALPHABET)
}

/// RFC 4648 §6 (standard base32 alphabet), without `=` padding.
fn base32_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    encode_bits(bytes, 5, ALPHABET)
}

/// Splits `bytes` into groups of `width` bits (the last one zero-filled on the right), each a
/// character of `alphabet`.
fn encode_bits(bytes: &[u8], width: u32, alphabet: &[u8]) -> String {
    let mask = (1u32 << width) - 1;
    let mut text = String::with_capacity(bytes.len() * 8 / width as usize + 1);
    let mut buffer = 0u32;
    let mut bits = 0u32;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= width {
            bits -= width;
            text.push(char::from(alphabet[((buffer >> bits) & mask) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        text.push(char::from(
            alphabet[((buffer << (width - bits)) & mask) as usize],
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_rfc_4648_vectors() {
        assert_eq!(base64url_unpadded(b"foob"), "Zm9vYg");
        assert_eq!(base64url_unpadded(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url_unpadded(&[0xfb, 0xff]), "-_8");
        assert_eq!(base32_unpadded(b"f"), "MY");
        assert_eq!(base32_unpadded(b"fooba"), "MZXW6YTB");
        assert_eq!(base32_unpadded(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn a_jwt_verifies_with_the_issuer_key() {
        let operator = KeyPair::new_operator();
        let jwt = encode(&operator, &operator.public_key(), "o", json!({}), None);
        let (signed, signature) = jwt.rsplit_once('.').expect("three parts");
        let signature = decode_base64url(signature);
        let public = KeyPair::from_public_key(&operator.public_key()).expect("public key");
        public
            .verify(signed.as_bytes(), &signature)
            .expect("signature verifies");
    }

    fn decode_base64url(text: &str) -> Vec<u8> {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bytes = Vec::new();
        let (mut buffer, mut bits) = (0u32, 0u32);
        for character in text.bytes() {
            let value = alphabet
                .iter()
                .position(|&a| a == character)
                .expect("base64url character");
            buffer = (buffer << 6) | value as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                bytes.push((buffer >> bits) as u8);
                buffer &= (1 << bits) - 1;
            }
        }
        bytes
    }
}
