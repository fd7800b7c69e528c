//! Files, durably: atomic writes (stage, fsync, rename, fsync the folder),
//! blob bodies written and read on blocking threads, and hashing a file.

use super::*;
use crate::zero_copy::FileWindow;

/// Stage `contents` in `tmp` (same filesystem as `dest`), durably, and
/// `publish` the staged file at `dest`; the parent folder is synced after
/// a publish that returns true. The staged file never outlives the call.
fn stage_and_publish(
    tmp: &Path,
    dest: &Path,
    contents: &[u8],
    publish: impl FnOnce(&Path, &Path) -> std::io::Result<bool>,
) -> std::io::Result<bool> {
    let parent = dest
        .parent()
        .ok_or_else(|| std::io::Error::other(format!("{dest:?} has no parent")))?;
    fs::create_dir_all(parent)?;
    let staging = tmp.join(uuid::Uuid::new_v4().hyphenated().to_string());
    let result = (|| {
        let mut file = fs::File::create(&staging)?;
        file.write_all(contents)?;
        file.sync_all()?;
        if !publish(&staging, dest)? {
            return Ok(false);
        }
        sync_dir(parent)?;
        Ok(true)
    })();
    let _ = fs::remove_file(&staging);
    result
}

/// Write `contents` to `dest` atomically and durably: a `rename` over
/// whatever is there.
pub(super) fn write_atomic(tmp: &Path, dest: &Path, contents: &[u8]) -> std::io::Result<()> {
    stage_and_publish(tmp, dest, contents, |staged, dest| {
        fs::rename(staged, dest).map(|()| true)
    })
    .map(drop)
}

/// Like `write_atomic`, but only if nothing is at `dest`: the staged file
/// is hard-linked into place, which fails when `dest` exists, for every
/// process on this filesystem. Returns false when something was there.
pub(super) fn create_atomic(tmp: &Path, dest: &Path, contents: &[u8]) -> std::io::Result<bool> {
    stage_and_publish(tmp, dest, contents, |staged, dest| {
        match fs::hard_link(staged, dest) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })
}

pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

pub(super) fn not_found_is_none<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) fn remove_if_present(path: &Path) -> std::io::Result<bool> {
    Ok(not_found_is_none(fs::remove_file(path))?.is_some())
}

/// Chunks in flight between the request and the disk thread.
pub(super) const PIPELINE_DEPTH: usize = 8;

/// Bytes between writeback kicks. Each step is handed to the disk as soon
/// as it is written, and the step before it is waited for, so the disk
/// works while the network still delivers and the fsync that makes the
/// blob durable at commit finds at most two steps left to write (instead
/// of the whole blob, as with plain buffered writes).
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

/// Where an upload's early writeback stands.
struct Writeback {
    /// Writeback was started for bytes before this offset...
    started_to: u64,
    /// ...and the step before began here (waited for at the next kick).
    previous_from: Option<u64>,
    written_to: u64,
}

impl Writeback {
    fn from(offset: u64) -> Writeback {
        Writeback {
            started_to: offset,
            previous_from: None,
            written_to: offset,
        }
    }

    /// Count `n` bytes written; true when a step is complete.
    fn wrote(&mut self, n: u64) -> bool {
        self.written_to += n;
        self.written_to - self.started_to >= WRITEBACK_STEP
    }

    /// Start writeback of the step just written and wait for the one
    /// before. Failures are ignored: this only moves work earlier, the
    /// fsync at commit writes whatever is still dirty and reports errors.
    fn kick(&mut self, file: &fs::File) {
        if let Some(from) = self.previous_from {
            range_writeback(file, from, self.started_to - from, true);
        }
        range_writeback(
            file,
            self.started_to,
            self.written_to - self.started_to,
            false,
        );
        self.previous_from = Some(self.started_to);
        self.started_to = self.written_to;
    }

    /// Start the writeback of the bytes not yet handed to the disk.
    fn finish(&mut self, file: &fs::File) {
        if self.written_to > self.started_to {
            range_writeback(
                file,
                self.started_to,
                self.written_to - self.started_to,
                false,
            );
            self.started_to = self.written_to;
        }
    }
}

/// `sync_file_range(2)`: start writing a range of dirty pages to disk
/// (and with `wait`, wait until that range is written). Unlike fsync it
/// flushes no metadata and no device cache, so it never replaces the
/// commit's fsync; it only makes it cheap.
#[cfg(target_os = "linux")]
fn range_writeback(file: &fs::File, from: u64, len: u64, wait: bool) {
    use std::os::fd::AsRawFd;
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor belongs to `file`, open for the whole call;
    // sync_file_range reads only its integer arguments.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), from, len, flags) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "sync_file_range failed");
    }
}

#[cfg(not(target_os = "linux"))]
fn range_writeback(_file: &fs::File, _from: u64, _len: u64, _wait: bool) {}

/// A blocking thread that writes what it is sent at `offset` onwards,
/// and feeds it to `hasher` (returned at the end). Hashing here rather
/// than where the body is received keeps SHA-256 — about 20 ms of CPU per
/// 10 MB — off the async workers that serve every other request.
pub(super) fn write_in_background(
    file: fs::File,
    offset: u64,
    mut hasher: Option<DigestHasher>,
) -> (
    tokio::sync::mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<std::io::Result<Option<DigestHasher>>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(PIPELINE_DEPTH);
    let handle = tokio::task::spawn_blocking(move || {
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        let mut out = std::io::BufWriter::with_capacity(IO_CHUNK, file);
        let mut writeback = Writeback::from(offset);
        while let Some(chunk) = rx.blocking_recv() {
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            out.write_all(&chunk)?;
            if writeback.wrote(chunk.len() as u64) {
                out.flush()?;
                writeback.kick(out.get_ref());
            }
        }
        out.flush()?;
        // A chunked upload's PATCHes are each shorter than a step: start
        // the writeback of what this request wrote before it answers.
        writeback.finish(out.get_ref());
        Ok(hasher)
    });
    (tx, handle)
}

/// Stream `len` bytes of `file` from `start`. A blocking thread maps the
/// blob window by window and hands each window to the socket as it is:
/// page cache to socket with no copy in between, and no more than a few
/// windows mapped at once, so memory stays flat whatever the blob size.
/// Mapping is safe here because committed blobs are never written again
/// (they are replaced only by rename, which leaves open mappings intact).
/// Over plain HTTP the windows leave by `sendfile` (zero_copy.rs), the
/// mapping itself untouched.
pub(super) fn read_in_background(file: fs::File, start: u64, len: u64) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(PIPELINE_DEPTH);
    let file = Arc::new(file);
    tokio::task::spawn_blocking(move || {
        let page = 4096u64;
        let mut offset = start;
        let end = start + len;
        while offset < end {
            let want = (end - offset).min(READ_CHUNK as u64);
            let aligned = offset - offset % page;
            let skip = (offset - aligned) as usize;
            // SAFETY: the file is an immutable committed blob (see above).
            let mapped = unsafe { FileWindow::map(&file, aligned, skip + want as usize) };
            let result = mapped.map(|m| Bytes::from_owner(m).slice(skip..skip + want as usize));
            let failed = result.is_err();
            if tx.blocking_send(result).is_err() || failed {
                return; // client gone, or the error was passed on
            }
            offset += want;
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Run blocking filesystem work off the async threads.
pub(super) async fn blocking<T, F>(f: F) -> StorageResult<T>
where
    F: FnOnce() -> StorageResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))?
}

pub(super) fn hash_file(path: &Path, algorithm: Algorithm) -> std::io::Result<Digest> {
    let mut file = fs::File::open(path)?;
    let mut hasher = DigestHasher::new(algorithm);
    let mut buf = vec![0u8; IO_CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}
