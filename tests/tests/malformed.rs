//! Hundreds of malformed requests, sent raw over TCP so that no client
//! library normalizes them (`..`, `%2e%2e`, NUL, overlong UTF-8, bad
//! digests of every algorithm, broken ranges, broken manifests, junk
//! headers). Each must get a status its kind allows — never a 5xx, never
//! a dropped connection — nothing may be stored, and the registry must
//! serve normally afterwards. docs/reliability.md keeps the counts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use quarry_e2e::{Registry, sha256};

/// One bad request and the statuses it may get.
struct Case {
    what: String,
    request: Vec<u8>,
    allowed: &'static [u16],
}

const NOT_FOUND_OR_BAD: &[u16] = &[400, 404];

fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: registry\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "PUT" || method == "PATCH" || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The status of a raw exchange; `None` when the server answered nothing.
fn exchange(port: u16, bytes: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may answer (and close) before reading a large body.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text))
}

fn bad_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "..",
        "../etc",
        "a/../b",
        "a/./b",
        "%2e%2e",
        "a/%2e%2e/b",
        "a%2f..%2fb",
        "%2e%2e%2fetc",
        ".hidden",
        "a/.b",
        "A",
        "Team/App",
        "a//b",
        "-a",
        "a-",
        "a..b",
        "a__",
        "a%00b",
        "%00",
        "%c0%ae%c0%ae",
        "a/%c0%af/b",
        "%ff%fe",
        "caf%c3%a9",
        "a%20b",
        "a%09b",
        "a;b",
        "a%5cb",
        "a\\b",
        "_catalog/x",
        "a/_tags",
        "a/_layers/b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.push("a".repeat(300));
    names.push(vec!["a"; 200].join("/"));
    names
}

fn bad_digests() -> Vec<String> {
    let hex64 = "0".repeat(64);
    vec![
        "sha256:".into(),
        "sha256".into(),
        ":abc".into(),
        format!("sha256:{}", "z".repeat(64)),
        format!("sha256:{}", "0".repeat(63)),
        format!("sha256:{}", "0".repeat(65)),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha512:{hex64}"),
        format!("sha384:{hex64}"),
        format!("md5:{}", "0".repeat(32)),
        format!("SHA256:{hex64}"),
        format!("sha256:..%2f..%2f{}", "0".repeat(58)),
        format!("sha256:{}%00", "0".repeat(63)),
        format!("sha256:{}", "0".repeat(10_000)),
        "sha256:%2e%2e".into(),
        "blake3:".into(),
    ]
}

fn corpus(blob: &str, session: &dyn Fn() -> String) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |what: String, request: Vec<u8>, allowed: &'static [u16]| {
        cases.push(Case {
            what,
            request,
            allowed,
        })
    };
    let zero = format!("sha256:{}", "0".repeat(64));
    for name in bad_names() {
        for (method, tail, allowed) in [
            ("GET", "tags/list".to_string(), NOT_FOUND_OR_BAD),
            ("GET", "manifests/latest".to_string(), NOT_FOUND_OR_BAD),
            ("HEAD", format!("blobs/{zero}"), NOT_FOUND_OR_BAD),
            ("POST", "blobs/uploads/".to_string(), NOT_FOUND_OR_BAD),
            ("PUT", "manifests/latest".to_string(), NOT_FOUND_OR_BAD),
            ("DELETE", format!("manifests/{zero}"), NOT_FOUND_OR_BAD),
        ] {
            let target = format!("/v2/{name}/{tail}");
            add(
                format!("{method} {target}"),
                request(method, &target, &[], b""),
                allowed,
            );
        }
    }
    for digest in bad_digests() {
        for (method, target, allowed) in [
            (
                "GET",
                format!("/v2/good/app/blobs/{digest}"),
                NOT_FOUND_OR_BAD,
            ),
            (
                "HEAD",
                format!("/v2/good/app/blobs/{digest}"),
                NOT_FOUND_OR_BAD,
            ),
            (
                "DELETE",
                format!("/v2/good/app/blobs/{digest}"),
                NOT_FOUND_OR_BAD,
            ),
            (
                "GET",
                format!("/v2/good/app/manifests/{digest}"),
                NOT_FOUND_OR_BAD,
            ),
            (
                "DELETE",
                format!("/v2/good/app/manifests/{digest}"),
                NOT_FOUND_OR_BAD,
            ),
            (
                "GET",
                format!("/v2/good/app/referrers/{digest}"),
                NOT_FOUND_OR_BAD,
            ),
            (
                "POST",
                format!("/v2/good/app/blobs/uploads/?digest={digest}"),
                &[400][..],
            ),
            // A mount that cannot be done may fall back to an upload session.
            (
                "POST",
                format!("/v2/good/app/blobs/uploads/?mount={digest}&from=good/app"),
                &[202, 400][..],
            ),
        ] {
            add(
                format!("{method} {target}"),
                request(method, &target, &[], b"x"),
                allowed,
            );
        }
        let target = format!("{}?digest={digest}", session());
        add(
            format!("PUT {target}"),
            request("PUT", &target, &[], b"content"),
            &[400, 404],
        );
    }
    for id in [
        "..",
        "%2e%2e",
        "..%2f..%2fetc",
        "../../etc/passwd",
        "00000000-0000-0000-0000-000000000000",
        "not-a-uuid",
        "%00",
        &"a".repeat(1000),
        "%c0%ae%c0%ae",
    ] {
        for method in ["GET", "PATCH", "PUT", "DELETE"] {
            let target = format!("/v2/good/app/blobs/uploads/{id}");
            add(
                format!("{method} {target}"),
                request(method, &target, &[], b"abc"),
                &[400, 404],
            );
        }
    }
    for range in [
        "bytes=-1",
        "bytes=5-2",
        "bytes=0-0,2-3",
        "bytes=99999999999999999999999-",
        "bytes=0-99999999999999999999999",
        "bytes=abc",
        "bytes=100000-",
        "bytes=",
        "bytes=--1",
        "items=0-1",
        "bytes=0-1, 1-2, 0-0, 5-",
        "bytes=\u{0}",
    ] {
        let target = format!("/v2/good/app/blobs/{blob}");
        add(
            format!("GET {target} Range: {range:?}"),
            request("GET", &target, &[("Range", range)], b""),
            &[200, 206, 400, 416],
        );
    }
    for content_range in [
        "5-10",
        "10-5",
        "0-99999999999999999999",
        "abc",
        "-1-3",
        "0--3",
        "0-",
        "0-1000",
        "bytes 0-3/4",
    ] {
        let target = session();
        add(
            format!("PATCH {target} Content-Range: {content_range:?}"),
            request(
                "PATCH",
                &target,
                &[("Content-Range", content_range)],
                b"abcd",
            ),
            &[202, 400, 416],
        );
    }
    let nested = "[".repeat(100_000) + &"]".repeat(100_000);
    let big = format!(
        "{{\"schemaVersion\":2,\"x\":\"{}\"}}",
        "a".repeat(5 * 1024 * 1024)
    );
    let image = "application/vnd.oci.image.manifest.v1+json";
    let config = format!(
        r#"{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{zero}","size":2}}"#
    );
    let manifests: Vec<(&str, String, &str)> = vec![
        ("empty object", "{}".into(), image),
        ("array", "[]".into(), image),
        ("null", "null".into(), image),
        ("empty body", String::new(), image),
        ("no config", r#"{"schemaVersion":2,"layers":[]}"#.into(), image),
        ("schema 3", format!(r#"{{"schemaVersion":3,"config":{config},"layers":[]}}"#), image),
        ("layers an object", format!(r#"{{"schemaVersion":2,"config":{config},"layers":{{}}}}"#), image),
        ("bad config digest", r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]}"#.into(), image),
        ("negative size", format!(r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{zero}","size":-1}},"layers":[]}}"#), image),
        ("blobs unknown", format!(r#"{{"schemaVersion":2,"mediaType":"{image}","config":{config},"layers":[]}}"#), image),
        ("nested 100000 deep", nested, image),
        ("duplicate keys", format!(r#"{{"schemaVersion":2,"schemaVersion":1,"config":{config},"layers":[]}}"#), image),
        ("media type mismatch", format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":{config},"layers":[]}}"#), image),
        ("unknown content type", "{}".into(), "text/plain"),
        ("5 MiB", big, image),
        ("schema 1, layers and history disagree", format!(r#"{{"schemaVersion":1,"name":"good/bad","tag":"t","architecture":"amd64","fsLayers":[{{"blobSum":"{zero}"}}],"history":[]}}"#), "application/vnd.docker.distribution.manifest.v1+json"),
        ("schema 1, another name", format!(r#"{{"schemaVersion":1,"name":"other/repo","tag":"t","architecture":"amd64","fsLayers":[{{"blobSum":"{zero}"}}],"history":[{{"v1Compatibility":"{{}}"}}]}}"#), "application/vnd.docker.distribution.manifest.v1+json"),
        ("index of unknown children", format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"{image}","digest":"{zero}","size":2}}]}}"#), "application/vnd.oci.image.index.v1+json"),
    ];
    for (what, body, media_type) in manifests {
        add(
            format!("PUT manifest: {what}"),
            request(
                "PUT",
                "/v2/good/bad/manifests/t",
                &[("Content-Type", media_type)],
                body.as_bytes(),
            ),
            &[400, 404, 413, 415],
        );
    }
    let mut invalid_utf8 = br#"{"schemaVersion":2,"x":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xc0, 0xae, 0xff, b'"', b'}']);
    add(
        "PUT manifest: invalid UTF-8".into(),
        request(
            "PUT",
            "/v2/good/bad/manifests/t",
            &[("Content-Type", image)],
            &invalid_utf8,
        ),
        &[400],
    );
    for query in [
        "n=-1",
        "n=abc",
        "n=99999999999999999999",
        "last=%00",
        "n=0",
        "last=..%2f..",
    ] {
        for target in [
            format!("/v2/_catalog?{query}"),
            format!("/v2/good/app/tags/list?{query}"),
        ] {
            add(
                format!("GET {target}"),
                request("GET", &target, &[], b""),
                &[200, 400],
            );
        }
    }
    let long_header = "x".repeat(100 * 1024);
    let mut chunked_big = b"PUT /v2/good/bad/manifests/t HTTP/1.1\r\nHost: r\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    let chunk = 5 * 1024 * 1024;
    chunked_big.extend_from_slice(format!("{chunk:x}\r\n").as_bytes());
    chunked_big.extend(std::iter::repeat_n(b' ', chunk));
    chunked_big.extend_from_slice(b"\r\n0\r\n\r\n");
    let many_headers: Vec<(String, String)> =
        (0..101).map(|i| (format!("X-H{i}"), "v".into())).collect();
    for (what, raw, allowed) in [
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), &[400][..]),
        ("unknown method", request("FOO", "/v2/", &[], b""), &[400, 404, 405]),
        ("100 KiB header", request("GET", "/v2/", &[("X-Long", &long_header)], b""), &[431]),
        ("101 headers", request("GET", "/v2/", &many_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(), b""), &[431]),
        ("5 MiB manifest without a Content-Length (chunked)", chunked_big, &[413]),
        ("70 KiB request target", request("GET", &format!("/v2/{}x/tags/list", "a/".repeat(35 * 1024)), &[], b""), &[414]),
        ("20 KiB repository name", request("GET", &format!("/v2/{}x/tags/list", "a/".repeat(10 * 1024)), &[], b""), &[400]),
        ("absolute-form target", request("GET", "http://elsewhere/v2/", &[], b""), &[200, 400, 404]),
        ("asterisk target", request("OPTIONS", "*", &[], b""), &[400, 404, 405]),
        (
            "two Content-Lengths",
            b"PUT /v2/good/bad/manifests/t HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}".to_vec(),
            &[400],
        ),
        (
            "chunked manifest without an end",
            b"PUT /v2/good/bad/manifests/t HTTP/1.1\r\nHost: r\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n".to_vec(),
            &[400],
        ),
    ] {
        add(what.to_string(), raw, allowed);
    }
    cases
}

#[test]
fn malformed_requests_are_refused_precisely_and_store_nothing() {
    let registry = Registry::start();
    let base = registry.url();
    let http = quarry_e2e::http::blocking();
    // One real image's blob, for the range cases.
    let content = b"the only blob".to_vec();
    let blob = sha256(&content);
    let pushed = http
        .post(format!("{base}/v2/good/app/blobs/uploads/?digest={blob}"))
        .body(content.clone())
        .send()
        .unwrap();
    assert_eq!(pushed.status(), 201);
    let session = || {
        let r = http
            .post(format!("{base}/v2/good/app/blobs/uploads/"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        r.headers()["location"].to_str().unwrap().to_string()
    };
    let cases = corpus(&blob, &session);
    let mut failures = Vec::new();
    for case in &cases {
        match exchange(registry.port, &case.request) {
            Some((status, _)) if case.allowed.contains(&status) => {}
            Some((status, text)) => failures.push(format!(
                "{}: {status} (allowed {:?}): {}",
                case.what,
                case.allowed,
                text.chars().take(400).collect::<String>()
            )),
            None => failures.push(format!("{}: no answer", case.what)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed requests were answered wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(cases.len() >= 300, "only {} cases", cases.len());
    // Still serving, and nothing was stored: one repository, one blob.
    assert_eq!(
        http.get(format!("{base}/v2/")).send().unwrap().status(),
        200
    );
    let catalog: serde_json::Value = http
        .get(format!("{base}/v2/_catalog"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!(["good/app"]));
    let got = http
        .get(format!("{base}/v2/good/app/blobs/{blob}"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&got[..], &content[..]);
    let stored_blobs = walk(&registry.data.join("blobs"));
    assert_eq!(stored_blobs, 1, "blob files stored: {stored_blobs}");
    let log = registry.log_text();
    assert!(!log.contains("panicked"), "the registry panicked:\n{log}");
    eprintln!(
        "{} malformed requests, every one refused as expected",
        cases.len()
    );
}

/// Files under `dir` (recursively).
fn walk(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() { walk(&path) } else { 1 }
        })
        .sum()
}

/// A client that trickles its headers, or leaves a connection idle, is
/// disconnected after REQUEST_HEADER_TIMEOUT_SECONDS, on plain HTTP and
/// on HTTPS, while other clients are served.
#[test]
fn clients_that_trickle_headers_or_idle_are_disconnected() {
    const CONFIG: &str = "REQUEST_HEADER_TIMEOUT_SECONDS: 2\n";
    let registry = Registry::start_with_config(Some(CONFIG));
    let closed_within = |mut stream: TcpStream, first: &[u8]| {
        stream.write_all(first).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        (started.elapsed(), rest)
    };
    // Headers never finished.
    let stream = TcpStream::connect(("127.0.0.1", registry.port)).unwrap();
    let (waited, answer) = closed_within(stream, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n");
    assert!(answer.is_empty(), "answered a request without its end");
    assert!(
        waited < Duration::from_secs(10),
        "a trickling client was held for {waited:?}"
    );
    // Idle after one request on a kept-alive connection.
    let stream = TcpStream::connect(("127.0.0.1", registry.port)).unwrap();
    let (waited, answer) = closed_within(stream, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(
        waited < Duration::from_secs(10),
        "an idle connection was held for {waited:?}"
    );
    let ok = quarry_e2e::http::blocking()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);

    // The same over TLS: openssl s_client sends the unfinished headers and
    // keeps its input open; the server's close ends it.
    let secure = quarry_e2e::secure::SecureRegistry::start(CONFIG);
    let mut client = std::process::Command::new(quarry_e2e::tool("openssl"))
        .args(["s_client", "-quiet", "-connect", &secure.host()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl");
    let mut input = client.stdin.take().unwrap();
    input
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let exited = loop {
        if let Some(status) = client.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = client.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(input);
    assert!(
        exited.is_some(),
        "an HTTPS client trickling headers was still connected after 20 s"
    );
}

/// Junk `Authorization` headers on a registry with accounts: each gets 401
/// (or 400 for a header that cannot be read, 429 once the address failed
/// too often, 431 over MAXIMUM_REQUEST_HEADER_BYTES), never a 5xx, and an
/// account's real login still works after.
#[test]
fn junk_credentials_are_refused_without_a_server_error() {
    use base64::Engine;
    use quarry_e2e::secure::{ADMIN, PASSWORD, accounts_yaml, hash_password};
    let dir = tempfile::tempdir().unwrap();
    let accounts = dir.path().join("accounts.yaml");
    std::fs::write(&accounts, accounts_yaml(&hash_password(PASSWORD))).unwrap();
    let key = dir.path().join("token.key");
    std::fs::write(&key, "k".repeat(40)).unwrap();
    let config = format!(
        "AUTH_ACCOUNTS_FILE: {}\nAUTH_TOKEN_KEY_FILE: {}\nAUTH_FAILED_LOGINS_PER_MINUTE: 1000\n",
        accounts.display(),
        key.display()
    );
    let registry = Registry::start_with_config(Some(&config));
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let long = "A".repeat(60 * 1024);
    let mut values: Vec<String> = vec![
        "Bearer".into(),
        "Bearer ".into(),
        "Bearer a.b.c".into(),
        "Bearer ...".into(),
        format!("Bearer {long}"),
        "Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJxdWFycnktcmVnaXN0cnkifQ.".into(),
        "bearer x".into(),
        "BEARER x".into(),
        "Basic".into(),
        "Basic ".into(),
        "Basic !!!".into(),
        format!("Basic {}", b64(b"nocolon")),
        format!("Basic {}", b64(b":")),
        format!("Basic {}", b64(b"admin:")),
        format!("Basic {}", b64(b":password")),
        format!("Basic {}", b64(&[0xff, 0xfe, b':', 0xc0, 0xae])),
        format!("Basic {}", b64(format!("{ADMIN}:{long}").as_bytes())),
        format!(
            "Basic {}",
            b64(format!("{}:x", "a".repeat(10_000)).as_bytes())
        ),
        "Basic YWRtaW46".into(),
        "Digest username=\"admin\"".into(),
        "Negotiate abc".into(),
        "".into(),
        " ".into(),
    ];
    values.push(format!(
        "Basic {}",
        b64(format!("{ADMIN}:wrong").as_bytes())
    ));
    let mut failures = Vec::new();
    let mut cases = 0;
    for value in &values {
        for target in [
            "/v2/",
            "/v2/team/app/tags/list",
            "/auth/token?service=quarry-registry&scope=repository:team/app:pull",
        ] {
            cases += 1;
            let raw = request("GET", target, &[("Authorization", value)], b"");
            match exchange(registry.port, &raw) {
                Some((401 | 400 | 429 | 431, _)) => {}
                Some((status, text)) => failures.push(format!(
                    "{target} with Authorization {:?}: {status}: {}",
                    value.chars().take(60).collect::<String>(),
                    text.chars().take(300).collect::<String>()
                )),
                None => failures.push(format!("{target} with {value:.60}: no answer")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let good = format!("Basic {}", b64(format!("{ADMIN}:{PASSWORD}").as_bytes()));
    let (status, _) = exchange(
        registry.port,
        &request("GET", "/v2/", &[("Authorization", &good)], b""),
    )
    .unwrap();
    assert_eq!(status, 200, "the real login no longer works");
    assert!(!registry.log_text().contains("panicked"));
}
