//! Sigil's PKI core: everything that turns requests into certificates, with no I/O.
//!
//! - keys: [`generate_key`], [`SecretKey`] (PKCS#8, `Debug`-redacted);
//! - CAs: [`create_root`], [`create_intermediate`], [`CaMaterial`];
//! - requests: [`parse_csr`] checks a PKCS#10 CSR strictly, including its
//!   self-signature (proof of possession), for classical, ML-DSA and composite keys;
//!   [`build_pq_csr`] makes ML-DSA and composite CSRs, [`build_hybrid_csr`] hybrid
//!   CSRs (a classical key plus an alternative ML-DSA key, Bouncy Castle's form);
//! - leaves: [`issue_leaf`] lints a [`LeafRequest`], signs it, and validates what it
//!   signed; [`certificate_facts`] reads any certificate back;
//! - requesters: [`Credential`] signs possession proofs of requests and
//!   [`verify_possession`] checks them against the credential's certificate;
//! - at rest: [`Kek`] seals CA keys with AES-256-GCM.
//!
//! The crate reads no files, opens no sockets and never looks at the clock: callers
//! pass times in. Certificates are built with rcgen and parsed with x509-parser; no
//! ASN.1 is written by hand. Everything issued here must verify with OpenSSL (the
//! tests check that).
#![forbid(unsafe_code)]

mod ca;
pub mod composite;
mod csr;
mod error;
mod facts;
pub mod hybrid;
mod kek;
mod key;
mod leaf;
mod lint;
pub mod mldsa;
pub mod pem;
pub mod pqcert;
mod prepared;
pub mod profile;
pub mod proof;
pub mod verify;

pub use ca::{
    CaMaterial, create_intermediate, create_intermediate_with_key, create_root,
    create_root_with_key,
};
pub use composite::{
    CompositeAlg, CompositeCaMaterial, CompositeKeyPair, CompositeLeafRequest,
    create_composite_intermediate, create_composite_root, issue_composite_leaf,
    prepare_composite_leaf,
};
pub use csr::{MAX_CSR_BYTES, ParsedCsr, build_hybrid_csr, build_pq_csr, parse_csr};
pub use error::PkiError;
pub use facts::{certificate_facts, profile_of, random_serial};
pub use hybrid::{
    HybridCaMaterial, create_hybrid_intermediate, create_hybrid_root, issue_hybrid_leaf,
    prepare_hybrid_leaf,
};
pub use kek::Kek;
pub use key::{SecretKey, generate_key};
pub use leaf::{IssuedCert, LeafKey, LeafRequest, issue_leaf, prepare_leaf_cert};
pub use pqcert::{
    CertIssuer, CertSigner, CertTemplate, MlDsaLeafRequest, PqCaMaterial, build_certificate,
    create_mldsa_intermediate, create_mldsa_root, issue_mldsa_leaf, prepare_mldsa_leaf,
};
pub use prepared::PreparedCert;
pub use profile::{LeafOptions, RequestedExtensions};
pub use proof::{Credential, CredentialKey, verify_possession};
pub use verify::{SignatureCheck, SignatureKind, VerifyReport, verify_chain};

#[cfg(test)]
mod testutil;
