//! Rotating the intermediate through the real `sigil` binary, on a post-quantum CA.
//!
//! `sigil up` on a private nats-server, then: a hybrid leaf for a hybrid CSR made by
//! `sigil csr --alt ml-dsa-65` carries the requester's ML-DSA key; `sigil ca init --kind mldsa --force`
//! replaces the default hybrid hierarchy (which stays in the bundle, retired); a leaf is issued for an ML-DSA CSR (the key
//! never leaves the test); `sigil ca rotate --step prepare` puts a next intermediate
//! in the trust bundle while the current one keeps signing; `sigil ca bundle` (table,
//! `--json` and `--out`) shows both; `sigil ca rotate --step activate` swaps them and
//! retires the old one until its last leaf expires; a leaf issued afterwards chains to
//! the new intermediate; and `sigil verify` passes for the leaves from before, during
//! and after the rotation, both with the chain they came with and against the bundle
//! alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use sigil_contracts::types::Sans;
use sigil_pki::mldsa::{MlDsaKeyPair, MlDsaLevel};
use sigil_testkit::NatsServer;

mod common;

/// Runs `sigil` against this data dir and NATS.
struct Cli {
    data: PathBuf,
    nats: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        common::sigil(&self.data, &self.nats, args)
    }

    /// Runs `args`, which must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "sigil {args:?} failed ({:?}): {}{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// [`Cli::ok`] with `--json`, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// `sigil issue --csr` into `dir`; returns the reply.
    fn issue_csr(&self, csr: &Path, dir: &Path) -> Value {
        self.json(&[
            "issue",
            "--csr",
            csr.to_str().unwrap(),
            "--ttl",
            "2h",
            "--out",
            dir.to_str().unwrap(),
        ])
    }

    /// `sigil verify` with `args` after the certificate; returns the JSON report,
    /// which must be ok.
    fn verify(&self, cert: &Path, args: &[&str]) -> Value {
        let mut all = vec!["verify", cert.to_str().unwrap()];
        all.extend_from_slice(args);
        let report = self.json(&all);
        assert_eq!(report["ok"], true, "{report:#}");
        report
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The first certificate of a PEM file (the issuing intermediate in chain.pem).
fn first_pem(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let end = "-----END CERTIFICATE-----";
    let at = text.find(end).unwrap() + end.len();
    format!("{}\n", text[..at].trim_start())
}

fn same_pem(a: &str, b: &str) -> bool {
    a.trim() == b.trim()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_and_bundle_through_the_cli() {
    let nats = NatsServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let (_up, _) = common::start_up(data.path(), &nats.url(), &[]);
    let cli = Cli {
        data: data.path().to_owned(),
        nats: nats.url(),
    };

    // On the default hybrid CA, `sigil csr --alt` makes both keys here; the leaf
    // carries the requester's ML-DSA key (2.5.29.72) and verifies both ways.
    let hybrid = data.path().join("hybrid");
    cli.ok(&[
        "csr",
        "--key-alg",
        "ecdsa-p256",
        "--alt",
        "ml-dsa-65",
        "--dns",
        "hybrid.example.com",
        "--out",
        hybrid.to_str().unwrap(),
    ]);
    let leaf = cli.issue_csr(&hybrid.join("csr.pem"), &hybrid);
    assert_eq!(leaf["kind"], "hybrid");
    let cert_pem = std::fs::read_to_string(hybrid.join("cert.pem")).unwrap();
    let cert_der = sigil_pki::pem::decode(&cert_pem, &["CERTIFICATE"]).unwrap();
    assert_eq!(
        sigil_pki::hybrid::subject_alt_key_level(&cert_der).unwrap(),
        Some(MlDsaLevel::L65)
    );
    cli.verify(
        &hybrid.join("cert.pem"),
        &["--chain", hybrid.join("chain.pem").to_str().unwrap()],
    );

    // A pure ML-DSA hierarchy replaces the default hybrid one.
    let cas = cli.json(&[
        "ca", "init", "--kind", "mldsa", "--alg", "mldsa65", "--force",
    ]);
    let cas = cas.as_array().unwrap();
    assert_eq!(cas.len(), 2, "{cas:#?}");
    assert!(
        cas.iter()
            .all(|c| c["kind"] == "mldsa" && c["active"] == true)
    );
    let old_intermediate =
        cas.iter().find(|c| c["role"] == "intermediate").unwrap()["certificate_pem"]
            .as_str()
            .unwrap()
            .to_owned();

    // The requester's ML-DSA key stays here; only the CSR travels.
    let key = MlDsaKeyPair::generate(MlDsaLevel::L65);
    let sans = |name: &str| Sans {
        dns: vec![name.to_owned()],
        ..Sans::default()
    };
    let csr_file = |name: &str| {
        let path = data.path().join(format!("{name}.csr"));
        let csr = sigil_pki::build_pq_csr(&key, None, &sans(&format!("{name}.example.com")));
        std::fs::write(&path, csr.unwrap()).unwrap();
        path
    };
    let dir = |name: &str| data.path().join(name);

    let before = cli.issue_csr(&csr_file("before"), &dir("before"));
    assert_eq!(before["kind"], "mldsa");
    assert!(!dir("before").join("key.pem").exists(), "no key for a CSR");
    assert!(same_pem(
        &first_pem(&dir("before").join("chain.pem")),
        &old_intermediate
    ));

    // The bundle before any rotation: the current intermediate first, then the
    // replaced hybrid one (retired, kept until its own notAfter as it issued nothing).
    let initial = cli.json(&["ca", "bundle"]);
    assert_eq!(initial["kind"], "mldsa");
    let initial_intermediates = strings(&initial["intermediates"]);
    assert_eq!(initial_intermediates.len(), 2);
    assert_eq!(initial_intermediates[0], old_intermediate);
    let replaced = initial_intermediates[1].clone();
    assert_eq!(strings(&initial["roots"]).len(), 2);
    let version = initial["version"].as_u64().unwrap();

    // Prepare: the next intermediate is trusted but does not sign yet.
    let prepared = cli.json(&["ca", "rotate", "--step", "prepare"]);
    let next = prepared["next"]["certificate_pem"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(prepared["next"]["state"], "next");
    assert_eq!(
        prepared["current"]["certificate_pem"],
        old_intermediate.as_str()
    );
    assert!(prepared["retired"].is_null());
    let bundle = cli.json(&["ca", "bundle"]);
    assert_eq!(bundle, prepared["bundle"]);
    assert_eq!(bundle["version"].as_u64().unwrap(), version + 1);
    assert_eq!(
        strings(&bundle["intermediates"]),
        vec![old_intermediate.clone(), next.clone(), replaced.clone()]
    );
    assert_eq!(bundle["roots"], initial["roots"], "same roots");
    let table = cli.ok(&["ca", "bundle"]);
    assert!(
        table.starts_with(&format!("trust bundle version {} (mldsa)", version + 1)),
        "{table}"
    );
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("intermediate"))
            .count(),
        3,
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.starts_with("root")).count(),
        2,
        "{table}"
    );
    let during = cli.issue_csr(&csr_file("during"), &dir("during"));
    assert!(
        same_pem(
            &first_pem(&dir("during").join("chain.pem")),
            &old_intermediate
        ),
        "the current intermediate still signs"
    );

    // Activate: the next one signs; the old one is retired until its last leaf expires.
    let activated = cli.json(&["ca", "rotate", "--step", "activate"]);
    assert_eq!(activated["current"]["certificate_pem"], next.as_str());
    assert_eq!(activated["current"]["state"], "current");
    assert!(activated["next"].is_null());
    assert_eq!(
        activated["retired"]["certificate_pem"],
        old_intermediate.as_str()
    );
    assert_eq!(activated["retired"]["state"], "retired");
    let last_leaf = [&before, &during]
        .iter()
        .map(|r| chrono::DateTime::parse_from_rfc3339(r["not_after"].as_str().unwrap()).unwrap())
        .max()
        .unwrap();
    let retire_until = chrono::DateTime::parse_from_rfc3339(
        activated["retired"]["retire_until"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(retire_until, last_leaf);
    let bundle = cli.json(&["ca", "bundle"]);
    assert_eq!(bundle["version"].as_u64().unwrap(), version + 2);
    assert_eq!(
        strings(&bundle["intermediates"]),
        vec![next.clone(), old_intermediate.clone(), replaced]
    );

    let after = cli.issue_csr(&csr_file("after"), &dir("after"));
    assert!(same_pem(&first_pem(&dir("after").join("chain.pem")), &next));
    assert_ne!(after["serial"], before["serial"]);

    // The bundle as files: roots + intermediates in one, roots alone in another.
    let bundle_file = data.path().join("bundle.pem");
    let written = cli.ok(&["ca", "bundle", "--out", bundle_file.to_str().unwrap()]);
    assert!(
        written.contains(&format!("trust bundle version {}", version + 2)),
        "{written}"
    );
    let bundle_text = std::fs::read_to_string(&bundle_file).unwrap();
    assert_eq!(bundle_text.matches("BEGIN CERTIFICATE").count(), 5);
    let roots_file = data.path().join("roots.pem");
    std::fs::write(&roots_file, strings(&bundle["roots"]).concat()).unwrap();

    // Every leaf verifies with the chain it came with and against the bundle alone.
    for name in ["before", "during", "after"] {
        let cert = dir(name).join("cert.pem");
        let chain = dir(name).join("chain.pem");
        let report = cli.verify(&cert, &["--chain", chain.to_str().unwrap()]);
        let mldsa = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == "ml-dsa" && c["ok"] == true)
            .count();
        assert_eq!(mldsa, 3, "{name}: leaf, intermediate, root: {report:#}");
        cli.verify(
            &cert,
            &[
                "--chain",
                bundle_file.to_str().unwrap(),
                "--roots",
                roots_file.to_str().unwrap(),
            ],
        );
    }

    // A leaf does not verify under a trust anchor that is not its root (the check
    // above can fail).
    let stranger = sigil_pki::create_mldsa_root(
        "Stranger Root",
        MlDsaLevel::L65,
        chrono::Utc::now() - chrono::Duration::minutes(1),
        chrono::Utc::now() + chrono::Duration::days(1),
    )
    .unwrap();
    let stranger_file = data.path().join("stranger.pem");
    std::fs::write(&stranger_file, &stranger.cert_pem).unwrap();
    let o = cli.run(&[
        "verify",
        dir("after").join("cert.pem").to_str().unwrap(),
        "--chain",
        bundle_file.to_str().unwrap(),
        "--roots",
        stranger_file.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // `ca ls` shows the slots.
    let cas = cli.json(&["ca", "ls"]);
    let states: Vec<(String, String)> = cas
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] == "intermediate" && c["kind"] == "mldsa")
        .map(|c| {
            (
                c["certificate_pem"].as_str().unwrap().to_owned(),
                c["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(states.contains(&(old_intermediate, "retired".to_owned())));
    assert!(states.contains(&(next, "current".to_owned())));
}
