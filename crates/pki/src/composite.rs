//! Composite ML-DSA signatures, pinned to **draft-ietf-lamps-pq-composite-sigs-19**
//! ([`DRAFT`]).
//!
//! A composite signature is an ML-DSA signature and a traditional (ECDSA or Ed25519)
//! signature over the same *message representative*
//!
//! ```text
//! M' = Prefix ‖ Label ‖ len(ctx) ‖ ctx ‖ PH(M)
//! ```
//!
//! where `Prefix` is the ASCII string `CompositeAlgorithmSignatures2025` ([`PREFIX`]),
//! `Label` is the algorithm's ASCII label (e.g. `COMPSIG-MLDSA65-ECDSA-P256-SHA512`,
//! [`CompositeAlg::label`]), `len(ctx)` is one byte (so `ctx` is at most 255 bytes) and
//! `PH` is the algorithm's pre-hash (SHA-512, or SHA-256 for
//! `MLDSA44-ECDSA-P256-SHA256`). The ML-DSA component signs `M'` with the FIPS 204
//! context set to `Label`; the traditional component signs `M'` with its own usual
//! algorithm (ECDSA P-256 with SHA-256, ECDSA P-384 with SHA-384, pure Ed25519).
//!
//! Encodings (as in the draft, no ASN.1 wrapping):
//! - public key = ML-DSA `pk` ‖ traditional public key (the uncompressed EC point
//!   `04‖X‖Y`, or the raw 32-byte Ed25519 key);
//! - signature = ML-DSA signature ‖ traditional signature (the DER `Ecdsa-Sig-Value`, or
//!   the raw 64-byte Ed25519 signature). Both ML-DSA lengths are fixed per level, so the
//!   two parts are split at a fixed offset.
//!
//! In X.509 the composite OID is used both as the signature `AlgorithmIdentifier` and
//! as the SPKI algorithm, with parameters absent; certificate signatures use an empty
//! `ctx`. Verification requires **both** components to verify.
//!
//! Supported: the six ML-DSA + ECDSA (P-256/P-384) / Ed25519 algorithms of the draft.
//! Not supported (the classical half is missing from ring): the RSA, brainpool, P-521
//! and Ed448 combinations; their OIDs are rejected as unsupported algorithms.
//!
//! Certificates: [`create_composite_root`], [`create_composite_intermediate`] and
//! [`issue_composite_leaf`] build composite certificates with the crate's x509-cert
//! builder ([`crate::pqcert::build_certificate`]); [`CompositeKeyPair`] implements
//! [`crate::pqcert::CertSigner`].
//!
//! Private keys: the draft serialises a composite private key as the 32-byte ML-DSA
//! seed ‖ the traditional private key. pqcrypto-mldsa has no seed-based key generation,
//! so that format can be neither produced nor imported here. Keys are stored instead in
//! Sigil's own format, see [`CompositeKeyPair::to_der`].

use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode as _, Encode as _};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use sigil_contracts::types::KeyAlgorithm;

use crate::PkiError;
use crate::mldsa::{self, MlDsaKeyPair, MlDsaLevel};

mod cert;

pub use cert::{
    CompositeCaMaterial, CompositeLeafRequest, composite_algorithm, composite_spki,
    create_composite_intermediate, create_composite_root, issue_composite_leaf,
    prepare_composite_leaf,
};

/// The draft version whose OIDs, labels and encodings this module implements. OIDs and
/// labels changed between drafts, so this is pinned.
pub const DRAFT: &str = "draft-ietf-lamps-pq-composite-sigs-19";

/// The fixed prefix of every message representative `M'` (as in the draft).
pub const PREFIX: &[u8] = b"CompositeAlgorithmSignatures2025";

/// Longest application context a composite signature accepts (its length is one byte
/// of `M'`).
pub const MAX_CONTEXT_LEN: usize = 255;

/// PEM label of a composite private key in Sigil's own DER format
/// ([`CompositeKeyPair::to_der`]); not a standard PKCS#8 encoding.
pub const COMPOSITE_KEY_PEM_LABEL: &str = "SIGIL COMPOSITE PRIVATE KEY";

/// The composite algorithms supported here, with the OIDs and labels of
/// draft-ietf-lamps-pq-composite-sigs-19.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CompositeAlg {
    /// id-MLDSA44-Ed25519-SHA512, 1.3.6.1.5.5.7.6.39.
    MlDsa44Ed25519Sha512,
    /// id-MLDSA44-ECDSA-P256-SHA256, 1.3.6.1.5.5.7.6.40.
    MlDsa44EcdsaP256Sha256,
    /// id-MLDSA65-ECDSA-P256-SHA512, 1.3.6.1.5.5.7.6.45.
    MlDsa65EcdsaP256Sha512,
    /// id-MLDSA65-ECDSA-P384-SHA512, 1.3.6.1.5.5.7.6.46.
    MlDsa65EcdsaP384Sha512,
    /// id-MLDSA65-Ed25519-SHA512, 1.3.6.1.5.5.7.6.48.
    MlDsa65Ed25519Sha512,
    /// id-MLDSA87-ECDSA-P384-SHA512, 1.3.6.1.5.5.7.6.49.
    MlDsa87EcdsaP384Sha512,
}

/// The traditional half of a composite algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TradAlg {
    /// ECDSA on P-256 with SHA-256; DER `Ecdsa-Sig-Value`; uncompressed point.
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384; DER `Ecdsa-Sig-Value`; uncompressed point.
    EcdsaP384,
    /// Pure Ed25519; raw 64-byte signature; raw 32-byte public key.
    Ed25519,
}

impl TradAlg {
    /// Length of the encoded traditional public key.
    pub fn public_key_len(self) -> usize {
        match self {
            TradAlg::EcdsaP256 => 65,
            TradAlg::EcdsaP384 => 97,
            TradAlg::Ed25519 => 32,
        }
    }

    /// Longest encoded traditional signature (DER ECDSA signatures vary in length).
    pub fn max_signature_len(self) -> usize {
        match self {
            TradAlg::EcdsaP256 => 72,
            TradAlg::EcdsaP384 => 104,
            TradAlg::Ed25519 => 64,
        }
    }

    fn verification_alg(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            TradAlg::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
            TradAlg::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1,
            TradAlg::Ed25519 => &signature::ED25519,
        }
    }
}

/// The pre-hash `PH` applied to the message before it enters `M'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PreHash {
    Sha256,
    Sha512,
}

impl PreHash {
    fn digest(self, msg: &[u8]) -> ring::digest::Digest {
        match self {
            PreHash::Sha256 => ring::digest::digest(&ring::digest::SHA256, msg),
            PreHash::Sha512 => ring::digest::digest(&ring::digest::SHA512, msg),
        }
    }
}

impl CompositeAlg {
    /// Every supported algorithm.
    pub const ALL: [CompositeAlg; 6] = [
        CompositeAlg::MlDsa44Ed25519Sha512,
        CompositeAlg::MlDsa44EcdsaP256Sha256,
        CompositeAlg::MlDsa65EcdsaP256Sha512,
        CompositeAlg::MlDsa65EcdsaP384Sha512,
        CompositeAlg::MlDsa65Ed25519Sha512,
        CompositeAlg::MlDsa87EcdsaP384Sha512,
    ];

    /// The algorithm OID (used for both the signature and the SPKI), dotted.
    pub fn oid(self) -> &'static str {
        match self {
            CompositeAlg::MlDsa44Ed25519Sha512 => "1.3.6.1.5.5.7.6.39",
            CompositeAlg::MlDsa44EcdsaP256Sha256 => "1.3.6.1.5.5.7.6.40",
            CompositeAlg::MlDsa65EcdsaP256Sha512 => "1.3.6.1.5.5.7.6.45",
            CompositeAlg::MlDsa65EcdsaP384Sha512 => "1.3.6.1.5.5.7.6.46",
            CompositeAlg::MlDsa65Ed25519Sha512 => "1.3.6.1.5.5.7.6.48",
            CompositeAlg::MlDsa87EcdsaP384Sha512 => "1.3.6.1.5.5.7.6.49",
        }
    }

    /// The algorithm for a dotted OID, if supported.
    pub fn from_oid(oid: &str) -> Option<CompositeAlg> {
        CompositeAlg::ALL.into_iter().find(|a| a.oid() == oid)
    }

    /// The draft's name without the `id-` prefix, e.g. `MLDSA65-ECDSA-P256-SHA512`.
    pub fn name(self) -> &'static str {
        match self {
            CompositeAlg::MlDsa44Ed25519Sha512 => "MLDSA44-Ed25519-SHA512",
            CompositeAlg::MlDsa44EcdsaP256Sha256 => "MLDSA44-ECDSA-P256-SHA256",
            CompositeAlg::MlDsa65EcdsaP256Sha512 => "MLDSA65-ECDSA-P256-SHA512",
            CompositeAlg::MlDsa65EcdsaP384Sha512 => "MLDSA65-ECDSA-P384-SHA512",
            CompositeAlg::MlDsa65Ed25519Sha512 => "MLDSA65-Ed25519-SHA512",
            CompositeAlg::MlDsa87EcdsaP384Sha512 => "MLDSA87-ECDSA-P384-SHA512",
        }
    }

    /// The algorithm for a name as returned by [`CompositeAlg::name`] (an `id-` prefix
    /// is accepted too; ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<CompositeAlg> {
        let name = name.strip_prefix("id-").unwrap_or(name);
        CompositeAlg::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The contracts' name for a subject key of this algorithm.
    pub fn key_algorithm(self) -> KeyAlgorithm {
        match self {
            CompositeAlg::MlDsa44Ed25519Sha512 => KeyAlgorithm::MlDsa44Ed25519Sha512,
            CompositeAlg::MlDsa44EcdsaP256Sha256 => KeyAlgorithm::MlDsa44EcdsaP256Sha256,
            CompositeAlg::MlDsa65EcdsaP256Sha512 => KeyAlgorithm::MlDsa65EcdsaP256Sha512,
            CompositeAlg::MlDsa65EcdsaP384Sha512 => KeyAlgorithm::MlDsa65EcdsaP384Sha512,
            CompositeAlg::MlDsa65Ed25519Sha512 => KeyAlgorithm::MlDsa65Ed25519Sha512,
            CompositeAlg::MlDsa87EcdsaP384Sha512 => KeyAlgorithm::MlDsa87EcdsaP384Sha512,
        }
    }

    /// The composite algorithm of a composite [`KeyAlgorithm`], `None` for any other.
    pub fn from_key_algorithm(alg: KeyAlgorithm) -> Option<CompositeAlg> {
        CompositeAlg::ALL
            .into_iter()
            .find(|a| a.key_algorithm() == alg)
    }

    /// The label the draft assigns: ASCII, no terminator; part of `M'` and the ML-DSA
    /// context.
    pub fn label(self) -> &'static str {
        match self {
            CompositeAlg::MlDsa44Ed25519Sha512 => "COMPSIG-MLDSA44-Ed25519-SHA512",
            CompositeAlg::MlDsa44EcdsaP256Sha256 => "COMPSIG-MLDSA44-ECDSA-P256-SHA256",
            CompositeAlg::MlDsa65EcdsaP256Sha512 => "COMPSIG-MLDSA65-ECDSA-P256-SHA512",
            CompositeAlg::MlDsa65EcdsaP384Sha512 => "COMPSIG-MLDSA65-ECDSA-P384-SHA512",
            CompositeAlg::MlDsa65Ed25519Sha512 => "COMPSIG-MLDSA65-Ed25519-SHA512",
            CompositeAlg::MlDsa87EcdsaP384Sha512 => "COMPSIG-MLDSA87-ECDSA-P384-SHA512",
        }
    }

    /// The ML-DSA parameter set.
    pub fn mldsa_level(self) -> MlDsaLevel {
        match self {
            CompositeAlg::MlDsa44Ed25519Sha512 | CompositeAlg::MlDsa44EcdsaP256Sha256 => {
                MlDsaLevel::L44
            }
            CompositeAlg::MlDsa65EcdsaP256Sha512
            | CompositeAlg::MlDsa65EcdsaP384Sha512
            | CompositeAlg::MlDsa65Ed25519Sha512 => MlDsaLevel::L65,
            CompositeAlg::MlDsa87EcdsaP384Sha512 => MlDsaLevel::L87,
        }
    }

    /// The traditional component.
    pub fn trad(self) -> TradAlg {
        match self {
            CompositeAlg::MlDsa44Ed25519Sha512 | CompositeAlg::MlDsa65Ed25519Sha512 => {
                TradAlg::Ed25519
            }
            CompositeAlg::MlDsa44EcdsaP256Sha256 | CompositeAlg::MlDsa65EcdsaP256Sha512 => {
                TradAlg::EcdsaP256
            }
            CompositeAlg::MlDsa65EcdsaP384Sha512 | CompositeAlg::MlDsa87EcdsaP384Sha512 => {
                TradAlg::EcdsaP384
            }
        }
    }

    /// The pre-hash `PH`.
    pub fn pre_hash(self) -> PreHash {
        match self {
            CompositeAlg::MlDsa44EcdsaP256Sha256 => PreHash::Sha256,
            _ => PreHash::Sha512,
        }
    }

    /// Length of the composite public key (ML-DSA `pk` ‖ traditional key).
    pub fn public_key_len(self) -> usize {
        self.mldsa_level().public_key_len() + self.trad().public_key_len()
    }

    /// The message representative `M' = Prefix ‖ Label ‖ len(ctx) ‖ ctx ‖ PH(msg)`.
    pub fn message_representative(self, msg: &[u8], ctx: &[u8]) -> Result<Vec<u8>, PkiError> {
        let ctx_len = u8::try_from(ctx.len()).map_err(|_| {
            PkiError::Crypto(format!(
                "composite signature context is {} bytes; at most {MAX_CONTEXT_LEN}",
                ctx.len()
            ))
        })?;
        let label = self.label().as_bytes();
        let ph = self.pre_hash().digest(msg);
        let mut out = Vec::with_capacity(PREFIX.len() + label.len() + 1 + ctx.len() + 64);
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(label);
        out.push(ctx_len);
        out.extend_from_slice(ctx);
        out.extend_from_slice(ph.as_ref());
        Ok(out)
    }
}

impl std::fmt::Display for CompositeAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Is `oid` (dotted) a composite algorithm this module supports?
pub fn is_composite_oid(oid: &str) -> bool {
    CompositeAlg::from_oid(oid).is_some()
}

/// The traditional private key, loaded into ring.
enum TradKey {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl TradKey {
    fn from_pkcs8(trad: TradAlg, pkcs8: &[u8]) -> Result<TradKey, PkiError> {
        let rng = SystemRandom::new();
        let bad = |e: ring::error::KeyRejected| {
            PkiError::Encoding(format!("composite traditional key (PKCS#8) rejected: {e}"))
        };
        Ok(match trad {
            TradAlg::EcdsaP256 => TradKey::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
                    .map_err(bad)?,
            ),
            TradAlg::EcdsaP384 => TradKey::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8, &rng)
                    .map_err(bad)?,
            ),
            TradAlg::Ed25519 => {
                TradKey::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(bad)?)
            }
        })
    }

    fn generate_pkcs8(trad: TradAlg) -> Result<Vec<u8>, PkiError> {
        let rng = SystemRandom::new();
        let doc = match trad {
            TradAlg::EcdsaP256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            }
            TradAlg::EcdsaP384 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, &rng)
            }
            TradAlg::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|e| PkiError::crypto("composite traditional key generation", e))?;
        Ok(doc.as_ref().to_vec())
    }

    fn public_key(&self) -> &[u8] {
        match self {
            TradKey::Ecdsa(k) => k.public_key().as_ref(),
            TradKey::Ed25519(k) => k.public_key().as_ref(),
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, PkiError> {
        match self {
            TradKey::Ecdsa(k) => Ok(k
                .sign(&SystemRandom::new(), msg)
                .map_err(|e| PkiError::crypto("composite ECDSA signing", e))?
                .as_ref()
                .to_vec()),
            TradKey::Ed25519(k) => Ok(k.sign(msg).as_ref().to_vec()),
        }
    }
}

/// A composite key pair: an ML-DSA key pair and a traditional key pair used together.
/// `Debug` never shows secret key material.
pub struct CompositeKeyPair {
    alg: CompositeAlg,
    mldsa: MlDsaKeyPair,
    trad: TradKey,
    /// The traditional key as PKCS#8 (ring cannot export it back).
    trad_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for CompositeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompositeKeyPair")
            .field("alg", &self.alg)
            .field("mldsa", &self.mldsa)
            .field("trad", &"[redacted]")
            .finish()
    }
}

/// Sigil's storage format for a composite private key (see [`CompositeKeyPair::to_der`]).
#[derive(der::Sequence)]
struct StoredCompositeKey {
    version: u8,
    algorithm: ObjectIdentifier,
    mldsa_public_key: OctetString,
    mldsa_expanded_secret_key: OctetString,
    trad_private_key_info: OctetString,
}

/// Version of [`StoredCompositeKey`].
const STORED_KEY_VERSION: u8 = 1;

impl CompositeKeyPair {
    /// Generate fresh ML-DSA and traditional keys for `alg`.
    pub fn generate(alg: CompositeAlg) -> Result<CompositeKeyPair, PkiError> {
        let mldsa = MlDsaKeyPair::generate(alg.mldsa_level());
        let trad_pkcs8 = TradKey::generate_pkcs8(alg.trad())?;
        let trad = TradKey::from_pkcs8(alg.trad(), &trad_pkcs8)?;
        Ok(CompositeKeyPair {
            alg,
            mldsa,
            trad,
            trad_pkcs8,
        })
    }

    /// Assemble a key pair from an ML-DSA key pair and a traditional PKCS#8 private key
    /// (ECDSA keys must carry their public key, as ring requires). Both halves are
    /// checked against `alg` and the pair is checked by signing and verifying a probe.
    pub fn from_parts(
        alg: CompositeAlg,
        mldsa: MlDsaKeyPair,
        trad_pkcs8: &[u8],
    ) -> Result<CompositeKeyPair, PkiError> {
        if mldsa.level() != alg.mldsa_level() {
            return Err(PkiError::KeyMismatch(format!(
                "{alg} needs an {} key, got {}",
                alg.mldsa_level().name(),
                mldsa.level().name()
            )));
        }
        let trad = TradKey::from_pkcs8(alg.trad(), trad_pkcs8)?;
        let pair = CompositeKeyPair {
            alg,
            mldsa,
            trad,
            trad_pkcs8: trad_pkcs8.to_vec(),
        };
        let probe = b"sigil composite key-pair consistency probe";
        let sig = pair.sign(probe, &[])?;
        verify_signature(alg.oid(), &pair.public_key(), probe, &[], &sig).map_err(|_| {
            PkiError::KeyMismatch(format!("{alg} key halves do not form a working key pair"))
        })?;
        Ok(pair)
    }

    pub fn alg(&self) -> CompositeAlg {
        self.alg
    }

    /// The ML-DSA half.
    pub fn mldsa(&self) -> &MlDsaKeyPair {
        &self.mldsa
    }

    /// The composite public key: ML-DSA `pk` ‖ traditional public key (uncompressed EC
    /// point or raw Ed25519 key). This is the SPKI `subjectPublicKey` content.
    pub fn public_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.alg.public_key_len());
        out.extend_from_slice(self.mldsa.public_key());
        out.extend_from_slice(self.trad.public_key());
        out
    }

    /// The traditional public key alone.
    pub fn trad_public_key(&self) -> &[u8] {
        self.trad.public_key()
    }

    /// Composite-sign `msg` with application context `ctx` (≤ 255 bytes; empty for
    /// X.509): ML-DSA signature (context = label) ‖ traditional signature, both over
    /// `M'`.
    pub fn sign(&self, msg: &[u8], ctx: &[u8]) -> Result<Vec<u8>, PkiError> {
        let m_prime = self.alg.message_representative(msg, ctx)?;
        let mut out = self.mldsa.sign(&m_prime, self.alg.label().as_bytes())?;
        out.extend_from_slice(&self.trad.sign(&m_prime)?);
        Ok(out)
    }

    /// Serialise the private key in Sigil's storage format (secret: seal it before it
    /// leaves memory). DER of
    ///
    /// ```text
    /// SigilCompositePrivateKey ::= SEQUENCE {
    ///   version                  INTEGER (1),
    ///   algorithm                OBJECT IDENTIFIER,   -- the composite OID
    ///   mldsaPublicKey           OCTET STRING,        -- FIPS 204 pk
    ///   mldsaExpandedSecretKey   OCTET STRING,        -- FIPS 204 sk (expanded)
    ///   tradPrivateKeyInfo       OCTET STRING }       -- PKCS#8 DER of the ECDSA/Ed25519 key
    /// ```
    ///
    /// This is *not* the draft's private-key format (ML-DSA seed ‖ traditional key):
    /// pqcrypto-mldsa keeps only expanded keys and cannot derive them from a seed.
    pub fn to_der(&self) -> Result<Vec<u8>, PkiError> {
        let enc = |e: der::Error| PkiError::Encoding(format!("composite key encoding: {e}"));
        let stored = StoredCompositeKey {
            version: STORED_KEY_VERSION,
            algorithm: ObjectIdentifier::new(self.alg.oid())
                .map_err(|e| PkiError::Encoding(format!("composite key encoding: {e}")))?,
            mldsa_public_key: OctetString::new(self.mldsa.public_key()).map_err(enc)?,
            mldsa_expanded_secret_key: OctetString::new(self.mldsa.secret_key()).map_err(enc)?,
            trad_private_key_info: OctetString::new(self.trad_pkcs8.as_slice()).map_err(enc)?,
        };
        stored.to_der().map_err(enc)
    }

    /// Load a key written by [`CompositeKeyPair::to_der`]; every part is checked.
    pub fn from_der(der_bytes: &[u8]) -> Result<CompositeKeyPair, PkiError> {
        let stored = StoredCompositeKey::from_der(der_bytes)
            .map_err(|e| PkiError::Encoding(format!("composite key: {e}")))?;
        if stored.version != STORED_KEY_VERSION {
            return Err(PkiError::Encoding(format!(
                "composite key: unknown format version {}",
                stored.version
            )));
        }
        let oid = stored.algorithm.to_string();
        let alg = CompositeAlg::from_oid(&oid).ok_or_else(|| {
            PkiError::UnsupportedKey(format!("composite key: unsupported algorithm {oid}"))
        })?;
        let mldsa = MlDsaKeyPair::from_parts(
            alg.mldsa_level(),
            stored.mldsa_public_key.as_bytes(),
            stored.mldsa_expanded_secret_key.as_bytes(),
        )?;
        CompositeKeyPair::from_parts(alg, mldsa, stored.trad_private_key_info.as_bytes())
    }
}

/// The error for a composite signature that does not verify.
fn bad_signature(alg: CompositeAlg, what: &str) -> PkiError {
    PkiError::Crypto(format!("{alg} composite signature does not verify: {what}"))
}

/// Verify a composite signature (ML-DSA sig ‖ traditional sig) over `msg` with
/// application context `ctx`, under the composite public key `public_key`
/// (ML-DSA pk ‖ traditional pk). `oid` is the dotted composite algorithm OID.
///
/// The key and signature are split at the fixed ML-DSA lengths; both components must
/// verify. An unknown OID is [`PkiError::UnsupportedKey`]; a wrong length, bad key or
/// failing signature is [`PkiError::Crypto`].
pub fn verify_signature(
    oid: &str,
    public_key: &[u8],
    msg: &[u8],
    ctx: &[u8],
    signature: &[u8],
) -> Result<(), PkiError> {
    let alg = CompositeAlg::from_oid(oid).ok_or_else(|| {
        PkiError::UnsupportedKey(format!(
            "{oid} is not a composite signature algorithm supported here ({DRAFT})"
        ))
    })?;
    let level = alg.mldsa_level();
    let trad = alg.trad();
    if public_key.len() != alg.public_key_len() {
        return Err(bad_signature(
            alg,
            &format!(
                "public key is {} bytes, expected {}",
                public_key.len(),
                alg.public_key_len()
            ),
        ));
    }
    let sig_len = signature.len();
    if sig_len <= level.signature_len()
        || sig_len > level.signature_len() + trad.max_signature_len()
    {
        return Err(bad_signature(
            alg,
            &format!("signature length {sig_len} is impossible"),
        ));
    }
    let (mldsa_pk, trad_pk) = public_key.split_at(level.public_key_len());
    let (mldsa_sig, trad_sig) = signature.split_at(level.signature_len());
    let m_prime = alg.message_representative(msg, ctx)?;

    let mldsa_ok =
        mldsa::verify(level, mldsa_pk, &m_prime, alg.label().as_bytes(), mldsa_sig).is_ok();
    let trad_ok = signature::UnparsedPublicKey::new(trad.verification_alg(), trad_pk)
        .verify(&m_prime, trad_sig)
        .is_ok();
    match (mldsa_ok, trad_ok) {
        (true, true) => Ok(()),
        (false, true) => Err(bad_signature(alg, "ML-DSA component fails")),
        (true, false) => Err(bad_signature(alg, "traditional component fails")),
        (false, false) => Err(bad_signature(alg, "both components fail")),
    }
}

/// Verify a certificate's (or CRL's, CSR's) composite signature: [`verify_signature`]
/// over the DER `tbs` with an empty context, as X.509 use of the draft requires.
pub fn verify_certificate_signature(
    oid: &str,
    issuer_public_key: &[u8],
    tbs: &[u8],
    signature: &[u8],
) -> Result<(), PkiError> {
    verify_signature(oid, issuer_public_key, tbs, &[], signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use std::path::PathBuf;
    use std::process::Command;

    /// The draft's testvectors.json: the in-repo copy first, then `$SIGIL_TESTVECTORS`,
    /// then the shared checkout next to the repository.
    fn testvectors() -> serde_json::Value {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let rel = "composite-sigs-19/testvectors.json";
        let mut candidates = vec![manifest.join("testdata").join(rel)];
        if let Some(dir) = std::env::var_os("SIGIL_TESTVECTORS") {
            candidates.push(PathBuf::from(dir).join(rel));
        }
        candidates.push(manifest.join("../../../shared/testvectors").join(rel));
        let path = candidates
            .iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("composite testvectors.json not found in {candidates:?}"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn b64(v: &serde_json::Value) -> Vec<u8> {
        B64.decode(v.as_str().unwrap()).unwrap()
    }

    /// pyca/cryptography's Python: `$SIGIL_PYTHON` or the tools venv. Missing → fail.
    fn python() -> PathBuf {
        let path = std::env::var_os("SIGIL_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap())
                    .join(".cache/sigil/tools/venv/bin/python")
            });
        assert!(
            path.is_file(),
            "no Python with pyca/cryptography at {} (set SIGIL_PYTHON or run \
             scripts/ensure-nats.sh --with-crypto)",
            path.display()
        );
        path
    }

    fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[at] ^= 0x01;
        out
    }

    #[test]
    fn draft_known_answer_tests_verify() {
        let tv = testvectors();
        let m = b64(&tv["m"]);
        let ctx = b64(&tv["ctx"]);
        let mut seen = Vec::new();
        for t in tv["tests"].as_array().unwrap() {
            let tc = t["tcId"].as_str().unwrap();
            let cert_der = b64(&t["x5c"]);
            let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
            let sig_oid = cert.signature_algorithm.algorithm.to_id_string();
            let Some(alg) = CompositeAlg::from_name(tc) else {
                // Pure ML-DSA vectors and composites we do not support (RSA, brainpool,
                // P-521, Ed448): the OID must be refused, not mis-verified.
                let sig = b64(&t["s"]);
                let err = verify_signature(&sig_oid, &b64(&t["pk"]), &m, &[], &sig).unwrap_err();
                assert!(matches!(err, PkiError::UnsupportedKey(_)), "{tc}: {err}");
                continue;
            };
            seen.push(alg);
            let oid = alg.oid();
            assert_eq!(sig_oid, oid, "{tc}: certificate signature OID");
            let pk = b64(&t["pk"]);
            assert_eq!(pk.len(), alg.public_key_len(), "{tc}");
            let s = b64(&t["s"]);
            let s_ctx = b64(&t["sWithContext"]);

            verify_signature(oid, &pk, &m, &[], &s).unwrap_or_else(|e| panic!("{tc} s: {e}"));
            verify_signature(oid, &pk, &m, &ctx, &s_ctx)
                .unwrap_or_else(|e| panic!("{tc} sWithContext: {e}"));

            // Wrong context either way.
            assert!(verify_signature(oid, &pk, &m, &ctx, &s).is_err(), "{tc}");
            assert!(verify_signature(oid, &pk, &m, &[], &s_ctx).is_err(), "{tc}");
            assert!(
                verify_signature(oid, &pk, &m, b"other", &s_ctx).is_err(),
                "{tc}"
            );
            // Tampered ML-DSA part, traditional part, message, key.
            let split = alg.mldsa_level().signature_len();
            let err = verify_signature(oid, &pk, &m, &[], &flip(&s, 10)).unwrap_err();
            assert!(err.to_string().contains("ML-DSA component"), "{tc}: {err}");
            let err = verify_signature(oid, &pk, &m, &[], &flip(&s, s.len() - 2)).unwrap_err();
            assert!(
                err.to_string().contains("traditional component"),
                "{tc}: {err}"
            );
            assert!(verify_signature(oid, &pk, &m, &[], &flip(&s, split + 6)).is_err());
            assert!(verify_signature(oid, &pk, &flip(&m, 0), &[], &s).is_err());
            let pk_split = alg.mldsa_level().public_key_len();
            assert!(verify_signature(oid, &flip(&pk, 5), &m, &[], &s).is_err());
            assert!(verify_signature(oid, &flip(&pk, pk_split + 5), &m, &[], &s).is_err());
            // Truncated / swapped halves / wrong algorithm.
            assert!(verify_signature(oid, &pk, &m, &[], &s[..split]).is_err());
            assert!(verify_signature(oid, &pk, &m, &[], &s[..s.len() - 1]).is_err());
            for other in CompositeAlg::ALL {
                if other != alg {
                    assert!(verify_signature(other.oid(), &pk, &m, &[], &s).is_err());
                }
            }

            // The self-signed certificate: composite SPKI (OID, parameters absent, raw
            // key) and a signature over the TBS with an empty context.
            let spki = cert.public_key();
            assert_eq!(spki.algorithm.algorithm.to_id_string(), oid, "{tc}");
            assert!(spki.algorithm.parameters.is_none(), "{tc}");
            assert!(cert.signature_algorithm.parameters.is_none(), "{tc}");
            assert_eq!(&*spki.subject_public_key.data, pk.as_slice(), "{tc}");
            let tbs = cert.tbs_certificate.as_ref();
            let sig = &*cert.signature_value.data;
            verify_certificate_signature(oid, &spki.subject_public_key.data, tbs, sig)
                .unwrap_or_else(|e| panic!("{tc} x5c: {e}"));
            assert!(verify_certificate_signature(oid, &pk, &flip(tbs, 40), sig).is_err());

            // And through the chain verifier's dispatch, as a self-signed anchor.
            let at = chrono::DateTime::from_timestamp(cert.validity().not_before.timestamp(), 0)
                .unwrap()
                + chrono::Duration::hours(1);
            let report =
                crate::verify::verify_chain(&cert_der, &[], std::slice::from_ref(&cert_der), at);
            let check = report
                .checks
                .iter()
                .find(|c| c.kind == crate::verify::SignatureKind::Composite)
                .unwrap_or_else(|| panic!("{tc}: no composite check in {report:#?}"));
            assert!(check.ok, "{tc}: {check:?}");
        }
        assert_eq!(
            seen.len(),
            CompositeAlg::ALL.len(),
            "every supported alg has a KAT"
        );
    }

    #[test]
    fn message_representative_matches_the_draft() {
        let alg = CompositeAlg::MlDsa65EcdsaP256Sha512;
        let msg: Vec<u8> = (0u8..10).collect();
        let expected = hex::decode(concat!(
            "436f6d706f73697465416c676f726974686d5369676e61747572657332303235",
            "434f4d505349472d4d4c44534136352d45434453412d503235362d534841353132",
            "00",
            "0f89ee1fcb7b0a4f7809d1267a029719004c5a5e5ec323a7c3523a20974f9a3f",
            "202f56fadba4cd9e8d654ab9f2e96dc5c795ea176fa20ede8d854c342f903533",
        ))
        .unwrap();
        assert_eq!(alg.message_representative(&msg, &[]).unwrap(), expected);
        let with_ctx = alg
            .message_representative(&msg, &hex::decode("0813061205162623").unwrap())
            .unwrap();
        assert_eq!(&with_ctx[..65], &expected[..65]);
        assert_eq!(
            &with_ctx[65..74],
            &hex::decode("080813061205162623").unwrap()[..]
        );
        assert_eq!(&with_ctx[74..], &expected[66..]);
        assert!(alg.message_representative(&msg, &[0; 256]).is_err());
        assert_eq!(PREFIX, b"CompositeAlgorithmSignatures2025");
        assert!(DRAFT.ends_with("-19"));
    }

    #[test]
    fn identifiers_are_the_drafts() {
        let a = CompositeAlg::from_oid("1.3.6.1.5.5.7.6.45").unwrap();
        assert_eq!(a, CompositeAlg::MlDsa65EcdsaP256Sha512);
        assert_eq!(a.label(), "COMPSIG-MLDSA65-ECDSA-P256-SHA512");
        assert_eq!(
            CompositeAlg::from_name("id-MLDSA44-Ed25519-SHA512")
                .unwrap()
                .oid(),
            "1.3.6.1.5.5.7.6.39"
        );
        assert_eq!(
            CompositeAlg::MlDsa87EcdsaP384Sha512.oid(),
            "1.3.6.1.5.5.7.6.49"
        );
        assert_eq!(CompositeAlg::from_oid("2.16.840.1.101.3.4.3.18"), None);
        assert!(
            !is_composite_oid("1.3.6.1.5.5.7.6.37"),
            "RSA composites unsupported"
        );
        for alg in CompositeAlg::ALL {
            assert_eq!(CompositeAlg::from_oid(alg.oid()), Some(alg));
            assert_eq!(CompositeAlg::from_name(alg.name()), Some(alg));
            assert_eq!(alg.label(), format!("COMPSIG-{}", alg.name()));
        }
        let err = verify_signature("1.2.3.4", &[], b"m", &[], &[]).unwrap_err();
        assert!(matches!(err, PkiError::UnsupportedKey(_)));
    }

    #[test]
    fn sign_verify_store_reload_for_every_algorithm() {
        for alg in CompositeAlg::ALL {
            let kp = CompositeKeyPair::generate(alg).unwrap();
            let pk = kp.public_key();
            assert_eq!(pk.len(), alg.public_key_len());
            assert_eq!(
                &pk[..alg.mldsa_level().public_key_len()],
                kp.mldsa().public_key()
            );
            assert_eq!(
                &pk[alg.mldsa_level().public_key_len()..],
                kp.trad_public_key()
            );
            if alg.trad() != TradAlg::Ed25519 {
                assert_eq!(kp.trad_public_key()[0], 0x04, "uncompressed point");
            }
            let sig = kp.sign(b"hello", b"ctx").unwrap();
            verify_signature(alg.oid(), &pk, b"hello", b"ctx", &sig).unwrap();
            assert!(verify_signature(alg.oid(), &pk, b"hello", b"", &sig).is_err());
            assert!(verify_signature(alg.oid(), &pk, b"hellO", b"ctx", &sig).is_err());
            assert!(verify_signature(alg.oid(), &pk, b"hello", b"ctx", &flip(&sig, 3)).is_err());
            let last = sig.len() - 3;
            assert!(verify_signature(alg.oid(), &pk, b"hello", b"ctx", &flip(&sig, last)).is_err());
            assert!(kp.sign(b"hello", &[7; 256]).is_err());
            let cert_sig = kp.sign(b"tbs", &[]).unwrap();
            verify_certificate_signature(alg.oid(), &pk, b"tbs", &cert_sig).unwrap();

            let stored = kp.to_der().unwrap();
            let again = CompositeKeyPair::from_der(&stored).unwrap();
            assert_eq!(again.alg(), alg);
            assert_eq!(again.public_key(), pk);
            let sig2 = again.sign(b"again", &[]).unwrap();
            verify_signature(alg.oid(), &pk, b"again", &[], &sig2).unwrap();

            let dbg = format!("{kp:?}");
            assert!(dbg.contains("redacted"), "{dbg}");
            assert!(!dbg.contains(&hex::encode(&kp.mldsa().secret_key()[..8])));
        }
    }

    #[test]
    fn mixed_or_broken_stored_keys_are_refused() {
        let a = CompositeKeyPair::generate(CompositeAlg::MlDsa65EcdsaP256Sha512).unwrap();
        let b = CompositeKeyPair::generate(CompositeAlg::MlDsa65EcdsaP256Sha512).unwrap();
        // ML-DSA of one, ECDSA of the other: still a consistent pair (each half is
        // checked against itself), so this is allowed; a wrong level is not.
        CompositeKeyPair::from_parts(a.alg(), a.mldsa().clone(), &b.trad_pkcs8).unwrap();
        let err = CompositeKeyPair::from_parts(
            CompositeAlg::MlDsa44EcdsaP256Sha256,
            a.mldsa().clone(),
            &a.trad_pkcs8,
        )
        .unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch(_)), "{err}");
        // An Ed25519 PKCS#8 for an ECDSA algorithm.
        let ed = CompositeKeyPair::generate(CompositeAlg::MlDsa65Ed25519Sha512).unwrap();
        assert!(CompositeKeyPair::from_parts(a.alg(), a.mldsa().clone(), &ed.trad_pkcs8).is_err());

        let stored = a.to_der().unwrap();
        assert!(CompositeKeyPair::from_der(&stored[..stored.len() - 1]).is_err());
        assert!(CompositeKeyPair::from_der(b"not der").is_err());
        // Corrupt the ML-DSA public key inside the structure: the probe catches it.
        let at = stored.len() - a.trad_pkcs8.len() - a.mldsa().secret_key().len() - 200;
        assert!(CompositeKeyPair::from_der(&flip(&stored, at)).is_err());
    }

    /// The ML-DSA and traditional components of our signatures verify with pyca/
    /// cryptography (which recomputes M' itself), and the traditional component also
    /// with the `openssl` command line.
    #[test]
    fn our_signatures_verify_with_pyca_and_openssl() {
        const SCRIPT: &str = r#"
import hashlib, sys, pathlib
from cryptography.hazmat.primitives.asymmetric import mldsa, ec, ed25519
from cryptography.hazmat.primitives import hashes, serialization
d = pathlib.Path(sys.argv[1])
name = (d / "alg").read_text()
pk, sig = (d / "pk").read_bytes(), (d / "sig").read_bytes()
msg, ctx = (d / "msg").read_bytes(), (d / "ctx").read_bytes()
lvl = name[5:7]
cls, pkl, sigl = {"44": (mldsa.MLDSA44PublicKey, 1312, 2420),
                  "65": (mldsa.MLDSA65PublicKey, 1952, 3309),
                  "87": (mldsa.MLDSA87PublicKey, 2592, 4627)}[lvl]
label = ("COMPSIG-" + name).encode()
ph = hashlib.sha256 if name.endswith("SHA256") else hashlib.sha512
mp = b"CompositeAlgorithmSignatures2025" + label + bytes([len(ctx)]) + ctx + ph(msg).digest()
cls.from_public_bytes(pk[:pkl]).verify(sig[:sigl], mp, label)
try:
    cls.from_public_bytes(pk[:pkl]).verify(sig[:sigl], mp, None)
    sys.exit("ML-DSA component verified without the label context")
except Exception:
    pass
tpk, tsig = pk[pkl:], sig[sigl:]
if "Ed25519" in name:
    key = ed25519.Ed25519PublicKey.from_public_bytes(tpk)
    key.verify(tsig, mp)
else:
    curve, h = {"P256": (ec.SECP256R1(), hashes.SHA256()),
                "P384": (ec.SECP384R1(), hashes.SHA384())}[name.split("-")[2]]
    key = ec.EllipticCurvePublicKey.from_encoded_point(curve, tpk)
    key.verify(tsig, mp, ec.ECDSA(h))
(d / "mprime").write_bytes(mp)
(d / "tradsig").write_bytes(tsig)
(d / "trad.pem").write_bytes(key.public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
print("ok", name)
"#;
        let python = python();
        for alg in CompositeAlg::ALL {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path();
            let kp = CompositeKeyPair::generate(alg).unwrap();
            let msg = b"independently verified composite signature";
            let ctx = b"sigil-ctx";
            let sig = kp.sign(msg, ctx).unwrap();
            std::fs::write(p.join("alg"), alg.name()).unwrap();
            std::fs::write(p.join("pk"), kp.public_key()).unwrap();
            std::fs::write(p.join("sig"), &sig).unwrap();
            std::fs::write(p.join("msg"), msg).unwrap();
            std::fs::write(p.join("ctx"), ctx).unwrap();
            std::fs::write(p.join("check.py"), SCRIPT).unwrap();
            let out = Command::new(&python)
                .arg(p.join("check.py"))
                .arg(p)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{alg}: pyca rejected our signature: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // The python-computed M' is the one we signed.
            assert_eq!(
                std::fs::read(p.join("mprime")).unwrap(),
                alg.message_representative(msg, ctx).unwrap()
            );

            let args: Vec<&str> = match alg.trad() {
                TradAlg::EcdsaP256 | TradAlg::EcdsaP384 => {
                    let digest = if alg.trad() == TradAlg::EcdsaP256 {
                        "-sha256"
                    } else {
                        "-sha384"
                    };
                    vec![
                        "dgst",
                        digest,
                        "-verify",
                        "trad.pem",
                        "-signature",
                        "tradsig",
                        "mprime",
                    ]
                }
                TradAlg::Ed25519 => vec![
                    "pkeyutl", "-verify", "-pubin", "-inkey", "trad.pem", "-rawin", "-in",
                    "mprime", "-sigfile", "tradsig",
                ],
            };
            let (ok, text) = crate::testutil::openssl(p, &args);
            assert!(
                ok,
                "{alg}: openssl rejected the traditional component: {text}"
            );
            // And a tampered M' is rejected by openssl too.
            let mut mp = std::fs::read(p.join("mprime")).unwrap();
            mp[0] ^= 1;
            std::fs::write(p.join("mprime"), mp).unwrap();
            let (ok, _) = crate::testutil::openssl(p, &args);
            assert!(!ok, "{alg}: openssl accepted a tampered message");
        }
    }
}
