//! Upload sessions in the bucket: one object per chunk, named by its start
//! offset, so any replica can continue a session; a blob is committed only
//! after its content hashed to the digest (a single chunk is copied
//! server-side, several are streamed through the hash into a multipart
//! upload that is completed only on a match).

use super::multipart::Multipart;
use super::*;

/// A chunk of an upload session.
pub(super) struct Chunk {
    pub(super) start: u64,
    pub(super) size: u64,
    pub(super) location: Path,
}

impl ObjectStorage {
    /// The session's info, when it exists and belongs to `repo`.
    pub(super) async fn check_upload(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> StorageResult<UploadInfo> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(StorageError::UploadUnknown);
        }
        let raw = self
            .get_bytes(&self.upload_prefix(id).join("info.json"))
            .await?
            .ok_or(StorageError::UploadUnknown)?;
        let info: UploadInfo = serde_json::from_slice(&raw)
            .map_err(|e| std::io::Error::other(format!("corrupt upload session {id}: {e}")))?;
        if info.repository != repo.as_str() {
            return Err(StorageError::UploadUnknown);
        }
        Ok(info)
    }

    /// The session's chunks in order; they must be contiguous from 0.
    pub(super) async fn chunks(&self, id: &str) -> StorageResult<Vec<Chunk>> {
        let prefix = self.upload_prefix(id).join("chunks");
        let mut chunks: Vec<Chunk> = self
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|meta| {
                let start = meta.location.filename()?.parse::<u64>().ok()?;
                Some(Chunk {
                    start,
                    size: meta.size,
                    location: meta.location,
                })
            })
            .collect();
        chunks.sort_by_key(|c| c.start);
        let mut end = 0;
        for chunk in &chunks {
            if chunk.start != end {
                return Err(StorageError::Io(std::io::Error::other(format!(
                    "upload session {id} has a gap or overlap at byte {end} (chunk at {})",
                    chunk.start
                ))));
            }
            end += chunk.size;
        }
        Ok(chunks)
    }

    pub(super) fn chunk_key(&self, id: &str, start: u64) -> Path {
        self.upload_prefix(id)
            .join("chunks")
            .join(format!("{start:020}"))
    }

    /// Write `body` to `location` as one object: one PUT when it fits in a
    /// part, else a recorded multipart upload (multipart.rs), aborted on
    /// any error.
    pub(super) async fn write_stream(
        &self,
        location: &Path,
        mut body: ByteStream,
    ) -> StorageResult<u64> {
        let mut buffered: Vec<Bytes> = Vec::new();
        let mut buffered_len = 0usize;
        let mut writer: Option<Multipart> = None;
        let mut total = 0u64;
        while let Some(next) = body.next().await {
            let bytes = match next {
                Ok(bytes) => bytes,
                Err(e) => {
                    if let Some(w) = writer {
                        w.abort().await;
                    }
                    return Err(StorageError::Body(e));
                }
            };
            total += bytes.len() as u64;
            match writer.as_mut() {
                Some(w) => w.put(bytes).await?,
                None => {
                    buffered_len += bytes.len();
                    buffered.push(bytes);
                    if buffered_len >= PART_SIZE {
                        let mut w = self.start_multipart(location).await?;
                        for b in buffered.drain(..) {
                            w.put(b).await?;
                        }
                        writer = Some(w);
                    }
                }
            }
        }
        match writer {
            Some(w) => w.finish().await?,
            None => {
                let payload: PutPayload = buffered.into_iter().collect();
                self.store.put(location, payload).await.map_err(io)?;
            }
        }
        Ok(total)
    }

    /// Stream the chunks through a hasher; with `sink`, also into it.
    pub(super) async fn hash_chunks(
        &self,
        chunks: &[Chunk],
        hasher: &mut DigestHasher,
        mut sink: Option<&mut Multipart>,
    ) -> StorageResult<()> {
        for chunk in chunks {
            let mut stream = self
                .store
                .get(&chunk.location)
                .await
                .map_err(io)?
                .into_stream();
            while let Some(bytes) = stream.next().await {
                let bytes = bytes.map_err(io)?;
                hasher.update(&bytes);
                if let Some(w) = sink.as_deref_mut() {
                    w.put(bytes).await?;
                }
            }
        }
        Ok(())
    }

    /// Make the session's content the blob `digest`, if it hashes to it.
    pub(super) async fn commit_blob(
        &self,
        chunks: &[Chunk],
        digest: &Digest,
    ) -> StorageResult<u64> {
        let size: u64 = chunks.iter().map(|c| c.size).sum();
        let target = self.blob(digest);
        let mut hasher = DigestHasher::new(digest.algorithm());
        let already_there = self.exists(&target).await?;
        let simple = already_there || chunks.is_empty() || (chunks.len() == 1 && size <= MAX_COPY);
        if simple {
            self.hash_chunks(chunks, &mut hasher, None).await?;
            let actual = hasher.finish();
            if actual != *digest {
                return Err(StorageError::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            if !already_there {
                match chunks.first() {
                    Some(chunk) => self
                        .store
                        .copy(&chunk.location, &target)
                        .await
                        .map_err(io)?,
                    None => self.put_bytes(&target, Bytes::new()).await?,
                }
            }
            return Ok(size);
        }
        let mut writer = self.start_multipart(&target).await?;
        if let Err(e) = self
            .hash_chunks(chunks, &mut hasher, Some(&mut writer))
            .await
        {
            writer.abort().await;
            return Err(e);
        }
        let actual = hasher.finish();
        if actual != *digest {
            writer.abort().await;
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        writer.finish().await?;
        Ok(size)
    }
}
