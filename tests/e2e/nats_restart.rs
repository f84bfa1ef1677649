//! Restarting nats-server in the middle of 200 issuances still leaves every issued
//! certificate in inventory exactly once, and exactly one `identity.issued` event each.
//! Clients retry with the same idempotency key (and a fresh proof), as `sigil issue`
//! does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sigil_contracts::inventory::QueryRequest;
use sigil_contracts::issuer::IssueResponse;
use sigil_contracts::subjects::ISSUER_ISSUE;
use sigil_e2e::{Cluster, issue_request, prove};
use sigil_testkit::eventually;

const TOTAL: usize = 200;
const WORKERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_issuance_loses_and_doubles_nothing() {
    let mut c = Cluster::start().await;
    let done = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let bus = c.bus.clone();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (bus, done, retries, admin) = (
            bus.clone(),
            done.clone(),
            retries.clone(),
            c.admin().clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut serials = Vec::new();
            for i in (w..TOTAL).step_by(WORKERS) {
                let mut req = issue_request(&format!("host-{i}.example.com"), 3600);
                let resp: IssueResponse = loop {
                    // A fresh proof per attempt; the idempotency key stays the same.
                    prove(&admin, ISSUER_ISSUE, &mut req);
                    match bus
                        .request(ISSUER_ISSUE, &req, Duration::from_secs(3))
                        .await
                    {
                        Ok(r) => break r,
                        Err(_) => {
                            retries.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                };
                done.fetch_add(1, Ordering::SeqCst);
                serials.push(resp.serial);
            }
            serials
        }));
    }
    eventually(Duration::from_secs(60), "a third issued", || async {
        (done.load(Ordering::SeqCst) >= TOTAL / 3).then_some(())
    })
    .await;
    c.nats.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.nats.start_again().await;

    let mut serials = BTreeSet::new();
    for w in workers {
        for s in w.await.unwrap() {
            assert!(serials.insert(s), "a serial was returned twice");
        }
    }
    assert_eq!(serials.len(), TOTAL);
    assert!(retries.load(Ordering::SeqCst) > 0 || done.load(Ordering::SeqCst) == TOTAL);

    let inventory = eventually(Duration::from_secs(60), "inventory has all 200", || async {
        let all = c.inventory_all(QueryRequest::default()).await;
        (all.len() >= TOTAL).then_some(all)
    })
    .await;
    let inv: BTreeSet<String> = inventory.iter().map(|r| r.facts.serial.clone()).collect();
    assert_eq!(inventory.len(), TOTAL, "no credential listed twice");
    assert_eq!(inv, serials, "inventory holds exactly the issued serials");

    let issued = c.events(Some("sigil.events.v1.identity.issued")).await;
    assert_eq!(
        issued.len(),
        TOTAL,
        "exactly one issued event per certificate"
    );
    c.stop().await;
}
