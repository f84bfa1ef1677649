//! Group commit: many concurrent writers, one transaction.
//!
//! A service that records something per request (the issuer's intent and issuance
//! rows) hands each write to a [`GroupCommit`]. One task applies every write waiting
//! at that moment (up to a batch limit) in a single transaction and commits once, then
//! answers each caller. A caller's `write` returns only after the commit that holds
//! its write, so "recorded" still means durable before the caller goes on.
//!
//! Writes are independent: when the batch transaction fails (say one write hits a
//! unique constraint), it is rolled back and every write of that batch is applied
//! again in its own transaction, so each caller gets its own outcome and no write
//! is lost or applied twice. With SQLite this also replaces many connections
//! contending for the single write lock (and the busy handler's sleeps) by one writer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

/// What a [`Write::apply`] returns.
pub type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DbErr>> + Send + 'a>>;

/// One caller's write, applied inside a transaction it does not own.
pub trait Write: Send + Sync + Sized + 'static {
    fn apply<'a>(&'a self, txn: &'a DatabaseTransaction) -> WriteFuture<'a>;

    /// Apply several writes in one transaction, in order. The default applies each
    /// with [`Write::apply`]; a kind of write whose rows can share statements
    /// (multi-row inserts, one read of common state) overrides it. On `Err` the
    /// transaction is rolled back and each write is applied again on its own, so an
    /// override only needs to be all-or-nothing.
    fn apply_batch<'a>(writes: &'a [&'a Self], txn: &'a DatabaseTransaction) -> WriteFuture<'a> {
        Box::pin(async move {
            for write in writes {
                write.apply(txn).await?;
            }
            Ok(())
        })
    }
}

type Job<W> = (W, oneshot::Sender<Result<(), DbErr>>);

/// Handle to a group-commit task; cheap to clone.
pub struct GroupCommit<W> {
    jobs: mpsc::Sender<Job<W>>,
}

impl<W> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        GroupCommit {
            jobs: self.jobs.clone(),
        }
    }
}

impl<W> fmt::Debug for GroupCommit<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit")
            .field("queued", &(self.jobs.max_capacity() - self.jobs.capacity()))
            .finish()
    }
}

impl<W: Write> GroupCommit<W> {
    /// Starts the committing task on `db`; it commits at most `max_batch` writes per
    /// transaction and stops when every handle has been dropped (after finishing what
    /// was queued).
    pub fn spawn(db: DatabaseConnection, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (jobs, rx) = mpsc::channel(max_batch * 4);
        tokio::spawn(run(db, rx, max_batch));
        GroupCommit { jobs }
    }

    /// Applies `write` and returns once it is committed (or failed).
    pub async fn write(&self, write: W) -> Result<(), DbErr> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send((write, done))
            .await
            .map_err(|_| DbErr::Custom("the group-commit task has stopped".to_owned()))?;
        answer.await.map_err(|_| {
            DbErr::Custom("the group-commit task stopped before committing".to_owned())
        })?
    }
}

async fn run<W: Write>(db: DatabaseConnection, mut rx: mpsc::Receiver<Job<W>>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        if batch.len() == 1 {
            if let Some((write, done)) = batch.pop() {
                let _ = done.send(apply_one(&db, &write).await);
            }
            continue;
        }
        match apply_all(&db, &batch).await {
            Ok(()) => {
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::debug!(writes = batch.len(), error = %e, "group commit failed; applying its writes one by one");
                for (write, done) in batch.drain(..) {
                    let _ = done.send(apply_one(&db, &write).await);
                }
            }
        }
    }
}

async fn apply_all<W: Write>(db: &DatabaseConnection, batch: &[Job<W>]) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    let writes: Vec<&W> = batch.iter().map(|(write, _)| write).collect();
    W::apply_batch(&writes, &txn).await?;
    txn.commit().await
}

async fn apply_one<W: Write>(db: &DatabaseConnection, write: &W) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    write.apply(&txn).await?;
    txn.commit().await
}
