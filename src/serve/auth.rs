//! API keys: who is calling, and what they may ask for.
//!
//! The config holds SHA-256 digests of keys, never keys. A client sends
//! `authorization: Bearer <key>`; the server hashes it and looks the digest
//! up. Keys are 32 random bytes, so a plain fast hash is enough: there is no
//! password to guess by brute force.
//!
//! Scopes: a key names the feature services it may read (`"*"` for all),
//! the sources it may push events to (`push`, likewise), and whether it may
//! administer (ingest, apply definitions, read status, push to any source).
//! A request by feature references is allowed when every feature it names is
//! part of some service in the key's scope.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::AuthConfig;
use crate::error::Error;
use crate::registry::Registry;

/// The authenticated caller, put in the request's extensions.
#[derive(Clone, Debug)]
pub struct Caller {
    pub(crate) name: String,
    scope: Scope,
    /// Sources it may push to.
    push: Scope,
    admin: bool,
}

/// Names a key is allowed, of services or of sources.
#[derive(Clone, Debug)]
enum Scope {
    All,
    Services(BTreeSet<String>),
}

impl Scope {
    fn of(names: &[String]) -> Scope {
        if names.iter().any(|s| s == "*") {
            Scope::All
        } else {
            Scope::Services(names.iter().cloned().collect())
        }
    }

    fn allows(&self, name: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Services(names) => names.contains(name),
        }
    }
}

/// The configured keys, by digest. Empty: authentication is off.
#[derive(Debug, Default)]
pub struct Keys {
    by_digest: HashMap<[u8; 32], Arc<Caller>>,
}

impl Keys {
    pub fn from_config(config: &AuthConfig) -> Keys {
        let by_digest = config
            .keys
            .iter()
            .filter_map(|k| {
                let digest = parse_hex32(&k.sha256)?;
                let caller = Caller {
                    name: k.name.clone(),
                    scope: Scope::of(&k.services),
                    push: Scope::of(&k.push),
                    admin: k.admin,
                };
                Some((digest, Arc::new(caller)))
            })
            .collect();
        Keys { by_digest }
    }

    pub fn enabled(&self) -> bool {
        !self.by_digest.is_empty()
    }

    /// The caller an `authorization` header value names, or why not. The
    /// message never repeats the key.
    pub fn authenticate(&self, header: Option<&http::HeaderValue>) -> Result<Arc<Caller>, &'static str> {
        let header = header.ok_or("missing API key: send the metadata `authorization: Bearer <key>`")?;
        let text = header.to_str().map_err(|_| "the authorization metadata is not readable text")?;
        let key = match text.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            _ => return Err("the authorization metadata must read `Bearer <key>`"),
        };
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_digest.get(&digest).cloned().ok_or("unknown API key")
    }
}

impl Caller {
    pub fn may_read_service(&self, service: &str) -> bool {
        self.scope.allows(service)
    }

    /// Whether it may push events to `source`: an admin key, or one whose
    /// `push` names the source (or `"*"`).
    pub fn may_push(&self, source: &str) -> bool {
        self.admin || self.push.allows(source)
    }

    /// Whether every `view.feature` column is served by a service in scope.
    pub fn may_read_features<'a>(
        &self,
        registry: &Registry,
        mut columns: impl Iterator<Item = &'a str>,
    ) -> Result<(), Error> {
        let Scope::Services(names) = &self.scope else { return Ok(()) };
        let allowed: BTreeSet<&str> = names
            .iter()
            .filter_map(|n| registry.services.get(n))
            .flat_map(|s| s.columns.iter().map(|c| c.name.as_str()))
            .collect();
        match columns.find(|c| !allowed.contains(c)) {
            Some(c) => Err(Error::permission_denied(format!(
                "API key `{}` may not read `{c}`: no service in its scope serves it",
                self.name
            ))),
            None => Ok(()),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }
}

/// Lowercase hex SHA-256 of a key, as the config stores it.
pub fn digest_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random key: `fsk_` and 64 hex digits (32 random bytes).
pub fn new_key() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("reading the system's random source: {e}"))?;
    Ok(format!("fsk_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

/// Whether to warn that anyone who reaches `listen` can read and load
/// features: a non-loopback address with no keys configured.
pub fn open_to_the_network(listen: std::net::SocketAddr, keys: &Keys) -> bool {
    !listen.ip().is_loopback() && !keys.enabled()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyConfig;

    fn keys() -> (Keys, String, String) {
        let (reader, admin) = (new_key().unwrap(), new_key().unwrap());
        let config = AuthConfig {
            keys: vec![
                ApiKeyConfig {
                    name: "ranker".into(),
                    sha256: digest_hex(&reader),
                    services: vec!["ranker_v1".into()],
                    push: vec!["clicks".into()],
                    admin: false,
                },
                ApiKeyConfig {
                    name: "ops".into(),
                    sha256: digest_hex(&admin).to_uppercase(),
                    services: vec!["*".into()],
                    push: Vec::new(),
                    admin: true,
                },
            ],
        };
        (Keys::from_config(&config), reader, admin)
    }

    fn header(text: &str) -> http::HeaderValue {
        http::HeaderValue::from_str(text).unwrap()
    }

    #[test]
    fn a_key_is_known_by_its_digest_and_scoped() {
        let (keys, reader, admin) = keys();
        assert!(keys.enabled());
        let caller = keys.authenticate(Some(&header(&format!("Bearer {reader}")))).unwrap();
        assert_eq!(caller.name, "ranker");
        assert!(caller.may_read_service("ranker_v1"));
        assert!(!caller.may_read_service("other"));
        assert!(!caller.is_admin());
        let ops = keys.authenticate(Some(&header(&format!("bearer {admin}")))).unwrap();
        assert!(ops.is_admin() && ops.may_read_service("anything"));
        assert!(caller.may_push("clicks") && !caller.may_push("orders"));
        assert!(ops.may_push("orders"), "an admin key pushes anywhere");
    }

    #[test]
    fn missing_malformed_and_unknown_keys_are_refused_without_echoing_the_key() {
        let (keys, reader, _) = keys();
        assert!(keys.authenticate(None).unwrap_err().contains("Bearer"));
        assert!(keys.authenticate(Some(&header(&reader))).unwrap_err().contains("Bearer <key>"));
        assert!(keys.authenticate(Some(&header(&format!("Basic {reader}")))).is_err());
        let wrong = format!("Bearer {}x", reader);
        let err = keys.authenticate(Some(&header(&wrong))).unwrap_err();
        assert_eq!(err, "unknown API key");
        assert!(!err.contains(&reader));
    }

    #[test]
    fn keys_are_random_and_digests_are_sha256() {
        assert_ne!(new_key().unwrap(), new_key().unwrap());
        // SHA-256("abc"), from FIPS 180-2.
        assert_eq!(digest_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn only_a_non_loopback_address_without_keys_is_open() {
        let (keys, _, _) = keys();
        let none = Keys::default();
        assert!(open_to_the_network("0.0.0.0:6566".parse().unwrap(), &none));
        assert!(open_to_the_network("10.1.2.3:6566".parse().unwrap(), &none));
        assert!(!open_to_the_network("127.0.0.1:6566".parse().unwrap(), &none));
        assert!(!open_to_the_network("[::1]:6566".parse().unwrap(), &none));
        assert!(!open_to_the_network("0.0.0.0:6566".parse().unwrap(), &keys));
    }
}
