//! Node signing keys (Ed25519), key ids and the on-disk keyring.
//!
//! **Key id.** A key's `kid` is its RFC 7638 JWK thumbprint: the base64url (no padding) SHA-256 of the JSON
//! `{"crv":"Ed25519","kty":"OKP","x":"<base64url public key>"}` (RFC 8037 §2 for the OKP members). It is a
//! pure function of the public key, so anyone holding the directory can recompute and check it, and any JOSE
//! library computes the same value; 43 characters, collisions are as unlikely as SHA-256 collisions.
//!
//! **Keyring file.** JSON, written with mode 0600 through a temporary file and a rename, so a crash never
//! leaves a half-written keyring:
//!
//! ```json
//! {"format":"caravan-keyring/1","node_id":"hospital-a",
//!  "active":{"kid":"…","public_key":"…","private_key":"…","created":"2026-12-01T10:00:00Z"},
//!  "retired":[{"kid":"…","public_key":"…","created":"…","retired":"…"}]}
//! ```
//!
//! Private keys are the raw 32-byte Ed25519 seed in base64url (the JWK `d` member's form). Retired keys keep
//! only their public half: they exist so that signatures made before a rotation can still be checked.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The keyring file format tag.
pub const KEYRING_FORMAT: &str = "caravan-keyring/1";

/// Errors about keys and keyring files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Base64url text that does not decode.
    #[error("invalid base64url in {what}")]
    Base64 {
        /// Which field was being decoded.
        what: &'static str,
    },
    /// A key of the wrong length.
    #[error("{what} must be {expected} bytes, got {got}")]
    Length {
        /// Which field.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// Bytes that are not a valid Ed25519 public key (not a curve point, or a weak small-order point).
    #[error("not a valid Ed25519 public key")]
    InvalidPublicKey,
    /// The stored kid does not match the public key it is stored with.
    #[error("kid {stored} does not match its public key (expected {computed})")]
    KidMismatch {
        /// The kid as stored.
        stored: String,
        /// The kid computed from the public key.
        computed: String,
    },
    /// The stored public key does not match the private key.
    #[error("public key does not match the private key of {kid}")]
    PublicKeyMismatch {
        /// The key's kid.
        kid: String,
    },
    /// The keyring file is malformed.
    #[error("keyring: {0}")]
    Keyring(String),
    /// A key file in none of the accepted forms.
    #[error("unrecognised key file {path}: expected a Caravan keyring (JSON), a PKCS#8/SPKI PEM or a base64url key")]
    UnrecognisedKeyFile {
        /// The file.
        path: String,
    },
    /// File input/output.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Encodes bytes as base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
pub fn b64url_decode(text: &str, what: &'static str) -> Result<Vec<u8>, KeyError> {
    URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|_| KeyError::Base64 { what })
}

/// A key id: the RFC 7638 JWK thumbprint of an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Kid(String);

impl Kid {
    /// The kid of a public key.
    pub fn of(key: &VerifyingKey) -> Kid {
        // RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
        let jwk = format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
            b64url(key.as_bytes())
        );
        Kid(b64url(&Sha256::digest(jwk.as_bytes())))
    }

    /// Wraps a kid received from elsewhere (not checked against any key).
    pub fn from_string(kid: impl Into<String>) -> Kid {
        Kid(kid.into())
    }

    /// The kid text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a base64url raw 32-byte Ed25519 public key, refusing weak (small-order) points.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = b64url_decode(text, "public key")?;
    let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Length {
        what: "public key",
        expected: 32,
        got: bytes.len(),
    })?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| KeyError::InvalidPublicKey)?;
    if key.is_weak() {
        return Err(KeyError::InvalidPublicKey);
    }
    Ok(key)
}

/// Verifies an Ed25519 signature strictly (rejecting non-canonical encodings and weak keys).
pub fn verify_signature(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &sig).is_ok()
}

/// A node's signing key with its kid.
#[derive(Clone)]
pub struct NodeKey {
    kid: Kid,
    signing: SigningKey,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("NodeKey").field("kid", &self.kid).finish()
    }
}

impl NodeKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> NodeKey {
        NodeKey::from_signing_key(SigningKey::generate(&mut OsRng))
    }

    /// A key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> NodeKey {
        NodeKey::from_signing_key(SigningKey::from_bytes(seed))
    }

    /// A key from an ed25519-dalek signing key.
    pub fn from_signing_key(signing: SigningKey) -> NodeKey {
        NodeKey {
            kid: Kid::of(&signing.verifying_key()),
            signing,
        }
    }

    /// A key from a PKCS#8 PEM document (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey -algorithm
    /// ed25519` writes).
    pub fn from_pkcs8_pem(pem: &str) -> Result<NodeKey, KeyError> {
        let signing = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| KeyError::Keyring(format!("PKCS#8: {e}")))?;
        Ok(NodeKey::from_signing_key(signing))
    }

    /// The key id.
    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key, base64url.
    pub fn public_key_b64(&self) -> String {
        b64url(self.signing.verifying_key().as_bytes())
    }

    /// Signs a message; Ed25519 is deterministic.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    fn seed_b64(&self) -> String {
        b64url(self.signing.as_bytes())
    }
}

/// A public key kept for verification after its private half was rotated away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredKey {
    /// Its kid.
    pub kid: Kid,
    /// The raw public key, base64url.
    pub public_key: String,
    /// When the key was made.
    pub created: DateTime<Utc>,
    /// When it stopped being the active key.
    pub retired: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActiveKeyFile {
    kid: Kid,
    public_key: String,
    private_key: String,
    created: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node_id: Option<String>,
    active: ActiveKeyFile,
    #[serde(default)]
    retired: Vec<RetiredKey>,
}

/// A node's keys: one active signing key and the retired public keys.
#[derive(Debug, Clone)]
pub struct Keyring {
    /// The node this keyring belongs to, if recorded.
    pub node_id: Option<String>,
    active: NodeKey,
    active_created: DateTime<Utc>,
    retired: Vec<RetiredKey>,
}

impl Keyring {
    /// A new keyring with a freshly generated active key.
    pub fn generate(node_id: Option<String>, now: DateTime<Utc>) -> Keyring {
        Keyring {
            node_id,
            active: NodeKey::generate(),
            active_created: now,
            retired: Vec::new(),
        }
    }

    /// The active signing key.
    pub fn active(&self) -> &NodeKey {
        &self.active
    }

    /// When the active key was made.
    pub fn active_created(&self) -> DateTime<Utc> {
        self.active_created
    }

    /// The retired keys, oldest first.
    pub fn retired(&self) -> &[RetiredKey] {
        &self.retired
    }

    /// Makes a new active key and keeps the old one's public half as retired. Returns the new kid.
    pub fn rotate(&mut self, now: DateTime<Utc>) -> Kid {
        let old = std::mem::replace(&mut self.active, NodeKey::generate());
        self.retired.push(RetiredKey {
            kid: old.kid.clone(),
            public_key: old.public_key_b64(),
            created: self.active_created,
            retired: now,
        });
        self.active_created = now;
        self.active.kid.clone()
    }

    /// The public key for a kid, active or retired.
    pub fn verifying_key(&self, kid: &Kid) -> Option<VerifyingKey> {
        if &self.active.kid == kid {
            return Some(self.active.verifying_key());
        }
        self.retired
            .iter()
            .find(|k| &k.kid == kid)
            .and_then(|k| parse_public_key(&k.public_key).ok())
    }

    /// Parses a keyring from its JSON text, checking every kid against its key.
    pub fn from_json(text: &str) -> Result<Keyring, KeyError> {
        let file: KeyringFile =
            serde_json::from_str(text).map_err(|e| KeyError::Keyring(e.to_string()))?;
        if file.format != KEYRING_FORMAT {
            return Err(KeyError::Keyring(format!(
                "unknown format {:?} (expected {KEYRING_FORMAT})",
                file.format
            )));
        }
        let seed = b64url_decode(&file.active.private_key, "private key")?;
        let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| KeyError::Length {
            what: "private key",
            expected: 32,
            got: seed.len(),
        })?;
        let active = NodeKey::from_seed(&seed);
        if active.public_key_b64() != file.active.public_key {
            return Err(KeyError::PublicKeyMismatch {
                kid: file.active.kid.to_string(),
            });
        }
        if active.kid != file.active.kid {
            return Err(KeyError::KidMismatch {
                stored: file.active.kid.to_string(),
                computed: active.kid.to_string(),
            });
        }
        for r in &file.retired {
            let key = parse_public_key(&r.public_key)?;
            let computed = Kid::of(&key);
            if computed != r.kid {
                return Err(KeyError::KidMismatch {
                    stored: r.kid.to_string(),
                    computed: computed.to_string(),
                });
            }
        }
        Ok(Keyring {
            node_id: file.node_id,
            active,
            active_created: file.active.created,
            retired: file.retired,
        })
    }

    /// The keyring as pretty JSON (contains the private key).
    pub fn to_json(&self) -> String {
        let file = KeyringFile {
            format: KEYRING_FORMAT.to_string(),
            node_id: self.node_id.clone(),
            active: ActiveKeyFile {
                kid: self.active.kid.clone(),
                public_key: self.active.public_key_b64(),
                private_key: self.active.seed_b64(),
                created: self.active_created,
            },
            retired: self.retired.clone(),
        };
        // Serialising plain strings and dates cannot fail; fall back to an empty object rather than panic.
        serde_json::to_string_pretty(&file).unwrap_or_else(|_| "{}".to_string()) + "\n"
    }

    /// Loads a keyring file.
    pub fn load(path: &Path) -> Result<Keyring, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Keyring::from_json(&text)
    }

    /// Writes the keyring with mode 0600, atomically (temporary file in the same folder, then rename).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_private_file(path, self.to_json().as_bytes())
    }

    /// The directory `keys` entries for this keyring: the active key plus retired keys (with `not_after`
    /// set to their retirement time).
    pub fn directory_keys(&self) -> Vec<crate::directory::MemberKey> {
        use crate::directory::{KeyStatus, MemberKey};
        let mut keys = vec![MemberKey {
            kid: self.active.kid.clone(),
            public_key: self.active.public_key_b64(),
            status: KeyStatus::Active,
            not_before: self.active_created,
            not_after: None,
        }];
        keys.extend(self.retired.iter().map(|r| MemberKey {
            kid: r.kid.clone(),
            public_key: r.public_key.clone(),
            status: KeyStatus::Retired,
            not_before: r.created,
            not_after: Some(r.retired),
        }));
        keys
    }
}

/// Writes a file readable only by its owner, atomically.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keyring".to_string());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut f = options.open(&tmp)?;
        #[cfg(unix)]
        {
            // The mode above only applies when the file is created; make sure of it either way.
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Loads a signing key from a file: a Caravan keyring (its active key), a PKCS#8 PEM, or a raw base64url seed.
pub fn load_signing_key(path: &Path) -> Result<NodeKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        return Ok(Keyring::from_json(trimmed)?.active().clone());
    }
    if trimmed.starts_with("-----BEGIN") {
        return NodeKey::from_pkcs8_pem(trimmed);
    }
    if let Ok(seed) = b64url_decode(trimmed, "private key") {
        if let Ok(seed) = <[u8; 32]>::try_from(seed.as_slice()) {
            return Ok(NodeKey::from_seed(&seed));
        }
    }
    Err(KeyError::UnrecognisedKeyFile {
        path: path.display().to_string(),
    })
}

/// Reads public keys from an argument: a base64url raw key, or a file holding a keyring (its active and
/// retired public keys), SPKI PEM (`-----BEGIN PUBLIC KEY-----`) or base64url keys one per line.
pub fn load_public_keys(arg: &str) -> Result<Vec<VerifyingKey>, KeyError> {
    if let Ok(key) = parse_public_key(arg) {
        return Ok(vec![key]);
    }
    let path = Path::new(arg);
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: arg.to_string(),
        source,
    })?;
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        let ring = Keyring::from_json(trimmed)?;
        let mut keys = vec![ring.active().verifying_key()];
        for r in ring.retired() {
            keys.push(parse_public_key(&r.public_key)?);
        }
        return Ok(keys);
    }
    if trimmed.starts_with("-----BEGIN PUBLIC KEY") {
        let key = VerifyingKey::from_public_key_pem(trimmed)
            .map_err(|e| KeyError::Keyring(format!("SPKI: {e}")))?;
        return Ok(vec![key]);
    }
    let keys: Result<Vec<_>, _> = trimmed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(parse_public_key)
        .collect();
    match keys {
        Ok(keys) if !keys.is_empty() => Ok(keys),
        _ => Err(KeyError::UnrecognisedKeyFile {
            path: arg.to_string(),
        }),
    }
}

/// An RFC 3339 timestamp in UTC with millisecond precision and `Z`.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8037 Appendix A.1 / A.3: the Ed25519 example key and its RFC 7638 thumbprint.
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

    #[test]
    fn kid_is_the_rfc7638_thumbprint_of_rfc8037_example() {
        let seed: [u8; 32] = b64url_decode(RFC8037_D, "d").unwrap().try_into().unwrap();
        let key = NodeKey::from_seed(&seed);
        assert_eq!(key.public_key_b64(), RFC8037_X);
        assert_eq!(key.kid().as_str(), RFC8037_THUMBPRINT);
        let vk = parse_public_key(RFC8037_X).unwrap();
        assert_eq!(Kid::of(&vk).as_str(), RFC8037_THUMBPRINT);
    }

    #[test]
    fn rotation_keeps_old_public_key_for_verification() {
        let now = Utc::now();
        let mut ring = Keyring::generate(Some("hospital-a".into()), now);
        let old = ring.active().clone();
        let sig = old.sign(b"before rotation");
        let new_kid = ring.rotate(now);
        assert_ne!(&new_kid, old.kid());
        assert_eq!(ring.retired().len(), 1);
        let vk = ring.verifying_key(old.kid()).unwrap();
        assert!(verify_signature(&vk, b"before rotation", &sig));
        assert!(!verify_signature(&vk, b"something else", &sig));
        // Survives a save/load round trip.
        let back = Keyring::from_json(&ring.to_json()).unwrap();
        assert_eq!(back.active().kid(), ring.active().kid());
        assert_eq!(back.retired(), ring.retired());
        let keys = back.directory_keys();
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn keyring_file_is_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.keyring.json");
        let ring = Keyring::generate(None, Utc::now());
        ring.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let loaded = Keyring::load(&path).unwrap();
        assert_eq!(loaded.active().kid(), ring.active().kid());
        // A tampered kid is refused.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(ring.active().kid().as_str(), RFC8037_THUMBPRINT);
        assert!(matches!(
            Keyring::from_json(&text),
            Err(KeyError::KidMismatch { .. })
        ));
    }

    #[test]
    fn bad_public_keys_are_refused() {
        assert!(matches!(
            parse_public_key("not base64!"),
            Err(KeyError::Base64 { .. })
        ));
        assert!(matches!(
            parse_public_key(&b64url(&[1u8; 31])),
            Err(KeyError::Length { got: 31, .. })
        ));
        // The identity point (small order) is a weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            parse_public_key(&b64url(&identity)),
            Err(KeyError::InvalidPublicKey)
        ));
    }

    #[test]
    fn pkcs8_pem_keys_load() {
        // RFC 9421 Appendix B.1.4 test-key-ed25519.
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";
        let key = NodeKey::from_pkcs8_pem(pem).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, pem).unwrap();
        assert_eq!(load_signing_key(&path).unwrap().kid(), key.kid());
        let pubpem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";
        let pubpath = dir.path().join("k.pub.pem");
        std::fs::write(&pubpath, pubpem).unwrap();
        let keys = load_public_keys(pubpath.to_str().unwrap()).unwrap();
        assert_eq!(keys, vec![key.verifying_key()]);
    }
}
