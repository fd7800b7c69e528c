//! Soak with faults: a mixed load — image pushes (monolithic, and chunked
//! with a resume from the session's `Range`), pulls checked byte for byte,
//! tag moves, deletes, referrers — with garbage collection sweeping every
//! two seconds, while a registry process is killed with SIGKILL and
//! started again every ~20 s (a third of the run when shorter), and on
//! MinIO (two replicas on one bucket) MinIO is killed and started again
//! once. Afterwards every acknowledged tag reads back byte-identical with
//! all its blobs, every referrer of a live subject is listed, no blob in
//! the store is not its digest, RSS stayed bounded, no process panicked,
//! and every error a client saw is one the faults explain (a refused
//! connection while a replica was down, a 5xx while MinIO was down, GC's
//! documented 503/MANIFEST_BLOB_UNKNOWN, each retried as clients do).
//!
//! `QUARRY_SOAK_SECONDS` sets the load time per backend (`make test`: 30;
//! `make soak`: 180 by default, `make soak SOAK_SECONDS=N`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quarry_e2e::scale::Minio;
use quarry_e2e::{Registry, http, sha256};
use rand::{Rng, RngExt};
use reqwest::StatusCode;
use serde_json::json;

const GC_CONFIG: &str = "GARBAGE_COLLECTION_FREQUENCY: 2\nPUSH_TEMP_TAG_EXPIRATION_SEC: 2\n";
const WORKERS: usize = 3;
/// A debug build under this load stays far below; a leak does not.
const RSS_LIMIT_KIB: u64 = 256 * 1024;
const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";

fn soak_time() -> Duration {
    let seconds = std::env::var("QUARRY_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(seconds)
}

/// When the faults happened, to tell the errors they explain.
#[derive(Default)]
struct Faults {
    /// (down since, up again at): storage (MinIO) outages.
    storage_down: Mutex<Vec<(Instant, Option<Instant>)>>,
    replica_kills: AtomicUsize,
    storage_restarts: AtomicUsize,
}

impl Faults {
    /// Whether a 5xx seen now is explained by a storage outage (up to 5 s
    /// after it ended, while connections in the pools recover).
    fn storage_explains(&self, now: Instant) -> bool {
        self.storage_down.lock().unwrap().iter().any(|(from, to)| {
            now >= *from && to.is_none_or(|to| now <= to + Duration::from_secs(5))
        })
    }
}

#[derive(Default)]
struct Counts {
    pushes: AtomicUsize,
    resumed_uploads: AtomicUsize,
    blob_heads_skipped: AtomicUsize,
    gc_refusals_retried: AtomicUsize,
    pulls: AtomicUsize,
    moves: AtomicUsize,
    deletes: AtomicUsize,
    referrers: AtomicUsize,
    listings: AtomicUsize,
    retries_after_faults: AtomicUsize,
}

fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the load shares: the replicas' URLs, the faults and the tallies.
struct Load {
    client: reqwest::Client,
    bases: Vec<String>,
    faults: Arc<Faults>,
    counts: Counts,
    /// Errors no fault explains: the soak fails on any.
    unexplained: Mutex<Vec<String>>,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
    /// The request was sent more than once (a fault cut an earlier try).
    retried: bool,
}

impl Load {
    fn unexplained(&self, what: String) {
        eprintln!("unexplained: {what}");
        self.unexplained.lock().unwrap().push(what);
    }

    /// Send a request built for a replica's base URL, moving to the next
    /// replica and retrying while faults explain the failure (up to 60 s).
    async fn send(
        &self,
        turn: &mut usize,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut retried = false;
        loop {
            let base = &self.bases[*turn % self.bases.len()];
            let outcome = async {
                let r = build(&self.client, base).send().await?;
                let status = r.status();
                let headers = r.headers().clone();
                let body = r.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            }
            .await;
            let why = match outcome {
                Ok((status, headers, body)) => {
                    let gc_busy = status == StatusCode::SERVICE_UNAVAILABLE
                        && String::from_utf8_lossy(&body).contains("garbage collection");
                    let storage =
                        status.is_server_error() && self.faults.storage_explains(Instant::now());
                    if !(gc_busy || storage) {
                        return Answer {
                            status,
                            headers,
                            body,
                            retried,
                        };
                    }
                    format!("{status} {}", String::from_utf8_lossy(&body))
                }
                // Refused, reset or cut: a replica is down or was killed.
                Err(e) => format!("{e}"),
            };
            if Instant::now() > deadline {
                self.unexplained(format!("gave up after 60 s of retries: {why}"));
                return Answer {
                    status: StatusCode::GATEWAY_TIMEOUT,
                    headers: Default::default(),
                    body: Bytes::new(),
                    retried,
                };
            }
            retried = true;
            bump(&self.counts.retries_after_faults);
            *turn += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// An acknowledged image: what its tag must still name at the end.
#[derive(Clone)]
struct Image {
    manifest: Bytes,
    digest: String,
    blobs: Vec<String>,
}

/// One worker's repository, as acknowledged to it.
#[derive(Default)]
struct Book {
    tags: BTreeMap<String, Image>,
    /// Referrer digest -> subject digest.
    referrers: Vec<(String, String)>,
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rng().fill_bytes(&mut v);
    v
}

/// Push one blob, monolithic or in two chunks with a status check between
/// them (the resume path): started over when a fault cut it.
async fn push_blob(
    load: &Load,
    turn: &mut usize,
    repo: &str,
    content: &Bytes,
    chunked: bool,
) -> bool {
    let digest = sha256(content);
    for _ in 0..10 {
        let done = if chunked {
            push_chunked(load, turn, repo, content, &digest).await
        } else {
            let a = load
                .send(turn, |c, base| {
                    c.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
                        .header("content-type", "application/octet-stream")
                        .body(content.clone())
                })
                .await;
            a.status == StatusCode::CREATED
        };
        if done {
            return true;
        }
    }
    load.unexplained(format!(
        "blob {digest} of {repo} could not be pushed in 10 tries"
    ));
    false
}

async fn push_chunked(
    load: &Load,
    turn: &mut usize,
    repo: &str,
    content: &Bytes,
    digest: &str,
) -> bool {
    let start = load
        .send(turn, |c, base| {
            c.post(format!("{base}/v2/{repo}/blobs/uploads/"))
        })
        .await;
    if start.status != StatusCode::ACCEPTED {
        return false;
    }
    let Some(location) = start.headers.get("location").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut location = location.to_string();
    let half = content.len() / 2;
    let first = content.slice(..half);
    let a = load
        .send(turn, |c, base| {
            c.patch(format!("{base}{location}"))
                .header("content-range", format!("0-{}", half - 1))
                .header("content-type", "application/octet-stream")
                .body(first.clone())
        })
        .await;
    if a.status != StatusCode::ACCEPTED && !a.retried {
        return false;
    }
    // Resume as a client does after a break: ask what the session holds.
    let status = load
        .send(turn, |c, base| c.get(format!("{base}{location}")))
        .await;
    if status.status != StatusCode::NO_CONTENT {
        return false;
    }
    let held: usize = status
        .headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.split('-').nth(1))
        .and_then(|end| end.parse::<usize>().ok())
        // "0-0" is also what an empty session says; the first chunk is
        // never one byte.
        .map_or(0, |end| if end == 0 { 0 } else { end + 1 });
    if let Some(l) = status.headers.get("location").and_then(|v| v.to_str().ok()) {
        location = l.to_string();
    }
    bump(&load.counts.resumed_uploads);
    let rest = content.slice(held.min(content.len())..);
    let done = load
        .send(turn, |c, base| {
            let mut r = c
                .put(format!("{base}{location}?digest={digest}"))
                .header("content-type", "application/octet-stream");
            if !rest.is_empty() {
                r = r.header("content-range", format!("{held}-{}", held + rest.len() - 1));
            }
            r.body(rest.clone())
        })
        .await;
    done.status == StatusCode::CREATED
}

/// Push an image as skopeo does: HEAD the shared base layer and skip it
/// when present, upload the rest, then the manifest. A manifest refused
/// with MANIFEST_BLOB_UNKNOWN (GC took the base meanwhile) is pushed again
/// with its blobs.
async fn push_image(
    load: &Load,
    turn: &mut usize,
    repo: &str,
    base_layer: &Bytes,
    n: usize,
) -> Option<Image> {
    let layer = Bytes::from(random_bytes(
        rand::rng().random_range(16 * 1024..512 * 1024),
    ));
    let config = Bytes::from(
        serde_json::to_vec(
            &json!({"architecture": "amd64", "os": "linux", "soak": n, "repo": repo}),
        )
        .unwrap(),
    );
    let base_digest = sha256(base_layer);
    let manifest = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": IMAGE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": base_digest, "size": base_layer.len()},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(&layer), "size": layer.len()},
            ],
        }))
        .unwrap(),
    );
    let tag = format!("t{n}");
    for _ in 0..5 {
        let head = load
            .send(turn, |c, base| {
                c.head(format!("{base}/v2/{repo}/blobs/{base_digest}"))
            })
            .await;
        if head.status == StatusCode::OK {
            bump(&load.counts.blob_heads_skipped);
        } else if !push_blob(load, turn, repo, base_layer, false).await {
            return None;
        }
        if !push_blob(load, turn, repo, &layer, n % 2 == 1).await
            || !push_blob(load, turn, repo, &config, false).await
        {
            return None;
        }
        let put = load
            .send(turn, |c, base| {
                c.put(format!("{base}/v2/{repo}/manifests/{tag}"))
                    .header("content-type", IMAGE)
                    .body(manifest.clone())
            })
            .await;
        if put.status == StatusCode::CREATED {
            bump(&load.counts.pushes);
            return Some(Image {
                digest: sha256(&manifest),
                manifest,
                blobs: vec![sha256(&config), base_digest, sha256(&layer)],
            });
        }
        let text = String::from_utf8_lossy(&put.body).to_string();
        if put.status == StatusCode::BAD_REQUEST && text.contains("MANIFEST_BLOB_UNKNOWN") {
            bump(&load.counts.gc_refusals_retried);
            continue;
        }
        load.unexplained(format!("manifest PUT {repo}:{tag}: {} {text}", put.status));
        return None;
    }
    load.unexplained(format!("{repo}:{tag} refused five times"));
    None
}

/// Pull `tag` and check it is `image`, byte for byte.
async fn pull_check(load: &Load, turn: &mut usize, repo: &str, tag: &str, image: &Image) {
    let a = load
        .send(turn, |c, base| {
            c.get(format!("{base}/v2/{repo}/manifests/{tag}"))
                .header("accept", IMAGE)
        })
        .await;
    if a.status != StatusCode::OK || a.body != image.manifest {
        load.unexplained(format!(
            "{repo}:{tag} read back {} ({} bytes), not the acknowledged {}",
            a.status,
            a.body.len(),
            image.digest
        ));
        return;
    }
    for blob in &image.blobs {
        let b = load
            .send(turn, |c, base| {
                c.get(format!("{base}/v2/{repo}/blobs/{blob}"))
            })
            .await;
        if b.status != StatusCode::OK || sha256(&b.body) != *blob {
            load.unexplained(format!(
                "blob {blob} of {repo}:{tag}: {} ({} bytes hashing to {})",
                b.status,
                b.body.len(),
                sha256(&b.body)
            ));
        }
    }
}

async fn attach_referrer(
    load: &Load,
    turn: &mut usize,
    repo: &str,
    subject: &Image,
) -> Option<String> {
    let empty = Bytes::from_static(b"{}");
    if !push_blob(load, turn, repo, &empty, false).await {
        return None;
    }
    let manifest = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": IMAGE,
            "artifactType": "application/vnd.example.soak.signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(&empty), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(&empty), "size": 2}],
            "subject": {"mediaType": IMAGE, "digest": subject.digest, "size": subject.manifest.len()},
            "annotations": {"soak": format!("{}", rand::rng().random::<u64>())},
        }))
        .unwrap(),
    );
    let digest = sha256(&manifest);
    let put = load
        .send(turn, |c, base| {
            c.put(format!("{base}/v2/{repo}/manifests/{digest}"))
                .header("content-type", IMAGE)
                .body(manifest.clone())
        })
        .await;
    if put.status != StatusCode::CREATED {
        load.unexplained(format!(
            "referrer PUT in {repo}: {} {}",
            put.status,
            String::from_utf8_lossy(&put.body)
        ));
        return None;
    }
    bump(&load.counts.referrers);
    Some(digest)
}

async fn referrers_listed(
    load: &Load,
    turn: &mut usize,
    repo: &str,
    subject: &str,
    referrer: &str,
) -> bool {
    let a = load
        .send(turn, |c, base| {
            c.get(format!("{base}/v2/{repo}/referrers/{subject}"))
        })
        .await;
    a.status == StatusCode::OK && String::from_utf8_lossy(&a.body).contains(referrer)
}

async fn worker(load: Arc<Load>, id: usize, until: Instant) -> Book {
    let repo = format!("soak/w{id}");
    let mut turn = id;
    let mut book = Book::default();
    let base_layer = Bytes::from(random_bytes(256 * 1024));
    let mut n = 0usize;
    while Instant::now() < until {
        n += 1;
        let tags: Vec<String> = book.tags.keys().cloned().collect();
        let pick = |k: usize| tags.get((n * 7 + k * 13) % tags.len().max(1)).cloned();
        match n % 8 {
            0..=2 => {
                if let Some(image) = push_image(&load, &mut turn, &repo, &base_layer, n).await {
                    book.tags.insert(format!("t{n}"), image);
                }
            }
            3 | 4 => {
                if let Some(tag) = pick(0) {
                    let image = book.tags[&tag].clone();
                    pull_check(&load, &mut turn, &repo, &tag, &image).await;
                    bump(&load.counts.pulls);
                }
            }
            5 => {
                if let (Some(moved), Some(from)) = (pick(0), pick(1))
                    && moved != from
                {
                    let image = book.tags[&from].clone();
                    let put = load
                        .send(&mut turn, |c, base| {
                            c.put(format!("{base}/v2/{repo}/manifests/{moved}"))
                                .header("content-type", IMAGE)
                                .body(image.manifest.clone())
                        })
                        .await;
                    if put.status == StatusCode::CREATED {
                        book.tags.insert(moved, image);
                        bump(&load.counts.moves);
                    } else if put.status == StatusCode::BAD_REQUEST {
                        // GC may have taken the image `from` names only if its
                        // tag is gone, which the book says it is not.
                        load.unexplained(format!(
                            "moving {repo}:{moved}: {} {}",
                            put.status,
                            String::from_utf8_lossy(&put.body)
                        ));
                    }
                }
            }
            6 => {
                if tags.len() > 4
                    && let Some(tag) = pick(2)
                {
                    let a = load
                        .send(&mut turn, |c, base| {
                            c.delete(format!("{base}/v2/{repo}/manifests/{tag}"))
                        })
                        .await;
                    let gone = a.status == StatusCode::ACCEPTED
                        || (a.retried && a.status == StatusCode::NOT_FOUND);
                    if gone {
                        book.tags.remove(&tag);
                        bump(&load.counts.deletes);
                    } else {
                        load.unexplained(format!("DELETE {repo}:{tag}: {}", a.status));
                    }
                }
            }
            _ => {
                if let Some(tag) = pick(3) {
                    let subject = book.tags[&tag].clone();
                    if let Some(referrer) = attach_referrer(&load, &mut turn, &repo, &subject).await
                    {
                        if !referrers_listed(&load, &mut turn, &repo, &subject.digest, &referrer)
                            .await
                        {
                            load.unexplained(format!(
                                "referrer {referrer} of {} not listed",
                                subject.digest
                            ));
                        }
                        book.referrers.push((referrer, subject.digest.clone()));
                    }
                }
                let a = load
                    .send(&mut turn, |c, base| {
                        c.get(format!("{base}/v2/{repo}/tags/list"))
                    })
                    .await;
                if a.status == StatusCode::OK {
                    bump(&load.counts.listings);
                }
            }
        }
    }
    book
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every blob file or object of the store hashes to the digest it is
/// stored under; returns how many were checked.
fn check_store(blobs: Vec<(String, Vec<u8>)>) -> usize {
    let mut bad = Vec::new();
    for (name, content) in &blobs {
        let hex = name.rsplit('/').next().unwrap_or_default();
        if sha256(content) != format!("sha256:{hex}") {
            bad.push(name.clone());
        }
    }
    assert!(bad.is_empty(), "blobs that are not their digest: {bad:?}");
    blobs.len()
}

fn filesystem_blobs(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.join("blobs")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(content) = std::fs::read(&path) {
                // (Sweeps go on: garbage listed a moment ago may be gone.)
                out.push((path.display().to_string(), content));
            }
        }
    }
    out
}

/// Run the load against `replicas` while `fault` is called every
/// kill interval (with its index); returns the report line.
fn soak(
    backend: &str,
    replicas: Vec<Registry>,
    mut storage_fault: Option<&mut dyn FnMut(&Faults)>,
    store_blobs: &dyn Fn() -> Vec<(String, Vec<u8>)>,
) {
    let run_for = soak_time();
    let kill_every = (run_for / 3).clamp(Duration::from_secs(8), Duration::from_secs(20));
    let faults = Arc::new(Faults::default());
    let load = Arc::new(Load {
        client: http::client(),
        bases: replicas.iter().map(Registry::url).collect(),
        faults: faults.clone(),
        counts: Counts::default(),
        unexplained: Mutex::default(),
    });
    let replicas = Arc::new(Mutex::new(replicas));
    let started = Instant::now();
    let until = started + run_for;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| runtime.spawn(worker(load.clone(), id, until)))
        .collect();

    // RSS of every replica, sampled twice a second.
    let max_rss = Arc::new(Mutex::new(0u64));
    let sampler = {
        let replicas = replicas.clone();
        let max_rss = max_rss.clone();
        std::thread::spawn(move || {
            while Instant::now() < until {
                let pids: Vec<u32> = replicas
                    .lock()
                    .unwrap()
                    .iter()
                    .filter_map(Registry::pid)
                    .collect();
                for pid in pids {
                    if let Some(kib) = rss_kib(pid) {
                        let mut max = max_rss.lock().unwrap();
                        *max = (*max).max(kib);
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };

    // Faults: a replica killed every interval, in turn; storage once,
    // half an interval after the first kill.
    let mut next_kill = started + kill_every;
    let mut storage_at = Some(started + kill_every + kill_every / 2);
    let mut victim = 0usize;
    while Instant::now() < until {
        let now = Instant::now();
        if now >= next_kill && now + Duration::from_secs(3) < until {
            let mut all = replicas.lock().unwrap();
            let count = all.len();
            let replica = &mut all[victim % count];
            replica.kill9();
            drop(all);
            std::thread::sleep(Duration::from_secs(1));
            replicas.lock().unwrap()[victim % count].restart();
            bump(&faults.replica_kills);
            victim += 1;
            next_kill += kill_every;
        }
        if let Some(at) = storage_at
            && now >= at
            && let Some(fault) = storage_fault.as_mut()
        {
            fault(&faults);
            bump(&faults.storage_restarts);
            storage_at = None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let books: Vec<Book> = workers
        .into_iter()
        .map(|w| runtime.block_on(w).expect("worker"))
        .collect();
    sampler.join().unwrap();

    // Afterwards: every acknowledged tag and live referrer, from each replica.
    let mut tags_checked = 0;
    let mut referrers_checked = 0;
    for (id, book) in books.iter().enumerate() {
        let repo = format!("soak/w{id}");
        let live: Vec<&String> = book.tags.values().map(|i| &i.digest).collect();
        for turn in 0..load.bases.len() {
            let mut turn = turn;
            for (tag, image) in &book.tags {
                runtime.block_on(pull_check(&load, &mut turn, &repo, tag, image));
                tags_checked += 1;
            }
            for (referrer, subject) in &book.referrers {
                if live.contains(&subject)
                    && !runtime
                        .block_on(referrers_listed(&load, &mut turn, &repo, subject, referrer))
                {
                    load.unexplained(format!("referrer {referrer} of live {subject} lost"));
                }
                referrers_checked += 1;
            }
        }
    }
    let blobs_checked = check_store(store_blobs());
    let replicas = replicas.lock().unwrap();
    let mut sweeps = 0.0;
    for replica in replicas.iter() {
        let log = replica.log_text();
        assert!(!log.contains("panicked"), "a replica panicked:\n{log}");
        let metrics = http::blocking()
            .get(format!("{}/metrics", replica.url()))
            .send()
            .unwrap()
            .text()
            .unwrap();
        sweeps += metrics
            .lines()
            .filter(|l| l.starts_with("quarry_gc_runs_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    let c = &load.counts;
    let get = |a: &AtomicUsize| a.load(Ordering::Relaxed);
    let max_rss = *max_rss.lock().unwrap();
    println!(
        "soak {backend}: {} s, {} replica(s); pushes {} (resumed uploads {}, base layer skipped after HEAD {}, MANIFEST_BLOB_UNKNOWN retried {}), pulls {}, tag moves {}, deletes {}, referrers {}, listings {}; faults: {} kill -9, {} storage restarts, {} requests retried after them; GC sweeps since the last restarts {sweeps}; checked after: {tags_checked} tags, {referrers_checked} referrers, {blobs_checked} stored blobs; max RSS {} MiB",
        run_for.as_secs(),
        replicas.len(),
        get(&c.pushes),
        get(&c.resumed_uploads),
        get(&c.blob_heads_skipped),
        get(&c.gc_refusals_retried),
        get(&c.pulls),
        get(&c.moves),
        get(&c.deletes),
        get(&c.referrers),
        get(&c.listings),
        get(&faults.replica_kills),
        get(&faults.storage_restarts),
        get(&c.retries_after_faults),
        max_rss / 1024,
    );
    let unexplained = load.unexplained.lock().unwrap();
    assert!(
        unexplained.is_empty(),
        "{} errors no fault explains, first: {:?}",
        unexplained.len(),
        unexplained.iter().take(10).collect::<Vec<_>>()
    );
    assert!(
        get(&c.pushes) > 10 && get(&c.pulls) > 5,
        "the load did too little"
    );
    assert!(get(&faults.replica_kills) >= 1, "no replica was killed");
    assert!(
        max_rss < RSS_LIMIT_KIB,
        "RSS reached {} MiB (limit {} MiB)",
        max_rss / 1024,
        RSS_LIMIT_KIB / 1024
    );
}

#[test]
fn soak_on_the_filesystem_with_the_registry_killed() {
    let registry = Registry::start_with_config(Some(GC_CONFIG));
    let data = registry.data.clone();
    soak("filesystem", vec![registry], None, &|| {
        filesystem_blobs(&data)
    });
}

#[test]
fn soak_on_minio_with_two_replicas_killed_in_turn_and_minio_restarted() {
    let minio = Arc::new(Mutex::new(Minio::start("soak")));
    let replicas = quarry_e2e::scale::replicas(&minio.lock().unwrap(), 2, GC_CONFIG);
    let mut restart_minio = {
        let minio = minio.clone();
        move |faults: &Faults| {
            let since = Instant::now();
            faults.storage_down.lock().unwrap().push((since, None));
            let mut minio = minio.lock().unwrap();
            minio.kill9();
            std::thread::sleep(Duration::from_secs(2));
            minio.start_again();
            if let Some(last) = faults.storage_down.lock().unwrap().last_mut() {
                last.1 = Some(Instant::now());
            }
        }
    };
    let listing = minio.clone();
    soak("MinIO", replicas, Some(&mut restart_minio), &move || {
        let minio = listing.lock().unwrap();
        // Sweeps go on: garbage listed a moment ago may be gone.
        minio
            .list("registry/blobs/")
            .into_iter()
            .filter_map(|key| Some((key.clone(), minio.get_if_present(&key)?)))
            .collect()
    });
}
