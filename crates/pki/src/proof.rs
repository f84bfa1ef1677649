//! Possession proofs: a request signed with the private key of a credential Sigil
//! issued, and the check of such a signature against the credential's certificate.
//!
//! A requester proves who it is by signing [`proof_message`] (operation, time, nonce
//! and the request's digest) with its credential's key and attaching the chain
//! ([`Credential::proof`]). The policy service checks the signature with
//! [`verify_possession`], the chain with [`verify_chain`](crate::verify_chain), and the
//! rest (clock skew, nonce reuse, revocation, who the credential belongs to) itself.
//!
//! The signature algorithm is never named by the proof: it follows from the leaf's
//! public key, so a proof cannot ask for a weaker algorithm than the credential's.
//!
//! | leaf key | signature |
//! |---|---|
//! | ECDSA P-256 / P-384 | ASN.1 DER `Ecdsa-Sig-Value`, SHA-256 / SHA-384 |
//! | Ed25519 | pure Ed25519 |
//! | RSA | PKCS#1 v1.5 with SHA-256 |
//! | ML-DSA-44/65/87 | pure ML-DSA, empty context |
//! | composite ML-DSA | draft-ietf-lamps-pq-composite-sigs-19, empty context |
//!
//! A hybrid leaf (a classical key plus an ML-DSA key in subjectAltPublicKeyInfo,
//! 2.5.29.72) is proven by both keys: `alt_signature` is the ML-DSA signature (empty
//! context) over the same message. Otherwise a quantum-capable attacker could forge the
//! classical half alone.
//!
//! Private keys are read as Sigil writes them: PKCS#8 `PRIVATE KEY` PEM for classical
//! keys and ML-DSA keys (RFC 9881, [`crate::pqcert::mldsa_key_to_pkcs8`]), and Sigil's
//! own composite format under [`COMPOSITE_KEY_PEM_LABEL`]
//! ([`CompositeKeyPair::to_der`]).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, SubsecRound as _, Utc};
use der::asn1::{Any, ObjectIdentifier};
use der::{Decode as _, Encode as _};
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use sigil_contracts::auth::{CarriesProof, PossessionProof, Proof, proof_message};
use sigil_contracts::types::KeyAlgorithm;
use spki::AlgorithmIdentifierOwned;
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::composite::{self, COMPOSITE_KEY_PEM_LABEL, CompositeAlg, CompositeKeyPair};
use crate::error::PkiError;
use crate::facts::parse_certificate;
use crate::key::classify_spki;
use crate::mldsa::{self, MlDsaKeyPair, MlDsaLevel};
use crate::pem;
use crate::pqcert::mldsa_key_from_pkcs8;

/// PEM label of a PKCS#8 private key (classical and ML-DSA keys).
const PKCS8_LABEL: &str = "PRIVATE KEY";
/// PEM label of a certificate.
const CERTIFICATE_LABEL: &str = "CERTIFICATE";
/// Random bytes in a nonce (22 base64url characters).
const NONCE_BYTES: usize = 16;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

// ---------------------------------------------------------------------------------
// Keys.

/// A credential's private key, ready to sign possession proofs: ECDSA P-256/P-384,
/// Ed25519, RSA, ML-DSA-44/65/87 or composite ML-DSA, and optionally the ML-DSA key of
/// a hybrid leaf's subjectAltPublicKeyInfo (2.5.29.72) as the alternative key.
///
/// The PEM text is kept (re-framed) so that a [`Credential`] can be written back.
/// `Debug` never shows key bytes. Not `Clone`: ring's key pairs are not.
pub struct CredentialKey {
    primary: Signer,
    primary_pem: String,
    alt: Option<MlDsaKeyPair>,
    alt_pem: Option<String>,
}

impl fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialKey")
            .field("algorithm", &self.primary.kind().name())
            .field("alt", &self.alt.as_ref().map(|k| k.level().name()))
            .field("key", &"[redacted]")
            .finish()
    }
}

impl CredentialKey {
    /// Reads one private key PEM block: PKCS#8 `PRIVATE KEY` (ECDSA P-256/P-384,
    /// Ed25519, RSA, ML-DSA) or [`COMPOSITE_KEY_PEM_LABEL`]. Explanatory text around the
    /// block is ignored; a second block is an error.
    ///
    /// Errors: [`PkiError::Encoding`] when the text is not one well-formed PEM block or
    /// the DER does not parse; [`PkiError::UnsupportedKey`] for another label (e.g.
    /// `EC PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`) or key algorithm;
    /// [`PkiError::WeakKey`] for RSA under 2048 bits.
    pub fn from_pem(key_pem: &str) -> Result<CredentialKey, PkiError> {
        let blocks = pem_blocks(key_pem)?;
        let [block] = blocks.as_slice() else {
            return Err(PkiError::Encoding(format!(
                "expected one private key PEM block, found {}",
                blocks.len()
            )));
        };
        let primary = Signer::from_block(block)?;
        Ok(CredentialKey {
            primary,
            primary_pem: pem::encode(&block.label, &block.der),
            alt: None,
            alt_pem: None,
        })
    }

    /// Adds the alternative key: the ML-DSA key (PKCS#8 `PRIVATE KEY`, RFC 9881) whose
    /// public key a hybrid leaf carries in subjectAltPublicKeyInfo. Any other kind of
    /// key is [`PkiError::UnsupportedKey`].
    pub fn with_alt_pem(self, alt_key_pem: &str) -> Result<CredentialKey, PkiError> {
        let blocks = pem_blocks(alt_key_pem)?;
        let [block] = blocks.as_slice() else {
            return Err(PkiError::Encoding(format!(
                "expected one alternative private key PEM block, found {}",
                blocks.len()
            )));
        };
        let Signer::MlDsa(alt) = Signer::from_block(block)? else {
            return Err(PkiError::UnsupportedKey(
                "the alternative key of a hybrid credential must be an ML-DSA key".to_owned(),
            ));
        };
        Ok(CredentialKey {
            alt: Some(alt),
            alt_pem: Some(pem::encode(&block.label, &block.der)),
            ..self
        })
    }

    /// Signs `msg` with the key, in the algorithm of its kind (see the module docs):
    /// what [`verify_possession`] checks as `signature`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, PkiError> {
        self.primary.sign(msg)
    }

    /// Signs `msg` with the alternative ML-DSA key (empty context), `None` when there
    /// is none: what [`verify_possession`] checks as `alt_signature`.
    pub fn sign_alt(&self, msg: &[u8]) -> Result<Option<Vec<u8>>, PkiError> {
        self.alt.as_ref().map(|k| k.sign(msg, &[])).transpose()
    }

    /// The key as PEM (re-framed). Secret: write it only to files of mode 0600.
    pub fn key_pem(&self) -> &str {
        &self.primary_pem
    }

    /// The alternative key as PEM, if any. Secret, as [`CredentialKey::key_pem`].
    pub fn alt_key_pem(&self) -> Option<&str> {
        self.alt_pem.as_deref()
    }

    /// True when the key belongs to `spki` (same algorithm, same public key bytes).
    fn matches(&self, spki: &SubjectPublicKeyInfo<'_>) -> bool {
        PublicKind::of_spki(spki).is_ok_and(|kind| kind == self.primary.kind())
            && self.primary.public_key() == spki.subject_public_key.data.as_ref()
    }

    /// Checks that this key (and its alternative key) is the one of `leaf`: the key
    /// matches the leaf's SPKI, and the alternative key is present exactly when the
    /// leaf has a subjectAltPublicKeyInfo, and is that key.
    fn check_leaf(&self, leaf: &X509Certificate<'_>) -> Result<(), PkiError> {
        let spki = leaf.public_key();
        if !self.matches(spki) {
            let leaf_kind = PublicKind::of_spki(spki)
                .map_or_else(|_| spki.algorithm.algorithm.to_id_string(), |k| k.name());
            return Err(PkiError::KeyMismatch(format!(
                "the {} private key does not belong to the certificate ({} public key)",
                self.primary.kind().name(),
                leaf_kind
            )));
        }
        match (leaf_alt_key(leaf)?, &self.alt) {
            (None, None) => Ok(()),
            (Some((level, public)), Some(alt)) => {
                if alt.level() == level && alt.public_key() == public.as_slice() {
                    Ok(())
                } else {
                    Err(PkiError::KeyMismatch(format!(
                        "the {} alternative key does not belong to the certificate's {} \
                         subjectAltPublicKeyInfo",
                        alt.level().name(),
                        level.name()
                    )))
                }
            }
            (Some((level, _)), None) => Err(PkiError::KeyMismatch(format!(
                "the certificate is hybrid (an {} key in subjectAltPublicKeyInfo); its ML-DSA \
                 private key is missing",
                level.name()
            ))),
            (None, Some(_)) => Err(PkiError::KeyMismatch(
                "an alternative ML-DSA key was given, but the certificate has no \
                 subjectAltPublicKeyInfo"
                    .to_owned(),
            )),
        }
    }
}

/// A loaded private key of one of the supported kinds.
enum Signer {
    EcdsaP256(EcdsaKeyPair),
    EcdsaP384(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
    MlDsa(MlDsaKeyPair),
    Composite(CompositeKeyPair),
}

impl Signer {
    fn from_block(block: &PemBlock) -> Result<Signer, PkiError> {
        match block.label.as_str() {
            PKCS8_LABEL => Signer::from_pkcs8(&block.der),
            COMPOSITE_KEY_PEM_LABEL => {
                Ok(Signer::Composite(CompositeKeyPair::from_der(&block.der)?))
            }
            other => Err(PkiError::UnsupportedKey(format!(
                "PEM block `{other}` is not a private key Sigil reads; expected \
                 `{PKCS8_LABEL}` (PKCS#8) or `{COMPOSITE_KEY_PEM_LABEL}`"
            ))),
        }
    }

    /// Loads a PKCS#8 key: the algorithm identifier picks the loader.
    fn from_pkcs8(der: &[u8]) -> Result<Signer, PkiError> {
        let algorithm = pkcs8_algorithm(der)?;
        let rejected = |what: &'static str| {
            move |e: ring::error::KeyRejected| {
                PkiError::Encoding(format!("{what} PKCS#8 private key rejected: {e}"))
            }
        };
        if algorithm.oid == OID_EC_PUBLIC_KEY {
            let curve = algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            let rng = SystemRandom::new();
            return match curve {
                Some(c) if c == OID_P256 => Ok(Signer::EcdsaP256(
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
                        .map_err(rejected("ECDSA P-256"))?,
                )),
                Some(c) if c == OID_P384 => Ok(Signer::EcdsaP384(
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, der, &rng)
                        .map_err(rejected("ECDSA P-384"))?,
                )),
                Some(c) => Err(PkiError::UnsupportedKey(format!(
                    "elliptic curve {c}; only P-256 and P-384 are supported"
                ))),
                None => Err(PkiError::UnsupportedKey(
                    "EC private key without a named curve".to_owned(),
                )),
            };
        }
        if algorithm.oid == OID_ED25519 {
            // Accepts PKCS#8 v1 (OpenSSL) and v2 with the public key (ring, rcgen).
            return Ok(Signer::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected("Ed25519"))?,
            ));
        }
        if algorithm.oid == OID_RSA_ENCRYPTION {
            let key = RsaKeyPair::from_pkcs8(der).map_err(|e| {
                if e.to_string() == "TooSmall" {
                    PkiError::WeakKey("RSA key under 2048 bits".to_owned())
                } else {
                    rejected("RSA")(e)
                }
            })?;
            return Ok(Signer::Rsa(key));
        }
        if MlDsaLevel::from_oid(&algorithm.oid.to_string()).is_some() {
            return Ok(Signer::MlDsa(mldsa_key_from_pkcs8(der, None)?));
        }
        Err(PkiError::UnsupportedKey(format!(
            "private key algorithm {}; expected ECDSA P-256/P-384, Ed25519, RSA or ML-DSA",
            algorithm.oid
        )))
    }

    fn kind(&self) -> PublicKind {
        match self {
            Signer::EcdsaP256(_) => PublicKind::EcdsaP256,
            Signer::EcdsaP384(_) => PublicKind::EcdsaP384,
            Signer::Ed25519(_) => PublicKind::Ed25519,
            Signer::Rsa(_) => PublicKind::Rsa,
            Signer::MlDsa(k) => PublicKind::MlDsa(k.level()),
            Signer::Composite(k) => PublicKind::Composite(k.alg()),
        }
    }

    /// The public key as an SPKI's `subjectPublicKey` holds it: an uncompressed EC
    /// point, the raw Ed25519 key, a DER RSAPublicKey, an ML-DSA `pk`, or a composite
    /// `pk ‖ traditional key`.
    fn public_key(&self) -> Vec<u8> {
        match self {
            Signer::EcdsaP256(k) | Signer::EcdsaP384(k) => k.public_key().as_ref().to_vec(),
            Signer::Ed25519(k) => k.public_key().as_ref().to_vec(),
            Signer::Rsa(k) => k.public().as_ref().to_vec(),
            Signer::MlDsa(k) => k.public_key().to_vec(),
            Signer::Composite(k) => k.public_key(),
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, PkiError> {
        let rng = SystemRandom::new();
        match self {
            Signer::EcdsaP256(k) | Signer::EcdsaP384(k) => Ok(k
                .sign(&rng, msg)
                .map_err(|e| PkiError::crypto("ECDSA signing", e))?
                .as_ref()
                .to_vec()),
            Signer::Ed25519(k) => Ok(k.sign(msg).as_ref().to_vec()),
            Signer::Rsa(k) => {
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut out)
                    .map_err(|e| PkiError::crypto("RSA signing", e))?;
                Ok(out)
            }
            Signer::MlDsa(k) => k.sign(msg, &[]),
            Signer::Composite(k) => k.sign(msg, &[]),
        }
    }
}

/// The AlgorithmIdentifier of a PKCS#8 (RFC 5958) private key: the second element of
/// the outer SEQUENCE, whatever version and optional fields follow.
fn pkcs8_algorithm(der: &[u8]) -> Result<AlgorithmIdentifierOwned, PkiError> {
    let bad = |e: der::Error| PkiError::Encoding(format!("not a PKCS#8 private key: {e}"));
    let fields = Vec::<Any>::from_der(der).map_err(bad)?;
    let algorithm = fields
        .get(1)
        .ok_or_else(|| PkiError::Encoding("PKCS#8 private key has no algorithm".to_owned()))?;
    AlgorithmIdentifierOwned::from_der(&algorithm.to_der().map_err(bad)?).map_err(bad)
}

// ---------------------------------------------------------------------------------
// Verification.

/// The kind of a public key, and with it the possession-proof signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublicKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa,
    MlDsa(MlDsaLevel),
    Composite(CompositeAlg),
}

impl PublicKind {
    /// Classifies an SPKI: the post-quantum OIDs (parameters must be absent), else the
    /// classical keys Sigil issues for (P-256, P-384, Ed25519, RSA 2048/3072/4096).
    fn of_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKind, PkiError> {
        let oid = spki.algorithm.algorithm.to_id_string();
        let pq = MlDsaLevel::from_oid(&oid)
            .map(PublicKind::MlDsa)
            .or_else(|| CompositeAlg::from_oid(&oid).map(PublicKind::Composite));
        if let Some(kind) = pq {
            if spki.algorithm.parameters.is_some() {
                return Err(PkiError::UnsupportedKey(format!(
                    "{} public key with AlgorithmIdentifier parameters (must be absent)",
                    kind.name()
                )));
            }
            return Ok(kind);
        }
        Ok(match classify_spki(spki)? {
            KeyAlgorithm::EcdsaP256 => PublicKind::EcdsaP256,
            KeyAlgorithm::EcdsaP384 => PublicKind::EcdsaP384,
            KeyAlgorithm::Ed25519 => PublicKind::Ed25519,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                PublicKind::Rsa
            }
            other => {
                return Err(PkiError::UnsupportedKey(format!(
                    "{} public key",
                    other.as_str()
                )));
            }
        })
    }

    fn name(self) -> String {
        match self {
            PublicKind::EcdsaP256 => "ECDSA P-256".to_owned(),
            PublicKind::EcdsaP384 => "ECDSA P-384".to_owned(),
            PublicKind::Ed25519 => "Ed25519".to_owned(),
            PublicKind::Rsa => "RSA".to_owned(),
            PublicKind::MlDsa(level) => level.name().to_owned(),
            PublicKind::Composite(alg) => alg.name().to_owned(),
        }
    }

    /// Verifies `signature` over `msg` under `public_key` (the SPKI's key bytes).
    fn verify(self, public_key: &[u8], msg: &[u8], signature: &[u8]) -> Result<(), PkiError> {
        let ring_alg: &dyn signature::VerificationAlgorithm = match self {
            PublicKind::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
            PublicKind::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1,
            PublicKind::Ed25519 => &signature::ED25519,
            PublicKind::Rsa => &signature::RSA_PKCS1_2048_8192_SHA256,
            PublicKind::MlDsa(level) => {
                return mldsa::verify(level, public_key, msg, &[], signature)
                    .map_err(|_| invalid(self));
            }
            PublicKind::Composite(alg) => {
                return composite::verify_signature(alg.oid(), public_key, msg, &[], signature)
                    .map_err(|e| PkiError::InvalidSignature(format!("possession proof: {e}")));
            }
        };
        signature::UnparsedPublicKey::new(ring_alg, public_key)
            .verify(msg, signature)
            .map_err(|_| invalid(self))
    }
}

fn invalid(kind: PublicKind) -> PkiError {
    PkiError::InvalidSignature(format!(
        "possession proof: {} signature does not verify with the credential's key",
        kind.name()
    ))
}

/// Checks a possession-proof signature against the leaf certificate's public key(s).
///
/// The algorithm follows from the leaf's SPKI (see the module docs): ECDSA P-256 (DER
/// signature, SHA-256), P-384 (DER, SHA-384), Ed25519, RSA PKCS#1 v1.5 SHA-256,
/// ML-DSA-44/65/87 with the empty context, composite ML-DSA (draft -19, empty context).
/// When the leaf carries a subjectAltPublicKeyInfo (2.5.29.72), `alt_signature` is
/// required and verified with that ML-DSA key (empty context); when it has none, an
/// `alt_signature` is refused (a proof must not carry what nobody checks).
///
/// Only the signatures are checked: the chain, validity, revocation, clock skew and
/// nonce are the caller's business. Never panics on hostile input.
///
/// Errors: [`PkiError::Encoding`] when `leaf_der` is not one DER certificate or its
/// 2.5.29.72 extension is malformed; [`PkiError::UnsupportedKey`] / [`PkiError::WeakKey`]
/// for a key kind Sigil does not issue for; [`PkiError::InvalidSignature`] when a
/// signature does not verify, or `alt_signature` is missing or unexpected.
pub fn verify_possession(
    leaf_der: &[u8],
    msg: &[u8],
    signature: &[u8],
    alt_signature: Option<&[u8]>,
) -> Result<(), PkiError> {
    let leaf = parse_certificate(leaf_der)?;
    let spki = leaf.public_key();
    let kind = PublicKind::of_spki(spki)?;
    let alt_key = leaf_alt_key(&leaf)?;
    match (&alt_key, alt_signature) {
        (Some((level, _)), None) => {
            return Err(PkiError::InvalidSignature(format!(
                "possession proof: the credential is hybrid (an {} key in \
                 subjectAltPublicKeyInfo); the proof needs its alt_signature",
                level.name()
            )));
        }
        (None, Some(_)) => {
            return Err(PkiError::InvalidSignature(
                "possession proof: alt_signature given, but the credential has no \
                 alternative key (subjectAltPublicKeyInfo)"
                    .to_owned(),
            ));
        }
        _ => {}
    }
    kind.verify(&spki.subject_public_key.data, msg, signature)?;
    if let (Some((level, public)), Some(alt_sig)) = (alt_key, alt_signature) {
        mldsa::verify(level, &public, msg, &[], alt_sig).map_err(|_| {
            PkiError::InvalidSignature(format!(
                "possession proof: alt_signature does not verify with the credential's {} \
                 alternative key",
                level.name()
            ))
        })?;
    }
    Ok(())
}

/// The ML-DSA key of a leaf's subjectAltPublicKeyInfo (2.5.29.72): level and raw
/// public key, `None` when there is no such extension (the hybrid module's reader).
fn leaf_alt_key(leaf: &X509Certificate<'_>) -> Result<Option<(MlDsaLevel, Vec<u8>)>, PkiError> {
    crate::hybrid::subject_alt_public_key_of(leaf.as_raw())
}

// ---------------------------------------------------------------------------------
// Credentials.

/// A credential: its certificate chain (leaf first, PEM) and the private key(s) of the
/// leaf. Built only through [`Credential::from_pem_bundle`] or
/// [`Credential::from_parts`], which check that the key belongs to the leaf, so a
/// credential never makes proofs that cannot verify.
#[derive(Debug)]
pub struct Credential {
    /// One PEM `CERTIFICATE` block per entry, leaf first, then its issuing CAs (roots
    /// may be left out). Attached to every proof.
    pub chain_pem: Vec<String>,
    /// The leaf's private key (and alternative key for a hybrid leaf).
    pub key: CredentialKey,
}

impl Credential {
    /// Parses a PEM bundle: `CERTIFICATE` blocks (leaf first) and one or two key blocks
    /// (`PRIVATE KEY` / [`COMPOSITE_KEY_PEM_LABEL`]), in any order between each other.
    /// The key whose public key equals the leaf's is the key; an ML-DSA key equal to
    /// the leaf's subjectAltPublicKeyInfo (2.5.29.72) key is the alternative key.
    ///
    /// Errors: [`PkiError::Encoding`] when there is no certificate, no key or more than
    /// two, a block does not parse, or a block is of another kind;
    /// [`PkiError::KeyMismatch`] when a key matches neither leaf key, or a hybrid leaf's
    /// alternative key is missing.
    pub fn from_pem_bundle(text: &str) -> Result<Credential, PkiError> {
        let mut certs = Vec::new();
        let mut keys = Vec::new();
        for block in pem_blocks(text)? {
            match block.label.as_str() {
                CERTIFICATE_LABEL => certs.push(block),
                PKCS8_LABEL | COMPOSITE_KEY_PEM_LABEL => keys.push(block),
                other => {
                    return Err(PkiError::Encoding(format!(
                        "credential bundle holds a `{other}` PEM block; expected CERTIFICATE, \
                         {PKCS8_LABEL} or {COMPOSITE_KEY_PEM_LABEL}"
                    )));
                }
            }
        }
        let chain_pem = certificate_pems(&certs)?;
        if keys.is_empty() || keys.len() > 2 {
            return Err(PkiError::Encoding(format!(
                "credential bundle holds {} private keys; expected one, or two for a hybrid \
                 certificate",
                keys.len()
            )));
        }
        let leaf_der = certs
            .first()
            .map(|b| b.der.as_slice())
            .ok_or_else(no_certificate)?;
        let leaf = parse_certificate(leaf_der)?;
        let mut loaded = keys
            .iter()
            .map(|b| Ok((Signer::from_block(b)?, pem::encode(&b.label, &b.der))))
            .collect::<Result<Vec<_>, PkiError>>()?;
        let primary_at = loaded
            .iter()
            .position(|(signer, _)| {
                PublicKind::of_spki(leaf.public_key()).is_ok_and(|k| k == signer.kind())
                    && signer.public_key() == leaf.public_key().subject_public_key.data.as_ref()
            })
            .ok_or_else(|| {
                PkiError::KeyMismatch(
                    "no private key in the bundle belongs to the certificate (the first \
                     CERTIFICATE block must be the leaf)"
                        .to_owned(),
                )
            })?;
        let (primary, primary_pem) = loaded.remove(primary_at);
        let mut key = CredentialKey {
            primary,
            primary_pem,
            alt: None,
            alt_pem: None,
        };
        if let Some((other, other_pem)) = loaded.pop() {
            let Signer::MlDsa(alt) = other else {
                return Err(PkiError::KeyMismatch(format!(
                    "the bundle's second private key ({}) belongs to neither of the \
                     certificate's keys",
                    other.kind().name()
                )));
            };
            key.alt = Some(alt);
            key.alt_pem = Some(other_pem);
        }
        key.check_leaf(&leaf)?;
        Ok(Credential { chain_pem, key })
    }

    /// Builds a credential from its parts: the chain (leaf first; an entry may hold
    /// several `CERTIFICATE` blocks, as a certificate file with its chain does), the key
    /// PEM and, for a hybrid leaf, the alternative ML-DSA key PEM. The key(s) must
    /// belong to the leaf ([`PkiError::KeyMismatch`] otherwise).
    pub fn from_parts(
        chain_pem: Vec<String>,
        key_pem: &str,
        alt_key_pem: Option<&str>,
    ) -> Result<Credential, PkiError> {
        let mut certs = Vec::new();
        for entry in &chain_pem {
            for block in pem_blocks(entry)? {
                if block.label != CERTIFICATE_LABEL {
                    return Err(PkiError::Encoding(format!(
                        "chain holds a `{}` PEM block; expected CERTIFICATE",
                        block.label
                    )));
                }
                certs.push(block);
            }
        }
        let chain_pem = certificate_pems(&certs)?;
        let mut key = CredentialKey::from_pem(key_pem)?;
        if let Some(alt) = alt_key_pem {
            key = key.with_alt_pem(alt)?;
        }
        let leaf_der = certs
            .first()
            .map(|b| b.der.as_slice())
            .ok_or_else(no_certificate)?;
        key.check_leaf(&parse_certificate(leaf_der)?)?;
        Ok(Credential { chain_pem, key })
    }

    /// The bundle text: the certificates (leaf first), then the key PEM and the
    /// alternative key PEM. [`Credential::from_pem_bundle`] reads it back. It holds the
    /// private key: write it with mode 0600 (`sigil up` writes `admin.cred` so).
    pub fn to_pem_bundle(&self) -> String {
        let mut out = String::new();
        let keys = std::iter::once(self.key.key_pem()).chain(self.key.alt_key_pem());
        for block in self.chain_pem.iter().map(String::as_str).chain(keys) {
            out.push_str(block);
            if !block.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// The leaf certificate, DER.
    pub fn leaf_der(&self) -> Result<Vec<u8>, PkiError> {
        let leaf = self.chain_pem.first().ok_or_else(no_certificate)?;
        pem::decode(leaf, &[CERTIFICATE_LABEL]).map_err(PkiError::Encoding)
    }

    /// A possession proof for `req` sent to `operation` (the endpoint's subject, e.g.
    /// `sigil.issuer.v1.issue`): `signed_at` is `now` truncated to whole seconds (the
    /// message carries seconds), the nonce 16 random bytes as base64url without
    /// padding (22 characters), `signature` the key's signature over
    /// [`proof_message`]`(operation, signed_at, nonce, req.try_digest())` in standard
    /// base64, and `alt_signature` likewise with the alternative key when there is one.
    ///
    /// Make a fresh proof for every request sent: the nonce is single use.
    pub fn proof<T: CarriesProof>(
        &self,
        operation: &str,
        req: &T,
        now: DateTime<Utc>,
    ) -> Result<Proof, PkiError> {
        let signed_at = now.trunc_subsecs(0);
        let mut nonce_bytes = [0u8; NONCE_BYTES];
        SystemRandom::new()
            .fill(&mut nonce_bytes)
            .map_err(|e| PkiError::crypto("nonce", e))?;
        let nonce = URL_SAFE_NO_PAD.encode(nonce_bytes);
        let digest = req.try_digest().map_err(PkiError::Encoding)?;
        let msg = proof_message(operation, signed_at, &nonce, &digest);
        let signature = STANDARD.encode(self.key.sign(&msg)?);
        let alt_signature = self.key.sign_alt(&msg)?.map(|s| STANDARD.encode(s));
        Ok(Proof::Possession(PossessionProof {
            chain_pem: self.chain_pem.clone(),
            signed_at,
            nonce,
            signature,
            alt_signature,
        }))
    }
}

fn no_certificate() -> PkiError {
    PkiError::Encoding("no CERTIFICATE in the credential".to_owned())
}

/// Each certificate block re-framed as its own PEM text; at least one is required, and
/// each must be one DER certificate.
fn certificate_pems(certs: &[PemBlock]) -> Result<Vec<String>, PkiError> {
    if certs.is_empty() {
        return Err(no_certificate());
    }
    certs
        .iter()
        .map(|b| {
            parse_certificate(&b.der)?;
            Ok(pem::encode(CERTIFICATE_LABEL, &b.der))
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// PEM bundles.

/// One decoded PEM block.
struct PemBlock {
    label: String,
    der: Vec<u8>,
}

/// Every PEM block of `text`, in order, each decoded by [`pem::decode`]. Text between
/// blocks is ignored (RFC 7468 §2); a BEGIN line without its END line, or bad base64,
/// is [`PkiError::Encoding`]. No block at all is an error too.
fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, PkiError> {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after_begin = &rest[start + BEGIN.len()..];
        let label_len = after_begin
            .find(DASHES)
            .filter(|n| !after_begin[..*n].contains('\n'))
            .ok_or_else(|| PkiError::Encoding("malformed PEM BEGIN line".to_owned()))?;
        let label = &after_begin[..label_len];
        let end_line = format!("-----END {label}-----");
        let end = after_begin.find(&end_line).ok_or_else(|| {
            PkiError::Encoding(format!("PEM block `{label}` has no `{end_line}` line"))
        })?;
        let block_len = BEGIN.len() + end + end_line.len();
        let block = &rest[start..start + block_len];
        let der = pem::decode(block, &[label])
            .map_err(|e| PkiError::Encoding(format!("PEM block `{label}`: {e}")))?;
        blocks.push(PemBlock {
            label: label.to_owned(),
            der,
        });
        rest = &rest[start + block_len..];
    }
    if blocks.is_empty() {
        return Err(PkiError::Encoding(
            "input is not PEM (no -----BEGIN line)".to_owned(),
        ));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_split_and_refuse_broken_framing() {
        let a = pem::encode("CERTIFICATE", &[1, 2, 3]);
        let b = pem::encode("PRIVATE KEY", &[4, 5]);
        let blocks = pem_blocks(&format!("intro\n{a}between\n{b}trailer")).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der, vec![1, 2, 3]);
        assert_eq!(blocks[1].label, "PRIVATE KEY");
        assert_eq!(blocks[1].der, vec![4, 5]);
        assert!(pem_blocks("no pem here").is_err());
        assert!(pem_blocks(&a.replace("-----END CERTIFICATE-----", "")).is_err());
        assert!(pem_blocks(&a.replace("AQID", "A!ID")).is_err());
        // A BEGIN inside another block (its END missing) is refused, not skipped.
        let nested = a.replace("-----END CERTIFICATE-----\n", "") + &a;
        assert!(pem_blocks(&nested).is_err());
        assert!(pem_blocks("-----BEGIN \n").is_err());
    }

    #[test]
    fn pkcs8_algorithm_reads_the_identifier_and_refuses_garbage() {
        let key = crate::generate_key(KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(pkcs8_algorithm(key.pkcs8_der()).unwrap().oid, OID_ED25519);
        assert!(matches!(
            pkcs8_algorithm(&[0x30, 0x03, 0x02, 0x01, 0x00]),
            Err(PkiError::Encoding(_))
        ));
        assert!(matches!(
            pkcs8_algorithm(&[0xff, 0x00]),
            Err(PkiError::Encoding(_))
        ));
    }

    #[test]
    fn verify_possession_survives_hostile_input() {
        for garbage in [&[][..], &[0x30], &[0x30, 0x80], &[0xff; 64]] {
            assert!(matches!(
                verify_possession(garbage, b"m", b"s", None),
                Err(PkiError::Encoding(_))
            ));
        }
    }
}
