//! Garbage collection under fire. Writers push images whose layers come
//! from a shared pool the way skopeo and crane push: `HEAD` in their own
//! repository, else a cross-repository mount from the pool, else an
//! upload; then the manifest. Most tags are deleted right after, so most
//! images become garbage and sweeps — every second, grace one second —
//! condemn and delete pool blobs the writers are about to reuse. A push
//! refused with MANIFEST_BLOB_UNKNOWN is retried, as clients do.
//! Afterwards every tag still there pulls whole with skopeo, byte for
//! byte, and the deleted images are gone. On the filesystem, and on MinIO
//! with two replicas that both sweep and serve the writers in turn.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quarry_e2e::clients::skopeo;
use quarry_e2e::uploads::push_blob;
use quarry_e2e::{Registry, http, run, sha256};
use serde_json::json;

const GC_EVERY_SECOND: &str = "GARBAGE_COLLECTION_FREQUENCY: 1\nPUSH_TEMP_TAG_EXPIRATION_SEC: 1\n";
const WRITERS: usize = 4;
const POOL: usize = 300;
const LAYERS_PER_IMAGE: usize = 3;
const WRITE_FOR: Duration = Duration::from_secs(15);
const MIN_PUSHES_PER_WRITER: usize = 16;

/// An acknowledged push and whether its tag was deleted afterwards.
struct Pushed {
    repo: String,
    tag: String,
    digest: String,
    blobs: Vec<String>,
    kept: bool,
}

#[derive(Default)]
struct Tally {
    pushed: Vec<Pushed>,
    refused: usize,
    heads_found: usize,
    mounted: usize,
    uploaded: usize,
}

fn pool() -> Vec<Vec<u8>> {
    (0..POOL)
        .map(|i| {
            let (bytes, _) =
                quarry_e2e::oci::random_layer(8 * 1024 + i * 512, &format!("pool-{i}"));
            bytes
        })
        .collect()
}

/// Make `content` available in `repo` as a client would; returns how.
async fn ensure_blob(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    content: &[u8],
    tally: &mut Tally,
) -> anyhow::Result<String> {
    let digest = sha256(content);
    let head = client
        .head(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await?;
    if head.status() == 200 {
        tally.heads_found += 1;
        return Ok(digest);
    }
    let mount = client
        .post(format!(
            "{base}/v2/{repo}/blobs/uploads/?mount={digest}&from=stress/pool"
        ))
        .send()
        .await?;
    if mount.status() == 201 {
        tally.mounted += 1;
        return Ok(digest);
    }
    // Not mountable: the answer opened a session, which this client
    // uploads into, as docker and crane do (left open, it would count
    // against the client's MAXIMUM_UPLOAD_SESSIONS_PER_CLIENT).
    if let Some(location) = mount
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
    {
        tally.uploaded += 1;
        let put = client
            .put(format!("{base}{location}?digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(content.to_vec())
            .send()
            .await?;
        anyhow::ensure!(
            put.status() == 201,
            "upload into the mount's session: {}",
            put.status()
        );
        return Ok(digest);
    }
    tally.uploaded += 1;
    push_blob(client, base, repo, content.to_vec(), false).await
}

async fn writer(bases: Arc<Vec<String>>, id: usize, pool: Arc<Vec<Vec<u8>>>) -> Tally {
    let client = http::client();
    let repo = format!("stress/w{id}");
    let mut tally = Tally::default();
    let until = Instant::now() + WRITE_FOR;
    // On a busy machine, write on (up to three times as long) until this
    // writer has enough pushes for the checks to mean something.
    let hard_stop = Instant::now() + 3 * WRITE_FOR;
    let mut n = 0usize;
    while Instant::now() < until
        || (tally.pushed.len() < MIN_PUSHES_PER_WRITER && Instant::now() < hard_stop)
    {
        n += 1;
        // Requests of one push go to the replicas in turn.
        let base = |step: usize| bases[(n + step) % bases.len()].as_str();
        // A window sliding over the pool: the blobs an image uses were used
        // by others a few seconds before, most of them garbage by now.
        let picks: Vec<usize> = (0..LAYERS_PER_IMAGE)
            .map(|k| (id * 37 + n * 2 + k) % POOL)
            .collect();
        let mut layers = Vec::new();
        for (step, &p) in picks.iter().enumerate() {
            let digest = ensure_blob(&client, base(step), &repo, &pool[p], &mut tally)
                .await
                .expect("blob");
            layers.push(json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": pool[p].len(),
            }));
        }
        let config = serde_json::to_vec(&json!({"writer": id, "push": n, "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})).unwrap();
        let config_digest = push_blob(&client, base(3), &repo, config.clone(), n.is_multiple_of(2))
            .await
            .expect("config");
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layers,
        });
        let body = serde_json::to_vec(&manifest).unwrap();
        let tag = format!("t{n}");
        let put = client
            .put(format!("{}/v2/{repo}/manifests/{tag}", base(4)))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body.clone())
            .send()
            .await
            .expect("manifest PUT");
        let status = put.status();
        let text = put.text().await.unwrap_or_default();
        if status == 400 && text.contains("MANIFEST_BLOB_UNKNOWN") {
            tally.refused += 1;
            continue;
        }
        assert_eq!(status, 201, "manifest {repo}:{tag}: {text}");
        // Seven of eight images lose their tag at once: garbage.
        let kept = n.is_multiple_of(8);
        if !kept {
            let delete = client
                .delete(format!("{}/v2/{repo}/manifests/{tag}", base(5)))
                .send()
                .await
                .expect("tag DELETE");
            assert_eq!(delete.status(), 202, "delete {repo}:{tag}");
        }
        let mut blobs = vec![config_digest];
        blobs.extend(picks.iter().map(|&p| sha256(&pool[p])));
        tally.pushed.push(Pushed {
            repo: repo.clone(),
            tag,
            digest: sha256(&body),
            blobs,
            kept,
        });
    }
    tally
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn stress(bases: Vec<String>) {
    let client = http::client();
    let pool = Arc::new(pool());
    for content in pool.iter() {
        push_blob(&client, &bases[0], "stress/pool", content.clone(), false)
            .await
            .expect("pool blob");
    }
    let bases = Arc::new(bases);
    // Half the pool is pushed again every two seconds: young again for a
    // second, then condemned, then deleted — while writers mount from it.
    let refresher = {
        let (client, pool, base) = (client.clone(), pool.clone(), bases[0].clone());
        tokio::spawn(async move {
            for round in 0.. {
                tokio::time::sleep(Duration::from_secs(2)).await;
                for content in pool.iter().skip(round % 2).step_by(2) {
                    let _ = push_blob(&client, &base, "stress/pool", content.clone(), false).await;
                }
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(bases.clone(), id, pool.clone())))
        .collect();
    let mut tally = Tally::default();
    for w in writers {
        let t = w.await.expect("writer");
        tally.refused += t.refused;
        tally.heads_found += t.heads_found;
        tally.mounted += t.mounted;
        tally.uploaded += t.uploaded;
        tally.pushed.extend(t.pushed);
    }
    refresher.abort();
    let kept: Vec<&Pushed> = tally.pushed.iter().filter(|p| p.kept).collect();
    let dropped: Vec<&Pushed> = tally.pushed.iter().filter(|p| !p.kept).collect();
    eprintln!(
        "{} pushes acknowledged ({} kept), {} refused and retried; blobs: {} found by HEAD, {} mounted, {} uploaded",
        tally.pushed.len(),
        kept.len(),
        tally.refused,
        tally.heads_found,
        tally.mounted,
        tally.uploaded
    );
    assert!(kept.len() >= 5, "too few pushes to prove anything");

    // Every kept image is whole, read back over HTTP byte for byte...
    for p in &kept {
        let base = &bases[0];
        let manifest = client
            .get(format!("{base}/v2/{}/manifests/{}", p.repo, p.tag))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(manifest.status(), 200, "{}:{}", p.repo, p.tag);
        assert_eq!(sha256(&manifest.bytes().await.unwrap()), p.digest);
        for blob in &p.blobs {
            for base in bases.iter() {
                let got = client
                    .get(format!("{base}/v2/{}/blobs/{blob}", p.repo))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    got.status(),
                    200,
                    "{}:{} lost {blob} ({base})",
                    p.repo,
                    p.tag
                );
                assert_eq!(&sha256(&got.bytes().await.unwrap()), blob);
            }
        }
    }
    // ... and pulls with skopeo, every tag of every writer's repository.
    let out = tempfile::tempdir().unwrap();
    let host = bases[0].trim_start_matches("http://").to_string();
    let by_repo: BTreeMap<&str, usize> = kept.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(p.repo.as_str()).or_default() += 1;
        m
    });
    for (repo, count) in &by_repo {
        let dest = out.path().join(repo.replace('/', "-"));
        let host = host.clone();
        let (source, dest2) = (format!("{host}/{repo}"), dest.clone());
        tokio::task::spawn_blocking(move || {
            run(skopeo()
                .args([
                    "sync",
                    "--src",
                    "docker",
                    "--dest",
                    "dir",
                    "--src-tls-verify=false",
                ])
                .arg(source)
                .arg(&dest2));
        })
        .await
        .unwrap();
        let pulled = walk_count(&dest, "manifest.json");
        assert_eq!(
            pulled, *count,
            "skopeo pulled {pulled} images of {repo}, {count} are tagged"
        );
    }

    // The images whose tags went are collected while nobody writes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut left = 0;
        for p in &dropped {
            let r = client
                .get(format!("{}/v2/{}/manifests/{}", bases[0], p.repo, p.digest))
                .send()
                .await
                .unwrap();
            if r.status() != 404 {
                left += 1;
            }
        }
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} deleted images still stored after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut deleted_blobs = 0.0;
    let mut errors = 0.0;
    for base in bases.iter() {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        deleted_blobs += metric(&text, "quarry_gc_deleted_total{kind=\"blob\"}");
        errors += metric(&text, "quarry_gc_errors_total");
        eprintln!(
            "{base}: {} sweeps, {} blobs deleted, {} rescued",
            metric(&text, "quarry_gc_runs_total"),
            metric(&text, "quarry_gc_deleted_total{kind=\"blob\"}"),
            metric(&text, "quarry_gc_rescued_total")
        );
    }
    assert!(deleted_blobs > 0.0, "the sweeps deleted nothing");
    assert_eq!(errors, 0.0, "sweeps failed on some items");
    // The journal the operator reads tells the same story.
    let mut journaled_blobs = 0;
    for base in bases.iter() {
        let journal: serde_json::Value = client
            .get(format!("{base}/gc/sweeps"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sweeps = journal["sweeps"].as_array().expect("sweeps");
        assert!(!sweeps.is_empty(), "{base}: no sweep journaled");
        assert!(journal["instance"].as_str().is_some_and(|i| !i.is_empty()));
        for sweep in sweeps {
            assert_eq!(sweep["succeeded"], true, "{sweep}");
            journaled_blobs += sweep["deletedBlobs"].as_u64().unwrap();
        }
    }
    // The journal keeps the last 32 sweeps only, the counters all of them.
    assert!(journaled_blobs > 0, "no journaled sweep deleted a blob");
    assert!(journaled_blobs as f64 <= deleted_blobs);
}

fn walk_count(dir: &std::path::Path, name: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk_count(&path, name)
            } else {
                usize::from(path.file_name().is_some_and(|n| n == name))
            }
        })
        .sum()
}

/// The fixtures start outside the runtime (MinIO's setup uses a blocking
/// client, which must not be dropped inside one).
fn run_stress(bases: Vec<String>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(stress(bases));
}

#[test]
fn pushes_reusing_blobs_survive_sweeps_every_second() {
    let registry = Registry::start_with_config(Some(GC_EVERY_SECOND));
    run_stress(vec![registry.url()]);
}

#[test]
fn two_replicas_on_minio_both_sweeping() {
    let minio = quarry_e2e::scale::Minio::start("gc-stress");
    let replicas = quarry_e2e::scale::replicas(&minio, 2, GC_EVERY_SECOND);
    run_stress(replicas.iter().map(Registry::url).collect());
}
