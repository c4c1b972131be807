//! RFC 9421 HTTP Message Signatures (Ed25519) for node-to-node requests, with RFC 9530 `Content-Digest`.
//!
//! Caravan signs every request with the label `caravan`, covering `"@method" "@target-uri" "@authority"
//! "content-digest"` and the parameters `created`, `expires`, `nonce`, `alg="ed25519"` and `keyid` (the
//! sender's kid in the directory):
//!
//! ```text
//! Content-Digest: sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:
//! Signature-Input: caravan=("@method" "@target-uri" "@authority" "content-digest");created=1765000000;expires=1765000060;nonce="…";alg="ed25519";keyid="…"
//! Signature: caravan=:…:
//! ```
//!
//! **Why hand-written.** The `httpsig` crate (0.0.x) implements RFC 9421, but it pulls a second, pre-release
//! RustCrypto stack (sha2 0.11, p256 0.14, ecdsa 0.17, an RSA release candidate, rand 0.10) beside the one
//! this workspace uses, signs with `ed25519-compact` rather than our `ed25519-dalek` keys, and its HTTP
//! binding lives in yet another crate. The profile Caravan needs is narrow (one algorithm, request
//! signatures, a handful of components), so the signature base is built here (RFC 9421 §2.5) on top of the
//! well-kept `sfv` crate for every structured field, and checked byte for byte against the RFC's Appendix B
//! examples (B.2.1, B.2.3, B.2.5 signature bases; B.2.6 Ed25519 signature, produced and verified).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::VerifyingKey;
use http::{HeaderMap, HeaderValue, Uri};
use sfv::{BareItem, Dictionary, FieldType, InnerList, Item, ListEntry, Parameters, Parser};
use sha2::{Digest, Sha256, Sha512};

use crate::keys::{b64url, verify_signature, NodeKey};

/// The signature label Caravan uses.
pub const LABEL: &str = "caravan";
/// The components every Caravan request signature covers.
pub const COMPONENTS: [&str; 4] = ["@method", "@target-uri", "@authority", "content-digest"];
/// The algorithm name (RFC 9421 §6.2.2).
pub const ALG: &str = "ed25519";

/// Why a request signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpSigError {
    /// No `Signature-Input` or no `Signature` header.
    #[error("request is not signed")]
    Unsigned,
    /// The headers carry no signature with the expected label.
    #[error("no signature labelled {0}")]
    MissingLabel(String),
    /// A header that does not parse.
    #[error("malformed {header}: {reason}")]
    Malformed {
        /// Which header.
        header: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A component this implementation does not compute (derived components with parameters, say).
    #[error("unsupported component {0}")]
    UnsupportedComponent(String),
    /// A covered header field is absent from the request.
    #[error("covered component {0} is missing from the request")]
    MissingComponent(String),
    /// The signature does not cover a component the policy requires.
    #[error("signature does not cover {0}")]
    NotCovered(String),
    /// A required signature parameter is absent.
    #[error("signature parameter {0} is missing")]
    MissingParam(&'static str),
    /// Not `alg="ed25519"`.
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// `created` is later than now plus the allowed skew.
    #[error("signature created in the future ({created} > {now})")]
    CreatedInFuture {
        /// The `created` parameter.
        created: i64,
        /// The receiver's clock.
        now: i64,
    },
    /// `expires` has passed.
    #[error("signature expired ({expires} < {now})")]
    Expired {
        /// The `expires` parameter.
        expires: i64,
        /// The receiver's clock.
        now: i64,
    },
    /// `created` is older than the window allows.
    #[error("signature too old (created {created}, now {now})")]
    TooOld {
        /// The `created` parameter.
        created: i64,
        /// The receiver's clock.
        now: i64,
    },
    /// No `Content-Digest` header.
    #[error("content-digest header missing")]
    MissingDigest,
    /// No digest algorithm we know (sha-256, sha-512).
    #[error("content-digest has no supported algorithm")]
    UnsupportedDigest,
    /// The body does not match its digest.
    #[error("content-digest does not match the body")]
    DigestMismatch,
    /// The key id could not be resolved to a usable key.
    #[error("key {keyid}: {reason}")]
    Key {
        /// The keyid parameter.
        keyid: String,
        /// Why it is not usable.
        reason: crate::directory::LookupError,
    },
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// This nonce was already seen for this key.
    #[error("replayed nonce")]
    Replayed,
    /// The replay cache is full of live entries; refusing is safer than forgetting nonces.
    #[error("replay cache full")]
    ReplayCacheFull,
}

fn malformed(header: &'static str, reason: impl Into<String>) -> HttpSigError {
    HttpSigError::Malformed {
        header,
        reason: reason.into(),
    }
}

/// The RFC 9530 `Content-Digest` value (sha-256) of a body.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
}

/// Checks a `Content-Digest` header value against the body. Every sha-256 / sha-512 entry must match and at
/// least one must be present; other algorithms are ignored (RFC 9530 §2).
pub fn check_content_digest(value: &str, body: &[u8]) -> Result<(), HttpSigError> {
    let dict: Dictionary = Parser::new(value)
        .parse()
        .map_err(|e| malformed("Content-Digest", e.to_string()))?;
    let mut checked = 0;
    for (alg, entry) in &dict {
        let ListEntry::Item(item) = entry else {
            return Err(malformed("Content-Digest", "inner list"));
        };
        let expected = match alg.as_str() {
            "sha-256" => Sha256::digest(body).to_vec(),
            "sha-512" => Sha512::digest(body).to_vec(),
            _ => continue,
        };
        let Some(got) = item.bare_item.as_byte_sequence() else {
            return Err(malformed("Content-Digest", "not a byte sequence"));
        };
        if got != expected.as_slice() {
            return Err(HttpSigError::DigestMismatch);
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(HttpSigError::UnsupportedDigest);
    }
    Ok(())
}

/// A signature parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// An integer (`created`, `expires`).
    Int(i64),
    /// A string (`nonce`, `alg`, `keyid`, `tag`).
    Str(String),
}

/// The covered components and parameters of one signature, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignatureParams {
    /// Component identifiers (`@method`, `content-digest`, ...), in order.
    pub components: Vec<String>,
    /// Parameters in order.
    pub params: Vec<(String, ParamValue)>,
}

impl SignatureParams {
    fn int(&self, name: &str) -> Option<i64> {
        self.params.iter().find_map(|(k, v)| match v {
            ParamValue::Int(i) if k == name => Some(*i),
            _ => None,
        })
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.params.iter().find_map(|(k, v)| match v {
            ParamValue::Str(s) if k == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// `created`.
    pub fn created(&self) -> Option<i64> {
        self.int("created")
    }
    /// `expires`.
    pub fn expires(&self) -> Option<i64> {
        self.int("expires")
    }
    /// `nonce`.
    pub fn nonce(&self) -> Option<&str> {
        self.str("nonce")
    }
    /// `alg`.
    pub fn alg(&self) -> Option<&str> {
        self.str("alg")
    }
    /// `keyid`.
    pub fn keyid(&self) -> Option<&str> {
        self.str("keyid")
    }

    fn inner_list(&self) -> Result<InnerList, HttpSigError> {
        let mut items = Vec::with_capacity(self.components.len());
        for c in &self.components {
            let s = sfv::String::from_string(c.clone())
                .map_err(|(e, _)| malformed("Signature-Input", e.to_string()))?;
            items.push(Item::new(BareItem::String(s)));
        }
        let mut params = Parameters::new();
        for (k, v) in &self.params {
            let key = sfv::Key::from_string(k.clone())
                .map_err(|(e, _)| malformed("Signature-Input", e.to_string()))?;
            let value = match v {
                ParamValue::Int(i) => BareItem::Integer(
                    sfv::Integer::try_from(*i)
                        .map_err(|e| malformed("Signature-Input", e.to_string()))?,
                ),
                ParamValue::Str(s) => BareItem::String(
                    sfv::String::from_string(s.clone())
                        .map_err(|(e, _)| malformed("Signature-Input", e.to_string()))?,
                ),
            };
            params.insert(key, value);
        }
        Ok(InnerList::with_params(items, params))
    }

    /// The serialised inner list, as it appears after `label=` in `Signature-Input` and as the value of
    /// `@signature-params` in the signature base.
    pub fn serialize(&self) -> Result<String, HttpSigError> {
        let mut dict = Dictionary::new();
        dict.insert(key("x")?, ListEntry::InnerList(self.inner_list()?));
        let text = dict
            .serialize()
            .ok_or_else(|| malformed("Signature-Input", "empty"))?;
        Ok(text.strip_prefix("x=").unwrap_or(&text).to_string())
    }

    fn from_inner_list(list: &InnerList) -> Result<SignatureParams, HttpSigError> {
        let mut components = Vec::with_capacity(list.items.len());
        for item in &list.items {
            let Some(name) = item.bare_item.as_string() else {
                return Err(malformed("Signature-Input", "component is not a string"));
            };
            if !item.params.is_empty() {
                // ;sf, ;key, ;bs, ;req, ;name select serialisations this profile does not need.
                return Err(HttpSigError::UnsupportedComponent(format!(
                    "{} with parameters",
                    name.as_str()
                )));
            }
            components.push(name.as_str().to_string());
        }
        let mut params = Vec::with_capacity(list.params.len());
        for (k, v) in &list.params {
            let value = match v {
                BareItem::Integer(i) => ParamValue::Int(i64::from(*i)),
                BareItem::String(s) => ParamValue::Str(s.as_str().to_string()),
                _ => {
                    return Err(malformed(
                        "Signature-Input",
                        format!("parameter {} has an unsupported type", k.as_str()),
                    ))
                }
            };
            params.push((k.as_str().to_string(), value));
        }
        Ok(SignatureParams { components, params })
    }
}

fn key(k: &str) -> Result<sfv::Key, HttpSigError> {
    sfv::Key::from_string(k.to_string())
        .map_err(|(e, _)| malformed("Signature-Input", e.to_string()))
}

/// The parts of a request a signature can cover.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method, as sent (`POST`).
    pub method: &'a str,
    /// The full target URI as the client addressed it (`https://node.example/federation/v1/inbox`).
    pub target_uri: &'a str,
    /// The header fields.
    pub headers: &'a HeaderMap,
    /// The body.
    pub body: &'a [u8],
}

/// The `@authority` of a URI (RFC 9421 §2.2.3): host lower-cased, default port removed.
pub fn authority_of(uri: &Uri) -> Option<String> {
    let auth = uri.authority()?;
    let host = auth.host().to_ascii_lowercase();
    let default_port = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    Some(match auth.port_u16() {
        Some(p) if Some(p) != default_port => format!("{host}:{p}"),
        _ => host,
    })
}

fn component_value(name: &str, parts: &RequestParts<'_>) -> Result<String, HttpSigError> {
    if let Some(derived) = name.strip_prefix('@') {
        let uri = || -> Result<Uri, HttpSigError> {
            parts
                .target_uri
                .parse::<Uri>()
                .map_err(|e| malformed("target URI", e.to_string()))
        };
        return match derived {
            "method" => Ok(parts.method.to_string()),
            "target-uri" => Ok(parts.target_uri.to_string()),
            "authority" => {
                authority_of(&uri()?).ok_or_else(|| malformed("target URI", "no authority"))
            }
            "scheme" => Ok(uri()?
                .scheme_str()
                .map(str::to_ascii_lowercase)
                .unwrap_or_default()),
            "path" => {
                let u = uri()?;
                Ok(if u.path().is_empty() {
                    "/".into()
                } else {
                    u.path().to_string()
                })
            }
            "query" => Ok(format!("?{}", uri()?.query().unwrap_or(""))),
            "request-target" => {
                let u = uri()?;
                Ok(u.path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into()))
            }
            _ => Err(HttpSigError::UnsupportedComponent(name.to_string())),
        };
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(malformed(
            "Signature-Input",
            "component names must be lower case",
        ));
    }
    let mut values = Vec::new();
    for v in parts.headers.get_all(name) {
        let s = v
            .to_str()
            .map_err(|_| malformed("header", format!("{name} is not visible ASCII")))?;
        values.push(s.trim().to_string());
    }
    if values.is_empty() {
        return Err(HttpSigError::MissingComponent(name.to_string()));
    }
    Ok(values.join(", "))
}

/// The signature base (RFC 9421 §2.5) for these parameters over this request.
pub fn signature_base(
    params: &SignatureParams,
    parts: &RequestParts<'_>,
) -> Result<String, HttpSigError> {
    let mut base = String::new();
    for (i, c) in params.components.iter().enumerate() {
        if params.components[..i].contains(c) {
            return Err(malformed("Signature-Input", format!("{c} covered twice")));
        }
        let value = component_value(c, parts)?;
        if value.contains('\n') || value.contains('\r') {
            return Err(malformed("header", format!("{c} contains a line break")));
        }
        base.push('"');
        base.push_str(c);
        base.push_str("\": ");
        base.push_str(&value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&params.serialize()?);
    Ok(base)
}

/// Signs a request with explicit parameters, returning the `Signature-Input` and `Signature` header values.
pub fn sign_with_params(
    key: &NodeKey,
    label: &str,
    params: &SignatureParams,
    parts: &RequestParts<'_>,
) -> Result<(String, String), HttpSigError> {
    let base = signature_base(params, parts)?;
    let sig = key.sign(base.as_bytes());
    Ok((
        format!("{label}={}", params.serialize()?),
        format!("{label}=:{}:", STANDARD.encode(sig)),
    ))
}

/// Signs Caravan's outgoing requests.
#[derive(Debug, Clone)]
pub struct RequestSigner {
    key: NodeKey,
    label: String,
    validity_secs: i64,
}

impl RequestSigner {
    /// A signer using `key`, label `caravan`, signatures valid 60 s.
    pub fn new(key: NodeKey) -> RequestSigner {
        RequestSigner {
            key,
            label: LABEL.into(),
            validity_secs: 60,
        }
    }

    /// Sets how long a signature stays valid (`expires - created`).
    pub fn with_validity_secs(mut self, secs: i64) -> RequestSigner {
        self.validity_secs = secs.max(1);
        self
    }

    /// The signing key.
    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    /// Adds `Content-Digest`, `Signature-Input` and `Signature` to `headers` for a request with this method,
    /// target URI and body, signed at `now` (Unix seconds), with a fresh random nonce.
    pub fn sign(
        &self,
        method: &str,
        target_uri: &str,
        headers: &mut HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<(), HttpSigError> {
        let digest = HeaderValue::from_str(&content_digest(body))
            .map_err(|e| malformed("Content-Digest", e.to_string()))?;
        headers.insert("content-digest", digest);
        let mut nonce = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let params = SignatureParams {
            components: COMPONENTS.iter().map(|s| s.to_string()).collect(),
            params: vec![
                ("created".into(), ParamValue::Int(now)),
                ("expires".into(), ParamValue::Int(now + self.validity_secs)),
                ("nonce".into(), ParamValue::Str(b64url(&nonce))),
                ("alg".into(), ParamValue::Str(ALG.into())),
                ("keyid".into(), ParamValue::Str(self.key.kid().to_string())),
            ],
        };
        let parts = RequestParts {
            method,
            target_uri,
            headers,
            body,
        };
        let (input, signature) = sign_with_params(&self.key, &self.label, &params, &parts)?;
        let hv = |s: String| {
            HeaderValue::from_str(&s).map_err(|e| malformed("Signature", e.to_string()))
        };
        headers.insert("signature-input", hv(input)?);
        headers.insert("signature", hv(signature)?);
        Ok(())
    }

    /// Signs an `http::Request` whose body is bytes, in place. The request URI must be absolute
    /// (`https://host/path`), as the client addresses it.
    pub fn sign_request<B: AsRef<[u8]>>(
        &self,
        req: &mut http::Request<B>,
        now: i64,
    ) -> Result<(), HttpSigError> {
        let method = req.method().as_str().to_string();
        let uri = req.uri().to_string();
        // The headers are changed while the body is read: sign over a copy of the body.
        let body = req.body().as_ref().to_vec();
        self.sign(&method, &uri, req.headers_mut(), &body, now)
    }
}

/// What the receiver's policy requires of a signature.
#[derive(Debug, Clone)]
pub struct VerifyPolicy {
    /// Label to look for.
    pub label: String,
    /// Components that must be covered.
    pub required_components: Vec<String>,
    /// Allowed clock skew, seconds (default 30).
    pub max_skew_secs: i64,
    /// Maximum age of `created`, seconds (default 300): older signatures are refused even if `expires` is
    /// later, which bounds how long nonces must be remembered.
    pub max_age_secs: i64,
    /// Require `expires`, `nonce`, `keyid` and `alg="ed25519"` (default true).
    pub strict_params: bool,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy {
            label: LABEL.into(),
            required_components: COMPONENTS.iter().map(|s| s.to_string()).collect(),
            max_skew_secs: 30,
            max_age_secs: 300,
            strict_params: true,
        }
    }
}

impl VerifyPolicy {
    /// How long a nonce must be remembered after `created` for replays to be caught.
    pub fn nonce_lifetime_secs(&self) -> i64 {
        self.max_age_secs + self.max_skew_secs
    }
}

/// A signature that verified.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    /// Whatever the key resolver returned beside the key (the sending member, say).
    pub signer: T,
    /// The `keyid` parameter.
    pub keyid: String,
    /// The `nonce` parameter.
    pub nonce: Option<String>,
    /// The `created` parameter.
    pub created: i64,
    /// The `expires` parameter.
    pub expires: Option<i64>,
    /// The parameters as signed.
    pub params: SignatureParams,
}

/// Parses the `Signature-Input` / `Signature` pair for `label`.
pub fn parse_signature(
    headers: &HeaderMap,
    label: &str,
) -> Result<(SignatureParams, Vec<u8>), HttpSigError> {
    let joined = |name: &'static str| -> Result<Option<String>, HttpSigError> {
        let mut parts = Vec::new();
        for v in headers.get_all(name) {
            parts.push(
                v.to_str()
                    .map_err(|_| malformed(name, "not visible ASCII"))?
                    .to_string(),
            );
        }
        Ok(if parts.is_empty() {
            None
        } else {
            Some(parts.join(", "))
        })
    };
    let (Some(input), Some(signature)) = (joined("signature-input")?, joined("signature")?) else {
        return Err(HttpSigError::Unsigned);
    };
    let input: Dictionary = Parser::new(&input)
        .parse()
        .map_err(|e| malformed("Signature-Input", e.to_string()))?;
    let signature: Dictionary = Parser::new(&signature)
        .parse()
        .map_err(|e| malformed("Signature", e.to_string()))?;
    let Some(entry) = input.get(label) else {
        return Err(HttpSigError::MissingLabel(label.to_string()));
    };
    let ListEntry::InnerList(list) = entry else {
        return Err(malformed(
            "Signature-Input",
            "label value is not an inner list",
        ));
    };
    let params = SignatureParams::from_inner_list(list)?;
    let sig = match signature.get(label) {
        Some(ListEntry::Item(item)) => item
            .bare_item
            .as_byte_sequence()
            .ok_or_else(|| malformed("Signature", "not a byte sequence"))?
            .to_vec(),
        Some(_) => return Err(malformed("Signature", "not an item")),
        None => return Err(HttpSigError::MissingLabel(label.to_string())),
    };
    Ok((params, sig))
}

/// Verifies a request's signature: structure, policy, time window, content digest, key, signature.
///
/// `resolve` maps the `keyid` to a public key (and anything else the caller wants back, such as the
/// sending member) — typically a directory lookup. Nonce replay is checked separately, after this
/// succeeds, with a [`ReplayGuard`], so that unauthenticated requests cannot fill the replay cache.
pub fn verify_request<T>(
    parts: &RequestParts<'_>,
    policy: &VerifyPolicy,
    now: i64,
    resolve: impl FnOnce(&str) -> Result<(VerifyingKey, T), HttpSigError>,
) -> Result<Verified<T>, HttpSigError> {
    let (params, sig) = parse_signature(parts.headers, &policy.label)?;
    for c in &policy.required_components {
        if !params.components.contains(c) {
            return Err(HttpSigError::NotCovered(c.clone()));
        }
    }
    let created = params
        .created()
        .ok_or(HttpSigError::MissingParam("created"))?;
    let keyid = params
        .keyid()
        .ok_or(HttpSigError::MissingParam("keyid"))?
        .to_string();
    if let Some(alg) = params.alg() {
        if alg != ALG {
            return Err(HttpSigError::UnsupportedAlgorithm(alg.to_string()));
        }
    }
    if policy.strict_params {
        if params.expires().is_none() {
            return Err(HttpSigError::MissingParam("expires"));
        }
        if params.nonce().is_none() {
            return Err(HttpSigError::MissingParam("nonce"));
        }
        if params.alg().is_none() {
            return Err(HttpSigError::MissingParam("alg"));
        }
    }
    if created > now + policy.max_skew_secs {
        return Err(HttpSigError::CreatedInFuture { created, now });
    }
    if let Some(expires) = params.expires() {
        if now > expires + policy.max_skew_secs {
            return Err(HttpSigError::Expired { expires, now });
        }
    }
    if now - created > policy.max_age_secs + policy.max_skew_secs {
        return Err(HttpSigError::TooOld { created, now });
    }
    if params.components.iter().any(|c| c == "content-digest") {
        let value = parts
            .headers
            .get("content-digest")
            .ok_or(HttpSigError::MissingDigest)?
            .to_str()
            .map_err(|_| malformed("Content-Digest", "not visible ASCII"))?;
        check_content_digest(value, parts.body)?;
    }
    let (key, signer) = resolve(&keyid)?;
    let base = signature_base(&params, parts)?;
    if !verify_signature(&key, base.as_bytes(), &sig) {
        return Err(HttpSigError::BadSignature);
    }
    Ok(Verified {
        signer,
        keyid,
        nonce: params.nonce().map(str::to_string),
        created,
        expires: params.expires(),
        params,
    })
}

/// Remembers nonces so that a captured request cannot be replayed inside its validity window.
///
/// A trait so that a node can keep nonces in its database (surviving restarts, shared between processes);
/// [`MemoryReplayGuard`] is the in-process implementation.
#[async_trait]
pub trait ReplayGuard: Send + Sync {
    /// Records `(keyid, nonce)` until `remember_until` (Unix seconds); fails with
    /// [`HttpSigError::Replayed`] if it is already recorded.
    async fn check_and_remember(
        &self,
        keyid: &str,
        nonce: &str,
        remember_until: i64,
        now: i64,
    ) -> Result<(), HttpSigError>;
}

/// In-memory replay cache, bounded in size, evicting entries whose time has passed.
#[derive(Debug)]
pub struct MemoryReplayGuard {
    capacity: usize,
    state: Mutex<ReplayState>,
}

#[derive(Debug, Default)]
struct ReplayState {
    seen: HashMap<String, i64>,
    expiry: BinaryHeap<Reverse<(i64, String)>>,
}

impl MemoryReplayGuard {
    /// A cache holding at most `capacity` live nonces.
    pub fn new(capacity: usize) -> MemoryReplayGuard {
        MemoryReplayGuard {
            capacity: capacity.max(1),
            state: Mutex::new(ReplayState::default()),
        }
    }

    /// Number of nonces held.
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// Whether no nonce is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplayState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The synchronous check behind [`ReplayGuard::check_and_remember`].
    pub fn check(
        &self,
        keyid: &str,
        nonce: &str,
        remember_until: i64,
        now: i64,
    ) -> Result<(), HttpSigError> {
        let mut st = self.lock();
        while let Some(Reverse((until, _))) = st.expiry.peek() {
            if *until > now {
                break;
            }
            if let Some(Reverse((until, k))) = st.expiry.pop() {
                if st.seen.get(&k) == Some(&until) {
                    st.seen.remove(&k);
                }
            }
        }
        // The key id and nonce are each free of spaces (a kid is base64url; a nonce is an sfv string
        // that we only compare), so a space separates them unambiguously enough for a cache key; a
        // length prefix removes any doubt.
        let k = format!("{}:{keyid} {nonce}", keyid.len());
        if st.seen.contains_key(&k) {
            return Err(HttpSigError::Replayed);
        }
        if st.seen.len() >= self.capacity {
            return Err(HttpSigError::ReplayCacheFull);
        }
        st.seen.insert(k.clone(), remember_until);
        st.expiry.push(Reverse((remember_until, k)));
        Ok(())
    }
}

impl Default for MemoryReplayGuard {
    fn default() -> Self {
        MemoryReplayGuard::new(500_000)
    }
}

#[async_trait]
impl ReplayGuard for MemoryReplayGuard {
    async fn check_and_remember(
        &self,
        keyid: &str,
        nonce: &str,
        remember_until: i64,
        now: i64,
    ) -> Result<(), HttpSigError> {
        self.check(keyid, nonce, remember_until, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_guard_evicts_and_bounds() {
        let g = MemoryReplayGuard::new(2);
        g.check("k", "n1", 100, 0).unwrap();
        assert_eq!(g.check("k", "n1", 100, 50), Err(HttpSigError::Replayed));
        // Same nonce, other key: not a replay.
        g.check("k2", "n1", 100, 50).unwrap();
        assert_eq!(
            g.check("k", "n3", 100, 50),
            Err(HttpSigError::ReplayCacheFull)
        );
        // After expiry the entries go, and capacity is available again.
        g.check("k", "n3", 300, 101).unwrap();
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn sign_request_then_verify() {
        let key = NodeKey::generate();
        let mut req = http::Request::post("https://center-c.example/federation/v1/inbox")
            .body(b"{\"v\":1}".to_vec())
            .unwrap();
        RequestSigner::new(key.clone())
            .sign_request(&mut req, 1_000)
            .unwrap();
        let target = req.uri().to_string();
        let parts = RequestParts {
            method: "POST",
            target_uri: &target,
            headers: req.headers(),
            body: req.body(),
        };
        let v = verify_request(&parts, &VerifyPolicy::default(), 1_010, |kid| {
            assert_eq!(kid, key.kid().as_str());
            Ok((key.verifying_key(), ()))
        })
        .unwrap();
        assert_eq!(v.expires, Some(1_060));
        assert_eq!(v.nonce.as_deref().map(str::len), Some(22));
        let input = req.headers()["signature-input"].to_str().unwrap();
        assert!(input.starts_with(
            "caravan=(\"@method\" \"@target-uri\" \"@authority\" \"content-digest\");created=1000;expires=1060;nonce=\""
        ), "{input}");
        assert!(input.ends_with(&format!(";alg=\"ed25519\";keyid=\"{}\"", key.kid())));
    }

    #[test]
    fn authority_normalisation() {
        let a = |s: &str| authority_of(&s.parse::<Uri>().unwrap()).unwrap();
        assert_eq!(a("https://Example.COM:443/x"), "example.com");
        assert_eq!(a("http://example.com:80/x"), "example.com");
        assert_eq!(a("http://127.0.0.1:8080/x"), "127.0.0.1:8080");
        assert_eq!(a("https://example.com:8443"), "example.com:8443");
    }
}
