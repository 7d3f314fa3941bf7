//! Group commit of new tasks. Submissions arrive concurrently; writing each in its
//! own transaction serialises them on SQLite's single writer. Instead, one task
//! drains whatever inserts are waiting and writes them in one transaction, so a
//! burst costs one commit, not one per request.

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, lifecycle::insert_row};
use crate::task::Task;

/// Most rows written in one transaction.
const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<(), String>>;

#[derive(Debug, Clone)]
pub(super) struct Inserter {
    tx: mpsc::Sender<(Task, Reply)>,
}

impl Inserter {
    pub fn spawn(writer: AnyPool) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(writer, rx));
        Self { tx }
    }

    pub async fn insert(&self, task: Task) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        self.tx.send((task, reply)).await.map_err(|_| closed())?;
        match answer.await.map_err(|_| closed())? {
            Ok(()) => Ok(()),
            Err(why) => Err(StoreError::Unavailable(sqlx::Error::Protocol(why))),
        }
    }
}

async fn run(writer: AnyPool, mut rx: mpsc::Receiver<(Task, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = write(&writer, &batch).await.map_err(|e| e.to_string());
        for (_, reply) in batch.drain(..) {
            let _ = reply.send(result.clone());
        }
    }
}

async fn write(writer: &AnyPool, batch: &[(Task, Reply)]) -> Result<(), StoreError> {
    let mut tx = writer.begin().await?;
    for (task, _) in batch {
        insert_row(&mut tx, task).await?;
    }
    tx.commit().await?;
    Ok(())
}
