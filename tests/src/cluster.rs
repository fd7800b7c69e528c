//! A real Kubernetes control plane on loopback for tests and `make run`:
//! etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
//! (one simulated node whose pods become Running and Ready), built by
//! `make tools-k8s`. Everything stops when the `ControlPlane` is dropped,
//! and — through PR_SET_PDEATHSIG — when the thread that started it ends
//! (the kernel ties the signal to the spawning thread, not the process: a
//! test's thread, so a panicking or killed test leaves nothing running).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{Registry, free_port, tool};

pub struct ControlPlane {
    dir: tempfile::TempDir,
    children: Vec<Component>,
    pub kubeconfig: PathBuf,
    pub api_port: u16,
}

/// A process of the control plane (or one a test started beside it).
struct Component {
    name: String,
    child: Child,
    /// Its command line, to start it again the same (`revive`).
    cmd: Command,
}

/// Make `cmd`'s processes die when the thread that starts them ends.
fn tie_to_thread(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork
    // and exec here.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Start `cmd` with its output appended to `log`.
fn spawn_logged(cmd: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    cmd.spawn().with_context(|| format!("starting {cmd:?}"))
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{what} not ready after {timeout:?}")
}

const NODE_YAML: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "500"}
  capacity: {cpu: "32", memory: 256Gi, pods: "500"}
"#;

impl ControlPlane {
    /// Start etcd, the API server and the rest. A port `free_port` handed
    /// out can be taken by another test before etcd or the API server binds
    /// it; such a start is made again, on new ports, up to twice.
    pub fn start() -> anyhow::Result<ControlPlane> {
        let mut retries = 2;
        loop {
            match Self::start_once() {
                Err(e) if retries > 0 && format!("{e:#}").contains("address already in use") => {
                    retries -= 1;
                    eprintln!(
                        "control plane: a port was taken meanwhile; starting again on new ports"
                    );
                }
                other => return other,
            }
        }
    }

    fn start_once() -> anyhow::Result<ControlPlane> {
        let dir = tempfile::Builder::new()
            .prefix("quarry-cluster-")
            .tempdir()?;
        let root = dir.path().to_path_buf();
        let mut cp = ControlPlane {
            dir,
            children: Vec::new(),
            kubeconfig: root.join("kubeconfig"),
            api_port: free_port(),
        };
        let certs = root.join("certs");
        std::fs::create_dir_all(&certs)?;
        let sa_key = root.join("sa.key");
        let sa_pub = root.join("sa.pub");
        for args in [
            vec![
                "genrsa",
                "-out",
                sa_key.to_str().unwrap_or_default(),
                "2048",
            ],
            vec![
                "rsa",
                "-in",
                sa_key.to_str().unwrap_or_default(),
                "-pubout",
                "-out",
                sa_pub.to_str().unwrap_or_default(),
            ],
        ] {
            let st = Command::new("openssl")
                .args(&args)
                .stderr(Stdio::null())
                .status()?;
            anyhow::ensure!(st.success(), "openssl {args:?} failed");
        }
        let token = format!("quarry-{:x}", rand::random::<u64>());
        std::fs::write(
            root.join("tokens.csv"),
            format!("{token},admin,admin,\"system:masters\"\n"),
        )?;

        let etcd_port = free_port();
        let mut etcd = Command::new(tool("etcd"));
        etcd.arg("--data-dir")
            .arg(root.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!(
                "--listen-peer-urls=http://127.0.0.1:{}",
                free_port()
            ))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=error");
        cp.spawn("etcd", etcd)?;

        let mut api = Command::new(tool("kube-apiserver"));
        api.arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--secure-port={}", cp.api_port))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            // Loopback cannot be published as the kubernetes Service endpoint.
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--cert-dir={}", certs.display()))
            .arg(format!(
                "--token-auth-file={}",
                root.join("tokens.csv").display()
            ))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", sa_pub.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key.display()
            ))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--allow-privileged=true")
            .arg("--v=0");
        cp.spawn("kube-apiserver", api)?;

        std::fs::write(
            &cp.kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:{}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: local\n  context: {{cluster: local, user: admin}}\ncurrent-context: local\n",
                cp.api_port
            ),
        )?;
        cp.wait_api_ready(Duration::from_secs(90))?;

        let mut kcm = Command::new(tool("kube-controller-manager"));
        kcm.arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
            .arg(format!(
                "--service-account-private-key-file={}",
                sa_key.display()
            ))
            .arg(format!(
                "--root-ca-file={}",
                certs.join("apiserver.crt").display()
            ))
            .arg("--leader-elect=false")
            .arg("--use-service-account-credentials=false")
            .arg("--secure-port=0")
            .arg("--concurrent-deployment-syncs=10")
            .arg("--concurrent-replicaset-syncs=10")
            .arg("--v=0");
        cp.spawn("kube-controller-manager", kcm)?;
        let mut sched = Command::new(tool("kube-scheduler"));
        sched
            .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
            .arg("--leader-elect=false")
            .arg("--secure-port=0")
            .arg("--v=0");
        cp.spawn("kube-scheduler", sched)?;
        let kwok_bin = tool("kwok");
        let stages = kwok_bin.with_file_name("stages.yaml");
        let mut kwok = Command::new(&kwok_bin);
        kwok.arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
            .arg(format!("--config={}", stages.display()))
            .arg("--manage-all-nodes=false")
            .arg("--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake")
            // Pod and node addresses on loopback: the operator connects to
            // ready pods (their GC journals), and such connections must
            // not leave this machine.
            .arg("--cidr=127.1.0.0/16")
            .arg("--node-ip=127.1.0.1");
        cp.spawn("kwok", kwok)?;

        cp.apply_yaml(NODE_YAML)?;
        wait_for("the kwok node", Duration::from_secs(60), || {
            cp.kubectl()
                .args([
                    "get",
                    "node",
                    "kwok-node-0",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ])
                .output()
                .map(|o| o.stdout == b"True")
                .unwrap_or(false)
        })
        .with_context(|| cp.logs("kwok"))?;
        wait_for(
            "the default service account",
            Duration::from_secs(60),
            || {
                cp.kubectl()
                    .args(["get", "serviceaccount", "default", "-n", "default"])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            },
        )
        .with_context(|| cp.logs("kube-controller-manager"))?;
        Ok(cp)
    }

    /// Whichever of etcd and the API server is no longer running, if any.
    fn exited(&mut self) -> Option<String> {
        for c in self.children.iter_mut() {
            if matches!(c.name.as_str(), "etcd" | "kube-apiserver")
                && !matches!(c.child.try_wait(), Ok(None))
            {
                return Some(c.name.clone());
            }
        }
        None
    }

    /// Wait until the API server answers /readyz (which checks etcd too);
    /// fail at once when etcd or the API server exits meanwhile.
    fn wait_api_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let mut gone = None;
        wait_for("kube-apiserver", timeout, || {
            gone = self.exited();
            gone.is_some()
                || self
                    .kubectl()
                    .args(["get", "--raw", "/readyz"])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
        })
        .with_context(|| self.logs("kube-apiserver"))?;
        if let Some(name) = gone {
            bail!("{name} exited\n{}", self.logs(&name));
        }
        Ok(())
    }

    fn spawn(&mut self, name: &str, mut cmd: Command) -> anyhow::Result<()> {
        tie_to_thread(&mut cmd);
        let child = spawn_logged(&mut cmd, &self.log_path(name))?;
        self.children.push(Component {
            name: name.to_string(),
            child,
            cmd,
        });
        Ok(())
    }

    fn component(&mut self, name: &str) -> anyhow::Result<&mut Component> {
        self.children
            .iter_mut()
            .find(|c| c.name == name)
            .with_context(|| format!("no component {name}"))
    }

    /// SIGKILL component `name` (etcd, kube-apiserver, an operator started
    /// with `start_process`); it stays known, for `revive`.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let c = self.component(name)?;
        // An error only means it has exited already.
        let _ = c.child.kill();
        c.child.wait()?;
        Ok(())
    }

    /// Start killed component `name` again with the command line it had
    /// (the same ports, etcd the same data dir), its log appended; after
    /// etcd or the API server, wait until the API server is ready again.
    pub fn revive(&mut self, name: &str) -> anyhow::Result<()> {
        let log = self.log_path(name);
        let c = self.component(name)?;
        if c.child.try_wait()?.is_none() {
            bail!("{name} is still running");
        }
        c.child = spawn_logged(&mut c.cmd, &log)?;
        if matches!(name, "etcd" | "kube-apiserver") {
            self.wait_api_ready(Duration::from_secs(90))?;
        }
        Ok(())
    }

    /// `kill` then `revive`.
    pub fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        self.kill(name)?;
        self.revive(name)
    }

    /// Whether component `name` is running (false once it has exited).
    pub fn running(&mut self, name: &str) -> bool {
        self.component(name)
            .is_ok_and(|c| matches!(c.child.try_wait(), Ok(None)))
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// The last lines of a component's log (for failure messages).
    pub fn logs(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {name} log (tail)\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// Poll `holds` every 100 ms until it is true and return how long that
    /// took; after `timeout`, fail naming `what`, with the tails of the
    /// operator's and the controller manager's logs.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut holds: impl FnMut() -> bool,
    ) -> Duration {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if holds() {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{what}: not after {timeout:?}\n{}\n{}",
            self.logs("operator"),
            self.logs("kube-controller-manager")
        );
    }

    /// Folder for files that live as long as the control plane.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// kubectl against this control plane.
    pub fn kubectl(&self) -> Command {
        let mut c = Command::new(tool("kubectl"));
        c.env("KUBECONFIG", &self.kubeconfig)
            .arg("--request-timeout=20s");
        c
    }

    /// Run kubectl; its stdout, or an error with its stderr.
    pub fn kubectl_out(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.kubectl().args(args).output()?;
        if !out.status.success() {
            bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A kubeconfig for a ServiceAccount (a TokenRequest token), to run a
    /// process with exactly the rights RBAC grants it.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<PathBuf> {
        let token =
            self.kubectl_out(&["create", "token", name, "-n", namespace, "--duration=2h"])?;
        let path = self.dir().join(format!("kubeconfig-{namespace}-{name}"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:{}\n    insecure-skip-tls-verify: true\nusers:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: local\n  context: {{cluster: local, user: sa, namespace: {namespace}}}\ncurrent-context: local\n",
                self.api_port,
                token.trim()
            ),
        )?;
        Ok(path)
    }

    /// Install a minimal CRD standing in for another project's API (an
    /// OpenShift Route, a Prometheus Operator ServiceMonitor): any object
    /// of that kind is accepted, so code that needs the API can run.
    pub fn install_stand_in_crd(
        &self,
        group: &str,
        kind: &str,
        plural: &str,
    ) -> anyhow::Result<()> {
        self.apply_yaml(&format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {plural}.{group}}}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: {kind}, plural: {plural}}}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}\n"
        ))?;
        self.kubectl_out(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{plural}.{group}"),
            "--timeout=30s",
        ])?;
        Ok(())
    }

    /// A hostPath PersistentVolume (no class) for a claim to bind to: the
    /// local control plane has no volume provisioner.
    pub fn create_volume(&self, name: &str) -> anyhow::Result<()> {
        self.apply_yaml(&format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  capacity: {{storage: 20Gi}}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Delete\n  storageClassName: \"\"\n  hostPath: {{path: {}}}\n",
            self.dir().join("volumes").join(name).display()
        ))?;
        Ok(())
    }

    /// Install the QuarryRegistry CRD from crds/ and wait until it is served.
    pub fn install_crd(&self) -> anyhow::Result<()> {
        let crd = crate::workspace_root().join("crds/quarryregistries.quarry.dev.yaml");
        self.kubectl_out(&["apply", "-f", &crd.display().to_string()])?;
        self.kubectl_out(&[
            "wait",
            "--for=condition=Established",
            "crd/quarryregistries.quarry.dev",
            "--timeout=30s",
        ])?;
        Ok(())
    }

    /// `kubectl apply -f -` with `yaml`.
    pub fn apply_yaml(&self, yaml: &str) -> anyhow::Result<String> {
        use std::io::Write;
        let mut child = self
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(yaml.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl apply failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Start a process tied to the control plane's lifetime (an operator).
    pub fn start_process(&mut self, name: &str, cmd: Command) -> anyhow::Result<u32> {
        let admin = self.kubeconfig.clone();
        self.start_process_with(name, cmd, &admin)
    }

    /// Like `start_process`, with another identity's kubeconfig.
    pub fn start_process_with(
        &mut self,
        name: &str,
        mut cmd: Command,
        kubeconfig: &Path,
    ) -> anyhow::Result<u32> {
        cmd.env("KUBECONFIG", kubeconfig);
        self.spawn(name, cmd)?;
        Ok(self
            .children
            .last()
            .map(|c| c.child.id())
            .unwrap_or_default())
    }

    /// Stop a process started with `start_process`.
    pub fn stop_process(&mut self, name: &str) {
        if let Some(pos) = self.children.iter().position(|c| c.name == name) {
            let mut c = self.children.remove(pos);
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Reverse order: clients first, etcd last.
        while let Some(mut c) = self.children.pop() {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
    }
}

/// What a registry process on this machine needs to stand in for the pod
/// of a QuarryRegistry: the Secrets its Deployment mounts, written to a
/// folder as the kubelet would, the rendered config with the pod's paths
/// pointed there, and what clients need (the CA, the generated accounts).
pub struct PodFiles {
    pub dir: PathBuf,
    /// The rendered config.yaml, paths rewritten to `dir`.
    pub config: String,
    /// Serving certificate and key, when the registry serves HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The CA of the managed tls component (from its ConfigMap), and a
    /// folder holding it as `ca.crt` (skopeo/podman `--cert-dir`).
    pub ca_file: Option<PathBuf>,
    pub cert_dir: Option<PathBuf>,
    /// Generated accounts (from the credentials Secret): (name, password).
    pub admin: Option<(String, String)>,
    pub robot: Option<(String, String)>,
}

/// The pod's folders (the operator's layout) and their local stand-ins.
const POD_DIRS: [(&str, &str); 3] = [
    ("/etc/quarry/auth/", "auth"),
    ("/etc/quarry/tls/", "tls"),
    ("/etc/quarry/config/", "config"),
];

impl PodFiles {
    /// The environment of a registry process serving like the pod
    /// (QUARRY_TLS_CERT/KEY when it serves HTTPS).
    pub fn registry_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            env.push(("QUARRY_TLS_CERT".into(), cert.display().to_string()));
            env.push(("QUARRY_TLS_KEY".into(), key.display().to_string()));
        }
        env
    }

    /// A rendered config with the pod's paths pointed at this folder.
    pub fn rewrite(&self, config: &str) -> String {
        let mut out = config.to_string();
        for (pod, local) in POD_DIRS {
            out = out.replace(pod, &format!("{}/", self.dir.join(local).display()));
        }
        out
    }

    /// The registry process standing in for the pod: this config and
    /// environment, reloading the config file every second (so that
    /// `Registry::write_config` takes effect within seconds).
    pub fn start_registry(&self) -> Registry {
        let mut env = self.registry_env();
        env.push(("QUARRY_RELOAD_INTERVAL_SECONDS".into(), "1".into()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Registry::start_with(Some(&self.config), &env)
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Replace a file the way a Secret update does (write aside, rename);
/// nothing when the content is the same.
fn replace_file(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    let staging = path.with_extension("quarry-new");
    std::fs::write(&staging, content)?;
    std::fs::rename(&staging, path)?;
    Ok(())
}

impl ControlPlane {
    /// A Secret's data, decoded.
    pub fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<String, Vec<u8>>> {
        use base64::Engine;
        let json = self.kubectl_out(&["get", "-n", namespace, "secret", name, "-o", "json"])?;
        let secret: serde_json::Value = serde_json::from_str(&json)?;
        let mut data = std::collections::BTreeMap::new();
        if let Some(map) = secret["data"].as_object() {
            for (k, v) in map {
                let b64 = v.as_str().unwrap_or_default();
                data.insert(
                    k.clone(),
                    base64::engine::general_purpose::STANDARD.decode(b64)?,
                );
            }
        }
        Ok(data)
    }

    /// Write (or refresh) the files of the registry pod of QuarryRegistry
    /// `name` into `dir`: the Secrets its Deployment mounts (config, auth,
    /// tls), the CA ConfigMap and the generated accounts.
    pub fn pod_files(&self, namespace: &str, name: &str, dir: &Path) -> anyhow::Result<PodFiles> {
        let deployment: serde_json::Value = serde_json::from_str(&self.kubectl_out(&[
            "get",
            "-n",
            namespace,
            &format!("deployment/{name}-registry"),
            "-o",
            "json",
        ])?)?;
        let volumes = deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let secret_of = |volume: &str| {
            volumes
                .iter()
                .find(|v| v["name"] == volume)
                .and_then(|v| v["secret"]["secretName"].as_str())
                .map(str::to_string)
        };
        let mut files = PodFiles {
            dir: dir.to_path_buf(),
            config: String::new(),
            tls_cert: None,
            tls_key: None,
            ca_file: None,
            cert_dir: None,
            admin: None,
            robot: None,
        };
        for (_, local) in POD_DIRS {
            let Some(secret) = secret_of(local) else {
                continue;
            };
            let folder = dir.join(local);
            std::fs::create_dir_all(&folder)?;
            for (key, value) in self.secret_data(namespace, &secret)? {
                replace_file(&folder.join(&key), &value)?;
            }
            if local == "tls" {
                files.tls_cert = Some(folder.join("tls.crt"));
                files.tls_key = Some(folder.join("tls.key"));
            }
        }
        let config = std::fs::read_to_string(dir.join("config/config.yaml"))
            .context("the config Secret has no config.yaml")?;
        files.config = files.rewrite(&config);
        let ca = self
            .kubectl()
            .args([
                "get",
                "-n",
                namespace,
                &format!("configmap/{name}-registry-ca"),
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ])
            .output()?;
        if ca.status.success() && !ca.stdout.is_empty() {
            let cert_dir = dir.join("certs.d");
            std::fs::create_dir_all(&cert_dir)?;
            replace_file(&dir.join("ca.crt"), &ca.stdout)?;
            replace_file(&cert_dir.join("ca.crt"), &ca.stdout)?;
            files.ca_file = Some(dir.join("ca.crt"));
            files.cert_dir = Some(cert_dir);
        }
        if let Ok(credentials) =
            self.secret_data(namespace, &format!("{name}-registry-credentials"))
        {
            let get = |k: &str| {
                credentials
                    .get(k)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            files.admin = get("admin-username").zip(get("admin-password"));
            files.robot = get("robot-username").zip(get("robot-password"));
        }
        Ok(files)
    }
}
