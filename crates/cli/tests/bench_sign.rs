//! `sigil bench sign` (the raw in-process baseline of docs/benchmarks.md) runs without a
//! Sigil, reports one JSON line under `--json`, and refuses a zero count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn sigil(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bench_sign_reports_each_kind_as_json() {
    for kind in ["classical", "hybrid"] {
        let out = sigil(&["--json", "bench", "sign", "--kind", kind, "--count", "5"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["kind"], kind);
        assert_eq!(report["count"], 5);
        assert!(report["per_second"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_sign_refuses_a_zero_count() {
    let out = sigil(&["bench", "sign", "--count", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--count"));
}
