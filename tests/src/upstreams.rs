//! Upstream registries for the pull-through cache tests: CNCF distribution
//! from the tool cache, and a small stub that lies or rate-limits on
//! purpose (what no real registry does when asked).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{free_port, tool};

/// CNCF distribution serving a folder of its own on loopback, with its
/// access log kept.
pub struct Distribution {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Distribution {
    pub fn start() -> Distribution {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: info, accesslog: {{disabled: false}}}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write distribution config");
        let log = dir.path().join("distribution.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(tool("distribution"))
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start distribution");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "distribution did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Distribution {
            child: Some(child),
            port,
            log,
            _dir: dir,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Requests of the access log whose request line contains `needle`.
    pub fn requests_matching(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET ") && l.contains(needle))
            .count()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How the stub answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StubMode {
    /// Serve its content.
    Serve,
    /// 429 with `Retry-After: 7` to everything.
    RateLimited,
}

/// One thing the stub serves: a path under `/v2/` and its answer.
pub struct StubEntry {
    pub path: String,
    pub content_type: String,
    pub body: Vec<u8>,
    /// The `Docker-Content-Digest` it claims.
    pub digest: String,
}

/// A hand-made upstream: serves fixed answers (which may lie about their
/// digest) or rate-limits, and counts requests.
pub struct StubUpstream {
    pub port: u16,
    entries: Arc<Mutex<Vec<StubEntry>>>,
    rate_limited: Arc<AtomicBool>,
    pub requests: Arc<AtomicUsize>,
}

impl StubUpstream {
    pub fn start() -> StubUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind stub");
        let port = listener.local_addr().expect("addr").port();
        let entries: Arc<Mutex<Vec<StubEntry>>> = Arc::default();
        let rate_limited = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (e, r, n) = (entries.clone(), rate_limited.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (e, r, n) = (e.clone(), r.clone(), n.clone());
                std::thread::spawn(move || {
                    let _ = answer(stream, &e, &r, &n);
                });
            }
        });
        StubUpstream {
            port,
            entries,
            rate_limited,
            requests,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn serve(&self, entry: StubEntry) {
        self.entries.lock().expect("entries").push(entry);
    }

    pub fn set_mode(&self, mode: StubMode) {
        self.rate_limited
            .store(mode == StubMode::RateLimited, Ordering::SeqCst);
    }
}

fn answer(
    mut stream: TcpStream,
    entries: &Mutex<Vec<StubEntry>>,
    rate_limited: &AtomicBool,
    requests: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let head = method == "HEAD";
    let respond =
        |stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]| {
            let mut text = format!(
                "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
                body.len()
            );
            for (k, v) in headers {
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            text.push_str("\r\n");
            stream.write_all(text.as_bytes())?;
            if !head {
                stream.write_all(body)?;
            }
            stream.flush()
        };
    if rate_limited.load(Ordering::SeqCst) {
        let body =
            br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit reached"}]}"#;
        return respond(
            &mut stream,
            "429 Too Many Requests",
            &[("Retry-After", "7".into())],
            body,
        );
    }
    if path == "/v2/" {
        return respond(&mut stream, "200 OK", &[], b"{}");
    }
    let entries = entries
        .lock()
        .map_err(|_| std::io::Error::other("poisoned"))?;
    match entries.iter().find(|e| e.path == path) {
        Some(e) => respond(
            &mut stream,
            "200 OK",
            &[
                ("Content-Type", e.content_type.clone()),
                ("Docker-Content-Digest", e.digest.clone()),
            ],
            &e.body,
        ),
        None => respond(
            &mut stream,
            "404 Not Found",
            &[("Content-Type", "application/json".into())],
            br#"{"errors":[{"code":"NOT_FOUND","message":"not here"}]}"#,
        ),
    }
}
