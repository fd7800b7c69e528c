//! Garbage-collection benchmark client (part of `make bench`, driven by
//! hack/bench-gc.sh). Plain HTTP, no auth, only requests every registry
//! takes (POST + PUT uploads, manifest PUT by tag, manifest DELETE by
//! digest), so it drives Quarry and CNCF distribution the same way.
//!
//! ```text
//! quarry-gc-bench populate --base URL --state FILE [--images 1000] [--repos 50]
//!                          [--layers 9] [--layer-bytes 1024] [--delete-percent 1] [--concurrency 16]
//! quarry-gc-bench verify   --base URL --state FILE
//! quarry-gc-bench latency  --base URL --seconds S --samples FILE [--repo latency/app]
//! ```
//!
//! `populate` pushes `images` images (a config and `layers` layers each:
//! one layer shared by the images of a repository, one of ten shared by
//! all repositories, the rest unique), then deletes `delete-percent` of the
//! images by digest, which leaves their unique blobs as garbage. It writes
//! the state (every image, what is garbage) to FILE and prints `key value`
//! lines. `verify` checks, after a collection, that the deleted images and
//! their unique blobs answer 404 and that kept images still pull whole.
//! `latency` pushes small images (a config and two 1 KiB layers, one tag
//! moved each time) one after the other and writes each push's latency in
//! milliseconds, one a line.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use quarry_e2e::bench_options::Options;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use url::Url;

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// Layers every repository shares (the second layer of each image).
const GLOBAL_LAYERS: usize = 10;

/// What this benchmark reads from its options beyond the shared kinds.
trait GcOptions {
    fn base(&self) -> anyhow::Result<Url>;
}

impl GcOptions for Options {
    fn base(&self) -> anyhow::Result<Url> {
        let base = self.string("base")?;
        Url::parse(&base).with_context(|| format!("--base {base:?} is not a URL"))
    }
}

/// Deterministic content: the label, then a 4 KiB block of pseudo-random
/// bytes seeded by it, repeated up to `size` (no registry compresses).
fn content(label: &str, size: usize) -> Vec<u8> {
    let mut seed = Sha256::digest(label.as_bytes());
    let mut block = Vec::with_capacity(4096);
    while block.len() < 4096 {
        seed = Sha256::digest(seed);
        block.extend_from_slice(&seed);
    }
    let mut out = Vec::with_capacity(size.max(label.len() + 1));
    out.extend_from_slice(label.as_bytes());
    out.push(b'\n');
    while out.len() < size {
        let take = (size - out.len()).min(block.len());
        out.extend_from_slice(&block[..take]);
    }
    out
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A blob of the populated store: how to make it again, and its digest.
#[derive(Clone)]
struct Blob {
    label: String,
    size: usize,
    digest: String,
}

impl Blob {
    fn new(label: String, size: usize) -> Blob {
        let digest = digest_of(&content(&label, size));
        Blob {
            label,
            size,
            digest,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        content(&self.label, self.size)
    }
}

fn client() -> anyhow::Result<Client> {
    Ok(quarry_e2e::http::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// POST an upload session, then PUT the whole body with `?digest=`.
async fn push_blob(
    client: &Client,
    base: &Url,
    repo: &str,
    digest: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    let start = base.join(&format!("v2/{repo}/blobs/uploads/"))?;
    let answer = client.post(start.clone()).send().await?;
    if answer.status() != StatusCode::ACCEPTED {
        bail!("POST {start} answered {}", answer.status());
    }
    let location = answer
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .with_context(|| format!("POST {start} gave no Location"))?;
    let mut url = base.join(location)?;
    url.query_pairs_mut().append_pair("digest", digest);
    let answer = client
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await?;
    if answer.status() != StatusCode::CREATED {
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        bail!("blob PUT of {digest} to {repo} answered {status}: {body}");
    }
    Ok(())
}

async fn put_manifest(
    client: &Client,
    base: &Url,
    repo: &str,
    tag: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    let url = base.join(&format!("v2/{repo}/manifests/{tag}"))?;
    let answer = client
        .put(url)
        .header("content-type", MANIFEST_TYPE)
        .body(bytes)
        .send()
        .await?;
    if answer.status() != StatusCode::CREATED {
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        bail!("manifest PUT {repo}:{tag} answered {status}: {body}");
    }
    Ok(())
}

/// A config naming the layers (their digests are the diff IDs: the layers
/// are uncompressed), and the manifest.
fn image_json(label: &str, layers: &[&Blob]) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"bench.image": label}},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": digest_of(&config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": LAYER_TYPE, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
    }))?;
    Ok((config, manifest))
}

async fn populate(o: &Options) -> anyhow::Result<()> {
    let base = o.base()?;
    let state_file = o.string("state")?;
    let images = o.number("images", 1000)?;
    let repos = o.number("repos", 50)?.clamp(1, images.max(1));
    let layers = o.number("layers", 9)?.max(3);
    let layer_bytes = o.number("layer-bytes", 1024)?;
    let percent = o.number("delete-percent", 1)?;
    let concurrency = o.number("concurrency", 16)?.max(1);
    let started = Instant::now();

    // Every distinct layer once (hashing is the slow part of making them).
    let repo_name = |i: usize| format!("bench/r{:03}", i % repos);
    let mut labels: BTreeSet<String> = BTreeSet::new();
    for i in 0..images {
        labels.insert(format!("base {}", repo_name(i)));
        labels.insert(format!("global {}", i % GLOBAL_LAYERS));
        for j in 2..layers {
            labels.insert(format!("layer {i}.{j}"));
        }
    }
    let blobs: BTreeMap<String, Blob> = labels
        .into_iter()
        .map(|l| (l.clone(), Blob::new(l, layer_bytes)))
        .collect();

    // Images, and what each repository needs uploaded.
    let deleted_count = images * percent / 100;
    let stride = images.checked_div(deleted_count).unwrap_or(0);
    // Spread over repositories: k * stride + k, for k < deleted_count.
    let deleted: BTreeSet<usize> = (0..deleted_count)
        .map(|k| k * stride + k % stride.max(1))
        .collect();
    let mut uploads: BTreeMap<(String, String), Blob> = BTreeMap::new();
    let mut manifests = Vec::new();
    let mut state_images = Vec::new();
    for i in 0..images {
        let repo = repo_name(i);
        let mut mine: Vec<&Blob> = vec![
            &blobs[&format!("base {repo}")],
            &blobs[&format!("global {}", i % GLOBAL_LAYERS)],
        ];
        for j in 2..layers {
            mine.push(&blobs[&format!("layer {i}.{j}")]);
        }
        let (config, manifest) = image_json(&format!("{i}"), &mine)?;
        let config_blob = Blob {
            label: String::new(),
            size: config.len(),
            digest: digest_of(&config),
        };
        let manifest_digest = digest_of(&manifest);
        let mut names: Vec<String> = vec![config_blob.digest.clone()];
        names.extend(mine.iter().map(|b| b.digest.clone()));
        for b in &mine {
            uploads.insert((repo.clone(), b.digest.clone()), (*b).clone());
        }
        let tag = format!("t{i:04}");
        manifests.push((repo.clone(), tag.clone(), manifest, config));
        state_images.push(json!({
            "repo": repo, "tag": tag, "digest": manifest_digest,
            "blobs": names, "deleted": deleted.contains(&i),
        }));
    }

    // Garbage: the deleted images' manifests and the blobs only they name.
    let mut kept_blobs: BTreeSet<String> = BTreeSet::new();
    let mut doomed: BTreeSet<String> = BTreeSet::new();
    for image in &state_images {
        let names = image["blobs"].as_array().context("blobs")?;
        let target = if image["deleted"] == true {
            &mut doomed
        } else {
            &mut kept_blobs
        };
        target.extend(names.iter().filter_map(|b| b.as_str().map(String::from)));
    }
    let mut garbage: Vec<String> = doomed.difference(&kept_blobs).cloned().collect();
    let garbage_bytes: usize = state_images
        .iter()
        .zip(&manifests)
        .filter(|(image, _)| image["deleted"] == true)
        .map(|(_, (_, _, manifest, config))| manifest.len() + config.len())
        .sum::<usize>()
        + garbage
            .iter()
            .filter_map(|d| blobs.values().find(|b| &b.digest == d))
            .map(|b| b.size)
            .sum::<usize>();
    garbage.extend(
        state_images
            .iter()
            .filter(|i| i["deleted"] == true)
            .filter_map(|i| i["digest"].as_str().map(String::from)),
    );
    let distinct_blobs = blobs.len() + 2 * images; // layers, configs, manifests
    let total_bytes: usize = blobs.values().map(|b| b.size).sum::<usize>()
        + manifests
            .iter()
            .map(|(_, _, m, c)| m.len() + c.len())
            .sum::<usize>();

    let client = client()?;
    let base = Arc::new(base);
    // Layers, then each image's config and manifest.
    futures::stream::iter(uploads.into_iter().map(|((repo, digest), blob)| {
        let (client, base) = (client.clone(), base.clone());
        async move { push_blob(&client, &base, &repo, &digest, blob.bytes()).await }
    }))
    .buffer_unordered(concurrency)
    .try_collect::<Vec<()>>()
    .await?;
    futures::stream::iter(manifests.into_iter().map(|(repo, tag, manifest, config)| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            push_blob(&client, &base, &repo, &digest_of(&config), config).await?;
            put_manifest(&client, &base, &repo, &tag, manifest).await
        }
    }))
    .buffer_unordered(concurrency)
    .try_collect::<Vec<()>>()
    .await?;
    let pushed = started.elapsed();

    for image in state_images.iter().filter(|i| i["deleted"] == true) {
        let (repo, digest) = (str_of(image, "repo")?, str_of(image, "digest")?);
        let url = base.join(&format!("v2/{repo}/manifests/{digest}"))?;
        let status = client.delete(url).send().await?.status();
        if status != StatusCode::ACCEPTED {
            bail!("DELETE {repo}@{digest} answered {status}");
        }
    }

    let state = json!({"images": state_images, "garbage": garbage});
    std::fs::write(&state_file, serde_json::to_vec(&state)?)
        .with_context(|| format!("writing {state_file}"))?;
    println!("images {images}");
    println!("repositories {repos}");
    println!("blobs {distinct_blobs}");
    println!("bytes {total_bytes}");
    println!("deleted_images {}", deleted.len());
    println!("garbage_blobs {}", garbage.len());
    println!("garbage_bytes {garbage_bytes}");
    println!("push_seconds {:.1}", pushed.as_secs_f64());
    Ok(())
}

fn str_of<'a>(v: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    v[key]
        .as_str()
        .with_context(|| format!("state: {key} missing"))
}

async fn status_of(
    client: &Client,
    url: Url,
    accept: bool,
) -> anyhow::Result<(StatusCode, Vec<u8>)> {
    let mut request = client.get(url);
    if accept {
        request = request.header("accept", MANIFEST_TYPE);
    }
    let answer = request.send().await?;
    let status = answer.status();
    Ok((status, answer.bytes().await?.to_vec()))
}

/// After a collection: the deleted images and their unique blobs are gone
/// (404), every tag of a kept image answers, and a sample of kept images
/// (those sharing a repository with a deleted one, and every 25th) pulls
/// whole, byte for byte.
async fn verify(o: &Options) -> anyhow::Result<()> {
    let base = o.base()?;
    let state_file = o.string("state")?;
    let state: Value = serde_json::from_slice(
        &std::fs::read(&state_file).with_context(|| format!("reading {state_file}"))?,
    )?;
    let images = state["images"].as_array().context("state: images")?;
    let garbage: BTreeSet<&str> = state["garbage"]
        .as_array()
        .context("state: garbage")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let client = client()?;
    let mut problems = Vec::new();
    let touched: BTreeSet<&str> = images
        .iter()
        .filter(|i| i["deleted"] == true)
        .filter_map(|i| i["repo"].as_str())
        .collect();
    let (mut gone, mut pulled, mut tags) = (0, 0, 0);
    for (n, image) in images.iter().enumerate() {
        let (repo, digest) = (str_of(image, "repo")?, str_of(image, "digest")?);
        let blobs: Vec<&str> = image["blobs"]
            .as_array()
            .context("state: blobs")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if image["deleted"] == true {
            let url = base.join(&format!("v2/{repo}/manifests/{digest}"))?;
            let (status, _) = status_of(&client, url, true).await?;
            if status != StatusCode::NOT_FOUND {
                problems.push(format!("deleted manifest {repo}@{digest} answers {status}"));
            }
            for blob in blobs.iter().filter(|b| garbage.contains(**b)) {
                let url = base.join(&format!("v2/{repo}/blobs/{blob}"))?;
                let (status, _) = status_of(&client, url, false).await?;
                if status != StatusCode::NOT_FOUND {
                    problems.push(format!("garbage blob {repo}@{blob} answers {status}"));
                }
                gone += 1;
            }
            continue;
        }
        let tag = str_of(image, "tag")?;
        let url = base.join(&format!("v2/{repo}/manifests/{tag}"))?;
        let (status, bytes) = status_of(&client, url, true).await?;
        tags += 1;
        if status != StatusCode::OK || digest_of(&bytes) != digest {
            problems.push(format!("kept {repo}:{tag} answers {status}"));
            continue;
        }
        if !(touched.contains(repo) || n % 25 == 0) {
            continue;
        }
        for blob in &blobs {
            let url = base.join(&format!("v2/{repo}/blobs/{blob}"))?;
            let (status, bytes) = status_of(&client, url, false).await?;
            if status != StatusCode::OK || digest_of(&bytes) != *blob {
                problems.push(format!("kept blob {repo}@{blob} answers {status}"));
            }
        }
        pulled += 1;
    }
    if !problems.is_empty() {
        for p in problems.iter().take(20) {
            eprintln!("quarry-gc-bench verify: {p}");
        }
        bail!(
            "{} problems after garbage collection at {base}",
            problems.len()
        );
    }
    println!(
        "verified: {tags} kept tags answer, {pulled} kept images pull whole, deleted images and {gone} garbage blobs answer 404"
    );
    Ok(())
}

/// Push small images one after another for `seconds`; write each whole
/// push's latency (ms) to the samples file. A refused push is counted and
/// reported, not retried.
async fn latency(o: &Options) -> anyhow::Result<()> {
    let base = o.base()?;
    let seconds = o.number("seconds", 20)?;
    let samples_file = o.string("samples")?;
    let repo = o.string_or("repo", "latency/app");
    let client = client()?;
    // Labels unique to this run, so every push uploads new blobs.
    let run = format!("{:?}", std::time::SystemTime::now());
    let mut samples = Vec::new();
    let mut errors = 0usize;
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let mut n = 0usize;
    while Instant::now() < deadline {
        let layers = [
            Blob::new(format!("latency {run} {n} a"), 1024),
            Blob::new(format!("latency {run} {n} b"), 1024),
        ];
        let refs: Vec<&Blob> = layers.iter().collect();
        let (config, manifest) = image_json(&format!("latency {run} {n}"), &refs)?;
        let t = Instant::now();
        let pushed = async {
            for l in &layers {
                push_blob(&client, &base, &repo, &l.digest, l.bytes()).await?;
            }
            push_blob(&client, &base, &repo, &digest_of(&config), config).await?;
            put_manifest(&client, &base, &repo, "latest", manifest).await
        }
        .await;
        match pushed {
            Ok(()) => samples.push(t.elapsed().as_secs_f64() * 1000.0),
            Err(e) => {
                errors += 1;
                eprintln!("quarry-gc-bench latency: {e:#}");
            }
        }
        n += 1;
    }
    let text: String = samples.iter().map(|s| format!("{s:.3}\n")).collect();
    std::fs::write(&samples_file, text).with_context(|| format!("writing {samples_file}"))?;
    println!("pushes {} errors {errors}", samples.len());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        bail!("usage: quarry-gc-bench populate|verify|latency --base URL ... (see the source)");
    };
    let options = Options::parse(rest, &[])?;
    match command.as_str() {
        "populate" => populate(&options).await,
        "verify" => verify(&options).await,
        "latency" => latency(&options).await,
        other => bail!("unknown command {other:?} (populate, verify, latency)"),
    }
}
