//! Every `query` shape is served from an index, not a table scan.
//!
//! Fills a SQLite inventory with synthetic credentials (20,000 by default;
//! `SIGIL_INVENTORY_SCALE_ROWS=1000000` for the million-row check), runs `ANALYZE`,
//! and checks SQLite's `EXPLAIN QUERY PLAN` for each query shape the service issues.
//! It prints each plan and the time a real page query took, so the million-row run
//! doubles as a quick measurement (it asserts plans, never timings).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbBackend, QueryTrait, Statement};
use sigil_contracts::inventory::QueryRequest;
use sigil_contracts::types::CredentialStatus;
use sigil_inventory::query::{self, ParsedQuery};
use sigil_inventory::{Migrator, SERVICE};
use sigil_testkit::TestDb;

fn rows() -> u64 {
    std::env::var("SIGIL_INVENTORY_SCALE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

async fn fill(db: &impl ConnectionTrait, n: u64) {
    // not_after spreads evenly over now - 1 year .. now + 1 year, in an order unrelated
    // to the serial (as with real, random serials); 10% revoked, 10% expired by event,
    // and the active rows past not_after stand for a scheduler that lags; SANs h<i>.g<i % 1000>.example.com (+ their wildcard keys).
    let seconds = 2 * 365 * 86_400;
    let sql = format!(
        "INSERT INTO credentials (serial, subject, sans, issuer, not_before, not_after, \
         key_algorithm, signature_algorithm, profile, fingerprint, status, labels, \
         certificate_pem, updated_at) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
         SELECT printf('%x', i + 268435456), 'CN=h' || i, '{{\"dns\":[]}}', 'CN=CA', \
         '2020-01-01T00:00:00+00:00', \
         strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-365 days', '+' || ((i * 7919 % {n}) * {seconds} / {n}) || ' seconds'), \
         'ecdsa-p256', 'ecdsa-with-SHA256', 'tls-server', 'ff', \
         CASE i % 10 WHEN 0 THEN 'revoked' WHEN 1 THEN 'expired' ELSE 'active' END, \
         '{{}}', '', '2020-01-01T00:00:00+00:00' FROM n"
    );
    db.execute_unprepared(&sql).await.unwrap();
    for key in [
        "'h' || i || '.g' || (i % 1000) || '.example.com'",
        "'*.g' || (i % 1000) || '.example.com'",
        "'*.example.com'",
    ] {
        db.execute_unprepared(&format!(
            "INSERT INTO credential_sans (serial, value) \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             SELECT printf('%x', i + 268435456), {key} FROM n"
        ))
        .await
        .unwrap();
    }
    db.execute_unprepared("ANALYZE").await.unwrap();
}

#[tokio::test]
async fn every_query_shape_uses_an_index() {
    let test_db = TestDb::sqlite();
    let db = sigil_store::open::<Migrator>(test_db.url(), SERVICE)
        .await
        .unwrap();
    let n = rows();
    let started = Instant::now();
    fill(&db, n).await;
    println!("filled {n} credentials in {:?}", started.elapsed());

    let after = Some(query::encode_cursor(&format!("{:x}", 268_435_456 + n / 2)));
    let shapes: Vec<(&str, QueryRequest)> = vec![
        ("all", QueryRequest::default()),
        (
            "all, page 2",
            QueryRequest {
                cursor: after.clone(),
                ..Default::default()
            },
        ),
        (
            "active",
            QueryRequest {
                status: Some(CredentialStatus::Active),
                ..Default::default()
            },
        ),
        (
            "revoked",
            QueryRequest {
                status: Some(CredentialStatus::Revoked),
                ..Default::default()
            },
        ),
        (
            "expired",
            QueryRequest {
                status: Some(CredentialStatus::Expired),
                ..Default::default()
            },
        ),
        (
            "expiring within a day",
            QueryRequest {
                expiring_within_seconds: Some(86_400),
                ..Default::default()
            },
        ),
        (
            "active, expiring within a week",
            QueryRequest {
                status: Some(CredentialStatus::Active),
                expiring_within_seconds: Some(7 * 86_400),
                ..Default::default()
            },
        ),
        (
            "san exact",
            QueryRequest {
                san: Some("h77.g77.example.com".into()),
                ..Default::default()
            },
        ),
        (
            "san wildcard",
            QueryRequest {
                san: Some("*.g77.example.com".into()),
                ..Default::default()
            },
        ),
        (
            "san wildcard matching everything, page 2",
            QueryRequest {
                san: Some("*.example.com".into()),
                cursor: after,
                ..Default::default()
            },
        ),
    ];
    for (name, req) in shapes {
        let parsed = ParsedQuery::parse(&req).unwrap();
        let now = Utc::now();
        let stmt = query::select(&parsed, now).build(DbBackend::Sqlite);
        let explain = Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("EXPLAIN QUERY PLAN {}", stmt.sql),
            stmt.values.map(|v| v.0).unwrap_or_default(),
        );
        let plan: Vec<String> = db
            .query_all(explain)
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get::<String>("", "detail").unwrap())
            .collect();
        let started = Instant::now();
        let page = query::run_query(&db, &parsed, now).await.unwrap();
        println!(
            "{name}: {} items in {:?}\n  {}",
            page.items.len(),
            started.elapsed(),
            plan.join("\n  ")
        );
        for step in &plan {
            // `SCAN t` without an index is a full table scan. (An ordered walk of an
            // index — `SCAN t USING … INDEX` — stops at the page limit.)
            let full_scan = step.starts_with("SCAN") && !step.contains("USING");
            assert!(!full_scan, "{name}: full scan in plan: {plan:?}");
        }
    }
}
