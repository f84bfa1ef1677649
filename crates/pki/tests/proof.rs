//! Possession proofs (`sigil_pki::proof`), for every key kind Sigil issues for:
//! ECDSA P-256 / P-384, Ed25519, RSA-2048, ML-DSA-44/65/87, the six composite
//! ML-DSA algorithms, and a hybrid leaf (P-256 + a requester ML-DSA-65 key in
//! subjectAltPublicKeyInfo, requested with a hybrid CSR).
//!
//! What it proves:
//! - a proof made by [`Credential::proof`] verifies with [`verify_possession`] over the
//!   message the verifier rebuilds, and stops verifying when one byte of the message
//!   or of a signature changes, when another key signed, or when the operation or the
//!   request differ;
//! - a hybrid leaf needs its alt signature, and a non-hybrid leaf refuses one;
//! - credential bundles pick the key that belongs to the leaf whatever the block
//!   order, and refuse keys that do not belong to it;
//! - `Debug` shows no key bytes;
//! - independently of this crate, OpenSSL verifies the classical proof signatures
//!   (skipped with a note when `openssl` is not on PATH) and pyca/cryptography the
//!   ML-DSA ones (skipped with a note when the tools venv has no pyca).
//!
//! RSA keys are made with the `openssl` command (ring cannot generate RSA keys), as
//! the crate's other RSA tests do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Timelike as _, Utc};
use sigil_contracts::auth::{
    CarriesProof as _, PossessionProof, Proof, TokenCreateRequest, proof_message, valid_nonce,
};
use sigil_contracts::types::{KeyAlgorithm, Profile, Sans};
use sigil_pki::composite::COMPOSITE_KEY_PEM_LABEL;
use sigil_pki::mldsa::{MlDsaKeyPair, MlDsaLevel};
use sigil_pki::pqcert::mldsa_key_to_pkcs8;
use sigil_pki::proof::{Credential, CredentialKey, verify_possession};
use sigil_pki::{
    CompositeAlg, CompositeKeyPair, CompositeLeafRequest, LeafKey, LeafRequest, MlDsaLeafRequest,
    PkiError, SecretKey, build_hybrid_csr, create_composite_intermediate, create_composite_root,
    create_hybrid_intermediate, create_hybrid_root, create_intermediate, create_mldsa_intermediate,
    create_mldsa_root, create_root, generate_key, issue_composite_leaf, issue_hybrid_leaf,
    issue_leaf, issue_mldsa_leaf, parse_csr, pem,
};
use x509_parser::prelude::{FromDer as _, X509Certificate};

const OP: &str = "sigil.issuer.v1.issue";

/// Every kind of credential key the proofs support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Classical(KeyAlgorithm),
    MlDsa(MlDsaLevel),
    Composite(CompositeAlg),
    /// ECDSA P-256 leaf with an ML-DSA-65 subjectAltPublicKeyInfo.
    Hybrid,
}

fn all_kinds() -> Vec<Kind> {
    let mut kinds = vec![
        Kind::Classical(KeyAlgorithm::EcdsaP256),
        Kind::Classical(KeyAlgorithm::EcdsaP384),
        Kind::Classical(KeyAlgorithm::Ed25519),
        Kind::Classical(KeyAlgorithm::Rsa2048),
    ];
    kinds.extend(MlDsaLevel::ALL.map(Kind::MlDsa));
    kinds.extend(CompositeAlg::ALL.map(Kind::Composite));
    kinds.push(Kind::Hybrid);
    kinds
}

/// What a test needs of one issued credential.
struct Issued {
    kind: Kind,
    /// Leaf, then intermediate (PEM).
    chain_pem: Vec<String>,
    key_pem: String,
    alt_key_pem: Option<String>,
}

impl Issued {
    fn credential(&self) -> Credential {
        Credential::from_parts(
            self.chain_pem.clone(),
            &self.key_pem,
            self.alt_key_pem.as_deref(),
        )
        .unwrap_or_else(|e| panic!("{:?}: {e}", self.kind))
    }

    fn leaf_der(&self) -> Vec<u8> {
        pem::decode(&self.chain_pem[0], &["CERTIFICATE"]).unwrap()
    }
}

fn t0() -> DateTime<Utc> {
    Utc::now() - Duration::minutes(1)
}

fn sans() -> Sans {
    Sans {
        dns: vec!["svc.example.com".to_owned()],
        ip: vec![],
        uri: vec!["spiffe://sigil.admin/admin/admin".to_owned()],
    }
}

fn leaf_request(key: LeafKey) -> LeafRequest {
    let t = t0();
    LeafRequest {
        profile: Profile::TlsClient,
        sans: sans(),
        common_name: None,
        not_before: t,
        not_after: t + Duration::days(1),
        key,
    }
}

fn cert_pem(der: &[u8]) -> String {
    pem::encode("CERTIFICATE", der)
}

/// An RSA-2048 PKCS#8 key made by OpenSSL.
fn openssl_rsa_key() -> SecretKey {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .unwrap_or_else(|e| panic!("RSA keys are made with the openssl command: {e}"));
    assert!(out.status.success(), "openssl genpkey failed");
    SecretKey::from_pkcs8_pem(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

/// Root → intermediate → leaf of `kind`, with the leaf's private key(s) as PEM.
fn issue(kind: Kind) -> Issued {
    let t = t0();
    let (root_until, inter_until) = (t + Duration::days(30), t + Duration::days(10));
    let (chain_pem, key_pem, alt_key_pem) = match kind {
        Kind::Classical(alg) => {
            // RSA keys are not generated server-side: RSA leaves sit under a P-256 CA.
            let ca_alg = match alg {
                KeyAlgorithm::Rsa2048 => KeyAlgorithm::EcdsaP256,
                other => other,
            };
            let root = create_root("Proof Root", ca_alg, t, root_until).unwrap();
            let inter = create_intermediate(&root, "Proof CA", ca_alg, t, inter_until).unwrap();
            let key = match alg {
                KeyAlgorithm::Rsa2048 => openssl_rsa_key(),
                other => generate_key(other).unwrap(),
            };
            let leaf = issue_leaf(&inter, &leaf_request(LeafKey::Generated(key.clone()))).unwrap();
            (
                vec![leaf.cert_pem, cert_pem(&inter.cert_der)],
                key.to_pkcs8_pem(),
                None,
            )
        }
        Kind::MlDsa(level) => {
            let root = create_mldsa_root("Proof Root", level, t, root_until).unwrap();
            let inter =
                create_mldsa_intermediate(&root, "Proof CA", level, t, inter_until).unwrap();
            let key = MlDsaKeyPair::generate(level);
            let leaf = issue_mldsa_leaf(
                &inter,
                &MlDsaLeafRequest {
                    profile: Profile::TlsClient,
                    sans: sans(),
                    common_name: None,
                    not_before: t,
                    not_after: t + Duration::days(1),
                    level,
                    public_key: key.public_key().to_vec(),
                },
            )
            .unwrap();
            (
                vec![leaf.cert_pem, inter.cert_pem.clone()],
                pem::encode("PRIVATE KEY", &mldsa_key_to_pkcs8(&key).unwrap()),
                None,
            )
        }
        Kind::Composite(alg) => {
            let root = create_composite_root("Proof Root", alg, t, root_until).unwrap();
            let inter =
                create_composite_intermediate(&root, "Proof CA", alg, t, inter_until).unwrap();
            let key = CompositeKeyPair::generate(alg).unwrap();
            let leaf = issue_composite_leaf(
                &inter,
                &CompositeLeafRequest {
                    profile: Profile::TlsClient,
                    sans: sans(),
                    common_name: None,
                    not_before: t,
                    not_after: t + Duration::days(1),
                    alg,
                    public_key: key.public_key(),
                },
            )
            .unwrap();
            (
                vec![leaf.cert_pem, inter.cert_pem.clone()],
                pem::encode(COMPOSITE_KEY_PEM_LABEL, &key.to_der().unwrap()),
                None,
            )
        }
        Kind::Hybrid => {
            let (alg, level) = (KeyAlgorithm::EcdsaP256, MlDsaLevel::L65);
            let root = create_hybrid_root("Proof Root", alg, level, t, root_until).unwrap();
            let inter =
                create_hybrid_intermediate(&root, "Proof CA", alg, level, t, inter_until).unwrap();
            // As `sigil csr --alt ml-dsa-65` does: the requester keeps both keys and sends
            // a hybrid CSR proving both.
            let classical = generate_key(alg).unwrap();
            let alt = MlDsaKeyPair::generate(level);
            let csr = build_hybrid_csr(&classical, &alt, Some("svc.example.com"), &sans()).unwrap();
            let mut parsed = parse_csr(&csr).unwrap();
            let alt_public = parsed.alt_public_key.take();
            assert!(
                alt_public.is_some(),
                "hybrid CSR carries the alternative key"
            );
            let leaf =
                issue_hybrid_leaf(&inter, &leaf_request(LeafKey::Csr(parsed)), alt_public).unwrap();
            (
                vec![leaf.cert_pem, inter.cert_pem().to_owned()],
                classical.to_pkcs8_pem(),
                Some(pem::encode(
                    "PRIVATE KEY",
                    &mldsa_key_to_pkcs8(&alt).unwrap(),
                )),
            )
        }
    };
    Issued {
        kind,
        chain_pem,
        key_pem,
        alt_key_pem,
    }
}

fn request() -> TokenCreateRequest {
    TokenCreateRequest {
        principal: "workload:web".to_owned(),
        names: vec!["*.web.internal".to_owned()],
        ttl_seconds: 600,
        uses: 1,
        proof: None,
    }
}

/// The possession proof's fields, decoded.
struct Decoded {
    proof: PossessionProof,
    signature: Vec<u8>,
    alt_signature: Option<Vec<u8>>,
}

fn decode(proof: Proof) -> Decoded {
    let Proof::Possession(proof) = proof else {
        panic!("a credential makes possession proofs");
    };
    let signature = STANDARD.decode(&proof.signature).unwrap();
    let alt_signature = proof
        .alt_signature
        .as_ref()
        .map(|s| STANDARD.decode(s).unwrap());
    Decoded {
        proof,
        signature,
        alt_signature,
    }
}

/// The message a verifier rebuilds for `proof` sent to `op` with `req`.
fn message(proof: &PossessionProof, op: &str, req: &TokenCreateRequest) -> Vec<u8> {
    proof_message(op, proof.signed_at, &proof.nonce, &req.digest())
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] ^= 0x01;
    out
}

fn is_invalid_signature(result: Result<(), PkiError>) -> bool {
    matches!(result, Err(PkiError::InvalidSignature(_)))
}

#[test]
fn every_key_kind_proves_possession_and_any_change_breaks_it() {
    let kinds = all_kinds();
    let issued: Vec<Issued> = kinds.iter().map(|k| issue(*k)).collect();
    let req = request();
    let now = Utc::now().with_nanosecond(123_456_789).unwrap();
    for (i, one) in issued.iter().enumerate() {
        let kind = one.kind;
        let cred = one.credential();
        let leaf = one.leaf_der();
        assert_eq!(cred.leaf_der().unwrap(), leaf, "{kind:?}");
        let d = decode(cred.proof(OP, &req, now).unwrap());

        // The proof's framing.
        assert_eq!(d.proof.chain_pem, one.chain_pem, "{kind:?}: chain attached");
        assert_eq!(d.proof.signed_at.timestamp(), now.timestamp(), "{kind:?}");
        assert_eq!(d.proof.signed_at.nanosecond(), 0, "{kind:?}: whole seconds");
        assert_eq!(d.proof.nonce.len(), 22, "{kind:?}");
        assert!(valid_nonce(&d.proof.nonce), "{kind:?}");
        assert_eq!(URL_SAFE_NO_PAD.decode(&d.proof.nonce).unwrap().len(), 16);
        assert_eq!(
            d.alt_signature.is_some(),
            kind == Kind::Hybrid,
            "{kind:?}: alt signature exactly for the hybrid leaf"
        );

        // It verifies.
        let msg = message(&d.proof, OP, &req);
        let alt = d.alt_signature.as_deref();
        verify_possession(&leaf, &msg, &d.signature, alt)
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));

        // One flipped byte of the message, anywhere.
        for at in [0, msg.len() / 2, msg.len() - 1] {
            assert!(
                is_invalid_signature(verify_possession(&leaf, &flip(&msg, at), &d.signature, alt)),
                "{kind:?}: message byte {at} flipped"
            );
        }
        // One flipped byte of the signature, anywhere.
        let sig = &d.signature;
        for at in [0, sig.len() / 2, sig.len() - 1] {
            assert!(
                is_invalid_signature(verify_possession(&leaf, &msg, &flip(sig, at), alt)),
                "{kind:?}: signature byte {at} flipped"
            );
        }
        // The proof is bound to the operation, the request, the nonce and the time.
        let other_op = message(&d.proof, "sigil.revocation.v1.revoke", &req);
        let mut other_req = request();
        other_req.uses = 2;
        let other_req = message(&d.proof, OP, &other_req);
        let mut later = d.proof.clone();
        later.signed_at += Duration::seconds(1);
        let later = message(&later, OP, &req);
        let mut renonced = d.proof.clone();
        renonced.nonce = "AAAAAAAAAAAAAAAAAAAAAA".to_owned();
        let renonced = message(&renonced, OP, &req);
        for (what, other) in [
            ("operation", other_op),
            ("request", other_req),
            ("signed_at", later),
            ("nonce", renonced),
        ] {
            assert!(
                is_invalid_signature(verify_possession(&leaf, &other, &d.signature, alt)),
                "{kind:?}: another {what}"
            );
        }
        // Every other credential's signature over the same message: same kind with
        // another key, and every other kind.
        let stranger = issue(kind).credential();
        let foreign = stranger.key.sign(&msg).unwrap();
        assert!(
            is_invalid_signature(verify_possession(&leaf, &msg, &foreign, alt)),
            "{kind:?}: another key of the same kind"
        );
        for (j, other) in issued.iter().enumerate() {
            if i == j {
                continue;
            }
            let foreign = other.credential().key.sign(&msg).unwrap();
            assert!(
                verify_possession(&leaf, &msg, &foreign, alt).is_err(),
                "{kind:?}: a {:?} signature",
                other.kind
            );
        }
        // Signatures of the wrong leaf's proof do not move to this leaf.
        let their_proof = decode(stranger.proof(OP, &req, now).unwrap());
        let their_msg = message(&their_proof.proof, OP, &req);
        assert!(
            verify_possession(
                &leaf,
                &their_msg,
                &their_proof.signature,
                their_proof.alt_signature.as_deref()
            )
            .is_err(),
            "{kind:?}: a stranger's whole proof"
        );
    }
}

#[test]
fn a_hybrid_leaf_needs_its_alt_signature_and_others_refuse_one() {
    let hybrid = issue(Kind::Hybrid);
    let cred = hybrid.credential();
    let leaf = hybrid.leaf_der();
    let req = request();
    let d = decode(cred.proof(OP, &req, Utc::now()).unwrap());
    let msg = message(&d.proof, OP, &req);
    let alt = d.alt_signature.clone().unwrap();
    verify_possession(&leaf, &msg, &d.signature, Some(&alt)).unwrap();

    // Without the alt signature: refused, saying why.
    let err = verify_possession(&leaf, &msg, &d.signature, None).unwrap_err();
    assert!(
        matches!(&err, PkiError::InvalidSignature(m) if m.contains("alt_signature")),
        "{err}"
    );
    // A flipped alt signature byte, or another ML-DSA-65 key's alt signature.
    for at in [0, alt.len() / 2, alt.len() - 1] {
        assert!(is_invalid_signature(verify_possession(
            &leaf,
            &msg,
            &d.signature,
            Some(&flip(&alt, at))
        )));
    }
    let other = issue(Kind::Hybrid).credential();
    let other_alt = other.key.sign_alt(&msg).unwrap().unwrap();
    assert!(is_invalid_signature(verify_possession(
        &leaf,
        &msg,
        &d.signature,
        Some(&other_alt)
    )));
    // Both halves are needed: a good alt signature does not rescue a bad classical one.
    assert!(is_invalid_signature(verify_possession(
        &leaf,
        &msg,
        &flip(&d.signature, d.signature.len() - 1),
        Some(&alt)
    )));
    // The alt key alone cannot stand in for the classical key.
    assert!(is_invalid_signature(verify_possession(
        &leaf,
        &msg,
        &alt,
        Some(&alt)
    )));

    // A non-hybrid leaf refuses any alt signature, even a valid ML-DSA one.
    for kind in [
        Kind::Classical(KeyAlgorithm::EcdsaP256),
        Kind::MlDsa(MlDsaLevel::L65),
    ] {
        let plain = issue(kind);
        let plain_cred = plain.credential();
        let pd = decode(plain_cred.proof(OP, &req, Utc::now()).unwrap());
        assert!(pd.alt_signature.is_none());
        let pmsg = message(&pd.proof, OP, &req);
        let err =
            verify_possession(&plain.leaf_der(), &pmsg, &pd.signature, Some(&alt)).unwrap_err();
        assert!(
            matches!(&err, PkiError::InvalidSignature(m) if m.contains("no alternative key")),
            "{kind:?}: {err}"
        );
    }
}

#[test]
fn bundles_round_trip_and_pick_the_matching_key_in_any_order() {
    let req = request();
    for kind in [
        Kind::Classical(KeyAlgorithm::Ed25519),
        Kind::MlDsa(MlDsaLevel::L44),
        Kind::Composite(CompositeAlg::MlDsa65EcdsaP256Sha512),
        Kind::Hybrid,
    ] {
        let one = issue(kind);
        let cred = one.credential();
        let bundle = cred.to_pem_bundle();
        assert!(
            bundle.starts_with("-----BEGIN CERTIFICATE-----"),
            "{kind:?}"
        );
        assert_eq!(bundle.matches("-----BEGIN CERTIFICATE-----").count(), 2);

        // Written back and read again: the same credential, and it still proves.
        let again = Credential::from_pem_bundle(&bundle).unwrap();
        assert_eq!(again.chain_pem, cred.chain_pem, "{kind:?}");
        assert_eq!(again.to_pem_bundle(), bundle, "{kind:?}: stable text");

        // A certificate file holding the whole chain counts as the chain.
        let from_file = Credential::from_parts(
            vec![one.chain_pem.concat()],
            &one.key_pem,
            one.alt_key_pem.as_deref(),
        )
        .unwrap();
        assert_eq!(from_file.chain_pem, cred.chain_pem, "{kind:?}");

        // Keys first, alt key before the key, comments around: the same credential.
        let certs: String = one.chain_pem.concat();
        let mut keys = vec![one.key_pem.clone()];
        keys.extend(one.alt_key_pem.clone());
        keys.reverse();
        let shuffled = format!("# admin credential\n{}\nnote\n{certs}", keys.concat());
        let reordered = Credential::from_pem_bundle(&shuffled).unwrap();
        assert_eq!(reordered.chain_pem, cred.chain_pem, "{kind:?}");
        assert_eq!(
            reordered.to_pem_bundle(),
            bundle,
            "{kind:?}: key order restored"
        );
        let d = decode(reordered.proof(OP, &req, Utc::now()).unwrap());
        verify_possession(
            &one.leaf_der(),
            &message(&d.proof, OP, &req),
            &d.signature,
            d.alt_signature.as_deref(),
        )
        .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
}

#[test]
fn bundles_and_parts_refuse_keys_that_do_not_belong_to_the_leaf() {
    let p256 = issue(Kind::Classical(KeyAlgorithm::EcdsaP256));
    let other_p256 = issue(Kind::Classical(KeyAlgorithm::EcdsaP256));
    let hybrid = issue(Kind::Hybrid);
    let other_hybrid = issue(Kind::Hybrid);
    let mldsa = issue(Kind::MlDsa(MlDsaLevel::L65));
    let certs = |i: &Issued| i.chain_pem.concat();
    let key_mismatch = |r: Result<Credential, PkiError>| matches!(r, Err(PkiError::KeyMismatch(_)));

    // Another credential's key of the same kind.
    assert!(key_mismatch(Credential::from_pem_bundle(&format!(
        "{}{}",
        certs(&p256),
        other_p256.key_pem
    ))));
    assert!(key_mismatch(Credential::from_parts(
        p256.chain_pem.clone(),
        &other_p256.key_pem,
        None
    )));
    // Leaf not first: the key belongs to the intermediate's leaf, not to the first cert.
    let swapped = vec![p256.chain_pem[1].clone(), p256.chain_pem[0].clone()];
    assert!(key_mismatch(Credential::from_parts(
        swapped,
        &p256.key_pem,
        None
    )));
    // A hybrid leaf without its alt key, with another one, or with only the alt key.
    assert!(key_mismatch(Credential::from_pem_bundle(&format!(
        "{}{}",
        certs(&hybrid),
        hybrid.key_pem
    ))));
    assert!(key_mismatch(Credential::from_parts(
        hybrid.chain_pem.clone(),
        &hybrid.key_pem,
        other_hybrid.alt_key_pem.as_deref()
    )));
    assert!(key_mismatch(Credential::from_pem_bundle(&format!(
        "{}{}{}",
        certs(&hybrid),
        hybrid.key_pem,
        other_hybrid.alt_key_pem.as_deref().unwrap()
    ))));
    assert!(key_mismatch(Credential::from_pem_bundle(&format!(
        "{}{}",
        certs(&hybrid),
        hybrid.alt_key_pem.as_deref().unwrap()
    ))));
    // An alt key for a leaf that has no subjectAltPublicKeyInfo.
    assert!(key_mismatch(Credential::from_parts(
        p256.chain_pem.clone(),
        &p256.key_pem,
        Some(&mldsa.key_pem)
    )));
    assert!(key_mismatch(Credential::from_pem_bundle(&format!(
        "{}{}{}",
        certs(&p256),
        p256.key_pem,
        mldsa.key_pem
    ))));
    // The alt key must be ML-DSA.
    assert!(matches!(
        CredentialKey::from_pem(&hybrid.key_pem)
            .unwrap()
            .with_alt_pem(&other_p256.key_pem),
        Err(PkiError::UnsupportedKey(_))
    ));

    // Malformed bundles: typed encoding errors.
    let encoding = |r: Result<Credential, PkiError>| matches!(r, Err(PkiError::Encoding(_)));
    assert!(
        encoding(Credential::from_pem_bundle(&p256.key_pem)),
        "no certificate"
    );
    assert!(
        encoding(Credential::from_pem_bundle(&certs(&p256))),
        "no key"
    );
    assert!(encoding(Credential::from_pem_bundle("not pem at all")));
    assert!(
        encoding(Credential::from_pem_bundle(&format!(
            "{}{}{}{}",
            certs(&hybrid),
            hybrid.key_pem,
            hybrid.alt_key_pem.as_deref().unwrap(),
            p256.key_pem
        ))),
        "three keys"
    );
    assert!(
        encoding(Credential::from_pem_bundle(&format!(
            "{}{}{}",
            certs(&p256),
            p256.key_pem,
            pem::encode("CERTIFICATE REQUEST", &[0x30, 0x00])
        ))),
        "a foreign block"
    );
    assert!(
        encoding(Credential::from_pem_bundle(&format!(
            "{}{}",
            pem::encode("CERTIFICATE", b"not DER"),
            p256.key_pem
        ))),
        "a certificate that does not parse"
    );
    let broken_key = p256.key_pem.replace("-----END PRIVATE KEY-----", "");
    assert!(
        encoding(Credential::from_pem_bundle(&format!(
            "{}{broken_key}",
            certs(&p256)
        ))),
        "a key block without its END line"
    );
    assert!(
        encoding(Credential::from_pem_bundle(&format!(
            "{}{}",
            certs(&p256),
            pem::encode("PRIVATE KEY", b"garbage")
        ))),
        "a key that does not parse"
    );
    assert!(encoding(Credential::from_parts(
        vec![],
        &p256.key_pem,
        None
    )));
    assert!(matches!(
        CredentialKey::from_pem(&pem::encode("EC PRIVATE KEY", &[0x30, 0x00])),
        Err(PkiError::UnsupportedKey(_))
    ));
}

#[test]
fn debug_never_shows_key_bytes() {
    for kind in [
        Kind::Classical(KeyAlgorithm::EcdsaP256),
        Kind::Composite(CompositeAlg::MlDsa44Ed25519Sha512),
        Kind::Hybrid,
    ] {
        let one = issue(kind);
        let cred = one.credential();
        let debug = format!("{cred:?} {:?}", cred.key);
        assert!(debug.contains("[redacted]"), "{kind:?}: {debug}");
        for key_pem in std::iter::once(&one.key_pem).chain(&one.alt_key_pem) {
            let der = pem::decode(key_pem, &["PRIVATE KEY", COMPOSITE_KEY_PEM_LABEL]).unwrap();
            let b64 = STANDARD.encode(&der);
            let hex = hex::encode(&der);
            for window in [
                &b64[b64.len() / 2..b64.len() / 2 + 16],
                &hex[hex.len() - 16..],
            ] {
                assert!(!debug.contains(window), "{kind:?}: key bytes in {debug}");
            }
            assert!(!debug.contains("PRIVATE KEY"), "{kind:?}");
            let bytes = format!("{:?}", &der[der.len() - 8..]);
            assert!(!debug.contains(&bytes[1..bytes.len() - 1]), "{kind:?}");
        }
    }
}

#[test]
fn credentials_can_be_shared_between_tasks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Credential>();
    send_sync::<CredentialKey>();
}

// ---------------------------------------------------------------------------------
// Independent verifiers.

fn on_path(tool: &str) -> bool {
    Command::new(tool).arg("version").output().is_ok()
}

fn spki_pem(leaf_der: &[u8]) -> String {
    let (_, cert) = X509Certificate::from_der(leaf_der).unwrap();
    pem::encode("PUBLIC KEY", cert.public_key().raw)
}

/// Runs `openssl args…` in `dir`; (success, output).
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn openssl_verifies_classical_proof_signatures() {
    if !on_path("openssl") {
        println!("NOTE: openssl is not on PATH; the independent OpenSSL check is skipped");
        return;
    }
    let req = request();
    for (alg, how) in [
        (KeyAlgorithm::EcdsaP256, "-sha256"),
        (KeyAlgorithm::EcdsaP384, "-sha384"),
        (KeyAlgorithm::Rsa2048, "-sha256"),
        (KeyAlgorithm::Ed25519, "rawin"),
    ] {
        let one = issue(Kind::Classical(alg));
        let d = decode(one.credential().proof(OP, &req, Utc::now()).unwrap());
        let msg = message(&d.proof, OP, &req);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pub.pem"), spki_pem(&one.leaf_der())).unwrap();
        std::fs::write(dir.path().join("msg.bin"), &msg).unwrap();
        std::fs::write(dir.path().join("bad.bin"), flip(&msg, 3)).unwrap();
        std::fs::write(dir.path().join("sig.der"), &d.signature).unwrap();
        let verify = |input: &str| {
            if how == "rawin" {
                openssl(
                    dir.path(),
                    &[
                        "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in",
                        input, "-sigfile", "sig.der",
                    ],
                )
            } else {
                openssl(
                    dir.path(),
                    &[
                        "dgst",
                        how,
                        "-verify",
                        "pub.pem",
                        "-signature",
                        "sig.der",
                        input,
                    ],
                )
            }
        };
        let (ok, text) = verify("msg.bin");
        assert!(ok, "{alg:?}: OpenSSL rejects the proof signature: {text}");
        assert!(text.contains("Verified"), "{alg:?}: {text}");
        let (ok, text) = verify("bad.bin");
        assert!(!ok, "{alg:?}: OpenSSL accepts a changed message: {text}");
    }
}

/// pyca/cryptography's Python, when the tools venv (or `$SIGIL_PYTHON`) has it with
/// ML-DSA.
fn pyca_python() -> Option<PathBuf> {
    let path = std::env::var_os("SIGIL_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/sigil/tools/venv/bin/python"))
        })?;
    let ok = Command::new(&path)
        .args([
            "-c",
            "from cryptography.hazmat.primitives.asymmetric import mldsa",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(path)
}

const PYCA_VERIFY: &str = r#"
import base64, json, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa
CLS = {44: mldsa.MLDSA44PublicKey, 65: mldsa.MLDSA65PublicKey, 87: mldsa.MLDSA87PublicKey}
out = []
for case in json.load(open(sys.argv[1])):
    key = CLS[case["level"]].from_public_bytes(base64.b64decode(case["pk"]))
    msg = base64.b64decode(case["msg"])
    sig = base64.b64decode(case["sig"])
    def ok(m):
        try:
            key.verify(sig, m)  # pure ML-DSA, empty context
            return True
        except InvalidSignature:
            return False
    out.append([ok(msg), ok(msg + b"x")])
print(json.dumps(out))
"#;

#[test]
fn pyca_verifies_mldsa_proof_signatures() {
    let Some(python) = pyca_python() else {
        println!(
            "NOTE: no Python with pyca/cryptography ML-DSA (run scripts/ensure-nats.sh \
             --with-crypto); the independent ML-DSA check is skipped"
        );
        return;
    };
    let req = request();
    let level_number = |l: MlDsaLevel| match l {
        MlDsaLevel::L44 => 44,
        MlDsaLevel::L65 => 65,
        MlDsaLevel::L87 => 87,
    };
    let mut cases = Vec::new();
    // Pure ML-DSA leaves, and the alt signature of a hybrid leaf (ML-DSA-65).
    for level in MlDsaLevel::ALL {
        let key = MlDsaKeyPair::generate(level);
        let key_pem = pem::encode("PRIVATE KEY", &mldsa_key_to_pkcs8(&key).unwrap());
        let signer = CredentialKey::from_pem(&key_pem).unwrap();
        let msg = proof_message(OP, Utc::now(), "AAAAAAAAAAAAAAAAAAAAAA", &req.digest());
        cases.push(serde_json::json!({
            "level": level_number(level),
            "pk": STANDARD.encode(key.public_key()),
            "msg": STANDARD.encode(&msg),
            "sig": STANDARD.encode(signer.sign(&msg).unwrap()),
        }));
    }
    let hybrid = issue(Kind::Hybrid);
    let d = decode(hybrid.credential().proof(OP, &req, Utc::now()).unwrap());
    let alt_key = sigil_pki::pqcert::mldsa_key_from_pkcs8(
        &pem::decode(hybrid.alt_key_pem.as_deref().unwrap(), &["PRIVATE KEY"]).unwrap(),
        None,
    )
    .unwrap();
    cases.push(serde_json::json!({
        "level": 65,
        "pk": STANDARD.encode(alt_key.public_key()),
        "msg": STANDARD.encode(message(&d.proof, OP, &req)),
        "sig": STANDARD.encode(d.alt_signature.unwrap()),
    }));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("verify.py"), PYCA_VERIFY).unwrap();
    std::fs::write(
        dir.path().join("cases.json"),
        serde_json::to_vec(&cases).unwrap(),
    )
    .unwrap();
    let out = Command::new(&python)
        .arg(dir.path().join("verify.py"))
        .arg(dir.path().join("cases.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyca failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<(bool, bool)> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), cases.len());
    for (i, (good, tampered)) in results.into_iter().enumerate() {
        assert!(good, "case {i}: pyca rejects the ML-DSA proof signature");
        assert!(!tampered, "case {i}: pyca accepts a changed message");
    }
}
