//! Batched writes against real databases: a group commit and a consumer batch each
//! share one transaction, yet one failing write or event never takes the others down
//! with it, and nothing is applied twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use sea_orm::{DatabaseTransaction, EntityTrait, PaginatorTrait};
use sea_orm_migration::prelude::*;
use sigil_bus::consumer::{Delivery, HandleError};
use sigil_store::group::{self, GroupCommit};
use sigil_store::inbox::{self, ApplyEvent, EventFuture};
use sigil_store::{sea_orm, sea_orm_migration};
use sigil_testkit::TestDb;

struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(inbox::Migration)]
    }
}

/// A write that records `id` as applied by consumer `c` (a unique row).
struct Mark(String);

impl group::Write for Mark {
    fn apply<'a>(&'a self, txn: &'a DatabaseTransaction) -> group::WriteFuture<'a> {
        Box::pin(async move {
            use sea_orm::{ActiveValue::Set, EntityTrait};
            inbox::entity::Entity::insert(inbox::entity::ActiveModel {
                consumer: Set("c".to_owned()),
                event_id: Set(self.0.clone()),
                processed_at: Set(chrono::Utc::now()),
            })
            .exec_without_returning(txn)
            .await
            .map(|_| ())
        })
    }
}

async fn rows(db: &sea_orm::DatabaseConnection) -> u64 {
    inbox::entity::Entity::find().count(db).await.unwrap()
}

#[tokio::test]
async fn group_commit_gives_each_write_its_own_outcome() {
    let handle = TestDb::from_env_or_sqlite().await;
    let db = sigil_store::open::<Migrator>(handle.url(), "group-test")
        .await
        .unwrap();
    let writer = GroupCommit::spawn(db.clone(), 64);
    writer.write(Mark("taken".to_owned())).await.unwrap();

    // 40 writers at once, one of which collides with the existing row.
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let writer = writer.clone();
            let id = if n == 17 {
                "taken".to_owned()
            } else {
                format!("w{n}")
            };
            tokio::spawn(async move { writer.write(Mark(id)).await })
        })
        .collect();
    let mut failed = 0;
    for (n, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => assert_ne!(n, 17, "the colliding write must fail"),
            Err(_) => {
                assert_eq!(n, 17, "only the colliding write may fail");
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 1);
    // Every successful write is committed exactly once, the failed one not at all.
    assert_eq!(rows(&db).await, 40);
    handle.cleanup().await;
}

/// Applies an event by recording its id; payload `fail` fails after writing.
struct Recorder;

impl ApplyEvent for Recorder {
    fn apply<'a>(&'a self, txn: &'a DatabaseTransaction, d: &'a Delivery) -> EventFuture<'a> {
        Box::pin(async move {
            let id = String::from_utf8_lossy(&d.payload).into_owned();
            if !inbox::first_delivery(txn, "c", &id)
                .await
                .map_err(inbox::retry)?
            {
                return Ok(());
            }
            if id == "fail" {
                return Err(HandleError::Retry("not yet".to_owned()));
            }
            Ok(())
        })
    }
}

fn delivery(id: &str) -> Delivery {
    Delivery {
        subject: "sigil.events.v1.test".to_owned(),
        payload: Bytes::from(id.to_owned()),
        headers: None,
        delivered: 1,
    }
}

#[tokio::test]
async fn a_failing_event_rolls_back_alone_and_redelivery_changes_nothing() {
    let handle = TestDb::from_env_or_sqlite().await;
    let db = sigil_store::open::<Migrator>(handle.url(), "batch-test")
        .await
        .unwrap();
    let batch: Vec<Delivery> = ["a", "b", "fail", "c", "a"]
        .into_iter()
        .map(delivery)
        .collect();
    let results = inbox::apply_batch(&db, "c", &Recorder, &batch).await;
    let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(ok, [true, true, false, true, true]);
    assert!(matches!(results[2], Err(HandleError::Retry(_))));
    // a, b and c are applied once each; the failed event left no inbox row.
    assert_eq!(rows(&db).await, 3);

    // A redelivery of the whole batch applies nothing new.
    let again = inbox::apply_batch(&db, "c", &Recorder, &batch).await;
    assert_eq!(again.iter().filter(|r| r.is_ok()).count(), 4);
    assert_eq!(rows(&db).await, 3);

    // A batch that succeeds as a whole commits as a whole.
    let clean: Vec<Delivery> = ["d", "e", "f"].into_iter().map(delivery).collect();
    let results = inbox::apply_batch(&db, "c", &Recorder, &clean).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(rows(&db).await, 6);
    handle.cleanup().await;
}
