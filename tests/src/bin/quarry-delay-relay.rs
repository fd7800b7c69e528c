//! A TCP relay that delays every byte by a fixed time in each direction,
//! as a link to a distant registry does (part of `make bench`, driven by
//! hack/bench-proxy.sh: this machine's `tc` has no netem to add latency).
//!
//! ```text
//! quarry-delay-relay --listen 127.0.0.1:PORT --to HOST:PORT --delay-ms 10
//! ```
//!
//! Each connection accepted is relayed to `--to`. What one side sends is
//! written to the other `--delay-ms` after it was read, in order, so the
//! delay adds to every exchange (a round trip costs twice it) without
//! limiting throughput. The connection to `--to` is made at once, so
//! connecting costs no delay: neither a client nor a cache in front of the
//! relay pays the upstream's handshake.

use std::time::Duration;

use anyhow::Context;
use quarry_e2e::bench_options::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Bytes in flight per direction, in reads of at most this size.
const READ_SIZE: usize = 256 * 1024;
const IN_FLIGHT: usize = 256;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = Options::parse(&args, &[])?;
    let listen = options.string("listen")?;
    let to = options.string("to")?;
    let delay = Duration::from_millis(options.number("delay-ms", 10)? as u64);
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    loop {
        let (client, _) = listener.accept().await.context("accepting")?;
        let to = to.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(client, &to, delay).await {
                eprintln!("quarry-delay-relay: a connection to {to} ended: {e:#}");
            }
        });
    }
}

async fn relay(client: TcpStream, to: &str, delay: Duration) -> anyhow::Result<()> {
    let upstream = TcpStream::connect(to)
        .await
        .with_context(|| format!("connecting to {to}"))?;
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    tokio::try_join!(
        one_way(client_read, upstream_write, delay),
        one_way(upstream_read, client_write, delay)
    )?;
    Ok(())
}

/// Copy `from` to `to`, each read written `delay` after it arrived.
async fn one_way(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let reader = async move {
        loop {
            let mut buf = vec![0u8; READ_SIZE];
            let n = from.read(&mut buf).await.context("reading")?;
            if n == 0 {
                return anyhow::Ok(());
            }
            buf.truncate(n);
            if tx.send((Instant::now() + delay, buf)).await.is_err() {
                return Ok(());
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            to.write_all(&bytes).await.context("writing")?;
        }
        to.shutdown().await.ok();
        anyhow::Ok(())
    };
    tokio::try_join!(reader, writer)?;
    Ok(())
}
