//! Load benchmark client in the manner of zot's `zb` (part of `make bench`,
//! driven by hack/bench-load.sh; zb itself cannot be built here, see
//! hack/README.md). Plain HTTP, no auth, only requests every registry takes,
//! so it drives Quarry, CNCF distribution and the references the same way.
//!
//! ```text
//! quarry-load-bench push    --url URL --size-mb N [--concurrency 4] [--requests R] [--chunked]
//! quarry-load-bench pull    --url URL --size-mb N [--concurrency 4] [--requests R] [--blobs 4]
//! quarry-load-bench pull    --plain-url URL --size-mb N ...     (GET a static file, e.g. nginx)
//! quarry-load-bench mix     --url URL [--size-mb 10] [--concurrency 4] [--requests R]
//! quarry-load-bench catalog --url URL [--repos 200] [--concurrency 8] [--requests R]
//! quarry-load-bench write   --dir DIR --size-mb N [--concurrency 4] [--requests R]
//! ```
//!
//! Every command also takes `--target NAME` (the label in its output) and
//! `--ca-file PEM` (a CA to trust, for a registry serving HTTPS). Each
//! request is timed end to end; the output is one JSON line per case:
//! `case, target, size_mb, concurrency, requests, seconds, req_s, mb_s,
//! p50_ms, p90_ms, p99_ms` (MB are MiB).
//!
//! - `push`: each request uploads one blob of distinct random bytes: POST a
//!   session, then PUT the whole body with `?digest=` (monolithic), or with
//!   `--chunked` PATCH it in 5 MiB chunks with `Content-Range` and PUT with
//!   no body.
//! - `pull`: pushes `--blobs` blobs first (untimed), then GETs them in turn,
//!   reading each body whole; `--plain-url` GETs that URL instead.
//! - `mix`: a pull-only baseline (`mix-baseline-pull`, the same number of
//!   pulls as the mix has), then 75 % pulls and 25 % monolithic pushes at
//!   the same concurrency: `mix` (all requests), `mix-pull`, `mix-push`.
//! - `catalog`: creates `--repos` repositories with a tiny image each
//!   (untimed), then GETs `/v2/_catalog?n=100`.
//! - `write`: the durable-push ceiling, with no HTTP and no hashing: the same
//!   bytes written to a new file in DIR, fsync, rename, fsync of DIR.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use quarry_e2e::bench_options::Options;
use rand::Rng as _;
use reqwest::{Client, StatusCode, header};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use url::Url;

const MIB: usize = 1024 * 1024;
/// The chunk size of chunked pushes (what zb and most clients use).
const CHUNK: usize = 5 * MIB;
/// Bytes at the end of every blob that make its content distinct.
const SUFFIX: usize = 16;
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// Options that take no value.
const FLAGS: &[&str] = &["chunked"];

/// What this benchmark reads from its options beyond the shared kinds.
trait LoadOptions {
    fn url(&self, name: &str) -> anyhow::Result<Url>;
    fn target(&self, default: &str) -> String;
    fn requests(&self, size_mb: usize) -> anyhow::Result<usize>;
}

impl LoadOptions for Options {
    fn url(&self, name: &str) -> anyhow::Result<Url> {
        let text = self.string(name)?;
        // A base without a trailing slash would lose its last segment in join().
        let text = if text.ends_with('/') || name == "plain-url" {
            text
        } else {
            format!("{text}/")
        };
        Url::parse(&text).with_context(|| format!("--{name} {text:?} is not a URL"))
    }

    fn target(&self, default: &str) -> String {
        self.string_or("target", default)
    }

    /// Requests per case when not given: about 1 GiB moved for large blobs,
    /// enough samples for a p99 on small ones, within the time budget.
    fn requests(&self, size_mb: usize) -> anyhow::Result<usize> {
        let default = match size_mb {
            s if s >= 100 => 10,
            s if s >= 10 => 40,
            _ => 200,
        };
        self.number("requests", default)
    }
}

/// Blob contents: shared random bytes and a distinct suffix per blob, so
/// every blob is new to the registry while the client neither generates
/// nor hashes the whole blob per request (its CPU is the servers' CPU here).
struct Content {
    base: Bytes,
    /// SHA-256 state after `base`; cloned and finished with each suffix.
    hashed: Sha256,
    run: u64,
}

impl Content {
    fn new(size: usize) -> anyhow::Result<Content> {
        if size < SUFFIX {
            bail!("blobs must be at least {SUFFIX} bytes");
        }
        let mut base = vec![0u8; size - SUFFIX];
        let mut rng = rand::rng();
        rng.fill_bytes(&mut base);
        let mut hashed = Sha256::new();
        hashed.update(&base);
        Ok(Content {
            base: Bytes::from(base),
            hashed,
            run: rng.next_u64(),
        })
    }

    fn size(&self) -> usize {
        self.base.len() + SUFFIX
    }

    fn suffix(&self, n: usize) -> Bytes {
        let mut s = Vec::with_capacity(SUFFIX);
        s.extend_from_slice(&self.run.to_le_bytes());
        s.extend_from_slice(&(n as u64).to_le_bytes());
        Bytes::from(s)
    }

    fn digest(&self, n: usize) -> String {
        let mut h = self.hashed.clone();
        h.update(self.suffix(n));
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// Bytes `start..end` of blob `n`, as slices of the shared buffers (no copy).
    fn parts(&self, n: usize, start: usize, end: usize) -> Vec<Bytes> {
        let split = self.base.len();
        let suffix = self.suffix(n);
        let mut parts = Vec::with_capacity(2);
        if start < split {
            parts.push(self.base.slice(start..end.min(split)));
        }
        if end > split {
            parts.push(suffix.slice(start.max(split) - split..end - split));
        }
        parts
    }
}

/// A request body of known length from the given parts.
fn body(parts: Vec<Bytes>) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures::stream::iter(
        parts.into_iter().map(Ok::<_, std::io::Error>),
    ))
}

fn client(o: &Options) -> anyhow::Result<Client> {
    let mut builder = quarry_e2e::http::builder();
    if o.flag("ca-file") {
        let path = o.string("ca-file")?;
        let pem = std::fs::read(&path).with_context(|| format!("reading --ca-file {path}"))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("--ca-file {path} holds no PEM certificate"))?;
        builder = builder.add_root_certificate(ca);
    }
    Ok(builder
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(600))
        .build()?)
}

async fn fail(what: &str, answer: reqwest::Response) -> anyhow::Error {
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    anyhow::anyhow!("{what} answered {status}: {}", text.trim())
}

/// POST an upload session; its absolute Location.
async fn start_upload(client: &Client, base: &Url, repo: &str) -> anyhow::Result<Url> {
    let start = base.join(&format!("v2/{repo}/blobs/uploads/"))?;
    let answer = client.post(start.clone()).send().await?;
    if answer.status() != StatusCode::ACCEPTED {
        return Err(fail(&format!("POST {start}"), answer).await);
    }
    location(base, &answer).with_context(|| format!("POST {start}"))
}

fn location(base: &Url, answer: &reqwest::Response) -> anyhow::Result<Url> {
    let location = answer
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .context("no Location")?;
    Ok(base.join(location)?)
}

/// Upload blob `n` of `content` to `repo`, monolithic or in chunks.
async fn push_blob(
    client: &Client,
    base: &Url,
    repo: &str,
    content: &Content,
    n: usize,
    chunked: bool,
) -> anyhow::Result<()> {
    let size = content.size();
    let digest = content.digest(n);
    let mut url = start_upload(client, base, repo).await?;
    let last = if chunked {
        let mut offset = 0;
        while offset < size {
            let end = (offset + CHUNK).min(size);
            let answer = client
                .patch(url.clone())
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, end - offset)
                .header(header::CONTENT_RANGE, format!("{offset}-{}", end - 1))
                .body(body(content.parts(n, offset, end)))
                .send()
                .await?;
            if answer.status() != StatusCode::ACCEPTED {
                return Err(fail(&format!("PATCH {offset}-{end} of {digest}"), answer).await);
            }
            url = location(base, &answer).context("PATCH")?;
            offset = end;
        }
        Vec::new()
    } else {
        content.parts(n, 0, size)
    };
    url.query_pairs_mut().append_pair("digest", &digest);
    let length: usize = last.iter().map(Bytes::len).sum();
    let answer = client
        .put(url)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, length)
        .body(body(last))
        .send()
        .await?;
    if answer.status() != StatusCode::CREATED {
        return Err(fail(&format!("PUT of {digest} to {repo}"), answer).await);
    }
    Ok(())
}

/// GET `url` and read the body whole; fails unless it is `size` bytes.
async fn get_all(client: &Client, url: &Url, size: Option<usize>) -> anyhow::Result<usize> {
    let mut answer = client.get(url.clone()).send().await?;
    if answer.status() != StatusCode::OK {
        return Err(fail(&format!("GET {url}"), answer).await);
    }
    let mut seen = 0;
    while let Some(chunk) = answer.chunk().await? {
        seen += chunk.len();
    }
    if let Some(size) = size
        && seen != size
    {
        bail!("GET {url} gave {seen} bytes, expected {size}");
    }
    Ok(seen)
}

/// What one request does.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Op {
    Push,
    Pull,
    Catalog,
    Write,
}

/// Everything the workers share.
struct Job {
    client: Client,
    base: Option<Url>,
    repo: String,
    content: Option<Content>,
    chunked: bool,
    /// What to GET: blob URLs, a static file, or the catalog page.
    gets: Vec<Url>,
    dir: Option<PathBuf>,
    /// Request `i` does `ops[i % ops.len()]`.
    ops: Vec<Op>,
}

impl Job {
    fn new(client: Client, ops: Vec<Op>) -> Job {
        Job {
            client,
            base: None,
            repo: "load/bench".to_string(),
            content: None,
            chunked: false,
            gets: Vec::new(),
            dir: None,
            ops,
        }
    }

    fn content(&self) -> anyhow::Result<&Content> {
        self.content.as_ref().context("no content for this job")
    }

    async fn run_one(self: &Arc<Self>, i: usize) -> anyhow::Result<Op> {
        let op = self.ops[i % self.ops.len()];
        match op {
            Op::Push => {
                let base = self.base.as_ref().context("no --url")?;
                push_blob(
                    &self.client,
                    base,
                    &self.repo,
                    self.content()?,
                    i,
                    self.chunked,
                )
                .await?;
            }
            Op::Pull => {
                let url = &self.gets[i % self.gets.len()];
                get_all(&self.client, url, Some(self.content()?.size())).await?;
            }
            Op::Catalog => {
                let url = &self.gets[0];
                let answer = self.client.get(url.clone()).send().await?;
                if answer.status() != StatusCode::OK {
                    return Err(fail(&format!("GET {url}"), answer).await);
                }
                let page: serde_json::Value = answer.json().await?;
                let listed = page["repositories"].as_array().map_or(0, Vec::len);
                if listed == 0 || listed > 100 {
                    bail!("GET {url} listed {listed} repositories");
                }
            }
            Op::Write => {
                let job = Arc::clone(self);
                tokio::task::spawn_blocking(move || job.write_file(i)).await??;
            }
        }
        Ok(op)
    }

    /// Write blob `i` durably: a new file, fsync, rename into place, fsync
    /// of the directory (what a registry must do before answering 201).
    fn write_file(&self, i: usize) -> anyhow::Result<()> {
        let dir = self.dir.as_deref().context("no --dir")?;
        let content = self.content()?;
        let temp = dir.join(format!("upload-{i}"));
        let mut file = File::create(&temp).with_context(|| format!("creating {temp:?}"))?;
        for part in content.parts(i, 0, content.size()) {
            file.write_all(&part)
                .with_context(|| format!("writing {temp:?}"))?;
        }
        file.sync_all()
            .with_context(|| format!("fsync of {temp:?}"))?;
        drop(file);
        let done = dir.join(format!("blob-{i}"));
        std::fs::rename(&temp, &done).with_context(|| format!("renaming {temp:?}"))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("fsync of {dir:?}"))?;
        Ok(())
    }
}

/// Latencies (ms) by operation, and the wall time of the whole run.
struct Run {
    samples: BTreeMap<Op, Vec<f64>>,
    seconds: f64,
}

/// `requests` requests by `concurrency` workers (tokio tasks, so the client
/// uses every core), each taking the next request number when it is free.
async fn run(job: Arc<Job>, concurrency: usize, requests: usize) -> anyhow::Result<Run> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (job, next) = (Arc::clone(&job), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return anyhow::Ok(mine);
                }
                let t = Instant::now();
                let op = job.run_one(i).await?;
                mine.push((op, t.elapsed().as_secs_f64() * 1000.0));
            }
        }));
    }
    let mut samples: BTreeMap<Op, Vec<f64>> = BTreeMap::new();
    for w in workers {
        for (op, ms) in w.await.context("worker panicked")?? {
            samples.entry(op).or_default().push(ms);
        }
    }
    Ok(Run {
        samples,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Print one JSON line for `samples` (the latencies of one case).
fn report(
    case: &str,
    target: &str,
    size_mb: usize,
    concurrency: usize,
    mut samples: Vec<f64>,
    seconds: f64,
) {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let rate = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
    // Fixed key order, so the shell script can find lines by prefix.
    println!(
        "{{\"case\":{},\"target\":{},\"size_mb\":{size_mb},\"concurrency\":{concurrency},\"requests\":{n},\
         \"seconds\":{seconds:.3},\"req_s\":{:.1},\"mb_s\":{:.1},\"p50_ms\":{:.2},\"p90_ms\":{:.2},\"p99_ms\":{:.2}}}",
        json!(case),
        json!(target),
        rate(n as f64),
        rate((n * size_mb) as f64),
        percentile(&samples, 50.0),
        percentile(&samples, 90.0),
        percentile(&samples, 99.0),
    );
}

fn all(run: &Run) -> Vec<f64> {
    run.samples.values().flatten().copied().collect()
}

fn of(run: &Run, op: Op) -> Vec<f64> {
    run.samples.get(&op).cloned().unwrap_or_default()
}

/// Push `count` blobs (untimed) for pulls; their URLs.
async fn prepush(job: &Job, first: usize, count: usize) -> anyhow::Result<Vec<Url>> {
    let base = job.base.as_ref().context("no --url")?;
    let content = job.content()?;
    let mut urls = Vec::new();
    for n in first..first + count {
        push_blob(&job.client, base, &job.repo, content, n, false)
            .await
            .context("pre-pushing blobs to pull")?;
        urls.push(base.join(&format!("v2/{}/blobs/{}", job.repo, content.digest(n)))?);
    }
    Ok(urls)
}

/// Request numbers of pre-pushed blobs: far from those of timed pushes.
const PREPUSH_FIRST: usize = 1 << 40;

async fn push(o: &Options) -> anyhow::Result<()> {
    let size_mb = o.number("size-mb", 10)?;
    let concurrency = o.number("concurrency", 4)?;
    let requests = o.requests(size_mb)?;
    let chunked = o.flag("chunked");
    let mut job = Job::new(client(o)?, vec![Op::Push]);
    job.base = Some(o.url("url")?);
    job.repo = format!("load/push-{size_mb}mb");
    job.content = Some(Content::new(size_mb * MIB)?);
    job.chunked = chunked;
    let r = run(Arc::new(job), concurrency, requests).await?;
    let case = if chunked {
        "push-chunked"
    } else {
        "push-monolithic"
    };
    report(
        case,
        &o.target("registry"),
        size_mb,
        concurrency,
        all(&r),
        r.seconds,
    );
    Ok(())
}

async fn pull(o: &Options) -> anyhow::Result<()> {
    let size_mb = o.number("size-mb", 10)?;
    let concurrency = o.number("concurrency", 4)?;
    let requests = o.requests(size_mb)?;
    let mut job = Job::new(client(o)?, vec![Op::Pull]);
    job.content = Some(Content::new(size_mb * MIB)?);
    if o.flag("plain-url") {
        job.gets = vec![o.url("plain-url")?];
    } else {
        job.base = Some(o.url("url")?);
        job.repo = format!("load/pull-{size_mb}mb");
        job.gets = prepush(&job, PREPUSH_FIRST, o.number("blobs", 4)?).await?;
    }
    // One untimed pass, so every target starts from the page cache.
    for url in &job.gets.clone() {
        get_all(&job.client, url, Some(size_mb * MIB)).await?;
    }
    let r = run(Arc::new(job), concurrency, requests).await?;
    report(
        "pull",
        &o.target("registry"),
        size_mb,
        concurrency,
        all(&r),
        r.seconds,
    );
    Ok(())
}

async fn mix(o: &Options) -> anyhow::Result<()> {
    let size_mb = o.number("size-mb", 10)?;
    let concurrency = o.number("concurrency", 4)?;
    let requests = o.number("requests", 160)?;
    let target = o.target("registry");
    let mut job = Job::new(client(o)?, vec![Op::Pull]);
    job.base = Some(o.url("url")?);
    job.repo = format!("load/mix-{size_mb}mb");
    job.content = Some(Content::new(size_mb * MIB)?);
    job.gets = prepush(&job, PREPUSH_FIRST, o.number("blobs", 4)?).await?;
    for url in &job.gets.clone() {
        get_all(&job.client, url, Some(size_mb * MIB)).await?;
    }
    let pulls = requests - requests / 4;
    let mut job = Arc::new(job);
    let r = run(Arc::clone(&job), concurrency, pulls).await?;
    report(
        "mix-baseline-pull",
        &target,
        size_mb,
        concurrency,
        all(&r),
        r.seconds,
    );
    Arc::get_mut(&mut job)
        .context("workers still hold the job")?
        .ops = vec![Op::Pull, Op::Pull, Op::Pull, Op::Push];
    let r = run(job, concurrency, requests).await?;
    report("mix", &target, size_mb, concurrency, all(&r), r.seconds);
    for (case, op) in [("mix-pull", Op::Pull), ("mix-push", Op::Push)] {
        report(case, &target, size_mb, concurrency, of(&r, op), r.seconds);
    }
    Ok(())
}

async fn catalog(o: &Options) -> anyhow::Result<()> {
    let repos = o.number("repos", 200)?;
    let concurrency = o.number("concurrency", 8)?;
    let requests = o.number("requests", 2000)?;
    let base = o.url("url")?;
    let client = client(o)?;
    // A tiny image per repository, eight at a time (untimed).
    let next = Arc::new(AtomicUsize::new(0));
    let mut makers = Vec::new();
    for _ in 0..8 {
        let (client, base, next) = (client.clone(), base.clone(), Arc::clone(&next));
        makers.push(tokio::spawn(async move {
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed);
                if r >= repos {
                    return anyhow::Ok(());
                }
                tiny_image(&client, &base, &format!("catalog/repo-{r:04}")).await?;
            }
        }));
    }
    for m in makers {
        m.await.context("maker panicked")??;
    }
    let mut job = Job::new(client, vec![Op::Catalog]);
    job.gets = vec![base.join("v2/_catalog?n=100")?];
    let r = run(Arc::new(job), concurrency, requests).await?;
    report(
        "catalog",
        &o.target("registry"),
        0,
        concurrency,
        all(&r),
        r.seconds,
    );
    Ok(())
}

/// A config blob and a manifest with no layers, tagged `v1`.
async fn tiny_image(client: &Client, base: &Url, repo: &str) -> anyhow::Result<()> {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"bench.repo": repo}},
        "rootfs": {"type": "layers", "diff_ids": []},
    }))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
    let mut url = start_upload(client, base, repo).await?;
    url.query_pairs_mut().append_pair("digest", &digest);
    let answer = client
        .put(url)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(config.clone())
        .send()
        .await?;
    if answer.status() != StatusCode::CREATED {
        return Err(fail(&format!("config PUT to {repo}"), answer).await);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": digest, "size": config.len()},
        "layers": [],
    }))?;
    let url = base.join(&format!("v2/{repo}/manifests/v1"))?;
    let answer = client
        .put(url)
        .header(header::CONTENT_TYPE, MANIFEST_TYPE)
        .body(manifest)
        .send()
        .await?;
    if answer.status() != StatusCode::CREATED {
        return Err(fail(&format!("manifest PUT to {repo}"), answer).await);
    }
    Ok(())
}

async fn write(o: &Options) -> anyhow::Result<()> {
    let size_mb = o.number("size-mb", 10)?;
    let concurrency = o.number("concurrency", 4)?;
    let requests = o.requests(size_mb)?;
    let dir = PathBuf::from(o.string("dir")?);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir:?}"))?;
    let mut job = Job::new(client(o)?, vec![Op::Write]);
    job.content = Some(Content::new(size_mb * MIB)?);
    job.dir = Some(dir.clone());
    let r = run(Arc::new(job), concurrency, requests).await?;
    report(
        "write",
        &o.target("writer"),
        size_mb,
        concurrency,
        all(&r),
        r.seconds,
    );
    remove_files(&dir)
}

/// Delete what `write` wrote (untimed), so the cases do not fill the disk.
fn remove_files(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {dir:?}"))? {
        let path = entry?.path();
        std::fs::remove_file(&path).with_context(|| format!("removing {path:?}"))?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        bail!(
            "usage: quarry-load-bench push|pull|mix|catalog|write --url URL ... (see the source)"
        );
    };
    let options = Options::parse(rest, FLAGS)?;
    match command.as_str() {
        "push" => push(&options).await,
        "pull" => pull(&options).await,
        "mix" => mix(&options).await,
        "catalog" => catalog(&options).await,
        "write" => write(&options).await,
        other => bail!("unknown command {other:?} (push, pull, mix, catalog, write)"),
    }
}
