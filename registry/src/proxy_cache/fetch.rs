//! One upstream download per missing blob, however many clients want it at
//! once (single flight), streamed to each of them as it arrives.
//!
//! The first request for a blob starts a download task that writes the
//! bytes to an unnamed temporary file (it vanishes when the last reader
//! closes it) and hashes them. Every request, the first included, streams
//! from that download as it grows, so a slow client never slows the
//! download or the others, and a client that hangs up does not cancel it.
//! The latest bytes received are kept in memory (`Window`) from the moment
//! they arrive, before they are written: a client that keeps up is sent the
//! very buffers the network gave, at the network's pace rather than the
//! disk's, and one that fell behind reads the file. The blob's
//! last byte is held back until its digest matched: no client receives a
//! complete wrong blob, and one whose upstream lied gets a broken body.
//! Once verified and sent (the commit waits, up to 30 s, for the clients
//! still streaming), the blob is committed to storage like an upload
//! (hash, atomic commit) and linked into the repository; only then does the
//! download leave the table, so a request arriving meanwhile still joins
//! it rather than reading a half-committed store.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::watch;

use super::upstream::{Upstream, UpstreamError};
use crate::digest::{Digest, DigestHasher};
use crate::metrics::Metrics;
use crate::names::RepoName;
use crate::storage::{ByteStream, Storage};

/// Bytes read from the spool file per chunk sent to a client.
const READ_CHUNK: u64 = 1024 * 1024;
/// Upstream chunks already waiting are handed on together up to this size.
const WRITE_BATCH: usize = 1024 * 1024;
/// Received bytes kept in memory for the clients that keep up (besides
/// those not yet written, which stay until they are).
const WINDOW_BYTES: usize = 16 * 1024 * 1024;
/// Longest wait for the clients of a download before it is committed.
const COMMIT_WAIT: Duration = Duration::from_secs(30);
/// Batches queued for the writer and the hasher (memory: this many MiB).
const STAGE_QUEUE: usize = 8;

/// A download's bytes: the spool file, and its latest part in memory.
pub struct Spool {
    file: File,
    /// How many bytes of the file are written (they are readable).
    written: AtomicU64,
    window: Mutex<Window>,
}

/// The last received chunks, by offset: at most `WINDOW_BYTES` of them
/// once written, all of those not written yet.
#[derive(Default)]
struct Window {
    chunks: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl Spool {
    fn new(file: File) -> Spool {
        Spool {
            file,
            written: AtomicU64::new(0),
            window: Mutex::default(),
        }
    }

    /// Remember `chunk`, received for offset `at`, dropping the oldest
    /// written ones beyond the window.
    fn remember(&self, at: u64, chunk: Bytes) {
        let written = self.written();
        let Ok(mut w) = self.window.lock() else {
            return;
        };
        w.bytes += chunk.len();
        w.chunks.push_back((at, chunk));
        while w.bytes > WINDOW_BYTES {
            match w.chunks.front() {
                Some((at, old)) if at + old.len() as u64 <= written => {
                    w.bytes -= old.len();
                    w.chunks.pop_front();
                }
                _ => break,
            }
        }
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The bytes from `pos` up to at most `end` that are still in memory
    /// (a slice of one chunk, no copy).
    fn recent(&self, pos: u64, end: u64) -> Option<Bytes> {
        let w = self.window.lock().ok()?;
        let i = w
            .chunks
            .partition_point(|(at, c)| at + c.len() as u64 <= pos);
        let (at, chunk) = w.chunks.get(i)?;
        if *at > pos {
            return None;
        }
        let from = usize::try_from(pos - at).ok()?;
        let to = usize::try_from(end.min(at + chunk.len() as u64) - at).ok()?;
        (to > from).then(|| chunk.slice(from..to))
    }

    fn len(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

/// Where a download is.
#[derive(Clone)]
pub enum Progress {
    /// Asking the upstream.
    Connecting,
    /// `received` of `size` bytes are in `spool` (in its window, or
    /// written).
    Streaming {
        spool: Arc<Spool>,
        size: u64,
        received: u64,
    },
    /// Complete and the digest matched.
    Verified {
        spool: Arc<Spool>,
        size: u64,
    },
    Failed(Arc<UpstreamError>),
}

struct Download {
    progress: watch::Sender<Progress>,
}

type DownloadKey = (RepoName, Digest);

/// The downloads in flight, by repository and digest.
#[derive(Default)]
pub struct Downloads {
    running: Mutex<HashMap<DownloadKey, Arc<Download>>>,
}

/// What a download needs besides its upstream.
pub struct Target {
    pub storage: Arc<dyn Storage>,
    pub metrics: Arc<Metrics>,
    pub repo: RepoName,
    pub remote: String,
    pub digest: Digest,
}

impl Downloads {
    /// Join the download of `target.digest`, starting it when none runs.
    pub fn join(
        self: &Arc<Self>,
        upstream: Arc<Upstream>,
        target: Target,
    ) -> watch::Receiver<Progress> {
        let key = (target.repo.clone(), target.digest.clone());
        let Ok(mut running) = self.running.lock() else {
            // A panic elsewhere poisoned the table: answer this request
            // with a failure rather than taking the process down.
            let (_, rx) = watch::channel(Progress::Failed(Arc::new(UpstreamError::Unreachable {
                upstream: upstream.name().to_string(),
                reason: "the download table is unusable after an earlier crash".into(),
            })));
            return rx;
        };
        if let Some(download) = running.get(&key) {
            target.metrics.proxy_cache_joined.inc();
            return download.progress.subscribe();
        }
        let (progress, rx) = watch::channel(Progress::Connecting);
        let download = Arc::new(Download { progress });
        running.insert(key.clone(), download.clone());
        drop(running);
        let downloads = self.clone();
        tokio::spawn(async move {
            run(&upstream, &target, &download.progress).await;
            if let Ok(mut running) = downloads.running.lock()
                && running.get(&key).is_some_and(|d| Arc::ptr_eq(d, &download))
            {
                running.remove(&key);
            }
        });
        rx
    }
}

async fn run(upstream: &Upstream, target: &Target, progress: &watch::Sender<Progress>) {
    target.metrics.proxy_cache_downloads.inc();
    let spool = match download(upstream, target, progress).await {
        Ok(spool) => spool,
        Err(e) => {
            tracing::warn!(repository = %target.repo, digest = %target.digest, error = %e, "pull-through download failed");
            target
                .metrics
                .proxy_cache_upstream_errors
                .get_or_create(&crate::metrics::ReasonLabels { reason: e.label() })
                .inc();
            progress.send_replace(Progress::Failed(Arc::new(e)));
            return;
        }
    };
    // Commit once the clients have their bytes: committing hashes and
    // writes the blob again, which on a small machine would slow the
    // transfers still running. Bounded, so a stalled client cannot keep
    // the blob out of storage.
    let waiting_since = Instant::now();
    while progress.receiver_count() > 0 && waiting_since.elapsed() < COMMIT_WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Err(e) = commit(target, spool).await {
        // The clients got their bytes; the next pull downloads again.
        tracing::error!(repository = %target.repo, digest = %target.digest, error = %e, "could not store a pulled-through blob");
    }
}

/// Download into a spool file, publishing progress; the verified file.
async fn download(
    upstream: &Upstream,
    target: &Target,
    progress: &watch::Sender<Progress>,
) -> Result<Arc<Spool>, UpstreamError> {
    // The spool file is made while the upstream is asked.
    let (answer, file) = tokio::join!(upstream.blob_get(&target.remote, &target.digest), async {
        tempfile::tempfile()
    });
    let (size, mut response) = answer?;
    let what = || format!("blob {} of {}", target.digest, target.remote);
    let invalid = |reason: String| UpstreamError::Invalid {
        upstream: upstream.name().to_string(),
        what: what(),
        reason,
    };
    let spool = Arc::new(Spool::new(file.map_err(|e| {
        invalid(format!(
            "no spool file in {}: {e}",
            std::env::temp_dir().display()
        ))
    })?));
    progress.send_replace(Progress::Streaming {
        spool: spool.clone(),
        size,
        received: 0,
    });
    // Three stages at once, so the blob moves at the pace of the slowest
    // rather than of all of them in turn: this task reads the network (and
    // hands the bytes to the clients through the window), one thread
    // writes the spool file, one hashes. They share the network's buffers:
    // a batch is a list of them, not a copy.
    type Batch = Vec<Bytes>;
    let (to_writer, mut writer_rx) = tokio::sync::mpsc::channel::<Batch>(STAGE_QUEUE);
    let (to_hasher, mut hasher_rx) = tokio::sync::mpsc::channel::<Batch>(STAGE_QUEUE);
    let writer = {
        let spool = spool.clone();
        let progress = progress.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<(u64, Duration)> {
            let mut written = 0u64;
            let mut busy = Duration::ZERO;
            while let Some(batch) = writer_rx.blocking_recv() {
                let started = Instant::now();
                for chunk in &batch {
                    spool.file.write_all_at(chunk, written)?;
                    written += chunk.len() as u64;
                }
                spool.written.store(written, Ordering::Release);
                busy += started.elapsed();
                // Wakes the clients waiting for the file (those behind
                // the window); the window may now let old chunks go.
                progress.send_modify(|_| {});
            }
            Ok((written, busy))
        })
    };
    let algorithm = target.digest.algorithm();
    let hasher = tokio::task::spawn_blocking(move || {
        let mut hasher = DigestHasher::new(algorithm);
        let mut busy = Duration::ZERO;
        while let Some(batch) = hasher_rx.blocking_recv() {
            let started = Instant::now();
            for chunk in &batch {
                hasher.update(chunk);
            }
            busy += started.elapsed();
        }
        (hasher.finish(), busy)
    });
    let started = Instant::now();
    let mut received = 0u64;
    let read = async {
        loop {
            let Some(first) = response
                .chunk()
                .await
                .map_err(|e| UpstreamError::Unreachable {
                    upstream: upstream.name().to_string(),
                    reason: format!("{} broke off after {received} of {size} bytes: {e}", what()),
                })?
            else {
                return Ok(());
            };
            // Take what else is already here, so a fast upstream costs one
            // hand-over per megabyte, a slow one one per chunk.
            let mut batch_len = first.len();
            let mut batch = vec![first];
            while batch_len < WRITE_BATCH {
                match response.chunk().now_or_never() {
                    Some(Ok(Some(more))) => {
                        batch_len += more.len();
                        batch.push(more);
                    }
                    _ => break,
                }
            }
            if received + batch_len as u64 > size {
                return Err(invalid(format!(
                    "more bytes than its Content-Length of {size}"
                )));
            }
            for chunk in &batch {
                spool.remember(received, chunk.clone());
                received += chunk.len() as u64;
            }
            progress.send_replace(Progress::Streaming {
                spool: spool.clone(),
                size,
                received,
            });
            target
                .metrics
                .proxy_cache_upstream_bytes
                .inc_by(batch_len as u64);
            // A stage that stopped has failed; its join below says why.
            if to_hasher.send(batch.clone()).await.is_err() || to_writer.send(batch).await.is_err()
            {
                return Ok(());
            }
        }
    }
    .await;
    drop((to_writer, to_hasher));
    // Both stages end before anything else is published: a late progress
    // report must not overwrite the failure.
    let written = writer.await;
    let actual = hasher.await;
    read?;
    let (written, writer_busy) = written
        .map_err(|e| invalid(format!("the spool writer stopped: {e}")))?
        .map_err(|e| invalid(format!("could not write the spool file: {e}")))?;
    let (actual, hasher_busy) = actual.map_err(|e| invalid(format!("the hasher stopped: {e}")))?;
    if written != size {
        return Err(UpstreamError::Unreachable {
            upstream: upstream.name().to_string(),
            reason: format!("{} ended after {written} of {size} bytes", what()),
        });
    }
    if actual != target.digest {
        target.metrics.proxy_cache_corrupt.inc();
        return Err(invalid(format!(
            "its content hashes to {actual}; nothing was cached"
        )));
    }
    progress.send_replace(Progress::Verified {
        spool: spool.clone(),
        size,
    });
    // Which stage bounds a download: the one busy for most of it.
    tracing::debug!(
        repository = %target.repo,
        digest = %target.digest,
        size,
        elapsed_ms = started.elapsed().as_millis() as u64,
        writer_busy_ms = writer_busy.as_millis() as u64,
        hasher_busy_ms = hasher_busy.as_millis() as u64,
        "pull-through download verified"
    );
    Ok(spool)
}

/// Store a verified spool file as the blob, linked into the repository.
async fn commit(target: &Target, spool: Arc<Spool>) -> crate::storage::StorageResult<()> {
    let storage = &target.storage;
    let id = storage.upload_start(&target.repo).await?;
    let size = spool.len()?;
    let body = spool_stream(spool, 0, size, None);
    let result = async {
        storage
            .upload_append(&target.repo, &id, Some(0), body)
            .await?;
        storage
            .upload_commit(&target.repo, &id, &target.digest)
            .await
    }
    .await;
    if result.is_err() {
        let _ = storage.upload_cancel(&target.repo, &id).await;
    }
    result.map(drop)
}

/// The bytes `start..end` of a download, sent as they arrive. With
/// `progress`, it waits for bytes not yet received (or, behind the
/// window, not yet written) and holds the blob's last byte back until the
/// digest matched.
pub fn spool_stream(
    spool: Arc<Spool>,
    start: u64,
    end: u64,
    progress: Option<watch::Receiver<Progress>>,
) -> ByteStream {
    struct State {
        spool: Arc<Spool>,
        pos: u64,
        end: u64,
        progress: Option<watch::Receiver<Progress>>,
    }
    let state = State {
        spool,
        pos: start,
        end,
        progress,
    };
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            // How far may be read now, and whether the end is final.
            let (readable, verified) = match state.progress.as_mut() {
                None => (state.end, true),
                Some(rx) => match &*rx.borrow_and_update() {
                    Progress::Connecting => (state.pos, false),
                    Progress::Streaming { size, received, .. } => (
                        (*received).min(size.saturating_sub(1)).min(state.end),
                        false,
                    ),
                    Progress::Verified { .. } => (state.end, true),
                    Progress::Failed(e) => {
                        let e = std::io::Error::other(e.to_string());
                        return Some((Err(e), None));
                    }
                },
            };
            if state.pos >= state.end && verified {
                return None;
            }
            if readable > state.pos
                && let Some(bytes) = state.spool.recent(state.pos, readable)
            {
                state.pos += bytes.len() as u64;
                return Some((Ok(bytes), Some(state)));
            }
            // Behind the window: from the file, once written there.
            let readable = readable.min(state.spool.written());
            if readable > state.pos {
                let len = (readable - state.pos).min(READ_CHUNK);
                let spool = state.spool.clone();
                let at = state.pos;
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0; len as usize];
                    spool
                        .file
                        .read_exact_at(&mut buf, at)
                        .map(|()| Bytes::from(buf))
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
                return Some(match read {
                    Ok(bytes) => {
                        state.pos += bytes.len() as u64;
                        (Ok(bytes), Some(state))
                    }
                    Err(e) => (Err(e), None),
                });
            }
            let rx = state.progress.as_mut()?;
            if rx.changed().await.is_err() {
                let e = std::io::Error::other("the upstream download stopped unexpectedly");
                return Some((Err(e), None));
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_serves_recent_bytes_and_forgets_old_ones_only_once_written() {
        let spool = Spool::new(tempfile::tempfile().unwrap());
        let chunk = |byte: u8, len: usize| Bytes::from(vec![byte; len]);
        spool.remember(0, chunk(1, 10));
        spool.remember(10, chunk(2, 10));
        assert_eq!(
            spool.recent(0, 20).unwrap(),
            chunk(1, 10),
            "one chunk at a time"
        );
        assert_eq!(spool.recent(15, 20).unwrap(), chunk(2, 5));
        assert_eq!(
            spool.recent(12, 14).unwrap(),
            chunk(2, 2),
            "held back at the limit"
        );
        assert_eq!(spool.recent(20, 30), None, "not received yet");
        assert_eq!(spool.recent(19, 19), None, "nothing below the limit");
        // A window's worth more, nothing written yet: all is kept, as the
        // file has none of it.
        spool.remember(20, chunk(3, WINDOW_BYTES));
        assert_eq!(spool.recent(5, 20).unwrap(), chunk(1, 5));
        // The first two written: the next chunk lets them go.
        spool.written.store(20, Ordering::Release);
        spool.remember(20 + WINDOW_BYTES as u64, chunk(4, 1));
        assert_eq!(spool.recent(5, 20), None);
        assert_eq!(spool.recent(20, 22).unwrap(), chunk(3, 2));
    }
}
