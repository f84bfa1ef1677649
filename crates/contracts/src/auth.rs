//! Requester authentication: the proof every issue, renew, revoke and admin request
//! carries, and the bootstrap tokens the policy service mints.
//!
//! A request names no principal of its own. It carries a [`Proof`], and the policy
//! service establishes the principal from it:
//! - [`Proof::Token`]: a bootstrap token (a JWT minted by `sigil.policy.v1.token_create`)
//!   for a first identity. It names the principal (`sub`) and the name patterns it may
//!   ask for (`sigil_for`, see [`pattern_allows`]); it authorizes only `issue`, expires, and may be used at most `sigil_uses` times across every
//!   replica.
//! - [`Proof::Possession`]: the request signed by the private key of a credential Sigil
//!   issued, with that credential's chain attached. The principal is the one the
//!   credential was issued to. An admin credential proves an admin; any other
//!   credential may only renew itself (the same names).
//!
//! What is signed ([`proof_message`]) binds the operation (the endpoint's subject), the
//! time, a single-use nonce and the request's digest ([`request_digest`]: SHA-256 of the
//! RFC 8785 canonical JSON of the request without its proof, computed by the services
//! over the bytes they received), so a proof cannot be moved to another request,
//! replayed or kept for later, and any JSON library plus an RFC 8785 canonicalizer can
//! make one.

use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain separation of possession proofs; part of every signed message.
pub const PROOF_CONTEXT: &str = "sigil-proof-v1";
/// How far a possession proof's `signed_at` may be from the verifier's clock.
pub const MAX_PROOF_SKEW_SECONDS: i64 = 300;
/// Longest lifetime a bootstrap token may be given (30 days).
pub const MAX_TOKEN_TTL_SECONDS: i64 = 30 * 24 * 3600;
/// Most uses a bootstrap token may be given.
pub const MAX_TOKEN_USES: u32 = 10_000;
/// Issuer (`iss`) of Sigil's bootstrap tokens.
pub const TOKEN_ISSUER: &str = "sigil-policy";
/// Audience (`aud`) of Sigil's bootstrap tokens.
pub const TOKEN_AUDIENCE: &str = "sigil";

/// The proof a request carries of who sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Proof {
    /// A bootstrap token (compact JWS).
    Token { token: String },
    /// The request signed with the key of a credential Sigil issued.
    Possession(PossessionProof),
}

impl Proof {
    /// How this proof authenticates, for logs and policy (`context.authenticated_by`).
    pub fn method(&self) -> AuthMethod {
        match self {
            Proof::Token { .. } => AuthMethod::Token,
            Proof::Possession(_) => AuthMethod::Credential,
        }
    }
}

/// Proof of possession of a credential's private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PossessionProof {
    /// The credential (leaf first) and its issuing CAs, PEM. Roots may be left out.
    pub chain_pem: Vec<String>,
    /// When the proof was made; refused beyond [`MAX_PROOF_SKEW_SECONDS`] either side.
    pub signed_at: DateTime<Utc>,
    /// Random, single use (16 to 64 characters, URL-safe).
    pub nonce: String,
    /// Base64 (standard, padded) signature over [`proof_message`] by the credential's
    /// key, in the algorithm of its public key: ECDSA (DER, SHA-256 for P-256, SHA-384
    /// for P-384), Ed25519, RSA PKCS#1 v1.5 SHA-256, ML-DSA (empty context) or composite
    /// ML-DSA (draft -19, empty context).
    pub signature: String,
    /// Base64 ML-DSA signature (empty context) over the same message by the key in the
    /// credential's subjectAltPublicKeyInfo (2.5.29.72). Required when the credential has
    /// one, so a hybrid credential is proven by both of its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_signature: Option<String>,
}

/// How a requester was authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// No proof: the requester is `anonymous`.
    #[default]
    None,
    /// A bootstrap token.
    Token,
    /// Possession of a credential Sigil issued.
    Credential,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Token => "token",
            AuthMethod::Credential => "credential",
        }
    }
}

/// A request type that carries a [`Proof`].
pub trait CarriesProof: Serialize + Clone {
    fn proof(&self) -> Option<&Proof>;
    fn proof_mut(&mut self) -> &mut Option<Proof>;

    /// The [`request_digest`] of this request as it will be sent (its JSON without the
    /// proof): what a client's possession proof signs. A service checks the digest of
    /// the bytes it received instead ([`received_digest`]); for a request sent as
    /// `serde_json` serializes it, the two agree. Fails like [`request_digest`] (an
    /// integer beyond ±(2^53 − 1)).
    fn try_digest(&self) -> Result<String, String> {
        serde_json::to_value(self)
            .map_err(|e| e.to_string())
            .and_then(request_digest)
    }

    /// [`CarriesProof::try_digest`], or an empty string for a request that has none (no
    /// service accepts such a request: its body gets `bad_request`).
    fn digest(&self) -> String {
        self.try_digest().unwrap_or_default()
    }
}

/// The largest integer a request may carry: RFC 8785 writes numbers as IEEE 754
/// doubles, so beyond ±(2^53 − 1) two integers could share one canonical form (and one
/// digest) while the parsed request tells them apart.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The digest a possession proof signs: SHA-256 (lowercase hex) of the RFC 8785 (JSON
/// Canonicalization Scheme) form of the request object with its top-level `proof`
/// member removed. Canonical JSON makes it independent of key order, whitespace and
/// number spelling, so a client in any language can compute it with an RFC 8785
/// library; fields it left out stay out (defaults are not filled in).
///
/// Fails when `request` is not a JSON object, or holds an integer beyond
/// ±[`MAX_SAFE_INTEGER`] (I-JSON, RFC 7493, which RFC 8785 assumes).
pub fn request_digest(mut request: serde_json::Value) -> Result<String, String> {
    let Some(fields) = request.as_object_mut() else {
        return Err("a request is a JSON object".to_owned());
    };
    fields.remove("proof");
    check_integers(&request)?;
    let canonical = serde_json_canonicalizer::to_vec(&request)
        .map_err(|e| format!("cannot canonicalize the request (RFC 8785): {e}"))?;
    Ok(hex_lower(&Sha256::digest(&canonical)))
}

/// Every integer in `value` is within ±[`MAX_SAFE_INTEGER`].
fn check_integers(value: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            let safe = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u <= MAX_SAFE_INTEGER,
                (None, Some(i)) => i.unsigned_abs() <= MAX_SAFE_INTEGER,
                // Not an integer: a double, which RFC 8785 represents exactly.
                (None, None) => true,
            };
            if safe {
                Ok(())
            } else {
                Err(format!(
                    "the integer {n} is beyond ±(2^53 - 1), which RFC 8785 cannot represent exactly"
                ))
            }
        }
        Value::Array(items) => items.iter().try_for_each(check_integers),
        Value::Object(fields) => fields.values().try_for_each(check_integers),
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

/// The [`request_digest`] of a request body as received: what a service checks a
/// possession proof against (the bus computes it for every endpoint whose request
/// carries a proof). `bad_request` when the body is not a JSON object or carries an
/// integer beyond ±[`MAX_SAFE_INTEGER`].
pub fn received_digest(body: &[u8]) -> Result<String, crate::WireError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| crate::WireError::bad_request(format!("invalid request JSON: {e}")))?;
    request_digest(value).map_err(crate::WireError::bad_request)
}

/// The message a possession proof signs:
/// `sigil-proof-v1 NUL operation NUL signed_at NUL nonce NUL digest`, where `operation`
/// is the endpoint's subject (e.g. `sigil.issuer.v1.issue`) and `signed_at` is RFC 3339
/// with seconds precision in UTC (`2026-11-24T15:00:00Z`).
pub fn proof_message(
    operation: &str,
    signed_at: DateTime<Utc>,
    nonce: &str,
    digest: &str,
) -> Vec<u8> {
    let at = signed_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    [PROOF_CONTEXT, operation, at.as_str(), nonce, digest]
        .join("\0")
        .into_bytes()
}

/// True when `nonce` is 16 to 64 URL-safe characters (`A-Z a-z 0-9 - _`).
pub fn valid_nonce(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Claims of a bootstrap token (a JWT, HS256, signed by the policy service's token key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenClaims {
    /// Always [`TOKEN_ISSUER`].
    pub iss: String,
    /// Always [`TOKEN_AUDIENCE`].
    pub aud: String,
    /// The principal the token authenticates, `type:id` (e.g. `workload:web`).
    pub sub: String,
    /// Token id: single-use bookkeeping is keyed by it.
    pub jti: String,
    /// Issued at, nbf and exp: seconds since the epoch.
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Name patterns the token may ask for ([`pattern_allows`]); every requested name
    /// must be allowed by one.
    pub sigil_for: Vec<String>,
    /// How many requests may use it.
    pub sigil_uses: u32,
}

/// The URI prefix of admin credentials: the admin `admin:<id>` holds a credential whose
/// only name is `spiffe://sigil.admin/admin/<id>`. A credential is an admin's only when
/// both hold (it was issued to `admin:<id>` and names exactly that URI).
pub const ADMIN_URI_PREFIX: &str = "spiffe://sigil.admin/admin/";

/// A requested subject name, typed, for [`pattern_allows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectName<'a> {
    /// Lower-case, without a trailing dot.
    Dns(&'a str),
    Ip(IpAddr),
    Uri(&'a str),
}

/// Whether a token's name pattern allows `name`. Patterns are typed by their form:
/// - a URI pattern (it contains `://`) allows URIs only, compared exactly
///   (case-sensitively, as SPIFFE IDs are), where `*` stands for any run of characters
///   without `/` — `spiffe://prod.example/ns/web/*` allows `…/ns/web/frontend` but not
///   `…/ns/web/a/b`;
/// - an IP address or CIDR range (`10.1.0.0/16`) allows IP addresses it contains;
/// - anything else is a DNS pattern and allows DNS names only, ASCII case-insensitive,
///   where `*` stands for any run of characters without `.` — `*.web.internal` allows
///   `a.web.internal` but not `web.internal` nor `a.b.web.internal`.
pub fn pattern_allows(pattern: &str, name: SubjectName<'_>) -> bool {
    match (PatternKind::of(pattern), name) {
        (PatternKind::Uri, SubjectName::Uri(uri)) => glob(pattern, uri, b'/'),
        (PatternKind::Ip(net), SubjectName::Ip(ip)) => net.contains(&ip.to_canonical()),
        (PatternKind::Dns, SubjectName::Dns(dns)) => glob(
            &pattern.trim_end_matches('.').to_ascii_lowercase(),
            &dns.to_ascii_lowercase(),
            b'.',
        ),
        _ => false,
    }
}

/// Check a token name pattern when it is minted: a URI pattern needs a scheme and a
/// part after `://`; a DNS pattern only letters, digits, `-`, `.` and `*`, with no
/// empty label; an IP pattern must parse as an address or a CIDR range.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.len() > 253 {
        return Err("a name pattern is 1 to 253 characters".to_owned());
    }
    if pattern.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "name pattern {pattern:?} has spaces or control characters"
        ));
    }
    match PatternKind::of(pattern) {
        PatternKind::Uri => {
            let (scheme, rest) = pattern.split_once("://").unwrap_or_default();
            if scheme.is_empty() || rest.is_empty() {
                return Err(format!("URI pattern {pattern:?} needs a scheme and a host"));
            }
            Ok(())
        }
        PatternKind::Ip(_) => Ok(()),
        PatternKind::Dns => {
            let p = pattern.trim_end_matches('.');
            let ok = !p.is_empty()
                && p.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
                });
            if ok {
                Ok(())
            } else if p.contains('/') {
                Err(format!(
                    "pattern {pattern:?} is neither a DNS pattern, a URI pattern (scheme://…) \
                     nor an IP address or CIDR range"
                ))
            } else {
                Err(format!(
                    "DNS pattern {pattern:?} has an empty label or a character other than letters, digits, '-', '.' and '*'"
                ))
            }
        }
    }
}

/// What a name pattern matches.
enum PatternKind {
    Uri,
    Ip(IpNet),
    Dns,
}

impl PatternKind {
    fn of(pattern: &str) -> PatternKind {
        if pattern.contains("://") {
            PatternKind::Uri
        } else if let Ok(net) = pattern.parse::<IpNet>() {
            PatternKind::Ip(net)
        } else if let Ok(ip) = pattern.parse::<IpAddr>() {
            PatternKind::Ip(IpNet::from(ip))
        } else {
            PatternKind::Dns
        }
    }
}

/// `*` in `pattern` matches any run of bytes of `text` without `stop`; everything else
/// literally.
fn glob(pattern: &str, text: &str, stop: u8) -> bool {
    fn go(p: &[u8], t: &[u8], stop: u8) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => {
                // Try every run length, stopping at the first `stop` byte.
                let mut i = 0;
                loop {
                    if go(rest, &t[i..], stop) {
                        return true;
                    }
                    if i == t.len() || t[i] == stop {
                        return false;
                    }
                    i += 1;
                }
            }
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..], stop),
        }
    }
    go(pattern.as_bytes(), text.as_bytes(), stop)
}

/// `sigil.policy.v1.token_create` request (admin only): mint a bootstrap token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateRequest {
    /// Principal the token authenticates, `type:id` with type `workload`, `agent`,
    /// `service` or `admin`.
    pub principal: String,
    /// Name patterns it may ask for (at least one), e.g. `*.web.internal`.
    pub names: Vec<String>,
    /// Lifetime in seconds, 1 to [`MAX_TOKEN_TTL_SECONDS`].
    pub ttl_seconds: i64,
    /// Uses, 1 to [`MAX_TOKEN_USES`].
    #[serde(default = "one")]
    pub uses: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

fn one() -> u32 {
    1
}

impl CarriesProof for TokenCreateRequest {
    fn proof(&self) -> Option<&Proof> {
        self.proof.as_ref()
    }
    fn proof_mut(&mut self) -> &mut Option<Proof> {
        &mut self.proof
    }
}

/// `sigil.policy.v1.token_create` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateResponse {
    /// The token (compact JWS): a secret; give it to the one workload it is for.
    pub token: String,
    /// Its id (`jti`), as recorded in the audit log.
    pub id: String,
    pub principal: String,
    pub names: Vec<String>,
    pub uses: u32,
    pub expires_at: DateTime<Utc>,
}

fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(n: &str) -> SubjectName<'_> {
        SubjectName::Dns(n)
    }
    fn uri(n: &str) -> SubjectName<'_> {
        SubjectName::Uri(n)
    }
    fn ip(n: &str) -> SubjectName<'static> {
        SubjectName::Ip(n.parse().unwrap())
    }

    #[test]
    fn patterns_allow_names_of_their_own_type_only() {
        // DNS: case-insensitive, `*` within one label.
        assert!(pattern_allows("web.internal", dns("web.internal")));
        assert!(pattern_allows("WEB.internal.", dns("web.internal")));
        assert!(!pattern_allows("web.internal", dns("api.internal")));
        assert!(pattern_allows("*.web.internal", dns("a.web.internal")));
        assert!(!pattern_allows("*.web.internal", dns("web.internal")));
        assert!(!pattern_allows("*.web.internal", dns("a.b.web.internal")));
        assert!(!pattern_allows(
            "*.web.internal",
            dns("a.web.internal.evil")
        ));
        assert!(pattern_allows("api-*.internal", dns("api-7.internal")));
        // A DNS pattern never allows a URI or an IP, whatever their text.
        assert!(!pattern_allows(
            "*.web.internal",
            uri("spiffe://prod.example/ns/prod/sa/admin/x.web.internal")
        ));
        assert!(!pattern_allows("10.0.0.1", dns("10.0.0.1")));
        // URI: exact case, `*` within one path segment.
        assert!(pattern_allows(
            "spiffe://td/ns/web/*",
            uri("spiffe://td/ns/web/frontend")
        ));
        assert!(!pattern_allows(
            "spiffe://td/ns/web/*",
            uri("spiffe://td/ns/web/a/b")
        ));
        assert!(!pattern_allows(
            "spiffe://td/ns/web/*",
            uri("spiffe://td/ns/WEB/frontend")
        ));
        assert!(!pattern_allows("spiffe://td/ns/web/*", dns("td")));
        // IP: addresses and CIDR ranges.
        assert!(pattern_allows("10.1.0.0/16", ip("10.1.200.7")));
        assert!(!pattern_allows("10.1.0.0/16", ip("10.2.0.1")));
        assert!(pattern_allows("::1", ip("::1")));
        assert!(!pattern_allows("10.1.0.0/16", dns("10.1.0.1")));
        // `*` alone is one DNS label, not everything.
        assert!(pattern_allows("*", dns("localhost")));
        assert!(!pattern_allows("*", dns("a.b")));
        assert!(!pattern_allows("*", uri("spiffe://x/y")));
    }

    #[test]
    fn patterns_are_checked_when_minted() {
        for ok in [
            "*.web.internal",
            "web.internal",
            "spiffe://td/ns/*",
            "10.0.0.0/8",
            "::1",
        ] {
            assert!(check_pattern(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "a b",
            "web_internal",
            "://x",
            "spiffe://",
            "a/b",
        ] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proof_message_binds_every_part() {
        let at = DateTime::parse_from_rfc3339("2026-11-24T15:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap();
        let m = proof_message("sigil.issuer.v1.issue", at, "nonce-0123456789ab", "ab");
        let expected: Vec<u8> = [
            "sigil-proof-v1",
            "sigil.issuer.v1.issue",
            "2026-11-24T15:00:00Z",
            "nonce-0123456789ab",
            "ab",
        ]
        .join("\u{0}")
        .into_bytes();
        assert_eq!(m, expected);
        assert_eq!(m.iter().filter(|b| **b == 0).count(), 4);
        assert_ne!(
            m,
            proof_message("sigil.revocation.v1.revoke", at, "nonce-0123456789ab", "ab")
        );
    }

    #[test]
    fn nonces_are_bounded_and_url_safe() {
        assert!(valid_nonce("0123456789abcdef"));
        assert!(!valid_nonce("short"));
        assert!(!valid_nonce("0123456789abcdef/"));
        assert!(!valid_nonce(&"a".repeat(65)));
    }

    fn token_request() -> TokenCreateRequest {
        TokenCreateRequest {
            principal: "workload:web".into(),
            names: vec!["web.internal".into()],
            ttl_seconds: 60,
            uses: 1,
            proof: None,
        }
    }

    #[test]
    fn digest_ignores_the_proof() {
        let mut req = token_request();
        let bare = req.digest();
        assert_eq!(bare.len(), 64);
        req.proof = Some(Proof::Token { token: "x".into() });
        assert_eq!(req.digest(), bare);
        req.ttl_seconds = 61;
        assert_ne!(req.digest(), bare);
    }

    /// RFC 8785: keys sorted, no whitespace, numbers in their shortest ECMAScript form,
    /// strings with only the required escapes; the top-level `proof` is left out. The
    /// expected digest is SHA-256 of `{"a":true,"b":[100,"€",0.5],"c":{"x":null,"y":"\n"}}`
    /// (Python's hashlib).
    #[test]
    fn the_received_digest_is_over_rfc_8785_canonical_json_without_the_proof() {
        let body = br#" { "c": {"y": "\n", "x": null}, "proof": {"token": "t"},
            "b": [1e2, "\u20ac", 5E-1], "a": true } "#;
        let expected = "d5fc2aeceae028cdeacce7e623621c84f7d92bc303debf694deef15fe429d351";
        assert_eq!(received_digest(body).unwrap(), expected);
        // Another spelling of the same object, and no proof at all: the same digest.
        let other = br#"{"a":true,"b":[100,"\u20ac",0.5],"c":{"x":null,"y":"\u000a"}}"#;
        assert_eq!(received_digest(other).unwrap(), expected);
        // A changed value is another digest.
        let changed = br#"{"a":false,"b":[100,"\u20ac",0.5],"c":{"x":null,"y":"\n"}}"#;
        assert_ne!(received_digest(changed).unwrap(), expected);
        // Only an object is a request.
        for bad in [&b"[1,2]"[..], b"\"x\"", b"{", b""] {
            let e = received_digest(bad).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::BadRequest, "{bad:?}");
        }
    }

    /// A Rust client signs [`CarriesProof::digest`]; the service checks the digest of
    /// the bytes it received. For the JSON serde sends, they agree, proof or not.
    #[test]
    fn a_typed_requests_digest_equals_the_digest_of_its_sent_bytes() {
        let mut req = token_request();
        let signed = req.digest();
        req.proof = Some(Proof::Token { token: "x".into() });
        let sent = serde_json::to_vec(&req).unwrap();
        assert_eq!(received_digest(&sent).unwrap(), signed);
    }

    /// Beyond ±(2^53 − 1) RFC 8785 would write two integers alike: such a request has no
    /// digest (the service answers `bad_request`), and a client cannot sign one.
    #[test]
    fn integers_beyond_2_pow_53_have_no_digest() {
        let edge = format!(r#"{{"ttl_seconds":{MAX_SAFE_INTEGER}}}"#);
        let negative = format!(r#"{{"n":[-{MAX_SAFE_INTEGER}]}}"#);
        assert!(received_digest(edge.as_bytes()).is_ok());
        assert!(received_digest(negative.as_bytes()).is_ok());
        for body in [
            r#"{"ttl_seconds":9007199254740992}"#,
            r#"{"ttl_seconds":9007199254740993}"#,
            r#"{"a":{"b":[1,-9007199254740992]}}"#,
            r#"{"version":18446744073709551615}"#,
        ] {
            let e = received_digest(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, crate::ErrorCode::BadRequest, "{body}");
            assert!(e.message.contains("2^53"), "{}", e.message);
        }
        // A float is a double already: represented exactly.
        assert!(received_digest(br#"{"x":1.5e300}"#).is_ok());
        let mut req = token_request();
        req.ttl_seconds = 1 << 53;
        assert!(req.try_digest().is_err());
        assert_eq!(req.digest(), "");
    }
}
