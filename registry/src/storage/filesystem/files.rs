//! Files, durably: atomic writes (stage, fsync, rename, fsync the folder),
//! blob bodies written and read on blocking threads, and hashing a file.

use super::*;

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

/// A blocking thread that writes what it is sent at `offset` onwards.
pub(super) fn write_in_background(
    file: fs::File,
    offset: u64,
) -> (
    tokio::sync::mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(PIPELINE_DEPTH);
    let handle = tokio::task::spawn_blocking(move || {
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        let mut out = std::io::BufWriter::with_capacity(IO_CHUNK, file);
        while let Some(chunk) = rx.blocking_recv() {
            out.write_all(&chunk)?;
        }
        out.flush()
    });
    (tx, handle)
}

/// Stream `len` bytes of `file` from `start`. A blocking thread maps the
/// blob window by window and hands each window to the socket as it is:
/// page cache to socket with no copy in between, and no more than a few
/// windows mapped at once, so memory stays flat whatever the blob size.
/// Mapping is safe here because committed blobs are never written again
/// (they are replaced only by rename, which leaves open mappings intact).
pub(super) fn read_in_background(file: fs::File, start: u64, len: u64) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(PIPELINE_DEPTH);
    tokio::task::spawn_blocking(move || {
        let page = 4096u64;
        let mut offset = start;
        let end = start + len;
        while offset < end {
            let want = (end - offset).min(READ_CHUNK as u64);
            let aligned = offset - offset % page;
            let skip = (offset - aligned) as usize;
            // SAFETY: the file is an immutable committed blob (see above).
            let mapped = unsafe {
                memmap2::MmapOptions::new()
                    .offset(aligned)
                    .len(skip + want as usize)
                    .map(&file)
            };
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
