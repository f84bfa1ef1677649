//! Certificate chains of every kind sigil-pki issues (classical, hybrid, composite,
//! pure ML-DSA), built root → intermediate → leaf with the public API, for tests that
//! hand them to outside checkers (pkilint, noble, the `sigil verify` binary); and the
//! small file and tool helpers those tests share.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use sigil_contracts::types::{KeyAlgorithm, Profile, Sans};
use sigil_pki::mldsa::{MlDsaKeyPair, MlDsaLevel};
use sigil_pki::{
    CaMaterial, CompositeAlg, CompositeKeyPair, CompositeLeafRequest, LeafKey, LeafRequest,
    MlDsaLeafRequest, create_composite_intermediate, create_composite_root,
    create_hybrid_intermediate, create_hybrid_root, create_intermediate, create_mldsa_intermediate,
    create_mldsa_root, create_root, generate_key, issue_composite_leaf, issue_hybrid_leaf,
    issue_leaf, issue_mldsa_leaf,
};

/// The SPIFFE ID that [`test_sans`] carries as its URI SAN.
pub const SPIFFE_ID: &str = "spiffe://example.org/ns/prod/sa/svc";

/// The kind of a chain: which CA and leaf functions of sigil-pki build it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    /// `create_root` / `create_intermediate` / `issue_leaf` with generated keys.
    Classical(KeyAlgorithm),
    /// X.509 alternative signatures: a classical key plus an ML-DSA one.
    Hybrid(KeyAlgorithm, MlDsaLevel),
    /// Composite ML-DSA (draft-ietf-lamps-pq-composite-sigs).
    Composite(CompositeAlg),
    /// Pure ML-DSA (RFC 9881).
    MlDsa(MlDsaLevel),
}

impl ChainKind {
    /// A short name: `classical-ecdsa-p256`, `hybrid-ecdsa-p256+ML-DSA-65`, ….
    pub fn label(&self) -> String {
        match self {
            ChainKind::Classical(alg) => format!("classical-{}", alg.as_str()),
            ChainKind::Hybrid(alg, level) => format!("hybrid-{}+{}", alg.as_str(), level.name()),
            ChainKind::Composite(alg) => format!("composite-{}", alg.name()),
            ChainKind::MlDsa(level) => format!("mldsa-{}", level.name()),
        }
    }
}

/// What a test chooses about a chain; [`ChainSpec::new`] gives the common defaults.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    pub root_cn: String,
    pub inter_cn: String,
    /// Start of every certificate's validity.
    pub not_before: DateTime<Utc>,
    pub root_days: i64,
    pub inter_days: i64,
    pub leaf_days: i64,
    /// SANs of every leaf.
    pub sans: Sans,
    /// One leaf per profile, in this order.
    pub profiles: Vec<Profile>,
    /// Hybrid leaves carry a subjectAltPublicKeyInfo (a fresh ML-DSA key of the CA's
    /// level); without it they are classical leaves under a hybrid intermediate.
    pub hybrid_leaf_alt_key: bool,
}

impl ChainSpec {
    /// Root valid 30 days, intermediate 10, leaves 1, all from a minute ago; one
    /// `tls-server` leaf with [`test_sans`]; hybrid leaves with an alternative key.
    pub fn new(root_cn: &str, inter_cn: &str) -> ChainSpec {
        ChainSpec {
            root_cn: root_cn.to_owned(),
            inter_cn: inter_cn.to_owned(),
            not_before: Utc::now() - Duration::minutes(1),
            root_days: 30,
            inter_days: 10,
            leaf_days: 1,
            sans: test_sans(),
            profiles: vec![Profile::TlsServer],
            hybrid_leaf_alt_key: true,
        }
    }

    fn root_until(&self) -> DateTime<Utc> {
        self.not_before + Duration::days(self.root_days)
    }

    fn inter_until(&self) -> DateTime<Utc> {
        self.not_before + Duration::days(self.inter_days)
    }

    fn leaf_until(&self) -> DateTime<Utc> {
        self.not_before + Duration::days(self.leaf_days)
    }

    fn leaf_request(&self, profile: Profile, key: LeafKey) -> LeafRequest {
        LeafRequest {
            profile,
            sans: self.sans.clone(),
            common_name: None,
            not_before: self.not_before,
            not_after: self.leaf_until(),
            key,
        }
    }
}

/// `svc.example.com`, `10.1.2.3` and [`SPIFFE_ID`].
pub fn test_sans() -> Sans {
    Sans {
        dns: vec!["svc.example.com".to_owned()],
        ip: vec!["10.1.2.3".parse().unwrap()],
        uri: vec![SPIFFE_ID.to_owned()],
    }
}

/// A built chain, as DER.
#[derive(Debug, Clone)]
pub struct TestChain {
    pub root_der: Vec<u8>,
    pub inter_der: Vec<u8>,
    /// One leaf per [`ChainSpec::profiles`] entry, in that order.
    pub leaf_ders: Vec<Vec<u8>>,
}

impl TestChain {
    /// The first leaf.
    pub fn leaf_der(&self) -> &Vec<u8> {
        &self.leaf_ders[0]
    }
}

/// Builds a root → intermediate → leaves chain of `kind`. Panics on any error.
pub fn chain(kind: ChainKind, spec: &ChainSpec) -> TestChain {
    let label = kind.label();
    let t = spec.not_before;
    let leaves = |issue: &mut dyn FnMut(Profile) -> Result<Vec<u8>, sigil_pki::PkiError>| {
        spec.profiles
            .iter()
            .map(|&profile| issue(profile).unwrap_or_else(|e| panic!("{label} {profile:?}: {e}")))
            .collect::<Vec<_>>()
    };
    match kind {
        ChainKind::Classical(alg) => {
            let root = create_root(&spec.root_cn, alg, t, spec.root_until()).unwrap();
            let inter =
                create_intermediate(&root, &spec.inter_cn, alg, t, spec.inter_until()).unwrap();
            classical_chain_from(&root, &inter, spec, || {
                LeafKey::Generated(generate_key(alg).unwrap())
            })
        }
        ChainKind::Hybrid(alg, level) => {
            let root = create_hybrid_root(&spec.root_cn, alg, level, t, spec.root_until()).unwrap();
            let inter = create_hybrid_intermediate(
                &root,
                &spec.inter_cn,
                alg,
                level,
                t,
                spec.inter_until(),
            )
            .unwrap();
            let leaf_ders = leaves(&mut |profile| {
                let alt = spec
                    .hybrid_leaf_alt_key
                    .then(|| (level, MlDsaKeyPair::generate(level).public_key().to_vec()));
                let key = LeafKey::Generated(generate_key(alg)?);
                Ok(issue_hybrid_leaf(&inter, &spec.leaf_request(profile, key), alt)?.cert_der)
            });
            TestChain {
                root_der: root.cert_der().to_vec(),
                inter_der: inter.cert_der().to_vec(),
                leaf_ders,
            }
        }
        ChainKind::Composite(alg) => {
            let root = create_composite_root(&spec.root_cn, alg, t, spec.root_until()).unwrap();
            let inter =
                create_composite_intermediate(&root, &spec.inter_cn, alg, t, spec.inter_until())
                    .unwrap();
            let leaf_ders = leaves(&mut |profile| {
                let req = CompositeLeafRequest {
                    profile,
                    sans: spec.sans.clone(),
                    common_name: None,
                    not_before: t,
                    not_after: spec.leaf_until(),
                    alg,
                    public_key: CompositeKeyPair::generate(alg)?.public_key(),
                };
                Ok(issue_composite_leaf(&inter, &req)?.cert_der)
            });
            TestChain {
                root_der: root.cert_der,
                inter_der: inter.cert_der,
                leaf_ders,
            }
        }
        ChainKind::MlDsa(level) => {
            let root = create_mldsa_root(&spec.root_cn, level, t, spec.root_until()).unwrap();
            let inter =
                create_mldsa_intermediate(&root, &spec.inter_cn, level, t, spec.inter_until())
                    .unwrap();
            let leaf_ders = leaves(&mut |profile| {
                let req = MlDsaLeafRequest {
                    profile,
                    sans: spec.sans.clone(),
                    common_name: None,
                    not_before: t,
                    not_after: spec.leaf_until(),
                    level,
                    public_key: MlDsaKeyPair::generate(level).public_key().to_vec(),
                };
                Ok(issue_mldsa_leaf(&inter, &req)?.cert_der)
            });
            TestChain {
                root_der: root.cert_der,
                inter_der: inter.cert_der,
                leaf_ders,
            }
        }
    }
}

/// Classical leaves (one per profile, each with a key from `leaf_key`) issued by
/// `inter` under `root`, for CAs a test made itself (e.g. with OpenSSL RSA keys).
pub fn classical_chain_from(
    root: &CaMaterial,
    inter: &CaMaterial,
    spec: &ChainSpec,
    leaf_key: impl Fn() -> LeafKey,
) -> TestChain {
    let leaf_ders = spec
        .profiles
        .iter()
        .map(|&profile| {
            issue_leaf(inter, &spec.leaf_request(profile, leaf_key()))
                .unwrap_or_else(|e| panic!("classical {profile:?}: {e}"))
                .cert_der
        })
        .collect();
    TestChain {
        root_der: root.cert_der.clone(),
        inter_der: inter.cert_der.clone(),
        leaf_ders,
    }
}

/// The Python of the crypto tools venv: `$SIGIL_PYTHON`, else
/// `~/.cache/sigil/tools/venv/bin/python` (set up by
/// `scripts/ensure-nats.sh --with-crypto`). The path may not exist; callers check.
pub fn python() -> PathBuf {
    std::env::var_os("SIGIL_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/sigil/tools/venv/bin/python"))
        })
        .expect("neither $SIGIL_PYTHON nor $HOME is set")
}

/// `ders` as consecutive PEM `CERTIFICATE` blocks.
pub fn pem(ders: &[&[u8]]) -> String {
    ders.iter()
        .map(|der| sigil_pki::pem::encode("CERTIFICATE", der))
        .collect()
}

/// Writes [`pem`]`(ders)` to `dir/name` and returns the path.
pub fn write_pem(dir: &Path, name: &str, ders: &[&[u8]]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem(ders)).unwrap();
    path
}
