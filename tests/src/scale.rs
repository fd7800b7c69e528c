//! Scale-out harness: MinIO (built by `make tools-test`) on loopback with a
//! bucket, registry replicas sharing it, and nginx as a round-robin load
//! balancer in front of them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Registry, free_port, tool};

pub const MINIO_USER: &str = "quarry-test";
pub const MINIO_PASSWORD: &str = "quarry-test-secret";

/// A MinIO server with one bucket.
pub struct Minio {
    child: Child,
    pub port: u16,
    console: u16,
    pub bucket: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

fn spawn_minio(dir: &std::path::Path, port: u16, console: u16, log: &PathBuf) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("minio log");
    Command::new(tool("minio"))
        .args(["server", "--quiet", "--address"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--console-address")
        .arg(format!("127.0.0.1:{console}"))
        .arg(dir.join("data"))
        .env("MINIO_ROOT_USER", MINIO_USER)
        .env("MINIO_ROOT_PASSWORD", MINIO_PASSWORD)
        .env("MINIO_BROWSER", "off")
        .env("MINIO_UPDATE", "off")
        .env("HOME", dir)
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("start minio")
}

impl Minio {
    pub fn start(bucket: &str) -> Minio {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let console = free_port();
        let log = dir.path().join("minio.log");
        let child = spawn_minio(dir.path(), port, console, &log);
        let minio = Minio {
            child,
            port,
            console,
            bucket: bucket.to_string(),
            log,
            _dir: dir,
        };
        minio.wait_ready();
        minio.create_bucket();
        minio
    }

    /// SIGKILL MinIO (its data stays).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start MinIO again on the same port and data after `kill9`.
    pub fn start_again(&mut self) {
        self.child = spawn_minio(self._dir.path(), self.port, self.console, &self.log);
        self.wait_ready();
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/minio/health/ready", self.endpoint());
        loop {
            if crate::http::blocking()
                .get(&url)
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "MinIO not ready after 30 s:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Create the bucket; MinIO may answer 503 "not initialized" for a
    /// moment after its health endpoint says ready, so that is retried.
    fn create_bucket(&self) {
        let (bucket, credentials) = self.bucket();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = rusty_s3::S3Action::sign(
                &bucket.create_bucket(&credentials),
                Duration::from_secs(60),
            );
            let response = crate::http::blocking()
                .put(url)
                .send()
                .expect("create bucket");
            let status = response.status();
            if status.is_success() {
                return;
            }
            let body = response.text().unwrap_or_default();
            assert!(
                status == reqwest::StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline,
                "create bucket: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn bucket(&self) -> (rusty_s3::Bucket, rusty_s3::Credentials) {
        let endpoint = url::Url::parse(&self.endpoint()).expect("endpoint URL");
        let bucket = rusty_s3::Bucket::new(
            endpoint,
            rusty_s3::UrlStyle::Path,
            self.bucket.clone(),
            "us-east-1",
        )
        .expect("bucket");
        (
            bucket,
            rusty_s3::Credentials::new(MINIO_USER, MINIO_PASSWORD),
        )
    }

    /// The content of one object.
    pub fn get(&self, key: &str) -> Vec<u8> {
        let (bucket, credentials) = self.bucket();
        let action = bucket.get_object(Some(&credentials), key);
        let url = rusty_s3::S3Action::sign(&action, Duration::from_secs(60));
        let response = crate::http::blocking().get(url).send().expect("get object");
        assert!(
            response.status().is_success(),
            "get {key}: {}",
            response.status()
        );
        response.bytes().expect("object").to_vec()
    }

    /// The content of one object, or `None` when it is not there (404).
    pub fn get_if_present(&self, key: &str) -> Option<Vec<u8>> {
        let (bucket, credentials) = self.bucket();
        let action = bucket.get_object(Some(&credentials), key);
        let url = rusty_s3::S3Action::sign(&action, Duration::from_secs(60));
        let response = crate::http::blocking().get(url).send().expect("get object");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "get {key}: {}",
            response.status()
        );
        Some(response.bytes().expect("object").to_vec())
    }

    /// Objects in the bucket under `prefix` (a listing through S3, every
    /// page of it).
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let (bucket, credentials) = self.bucket();
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = bucket.list_objects_v2(Some(&credentials));
            action.with_prefix(prefix);
            if let Some(token) = &token {
                action.with_continuation_token(token.clone());
            }
            let url = rusty_s3::S3Action::sign(&action, Duration::from_secs(60));
            let text = crate::http::blocking()
                .get(url)
                .send()
                .expect("list objects")
                .text()
                .expect("listing");
            let listing = rusty_s3::actions::ListObjectsV2::parse_response(&text).expect("parse");
            keys.extend(listing.contents.into_iter().map(|o| o.key));
            match listing.next_continuation_token {
                Some(next) => token = Some(next),
                None => return keys,
            }
        }
    }

    /// Whether the multipart upload `upload_id` to `key` is still open (S3
    /// answers ListParts with NoSuchUpload once it was completed or aborted).
    pub fn multipart_upload_open(&self, key: &str, upload_id: &str) -> bool {
        let (bucket, credentials) = self.bucket();
        let action = bucket.list_parts(Some(&credentials), key, upload_id);
        let url = rusty_s3::S3Action::sign(&action, Duration::from_secs(60));
        let response = crate::http::blocking().get(url).send().expect("list parts");
        match response.status().as_u16() {
            200 => true,
            404 => false,
            status => panic!(
                "list parts of {key}: {status} {}",
                response.text().unwrap_or_default()
            ),
        }
    }

    /// The registry config for this bucket (Quay's S3Storage shape).
    pub fn registry_config(&self, extra: &str) -> String {
        format!(
            "DISTRIBUTED_STORAGE_CONFIG:\n  s3:\n    - S3Storage\n    - host: 127.0.0.1\n      port: {}\n      is_secure: false\n      s3_bucket: {}\n      storage_path: /registry\n      s3_access_key: {MINIO_USER}\n      s3_secret_key: {MINIO_PASSWORD}\nDISTRIBUTED_STORAGE_PREFERENCE: [s3]\n{extra}",
            self.port, self.bucket
        )
    }
}

impl Drop for Minio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx balancing round-robin over registries, request by request.
pub struct LoadBalancer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl LoadBalancer {
    pub fn start(backends: &[u16]) -> LoadBalancer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let d = dir.path().display();
        let servers: String = backends
            .iter()
            .map(|p| format!("    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  log_format upstreams '$request_method $status $upstream_addr';
  access_log {d}/access.log upstreams;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream registries {{
{servers}    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_http_version 1.1;
    location / {{
      proxy_pass http://registries;
      proxy_set_header Host $http_host;
      proxy_set_header Connection "";
      proxy_read_timeout 300s;
    }}
  }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let child = Command::new(tool("nginx"))
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        LoadBalancer { child, port, dir }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Which backend ports served requests (from nginx's access log).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` registry replicas on one bucket.
pub fn replicas(minio: &Minio, n: usize, extra: &str) -> Vec<Registry> {
    (0..n)
        .map(|_| Registry::start_shared(&minio.registry_config(extra), &[]))
        .collect()
}
