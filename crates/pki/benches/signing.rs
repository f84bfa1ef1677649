//! Raw signing cost per certificate kind, without NATS, storage or policy.
//!
//! `issue/*`: issuing one TLS-server leaf from an intermediate — everything the
//! library does for one certificate (lint, build, sign, read back and re-verify),
//! but no subject key generation: the subject key is made once, before timing
//! (a parsed CSR for the classical and hybrid leaves, a raw public key for the
//! composite and ML-DSA ones).
//!
//! `sign/*`: the bare signature operation over a 1 KiB message (about the size of a
//! leaf's TBSCertificate): ring ECDSA P-256, ML-DSA-65 (pqcrypto), composite
//! MLDSA65-ECDSA-P256-SHA512.
//!
//! Run: `cargo bench -p sigil-pki --bench signing` (about a minute on two cores);
//! `-- --warm-up-time 1 --measurement-time 3` for a quicker pass.
// Benchmark set-up fails loudly: a bench that cannot build its CA has nothing to say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use sigil_contracts::types::{KeyAlgorithm, Profile, Sans};
use sigil_pki::mldsa::{MlDsaKeyPair, MlDsaLevel};
use sigil_pki::{
    CompositeAlg, CompositeKeyPair, CompositeLeafRequest, LeafKey, LeafRequest, MlDsaLeafRequest,
    create_composite_intermediate, create_composite_root, create_hybrid_intermediate,
    create_hybrid_root, create_intermediate, create_mldsa_intermediate, create_mldsa_root,
    create_root, issue_composite_leaf, issue_hybrid_leaf, issue_leaf, issue_mldsa_leaf, parse_csr,
};

const COMPOSITE: CompositeAlg = CompositeAlg::MlDsa65EcdsaP256Sha512;
const DNS: &str = "bench.example.com";

fn sans() -> Sans {
    Sans {
        dns: vec![DNS.to_owned()],
        ..Sans::default()
    }
}

/// Validity for CAs (two days) and leaves (one day) starting now.
fn times() -> (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) {
    let t = Utc::now();
    (
        t,
        t + chrono::Duration::days(1),
        t + chrono::Duration::days(2),
    )
}

/// A leaf request whose subject key is a P-256 key from an already-parsed CSR.
fn csr_leaf_request(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> LeafRequest {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr_pem = rcgen::CertificateParams::new(vec![DNS.to_owned()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    LeafRequest {
        profile: Profile::TlsServer,
        sans: sans(),
        common_name: None,
        not_before,
        not_after,
        key: LeafKey::Csr(parse_csr(&csr_pem).unwrap()),
    }
}

fn issue(c: &mut Criterion) {
    let (t, leaf_end, ca_end) = times();
    let mut group = c.benchmark_group("issue");

    let root = create_root("Bench Root", KeyAlgorithm::EcdsaP256, t, ca_end).unwrap();
    let inter =
        create_intermediate(&root, "Bench Issuing", KeyAlgorithm::EcdsaP256, t, ca_end).unwrap();
    let req = csr_leaf_request(t, leaf_end);
    group.bench_function("classical-p256", |b| {
        b.iter(|| issue_leaf(black_box(&inter), black_box(&req)).unwrap());
    });

    let root = create_hybrid_root(
        "Bench Hybrid Root",
        KeyAlgorithm::EcdsaP256,
        MlDsaLevel::L65,
        t,
        ca_end,
    )
    .unwrap();
    let inter = create_hybrid_intermediate(
        &root,
        "Bench Hybrid Issuing",
        KeyAlgorithm::EcdsaP256,
        MlDsaLevel::L65,
        t,
        ca_end,
    )
    .unwrap();
    group.bench_function("hybrid-p256+mldsa65", |b| {
        b.iter(|| issue_hybrid_leaf(black_box(&inter), black_box(&req), None).unwrap());
    });

    let root = create_composite_root("Bench Composite Root", COMPOSITE, t, ca_end).unwrap();
    let inter =
        create_composite_intermediate(&root, "Bench Composite Issuing", COMPOSITE, t, ca_end)
            .unwrap();
    let req = CompositeLeafRequest {
        profile: Profile::TlsServer,
        sans: sans(),
        common_name: None,
        not_before: t,
        not_after: leaf_end,
        alg: COMPOSITE,
        public_key: CompositeKeyPair::generate(COMPOSITE).unwrap().public_key(),
    };
    group.bench_function("composite-mldsa65-p256", |b| {
        b.iter(|| issue_composite_leaf(black_box(&inter), black_box(&req)).unwrap());
    });

    let root = create_mldsa_root("Bench ML-DSA Root", MlDsaLevel::L65, t, ca_end).unwrap();
    let inter =
        create_mldsa_intermediate(&root, "Bench ML-DSA Issuing", MlDsaLevel::L65, t, ca_end)
            .unwrap();
    let req = MlDsaLeafRequest {
        profile: Profile::TlsServer,
        sans: sans(),
        common_name: None,
        not_before: t,
        not_after: leaf_end,
        level: MlDsaLevel::L65,
        public_key: MlDsaKeyPair::generate(MlDsaLevel::L65)
            .public_key()
            .to_vec(),
    };
    group.bench_function("mldsa65", |b| {
        b.iter(|| issue_mldsa_leaf(black_box(&inter), black_box(&req)).unwrap());
    });

    group.finish();
}

fn sign(c: &mut Criterion) {
    let msg = vec![0x5a_u8; 1024];
    let mut group = c.benchmark_group("sign");

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let ecdsa =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    group.bench_function("ecdsa-p256-ring", |b| {
        b.iter(|| ecdsa.sign(&rng, black_box(&msg)).unwrap());
    });

    let mldsa = MlDsaKeyPair::generate(MlDsaLevel::L65);
    group.bench_function("mldsa65", |b| {
        b.iter(|| mldsa.sign(black_box(&msg), &[]).unwrap());
    });

    let composite = CompositeKeyPair::generate(COMPOSITE).unwrap();
    group.bench_function("composite-mldsa65-p256", |b| {
        b.iter(|| composite.sign(black_box(&msg), &[]).unwrap());
    });

    group.finish();
}

criterion_group! {
    name = benches;
    // Small and short so the whole run stays around a minute on a shared two-core
    // machine; command-line flags (--measurement-time, …) still override these.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = issue, sign
}
criterion_main!(benches);
