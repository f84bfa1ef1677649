//! The outbox against a real nats-server and real databases: events committed while
//! NATS is down are published once it is back, exactly once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::Utc;
use sea_orm::TransactionTrait;
use sea_orm_migration::prelude::*;
use sigil_bus::Bus;
use sigil_contracts::CloudEvent;
use sigil_contracts::event::{IdentityExpired, source_for};
use sigil_contracts::subjects::{EVENTS_STREAM, Service};
use sigil_store::{inbox, outbox, sea_orm, sea_orm_migration};
use sigil_telemetry::Metrics;
use sigil_testkit::{NatsServer, TestDb, eventually};
use tokio_util::sync::CancellationToken;

struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(outbox::Migration), Box::new(inbox::Migration)]
    }
}

fn event(n: u32) -> CloudEvent<IdentityExpired> {
    CloudEvent::new(
        &source_for(Service::RotationScheduler),
        IdentityExpired {
            serial: format!("{n:04x}"),
            not_after: Utc::now(),
        },
        Utc::now(),
        None,
    )
}

#[tokio::test]
async fn outbox_survives_nats_outage_without_loss_or_duplicates() {
    let db_handle = TestDb::from_env_or_sqlite().await;
    let db = sigil_store::open::<Migrator>(db_handle.url(), "outbox-test")
        .await
        .unwrap();
    // Migrations are idempotent.
    let db2 = sigil_store::open::<Migrator>(db_handle.url(), "outbox-test")
        .await
        .unwrap();
    drop(db2);
    let mut nats = NatsServer::start().await;
    let bus = Bus::connect(&nats.url(), "test").await.unwrap();
    bus.ensure_stream().await.unwrap();

    let ob = outbox::Outbox::new(db.clone());
    let shutdown = CancellationToken::new();
    let relay =
        tokio::spawn(
            ob.clone()
                .relay(bus.clone(), "test", Metrics::new(), shutdown.clone()),
        );

    for n in 0..10 {
        let txn = db.begin().await.unwrap();
        outbox::enqueue(&txn, &event(n)).await.unwrap();
        txn.commit().await.unwrap();
        ob.wake();
    }
    nats.stop();
    for n in 10..30 {
        let txn = db.begin().await.unwrap();
        outbox::enqueue(&txn, &event(n)).await.unwrap();
        txn.commit().await.unwrap();
        ob.wake();
    }
    // A rolled-back transaction leaves no event behind.
    let txn = db.begin().await.unwrap();
    outbox::enqueue(&txn, &event(999)).await.unwrap();
    txn.rollback().await.unwrap();

    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.start_again().await;
    eventually(Duration::from_secs(30), "outbox drained", || async {
        (outbox::pending(&db).await.unwrap() == 0).then_some(())
    })
    .await;
    let mut stream = bus.jetstream().get_stream(EVENTS_STREAM).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 30);
    shutdown.cancel();
    relay.await.unwrap();
    db_handle.cleanup().await;
}

#[tokio::test]
async fn inbox_admits_each_event_once() {
    let db_handle = TestDb::from_env_or_sqlite().await;
    let db = sigil_store::open::<Migrator>(db_handle.url(), "inbox-test")
        .await
        .unwrap();
    assert!(inbox::first_delivery(&db, "c", "e1").await.unwrap());
    assert!(!inbox::first_delivery(&db, "c", "e1").await.unwrap());
    assert!(inbox::first_delivery(&db, "other", "e1").await.unwrap());
    db_handle.cleanup().await;
}

#[tokio::test]
async fn inbox_pruning_deletes_only_that_consumers_old_rows() {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

    let db_handle = TestDb::from_env_or_sqlite().await;
    let db = sigil_store::open::<Migrator>(db_handle.url(), "inbox-prune-test")
        .await
        .unwrap();
    for (consumer, id) in [("c", "old"), ("c", "new"), ("other", "old")] {
        assert!(inbox::first_delivery(&db, consumer, id).await.unwrap());
    }
    let now = Utc::now();
    inbox::entity::Entity::update_many()
        .col_expr(
            inbox::entity::Column::ProcessedAt,
            Expr::value(now - chrono::Duration::days(8)),
        )
        .filter(inbox::entity::Column::EventId.eq("old"))
        .exec(&db)
        .await
        .unwrap();
    let keep = chrono::Duration::from_std(inbox::KEEP_PROCESSED).unwrap();
    assert_eq!(
        inbox::prune_processed(&db, "c", now - keep).await.unwrap(),
        1
    );
    // The other consumer's old row and c's recent one stay; c's recent event is still
    // refused as a redelivery.
    assert_eq!(inbox::entity::Entity::find().count(&db).await.unwrap(), 2);
    assert!(!inbox::first_delivery(&db, "c", "new").await.unwrap());
    assert_eq!(
        inbox::prune_processed(&db, "c", now - keep).await.unwrap(),
        0
    );
    db_handle.cleanup().await;
}

#[tokio::test]
async fn replicas_migrating_together_both_start() {
    let db_handle = TestDb::from_env_or_sqlite().await;
    let url = db_handle.url().to_owned();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                sigil_store::open::<Migrator>(&url, "race-test")
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    db_handle.cleanup().await;
}

#[tokio::test]
async fn pruning_deletes_only_rows_published_before_the_cutoff() {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

    let db_handle = TestDb::from_env_or_sqlite().await;
    let db = sigil_store::open::<Migrator>(db_handle.url(), "prune-test")
        .await
        .unwrap();
    let events: Vec<_> = (0..4).map(event).collect();
    for e in &events {
        outbox::enqueue(&db, e).await.unwrap();
    }
    let now = Utc::now();
    let mark = |id: &str, at: chrono::DateTime<Utc>| {
        outbox::entity::Entity::update_many()
            .col_expr(outbox::entity::Column::SentAt, Expr::value(at))
            .filter(outbox::entity::Column::EventId.eq(id.to_owned()))
            .exec(&db)
    };
    // Two published two days ago, one an hour ago, one never.
    mark(&events[0].id, now - chrono::Duration::days(2))
        .await
        .unwrap();
    mark(&events[1].id, now - chrono::Duration::days(2))
        .await
        .unwrap();
    mark(&events[2].id, now - chrono::Duration::hours(1))
        .await
        .unwrap();

    let pruned = outbox::prune_sent(&db, now - chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    let mut left: Vec<String> = outbox::entity::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    left.sort();
    let mut kept = vec![events[2].id.clone(), events[3].id.clone()];
    kept.sort();
    assert_eq!(left, kept);
    assert_eq!(outbox::pending(&db).await.unwrap(), 1);
    assert_eq!(outbox::entity::Entity::find().count(&db).await.unwrap(), 2);
    db_handle.cleanup().await;
}
