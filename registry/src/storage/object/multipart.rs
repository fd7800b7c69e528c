//! Multipart uploads a crash cannot leak. S3 keeps (and bills) the parts
//! of an upload nobody completed or aborted, for ever unless the bucket has
//! a lifecycle rule, and object_store cannot list the uploads in progress.
//! So every upload the registry starts is recorded in
//! `_quarry/multipart/<uuid>` (the object and the upload id); the record is
//! rewritten every `HEARTBEAT` while the upload lives and removed once the
//! upload is completed or aborted. A replica killed mid-upload (or a
//! request dropped mid-body) leaves a record that stops being rewritten:
//! `abort_abandoned`, run with the stale-upload sweep by every replica,
//! aborts its upload once the record is `ABANDONED_AFTER` old.
//!
//! Parts are `PART_SIZE` bytes (the last may be shorter), at most
//! `PARTS_IN_FLIGHT` at a time.

use std::collections::VecDeque;

use object_store::MultipartId;
use object_store::multipart::PartId;
use serde::{Deserialize, Serialize};
use tokio::task::{JoinHandle, JoinSet};

use super::*;

/// How often a live upload rewrites its record.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(10);
/// A record not rewritten for this long belongs to an upload nobody will
/// finish (three heartbeats missed).
pub(super) const ABANDONED_AFTER: Duration = Duration::from_secs(30);

/// What a record holds: enough to abort the upload.
#[derive(Serialize, Deserialize)]
struct Record {
    location: String,
    upload_id: String,
}

/// A multipart upload in progress, to `location`.
pub(super) struct Multipart {
    store: Arc<dyn Bucket>,
    location: Path,
    id: MultipartId,
    record: Path,
    /// Rewrites the record; `None` once stopped.
    heartbeat: Option<JoinHandle<()>>,
    pending: VecDeque<Bytes>,
    pending_len: usize,
    in_flight: JoinSet<(usize, object_store::Result<PartId>)>,
    parts: Vec<Option<PartId>>,
}

impl Drop for Multipart {
    /// Dropped unfinished (a request cancelled mid-body): the parts stop,
    /// the record stops being rewritten, and a later sweep aborts it.
    fn drop(&mut self) {
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.abort();
        }
    }
}

impl ObjectStorage {
    fn multipart_records(&self) -> Path {
        self.key("_quarry/multipart")
    }

    /// Start a multipart upload to `location`, recorded before any part.
    pub(super) async fn start_multipart(&self, location: &Path) -> StorageResult<Multipart> {
        let id = self.store.create_multipart(location).await.map_err(io)?;
        let record = self
            .multipart_records()
            .join(uuid::Uuid::new_v4().to_string());
        let content = serde_json::to_vec(&Record {
            location: location.to_string(),
            upload_id: id.clone(),
        })
        .map_err(std::io::Error::other)?;
        let content = Bytes::from(content);
        if let Err(e) = self.put_bytes(&record, content.clone()).await {
            let _ = self.store.abort_multipart(location, &id).await;
            return Err(e);
        }
        let store = self.store.clone();
        let beat = record.clone();
        let every = self.multipart_heartbeat;
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = store
                    .put(&beat, PutPayload::from_bytes(content.clone()))
                    .await
                {
                    tracing::debug!(record = %beat, error = %e, "could not refresh a multipart upload's record");
                }
            }
        });
        Ok(Multipart {
            store: self.store.clone(),
            location: location.clone(),
            id,
            record,
            heartbeat: Some(heartbeat),
            pending: VecDeque::new(),
            pending_len: 0,
            in_flight: JoinSet::new(),
            parts: Vec::new(),
        })
    }

    /// Abort the uploads whose record is older than `older_than` (the
    /// sweep passes at least `ABANDONED_AFTER`); how many were aborted.
    pub(super) async fn abort_abandoned_multiparts(
        &self,
        older_than: Duration,
    ) -> StorageResult<usize> {
        let now = SystemTime::now();
        let mut aborted = 0;
        for meta in self.list(&self.multipart_records()).await? {
            let written: SystemTime = meta.last_modified.into();
            if now.duration_since(written).unwrap_or_default() < older_than {
                continue;
            }
            let Some(raw) = self.get_bytes(&meta.location).await? else {
                continue; // finished meanwhile
            };
            let record: Record = match serde_json::from_slice(&raw) {
                Ok(record) => record,
                Err(e) => {
                    tracing::warn!(record = %meta.location, error = %e, "unreadable multipart upload record removed; its upload, if any, is left to the bucket's lifecycle rules");
                    self.delete_if_present(&meta.location).await?;
                    continue;
                }
            };
            let location = Path::from(record.location);
            match self
                .store
                .abort_multipart(&location, &record.upload_id)
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    // The record stays, so the next sweep tries again.
                    tracing::warn!(object = %location, error = %e, "could not abort an abandoned multipart upload");
                    continue;
                }
            }
            self.delete_if_present(&meta.location).await?;
            tracing::info!(object = %location, "aborted an abandoned multipart upload");
            aborted += 1;
        }
        Ok(aborted)
    }
}

impl Multipart {
    /// Add bytes; full parts leave as they fill. On an error the upload is
    /// aborted (the writer must not be used again).
    pub(super) async fn put(&mut self, bytes: Bytes) -> StorageResult<()> {
        self.pending_len += bytes.len();
        self.pending.push_back(bytes);
        while self.pending_len >= PART_SIZE {
            let part = self.take(PART_SIZE);
            if let Err(e) = self.send(part).await {
                self.abort_in_place().await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Send what is left, wait for every part, and complete the upload;
    /// on any error, abort it.
    pub(super) async fn finish(mut self) -> StorageResult<()> {
        match self.complete().await {
            Ok(()) => {
                self.stop_heartbeat().await;
                if let Err(e) = self.store.delete(&self.record).await {
                    // Harmless: the sweep finds the upload done and removes it.
                    tracing::debug!(record = %self.record, error = %e, "could not remove a finished upload's record");
                }
                Ok(())
            }
            Err(e) => {
                self.abort_in_place().await;
                Err(e)
            }
        }
    }

    /// Give the upload up (the content was refused or the body failed).
    pub(super) async fn abort(mut self) {
        self.abort_in_place().await;
    }

    async fn complete(&mut self) -> StorageResult<()> {
        if self.pending_len > 0 || (self.parts.is_empty() && self.in_flight.is_empty()) {
            let rest = self.take(self.pending_len);
            self.send(rest).await?;
        }
        while !self.in_flight.is_empty() {
            self.collect_one().await?;
        }
        let parts = std::mem::take(&mut self.parts)
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                part.ok_or_else(|| {
                    StorageError::Io(std::io::Error::other(format!(
                        "multipart upload to {}: part {i} never finished",
                        self.location
                    )))
                })
            })
            .collect::<StorageResult<Vec<PartId>>>()?;
        self.store
            .complete_multipart(&self.location, &self.id, parts)
            .await
            .map_err(io)?;
        Ok(())
    }

    /// The first `n` pending bytes as one payload (without copying).
    fn take(&mut self, n: usize) -> PutPayload {
        let mut chunks = Vec::new();
        let mut needed = n;
        while needed > 0 {
            let Some(mut first) = self.pending.pop_front() else {
                break;
            };
            if first.len() > needed {
                self.pending.push_front(first.split_off(needed));
            }
            needed -= first.len();
            chunks.push(first);
        }
        self.pending_len -= n - needed;
        chunks.into_iter().collect()
    }

    async fn send(&mut self, payload: PutPayload) -> StorageResult<()> {
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.collect_one().await?;
        }
        let index = self.parts.len();
        self.parts.push(None);
        let (store, location, id) = (self.store.clone(), self.location.clone(), self.id.clone());
        self.in_flight.spawn(async move {
            let part = store.put_part(&location, &id, index, payload).await;
            (index, part)
        });
        Ok(())
    }

    async fn collect_one(&mut self) -> StorageResult<()> {
        let Some(joined) = self.in_flight.join_next().await else {
            return Ok(());
        };
        let (index, part) = joined.map_err(std::io::Error::other)?;
        let part = part.map_err(io)?;
        if let Some(slot) = self.parts.get_mut(index) {
            *slot = Some(part);
        }
        Ok(())
    }

    async fn stop_heartbeat(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
            let _ = heartbeat.await; // cancelled before the record is removed
        }
    }

    /// Stop the parts and the heartbeat, abort the upload, and remove the
    /// record; if the abort fails, the record stays for the sweep to retry.
    async fn abort_in_place(&mut self) {
        self.in_flight.abort_all();
        self.stop_heartbeat().await;
        match self.store.abort_multipart(&self.location, &self.id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                let _ = self.store.delete(&self.record).await;
            }
            Err(e) => {
                tracing::warn!(object = %self.location, error = %e, "could not abort a multipart upload; the stale-upload sweep retries");
            }
        }
    }
}
