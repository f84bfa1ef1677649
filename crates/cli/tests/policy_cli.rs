//! `sigil policy` through the real binary against `sigil up` on a private nats-server:
//! templates offline, then show → apply (signed with the admin credential `up` made;
//! the version records the admin as its author) → ls → test (allow and deny, exit 3) →
//! a malformed file (one line naming file, line and column; exit 5; nothing stored) →
//! rollback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sigil_testkit::NatsServer;

mod common;

use common::{err, out, sigil};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_list_show_test_and_rollback_through_the_cli() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let data = tempfile::tempdir().unwrap();
    let d = data.path();

    // Templates need no server.
    let o = sigil(d, &url, &["policy", "templates"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("sc081"), "{}", out(&o));
    let o = sigil(d, &url, &["policy", "templates", "pq-required"]);
    assert!(out(&o).contains("pq-required-spiffe"));

    let (_up, _) = common::start_up(d, &url, &[]);
    let o = common::until_ok(d, &url, &["policy", "ls"]);
    assert!(out(&o).contains("seeded"), "{}", out(&o));

    // show prints Cedar that can be applied again.
    let o = sigil(d, &url, &["policy", "show"]);
    assert!(out(&o).starts_with("// version 1 (active)"), "{}", out(&o));
    let file = d.join("corp.cedar");
    std::fs::write(
        &file,
        format!(
            "{}\n@id(\"corp\")\n@reason(\"corp names\")\npermit (principal, action, resource) when {{ resource has dns_name && resource.dns_name like \"*.corp.test\" }};\n",
            out(&o)
        ),
    )
    .unwrap();
    let o = sigil(
        d,
        &url,
        &[
            "policy",
            "apply",
            file.to_str().unwrap(),
            "--comment",
            "add corp",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let seeded = std::fs::read_to_string(&file)
        .unwrap()
        .matches("@id(")
        .count();
    assert!(
        out(&o).contains(&format!("as version 2 ({seeded} policies")),
        "{}",
        out(&o)
    );
    let o = sigil(d, &url, &["--json", "policy", "ls"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        list["versions"][0]["created_by"], "admin:admin",
        "the author is the admin whose credential signed: {list}"
    );

    // test: allow (exit 0) and deny (exit 3, reasons on stderr).
    let req = d.join("req.json");
    std::fs::write(
        &req,
        r#"{"principal":"workload:web","action":"issue","profile":"tls-server","sans":{"dns":["a.corp.test"]},"ttl_seconds":86400,"key_algorithm":"ecdsa-p256"}"#,
    )
    .unwrap();
    let o = sigil(d, &url, &["policy", "test", req.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).starts_with("ALLOW by policy version 2"),
        "{}",
        out(&o)
    );
    assert!(out(&o).contains("permit corp: corp names"), "{}", out(&o));
    let o = sigil(
        d,
        &url,
        &[
            "policy",
            "test",
            req.to_str().unwrap(),
            "--policy-version",
            "1",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        err(&o).starts_with("sigil: denied: no policy permits issue of dns name a.corp.test"),
        "{}",
        err(&o)
    );

    // A malformed file: one line with file, line and column; exit 5; nothing stored.
    let bad = d.join("bad.cedar");
    std::fs::write(
        &bad,
        "permit (principal, action, resource);\nforbid (principal action, resource);\n",
    )
    .unwrap();
    let o = sigil(d, &url, &["policy", "apply", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    assert!(
        err(&o).contains("bad.cedar") && err(&o).contains("line 2, column"),
        "{}",
        err(&o)
    );

    let o = sigil(d, &url, &["policy", "rollback", "1"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).contains("version 3 restores version 1"),
        "{}",
        out(&o)
    );
    let o = sigil(d, &url, &["--json", "policy", "ls"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list["active"], 3);
    assert_eq!(list["versions"].as_array().unwrap().len(), 3);
    let o = sigil(d, &url, &["policy", "rollback", "9"]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
}
