//! Blob pulls over plain HTTP leave by sendfile (registry/src/zero_copy.rs),
//! byte for byte what was pushed, whole and by range, over HTTP/1.1 and
//! HTTP/2; over HTTPS the same pulls are encrypted from the mapping and
//! nothing is counted as zero-copy.

use quarry_e2e::secure::TestCa;
use quarry_e2e::uploads::push_blob;
use quarry_e2e::{Registry, http};
use rand::Rng;
use reqwest::Client;
use reqwest::header::RANGE;

const SIZE: usize = 9 * 1024 * 1024 + 4321;

async fn get(client: &Client, url: &str, range: Option<&str>) -> Vec<u8> {
    let mut request = client.get(url);
    if let Some(r) = range {
        request = request.header(RANGE, r);
    }
    let answer = request.send().await.expect("GET blob");
    assert!(
        answer.status().is_success(),
        "GET {url} answered {}",
        answer.status()
    );
    answer.bytes().await.expect("blob body").to_vec()
}

/// One sample of `/metrics` (read with `client`, so over HTTPS too).
async fn metric(client: &Client, base: &str, name: &str) -> u64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("/metrics body");
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

fn random_blob() -> Vec<u8> {
    let mut content = vec![0u8; SIZE];
    rand::rng().fill_bytes(&mut content);
    content
}

/// Whole, ranged (starting off a page and crossing the 4 MiB windows),
/// over HTTP/1.1 and HTTP/2 with prior knowledge: identical bytes, and
/// every blob byte sent was sent from the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_pulls_are_zero_copy_and_identical() {
    let registry = Registry::start();
    let base = registry.url();
    let h1 = http::client();
    let content = random_blob();
    let digest = push_blob(&h1, &base, "zc/plain", content.clone(), false)
        .await
        .expect("push");
    let url = format!("{base}/v2/zc/plain/blobs/{digest}");
    let h2 = http::builder()
        .http2_prior_knowledge()
        .build()
        .expect("HTTP/2 client");
    for (name, client) in [("HTTP/1.1", &h1), ("HTTP/2", &h2)] {
        let whole = get(client, &url, None).await;
        assert!(whole == content, "{name}: the whole blob differs");
        let (from, to) = (4095, 8 * 1024 * 1024 + 17);
        let part = get(client, &url, Some(&format!("bytes={from}-{to}"))).await;
        assert!(
            part == content[from..=to],
            "{name}: bytes {from}-{to} differ"
        );
    }
    let sent = metric(&h1, &base, "quarry_blob_bytes_sent_total").await;
    let zero_copy = metric(&h1, &base, "quarry_blob_bytes_sent_zero_copy_total").await;
    let expected = 2 * (SIZE as u64 + (8 * 1024 * 1024 + 17 - 4095 + 1));
    assert_eq!(sent, expected, "blob bytes sent");
    // HTTP/2 frames its data itself: only HTTP/1.1 bodies can go by
    // sendfile, and they must all have.
    assert!(
        zero_copy >= expected / 2 && zero_copy <= sent,
        "{zero_copy} of {sent} blob bytes went by sendfile; expected at least the HTTP/1.1 half ({})",
        expected / 2
    );
}

/// HTTPS encrypts in user space: the same pull is identical and nothing
/// is counted as sent by sendfile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_pulls_are_identical_and_not_zero_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("quarry zero-copy test CA");
    let (cert, key) = ca.issue(&["127.0.0.1"]);
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_file, cert).expect("write cert");
    std::fs::write(&key_file, key).expect("write key");
    let registry = Registry::start_with(
        None,
        &[
            ("QUARRY_TLS_CERT", &cert_file.display().to_string()),
            ("QUARRY_TLS_KEY", &key_file.display().to_string()),
        ],
    );
    let base = format!("https://{}", registry.host());
    let ca = reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).expect("CA certificate");
    let client = http::builder()
        .tls_certs_only([ca])
        .build()
        .expect("HTTPS client");
    let content = random_blob();
    let digest = push_blob(&client, &base, "zc/tls", content.clone(), false)
        .await
        .expect("push");
    let whole = get(&client, &format!("{base}/v2/zc/tls/blobs/{digest}"), None).await;
    assert!(whole == content, "the blob read over HTTPS differs");
    assert_eq!(
        metric(&client, &base, "quarry_blob_bytes_sent_total").await,
        SIZE as u64
    );
    assert_eq!(
        metric(&client, &base, "quarry_blob_bytes_sent_zero_copy_total").await,
        0
    );
}
