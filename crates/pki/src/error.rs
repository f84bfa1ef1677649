//! The one error type of the crate.

/// Everything that can go wrong while building, parsing or sealing PKI material.
///
/// Messages are safe to show to the requester: they never contain key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The CSR is not a PEM `CERTIFICATE REQUEST`, is not strict DER PKCS#10, is too
    /// large, or asks for something that is never granted (e.g. `CA:true`).
    #[error("bad CSR: {0}")]
    BadCsr(String),
    /// The CSR's self-signature does not verify: the requester did not prove possession
    /// of the private key.
    #[error("CSR signature does not verify (no proof of possession)")]
    CsrSignatureInvalid,
    /// The key (or its signature algorithm) is of a kind this crate does not handle,
    /// e.g. an unsupported curve, an RSA size other than 2048/3072/4096, or server-side
    /// RSA generation.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// The key is of a supported kind but too weak (RSA under 2048 bits).
    #[error("weak key: {0}")]
    WeakKey(String),
    /// A private key does not belong to the certificate it is paired with.
    #[error("key mismatch: {0}")]
    KeyMismatch(String),
    /// A subject alternative name is missing or malformed.
    #[error("invalid subject alternative name: {0}")]
    InvalidSan(String),
    /// The validity period is empty, out of range, or outlives the issuing CA.
    #[error("invalid validity: {0}")]
    InvalidValidity(String),
    /// The certificate to be issued (or a CA handed in) breaks a profile rule checked
    /// before signing or after it.
    #[error("certificate lint failed: {0}")]
    Lint(String),
    /// The cryptographic backend failed (key generation, signing, randomness).
    #[error("crypto failure: {0}")]
    Crypto(String),
    /// Input that should have been PEM, DER, hex or base64 could not be decoded.
    #[error("encoding error: {0}")]
    Encoding(String),
    /// Sealed data could not be opened: wrong key, wrong associated data, unknown
    /// format version, or the bytes were tampered with.
    #[error("sealed data could not be opened (wrong key, wrong context or tampered)")]
    Sealed,
    /// A hybrid ("Catalyst", ITU-T X.509 §9.8) certificate's alternative signature is
    /// missing (no altSignatureAlgorithm / altSignatureValue, or an issuer without
    /// subjectAltPublicKeyInfo), names an algorithm other than the issuer's
    /// alternative key, or does not verify over the preTBSCertificate.
    #[error("alternative signature invalid: {0}")]
    AltSignature(String),
    /// A signature over a message (not a certificate or CSR) does not verify, or one
    /// that is required is missing or one that nothing checks is present: e.g. a
    /// possession proof ([`crate::proof::verify_possession`]).
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
}

impl PkiError {
    pub(crate) fn crypto(context: &str, err: impl std::fmt::Display) -> PkiError {
        PkiError::Crypto(format!("{context}: {err}"))
    }
}
