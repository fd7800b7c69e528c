//! The limits a greedy or slow client meets, over real sockets and with
//! real clients: a body that stalls (408), too many upload sessions (429),
//! too many staged bytes (413, announced or streamed chunked), capped
//! listings (a `Link` to the rest). Each refusal stores nothing and the
//! registry serves normally after. docs/reliability.md keeps the list.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use quarry_e2e::clients::{oras, skopeo_copy_layout};
use quarry_e2e::oci::write_image_layout;
use quarry_e2e::{Registry, run, run_refused, sha256};

const CONFIG: &str = "\
REQUEST_BODY_IDLE_TIMEOUT_SECONDS: 2
MAXIMUM_STAGED_UPLOAD_BYTES_PER_CLIENT: 1048576
MAXIMUM_LIST_ENTRIES: 5
";

/// Send `head` (and `body`) raw, then wait for the answer.
fn raw(port: u16, head: &str, body: &[u8]) -> (u16, String, Duration) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text, started.elapsed())
}

fn open_session(registry: &Registry, repo: &str) -> (u16, String) {
    let r = quarry_e2e::http::blocking()
        .post(format!("{}/v2/{repo}/blobs/uploads/", registry.url()))
        .send()
        .unwrap();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), location)
}

fn session_range(registry: &Registry, location: &str) -> String {
    let r = quarry_e2e::http::blocking()
        .get(format!("{}{location}", registry.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204, "the session must survive the refusal");
    r.headers()["range"].to_str().unwrap().to_string()
}

fn cancel(registry: &Registry, location: &str) {
    let r = quarry_e2e::http::blocking()
        .delete(format!("{}{location}", registry.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[test]
fn stalled_bodies_greedy_uploads_and_long_listings_are_bounded() {
    let registry = Registry::start_with_config(Some(CONFIG));
    let port = registry.port;

    // A body that announces 1000 bytes, sends 10 and stalls: 408 after the
    // idle timeout, the session unchanged.
    let (_, location) = open_session(&registry, "limits/stall");
    let (status, text, waited) = raw(
        port,
        &format!("PATCH {location} HTTP/1.1\r\nHost: r\r\nContent-Length: 1000\r\n\r\n"),
        b"0123456789",
    );
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("REQUEST_BODY_IDLE_TIMEOUT_SECONDS"), "{text}");
    assert!(waited < Duration::from_secs(10), "held for {waited:?}");
    assert_eq!(session_range(&registry, &location), "0-0");

    // Staged bytes: announced over the limit, refused before it is read.
    let (status, text, _) = raw(
        port,
        &format!("PATCH {location} HTTP/1.1\r\nHost: r\r\nContent-Length: 2097152\r\n\r\n"),
        b"",
    );
    assert_eq!(status, 413, "{text}");
    assert!(
        text.contains("MAXIMUM_STAGED_UPLOAD_BYTES_PER_CLIENT"),
        "{text}"
    );
    // The refused session is closed (clients start over after a 413).
    let r = quarry_e2e::http::blocking()
        .get(format!("{}{location}", registry.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let (_, location) = open_session(&registry, "limits/stall");
    // Streamed chunked with no length: cut off once past, rolled back.
    let mut chunked = Vec::new();
    for _ in 0..32 {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend_from_slice(&[b'z'; 0x10000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, text, _) = raw(
        port,
        &format!(
            "PATCH {location} HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ),
        &chunked,
    );
    assert_eq!(status, 413, "{text}");
    let r = quarry_e2e::http::blocking()
        .get(format!("{}{location}", registry.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "the refused session is closed");

    // A real client pushing a layer over the limit is told why.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![b'q'; 2 * 1024 * 1024]).unwrap();
    let refused = run_refused(
        oras(dir.path())
            .args(["push", "--plain-http"])
            .arg(format!("{}/limits/big:v1", registry.host()))
            .arg("big.bin"),
    );
    assert!(
        refused.contains("MAXIMUM_STAGED_UPLOAD_BYTES_PER_CLIENT"),
        "oras did not show the limit: {refused}"
    );

    // Upload sessions, on a registry of their own (oras may leave the
    // session of a blob it was pushing beside the refused one): four
    // open, the fifth refused with 429, one cancelled makes room.
    let sessions = Registry::start_with_config(Some("MAXIMUM_UPLOAD_SESSIONS_PER_CLIENT: 4\n"));
    let mut open = Vec::new();
    for _ in 0..4 {
        let (status, location) = open_session(&sessions, "limits/sessions");
        assert_eq!(status, 202);
        open.push(location);
    }
    let r = quarry_e2e::http::blocking()
        .post(format!(
            "{}/v2/limits/sessions/blobs/uploads/",
            sessions.url()
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "5");
    let body = r.text().unwrap();
    assert!(
        body.contains("MAXIMUM_UPLOAD_SESSIONS_PER_CLIENT"),
        "{body}"
    );
    if let Some(location) = open.pop() {
        cancel(&sessions, &location);
    }
    let (status, _) = open_session(&sessions, "limits/sessions");
    assert_eq!(status, 202, "a cancelled session makes room");

    // After all that, real clients push and the blobs of the refused
    // pushes are not in the store.
    let layout = dir.path().join("layout");
    write_image_layout(&layout, "v1", 2, 64 * 1024);
    for tag in 0..7 {
        run(&mut skopeo_copy_layout(
            &layout,
            &format!("{}/limits/app:t{tag}", registry.host()),
        ));
    }
    let big_digest = sha256(&vec![b'q'; 2 * 1024 * 1024]);
    let r = quarry_e2e::http::blocking()
        .head(format!(
            "{}/v2/limits/big/blobs/{big_digest}",
            registry.url()
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "a refused layer was stored");

    // Listings: at most MAXIMUM_LIST_ENTRIES per page, a Link to the rest,
    // and a client that follows it (skopeo list-tags) sees every tag.
    let r = quarry_e2e::http::blocking()
        .get(format!("{}/v2/limits/app/tags/list?n=100", registry.url()))
        .send()
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_string();
    let page: serde_json::Value = r.json().unwrap();
    assert_eq!(page["tags"].as_array().unwrap().len(), 5);
    assert!(link.contains("n=5&last=t4"), "{link}");
    let listed = quarry_e2e::run_text(
        quarry_e2e::clients::skopeo()
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("docker://{}/limits/app", registry.host())),
    );
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["Tags"].as_array().unwrap().len(), 7, "{listed}");
}
