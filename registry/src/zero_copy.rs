//! Zero-copy sending of blob files over plain TCP (`sendfile(2)`).
//!
//! The filesystem backend reads a blob as mapped windows of its file
//! ([`FileWindow`]). Over TLS the bytes must pass through user space to be
//! encrypted, and they are read from the mapping. Over plain TCP the kernel
//! can send the file's pages itself, with one copy less and no page faults
//! in this process, as nginx and zot do. Hyper takes response bodies only as
//! buffers, never as files, so every live window is registered here by its
//! address, and the connection's writer ([`SendfileStream`]), handed a
//! buffer that lies inside a registered window, sends the same bytes from
//! the same file with `sendfile` instead of writing the mapped memory. What
//! reaches the client is byte for byte what the buffer holds: the window
//! maps exactly that range of that file, and committed blobs are never
//! written again (storage/filesystem/files.rs).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll, ready};

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A read-only mapping of `len` bytes of a file from `offset`, registered
/// for zero-copy sending while it lives. The owner of the `Bytes` the
/// filesystem backend streams.
pub struct FileWindow {
    map: memmap2::Mmap,
}

/// Where the bytes of a registered window come from.
struct Source {
    len: usize,
    file: Arc<File>,
    offset: u64,
}

/// Live windows by start address. A lookup per socket write; windows are
/// megabytes each, so there are few.
static WINDOWS: LazyLock<Mutex<BTreeMap<usize, Source>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

fn windows() -> std::sync::MutexGuard<'static, BTreeMap<usize, Source>> {
    WINDOWS.lock().unwrap_or_else(|p| p.into_inner())
}

impl FileWindow {
    /// Map `len` bytes of `file` from `offset` (a multiple of the page size).
    ///
    /// # Safety
    /// The range must not change while the window lives: the caller maps
    /// only committed blobs, which are replaced by rename, never rewritten.
    pub unsafe fn map(file: &Arc<File>, offset: u64, len: usize) -> io::Result<FileWindow> {
        // SAFETY: the caller promises the range is immutable (see above).
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(&**file)?
        };
        windows().insert(
            map.as_ptr() as usize,
            Source {
                len: map.len(),
                file: file.clone(),
                offset,
            },
        );
        Ok(FileWindow { map })
    }
}

impl AsRef<[u8]> for FileWindow {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for FileWindow {
    fn drop(&mut self) {
        // Before the mapping goes (after this body): no lookup can find an
        // address that is being unmapped.
        windows().remove(&(self.map.as_ptr() as usize));
    }
}

/// The file and offset holding `buf`, when `buf` lies wholly inside a
/// live window of `windows` and sendfile is there to send it (Linux).
fn source_of(windows: &BTreeMap<usize, Source>, buf: &[u8]) -> Option<(Arc<File>, u64)> {
    if !cfg!(target_os = "linux") || buf.is_empty() {
        return None;
    }
    let addr = buf.as_ptr() as usize;
    let (&start, source) = windows.range(..=addr).next_back()?;
    let within = addr - start;
    (within + buf.len() <= source.len).then(|| (source.file.clone(), source.offset + within as u64))
}

/// A plain TCP connection that sends buffers lying in a [`FileWindow`]
/// with `sendfile`, and everything else as usual. `sent` counts the bytes
/// that left by `sendfile`.
pub struct SendfileStream {
    tcp: TcpStream,
    sent: Counter,
}

impl SendfileStream {
    pub fn new(tcp: TcpStream, sent: Counter) -> SendfileStream {
        SendfileStream { tcp, sent }
    }

    fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: &File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_io(tokio::io::Interest::WRITABLE, || {
                sendfile(&self.tcp, file, offset, len)
            }) {
                Ok(n) => {
                    self.sent.inc_by(n as u64);
                    return Poll::Ready(Ok(n));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// One `sendfile(2)` call: up to `len` bytes of `file` from `offset` to the
/// socket. Zero means the file ended early, which the caller's write
/// reports as an error (the client is never sent other bytes).
#[cfg(target_os = "linux")]
fn sendfile(tcp: &TcpStream, file: &File, offset: u64, len: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    // SAFETY: both descriptors are open for the call (borrowed), and
    // `offset` is a valid off_t the kernel may update.
    let n = unsafe { libc::sendfile(tcp.as_raw_fd(), file.as_raw_fd(), &mut offset, len) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Elsewhere no buffer is sent by sendfile (`source_of` finds none).
#[cfg(not(target_os = "linux"))]
fn sendfile(_tcp: &TcpStream, _file: &File, _offset: u64, _len: usize) -> io::Result<usize> {
    Err(io::Error::other("sendfile is only used on Linux"))
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let source = source_of(&windows(), buf);
        match source {
            Some((file, offset)) => self.poll_sendfile(cx, &file, offset, buf.len()),
            None => Pin::new(&mut self.tcp).poll_write(cx, buf),
        }
    }

    /// Headers and other buffers go out together as usual; a buffer in a
    /// window is sent on its own with `sendfile`. Writing fewer bytes than
    /// offered is allowed: the caller offers the rest again.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        let bufs = &bufs[first..];
        // One lookup under one lock; released before any system call.
        let windows = windows();
        if let Some((file, offset)) = source_of(&windows, &bufs[0]) {
            drop(windows);
            return self.poll_sendfile(cx, &file, offset, bufs[0].len());
        }
        let plain = bufs
            .iter()
            .take_while(|b| source_of(&windows, b).is_none())
            .count();
        drop(windows);
        Pin::new(&mut self.tcp).poll_write_vectored(cx, &bufs[..plain])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::io::Write as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes from a window reach the peer by sendfile, identical, including
    /// a slice that starts inside the window; other bytes as usual.
    #[tokio::test]
    async fn window_bytes_go_by_sendfile_and_arrive_identical() {
        let content: Vec<u8> = (0..3 * 4096 + 123).map(|i| (i * 7 % 251) as u8).collect();
        let mut tmp = tempfile::tempfile().unwrap();
        tmp.write_all(&content).unwrap();
        let file = Arc::new(tmp);
        // SAFETY: nothing writes the temporary file after this point.
        let window = unsafe { FileWindow::map(&file, 4096, content.len() - 4096) }.unwrap();
        let base = window.as_ref().as_ptr() as usize;
        let body = Bytes::from_owner(window).slice(100..);
        let expected_tail = content[4096 + 100..].to_vec();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let mut peer = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let sent = Counter::default();
        let mut stream = SendfileStream::new(tcp, sent.clone());
        stream.write_all(b"head:").await.unwrap();
        stream.write_all(&body).await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);

        let got = reader.await.unwrap();
        assert_eq!(&got[..5], b"head:");
        assert!(got[5..] == expected_tail[..], "the peer got other bytes");
        if cfg!(target_os = "linux") {
            assert_eq!(sent.get(), expected_tail.len() as u64);
        }
        drop(body);
        assert!(
            !windows().contains_key(&base),
            "a dropped window stays registered"
        );
    }
}
