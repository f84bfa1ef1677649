//! Value types shared by several messages.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Subject alternative names of a credential.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sans {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uri: Vec<String>,
}

impl Sans {
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ip.is_empty() && self.uri.is_empty()
    }

    /// Every SAN rendered as a string (`DNS`, IP and URI values as given).
    pub fn values(&self) -> Vec<String> {
        self.dns
            .iter()
            .cloned()
            .chain(self.ip.iter().map(IpAddr::to_string))
            .chain(self.uri.iter().cloned())
            .collect()
    }
}

/// Certificate profile: fixes key usage, extended key usage and basic constraints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// serverAuth; digitalSignature (+ keyEncipherment for RSA keys).
    #[default]
    TlsServer,
    /// clientAuth; digitalSignature.
    TlsClient,
    /// SPIFFE X.509-SVID: exactly one URI SAN that is a SPIFFE ID
    /// (`spiffe://trust-domain/path`), no subject CN; serverAuth + clientAuth;
    /// digitalSignature (+ keyEncipherment for RSA keys).
    SpiffeX509Svid,
    /// codeSigning; digitalSignature only; never serverAuth.
    CodeSigning,
}

impl Profile {
    /// Every profile, in declaration order.
    pub const ALL: [Profile; 4] = [
        Profile::TlsServer,
        Profile::TlsClient,
        Profile::SpiffeX509Svid,
        Profile::CodeSigning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::TlsServer => "tls-server",
            Profile::TlsClient => "tls-client",
            Profile::SpiffeX509Svid => "spiffe-x509-svid",
            Profile::CodeSigning => "code-signing",
        }
    }

    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// Subject key algorithms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    /// ML-DSA-44 (FIPS 204). Only an `mldsa` CA certifies ML-DSA keys (from a CSR or
    /// server-generated).
    #[serde(rename = "ml-dsa-44")]
    MlDsa44,
    /// ML-DSA-65 (FIPS 204).
    #[serde(rename = "ml-dsa-65")]
    MlDsa65,
    /// ML-DSA-87 (FIPS 204).
    #[serde(rename = "ml-dsa-87")]
    MlDsa87,
    /// Composite ML-DSA-44 + Ed25519, SHA-512 pre-hash (draft-ietf-lamps-pq-composite-sigs-19
    /// id-MLDSA44-Ed25519-SHA512). Composite keys are certified only by a `composite` CA.
    #[serde(rename = "mldsa44-ed25519-sha512")]
    MlDsa44Ed25519Sha512,
    /// Composite ML-DSA-44 + ECDSA P-256, SHA-256 pre-hash (id-MLDSA44-ECDSA-P256-SHA256).
    #[serde(rename = "mldsa44-ecdsa-p256-sha256")]
    MlDsa44EcdsaP256Sha256,
    /// Composite ML-DSA-65 + ECDSA P-256, SHA-512 pre-hash (id-MLDSA65-ECDSA-P256-SHA512).
    #[serde(rename = "mldsa65-ecdsa-p256-sha512")]
    MlDsa65EcdsaP256Sha512,
    /// Composite ML-DSA-65 + ECDSA P-384, SHA-512 pre-hash (id-MLDSA65-ECDSA-P384-SHA512).
    #[serde(rename = "mldsa65-ecdsa-p384-sha512")]
    MlDsa65EcdsaP384Sha512,
    /// Composite ML-DSA-65 + Ed25519, SHA-512 pre-hash (id-MLDSA65-Ed25519-SHA512).
    #[serde(rename = "mldsa65-ed25519-sha512")]
    MlDsa65Ed25519Sha512,
    /// Composite ML-DSA-87 + ECDSA P-384, SHA-512 pre-hash (id-MLDSA87-ECDSA-P384-SHA512).
    #[serde(rename = "mldsa87-ecdsa-p384-sha512")]
    MlDsa87EcdsaP384Sha512,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 15] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::MlDsa44,
        KeyAlgorithm::MlDsa65,
        KeyAlgorithm::MlDsa87,
        KeyAlgorithm::MlDsa44Ed25519Sha512,
        KeyAlgorithm::MlDsa44EcdsaP256Sha256,
        KeyAlgorithm::MlDsa65EcdsaP256Sha512,
        KeyAlgorithm::MlDsa65EcdsaP384Sha512,
        KeyAlgorithm::MlDsa65Ed25519Sha512,
        KeyAlgorithm::MlDsa87EcdsaP384Sha512,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
            KeyAlgorithm::MlDsa44 => "ml-dsa-44",
            KeyAlgorithm::MlDsa65 => "ml-dsa-65",
            KeyAlgorithm::MlDsa87 => "ml-dsa-87",
            KeyAlgorithm::MlDsa44Ed25519Sha512 => "mldsa44-ed25519-sha512",
            KeyAlgorithm::MlDsa44EcdsaP256Sha256 => "mldsa44-ecdsa-p256-sha256",
            KeyAlgorithm::MlDsa65EcdsaP256Sha512 => "mldsa65-ecdsa-p256-sha512",
            KeyAlgorithm::MlDsa65EcdsaP384Sha512 => "mldsa65-ecdsa-p384-sha512",
            KeyAlgorithm::MlDsa65Ed25519Sha512 => "mldsa65-ed25519-sha512",
            KeyAlgorithm::MlDsa87EcdsaP384Sha512 => "mldsa87-ecdsa-p384-sha512",
        }
    }

    pub fn from_name(name: &str) -> Option<KeyAlgorithm> {
        KeyAlgorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// Kind of CA hierarchy that signs: what signatures its certificates carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CaKind {
    /// One classical signature (ECDSA/Ed25519); what every TLS stack accepts.
    Classical,
    /// A classical certificate plus an ML-DSA alternative signature (ITU-T X.509 2019
    /// subjectAltPublicKeyInfo / altSignatureAlgorithm / altSignatureValue).
    Hybrid,
    /// One composite ML-DSA + classical signature (draft-ietf-lamps-pq-composite-sigs).
    Composite,
    /// One pure ML-DSA signature (RFC 9881).
    Mldsa,
}

impl CaKind {
    pub const ALL: [CaKind; 4] = [
        CaKind::Classical,
        CaKind::Hybrid,
        CaKind::Composite,
        CaKind::Mldsa,
    ];

    /// What messages written before CA kinds existed were signed by.
    pub fn classical() -> CaKind {
        CaKind::Classical
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CaKind::Classical => "classical",
            CaKind::Hybrid => "hybrid",
            CaKind::Composite => "composite",
            CaKind::Mldsa => "mldsa",
        }
    }

    pub fn from_name(name: &str) -> Option<CaKind> {
        CaKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for CaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 5280 §5.3.1 CRLReason codes (value 7 is unused in the RFC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    RemoveFromCrl,
    PrivilegeWithdrawn,
    AaCompromise,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 10] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
        RevocationReason::RemoveFromCrl,
        RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise,
    ];

    /// The RFC 5280 CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::RemoveFromCrl => 8,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::CaCompromise => "ca-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
            RevocationReason::CertificateHold => "certificate-hold",
            RevocationReason::RemoveFromCrl => "remove-from-crl",
            RevocationReason::PrivilegeWithdrawn => "privilege-withdrawn",
            RevocationReason::AaCompromise => "aa-compromise",
        }
    }

    pub fn from_name(name: &str) -> Option<RevocationReason> {
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// Lifecycle status of a credential as inventory sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialStatus {
    Active,
    Revoked,
    Expired,
}

impl CredentialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialStatus::Active => "active",
            CredentialStatus::Revoked => "revoked",
            CredentialStatus::Expired => "expired",
        }
    }

    pub fn from_name(name: &str) -> Option<CredentialStatus> {
        [
            CredentialStatus::Active,
            CredentialStatus::Revoked,
            CredentialStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// Facts about an issued certificate, as carried in `identity.issued` and stored by
/// inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateFacts {
    /// Serial number, lowercase hex without separators.
    pub serial: String,
    /// Subject distinguished name (RFC 4514 string).
    pub subject: String,
    pub sans: Sans,
    /// Issuer distinguished name (RFC 4514 string).
    pub issuer: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Subject public key algorithm, e.g. `ecdsa-p256`.
    pub key_algorithm: String,
    /// Signature algorithm, e.g. `ecdsa-with-SHA256`.
    pub signature_algorithm: String,
    pub profile: Profile,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint_sha256: String,
}

/// A credential as inventory knows it. (Flattened, so unknown fields are not denied;
/// this is a reply, never a request.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CredentialRecord {
    #[serde(flatten)]
    pub facts: CertificateFacts,
    pub status: CredentialStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<RevocationReason>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// PEM of the certificate.
    pub certificate_pem: String,
}
