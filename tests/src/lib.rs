//! Harness for black-box tests: start the real `quarry-registry` binary on
//! a free loopback port, find the third-party tools `make tools-test`
//! built, and run them with their output kept for failure messages.

pub mod bench_options;
pub mod browser;
pub mod clients;
pub mod cluster;
pub mod conformance;
pub mod http;
pub mod kube;
pub mod oci;
pub mod scale;
pub mod secure;
pub mod uploads;
pub mod upstreams;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The workspace root (tests run from `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a third-party tool, from `QUARRY_TOOL_<NAME>` (set by
/// `eval "$(hack/tools.sh env)"`, which `make test-e2e` does). A missing
/// tool fails the test: CI must never pass by skipping.
pub fn tool(name: &str) -> PathBuf {
    let var = format!("QUARRY_TOOL_{}", name.to_uppercase().replace('-', "_"));
    match std::env::var_os(&var) {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "{var} is not set: run the tests with `make test-e2e` (it builds the tools with `make tools-test`)"
        ),
    }
}

/// Path of the registry binary under test (built by `make test-e2e`).
pub fn registry_binary() -> PathBuf {
    let path = std::env::var_os("QUARRY_REGISTRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/quarry-registry"));
    assert!(
        path.exists(),
        "{} does not exist: run `cargo build -p quarry-registry` first (make test-e2e does)",
        path.display()
    );
    path
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running registry process with its own storage directory.
pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    pub data: PathBuf,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// Pass `--storage-path` (a private folder); false when the config
    /// names shared storage.
    local_storage: bool,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Start with the default configuration.
    pub fn start() -> Registry {
        Self::start_with_config(None)
    }

    /// Start with a config file holding `yaml`.
    pub fn start_with_config(yaml: Option<&str>) -> Registry {
        Self::start_with(yaml, &[])
    }

    /// Start with a config file and extra environment for the process.
    pub fn start_with(yaml: Option<&str>, env: &[(&str, &str)]) -> Registry {
        Self::start_full(yaml, env, true)
    }

    /// Start with the storage the config file names (no `--storage-path`),
    /// e.g. a bucket several registries share.
    pub fn start_shared(yaml: &str, env: &[(&str, &str)]) -> Registry {
        Self::start_full(Some(yaml), env, false)
    }

    fn start_full(yaml: Option<&str>, env: &[(&str, &str)], local_storage: bool) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let config = yaml.map(|y| {
            let p = dir.path().join("config.yaml");
            std::fs::write(&p, y).expect("write config");
            p
        });
        let log = dir.path().join("registry.log");
        let mut registry = Registry {
            child: None,
            port: free_port(),
            data,
            config,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log,
            local_storage,
            _dir: dir,
        };
        registry.spawn().expect("registry starts");
        registry
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(registry_binary());
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .stdout(Stdio::null())
            .stderr(log);
        if self.local_storage {
            cmd.arg("--storage-path").arg(&self.data);
        }
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        // wait_ready reads the "listening on" line, logged at info.
        cmd.env("RUST_LOG", "info");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        self.child = Some(cmd.spawn().context("spawn quarry-registry")?);
        self.wait_ready(Duration::from_secs(20))
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("registry exited with {status}; log:\n{}", self.log_text());
            }
            // Our process says it listens (not just anything on the port:
            // another process may have taken a port free_port handed out).
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.log_text().contains("listening on")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "registry not listening after {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The sum of the `/metrics` samples whose line starts with `name`
    /// (0 when none, or when the registry does not answer).
    pub fn metric(&self, name: &str) -> f64 {
        let text = http::blocking()
            .get(format!("{}/metrics", self.url()))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL the process: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM the process and wait (up to `timeout`) for it to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Replace the config file's content (atomically, as a Secret update does).
    pub fn write_config(&self, yaml: &str) {
        let path = self
            .config
            .as_ref()
            .expect("registry started with a config file");
        let staging = path.with_extension("new");
        std::fs::write(&staging, yaml).expect("write config");
        std::fs::rename(&staging, path).expect("replace config");
    }

    /// Send a signal (e.g. "HUP") to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("registry running");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Start again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn().expect("registry restarts");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `out`, or a failure naming the command with its full output.
fn succeeded(shown: &str, out: Output) -> Output {
    if !out.status.success() {
        panic!(
            "{shown} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Run a command; fail with its full output when it does not succeed.
pub fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    succeeded(&shown, out)
}

/// Run a command with `input` on its standard input; fail with its full
/// output when it does not succeed.
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write to {shown}: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    succeeded(&shown, out)
}

/// Run a command that must fail; its whole output (stdout then stderr).
pub fn run_refused(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{shown} was accepted:\n{text}");
    text
}

/// Run a command and return its stdout as text.
pub fn run_text(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// sha256 of bytes, as `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
