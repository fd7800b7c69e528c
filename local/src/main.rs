//! `make run`: the whole product on this machine. A local control plane
//! (etcd, kube-apiserver, controller manager, scheduler, kwok), the CRD,
//! the operator, the minimal example QuarryRegistry, and the registry
//! process running the configuration the operator rendered — kept in step
//! with the Secret, so editing the resource changes the registry's policy.
//! Ctrl-C stops everything.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use quarry_e2e::cluster::ControlPlane;
use quarry_e2e::workspace_root;

const NAMESPACE: &str = "default";
const NAME: &str = "registry";

fn kubectl(cp: &ControlPlane, args: &[&str]) -> anyhow::Result<String> {
    cp.kubectl_out(args)
}

fn rendered_config(cp: &ControlPlane) -> anyhow::Result<String> {
    let b64 = kubectl(
        cp,
        &[
            "get",
            "-n",
            NAMESPACE,
            &format!("secret/{NAME}-config"),
            "-o",
            "jsonpath={.data.config\\.yaml}",
        ],
    )?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim())?;
    Ok(String::from_utf8(bytes)?)
}

fn main() -> anyhow::Result<()> {
    let listen = std::env::var("QUARRY_LISTEN").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let data =
        PathBuf::from(std::env::var("QUARRY_DATA").unwrap_or_else(|_| "./quarry-data".into()));
    let started = Instant::now();
    eprintln!(
        "starting the local control plane (etcd, kube-apiserver, controller manager, scheduler, kwok)…"
    );
    let mut cp = ControlPlane::start()?;
    let root = workspace_root();
    cp.install_crd()?;
    cp.create_volume("local-pv")?;
    let mut operator = Command::new(root.join("target/debug/quarry-operator"));
    operator
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info,kube=warn");
    cp.start_process("operator", operator)?;
    kubectl(
        &cp,
        &[
            "apply",
            "-n",
            NAMESPACE,
            "-f",
            root.join("deploy/examples/minimal.yaml")
                .to_str()
                .unwrap_or_default(),
        ],
    )?;

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = kubectl(
            &cp,
            &[
                "get",
                "-n",
                NAMESPACE,
                &format!("qreg/{NAME}"),
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
        .unwrap_or_default();
        if ready == "True" {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the QuarryRegistry did not become Ready\n{}",
                cp.logs("operator")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // The registry runs here as the pod would: the operator's rendered
    // config and the Secrets the Deployment mounts (accounts, token key,
    // serving certificate) written to a local folder; storage is
    // redirected to a local folder (the pod's volume path is not ours).
    let pod_dir = cp.dir().join("registry-pod");
    let mut files = cp.pod_files(NAMESPACE, NAME, &pod_dir)?;
    let config_path = cp.dir().join("registry-config.yaml");
    let mut config = rendered_config(&cp)?;
    std::fs::write(&config_path, files.rewrite(&config))?;
    let mut registry = Command::new(root.join("target/debug/quarry-registry"));
    registry
        .arg("--config")
        .arg(&config_path)
        .args(["--listen", &listen])
        .arg("--storage-path")
        .arg(&data)
        .args(["--reload-interval-seconds", "1"])
        .envs(files.registry_env());
    cp.start_process("registry", registry)
        .context("starting quarry-registry")?;

    let kubeconfig = cp.kubeconfig.display().to_string();
    let scheme = files.scheme();
    println!();
    println!("Quarry is running ({:.0?}).", started.elapsed());
    println!(
        "  registry:    {scheme}://{listen}   (data in {})",
        data.display()
    );
    println!("  kubeconfig:  {kubeconfig}");
    if let Some(ca) = &files.ca_file {
        println!(
            "  CA:          {}   (ConfigMap {NAME}-registry-ca, key ca.crt)",
            ca.display()
        );
    }
    if let Some((user, password)) = &files.admin {
        println!("  admin:       {user} / {password}   (Secret {NAME}-registry-credentials)");
    }
    if let Some((user, password)) = &files.robot {
        println!("  robot:       {user} / {password}   (pull only)");
    }
    println!();
    // The clients live in the tool cache; say how to reach them.
    let mut dirs: Vec<String> = [
        "QUARRY_TOOL_KUBECTL",
        "QUARRY_TOOL_HELM",
        "QUARRY_TOOL_ORAS",
    ]
    .iter()
    .filter_map(std::env::var_os)
    .filter_map(|p| PathBuf::from(p).parent().map(|d| d.display().to_string()))
    .collect();
    dirs.dedup();
    println!("Try, from another shell:");
    println!("  export KUBECONFIG={kubeconfig}");
    println!(
        "  export PATH={}:$PATH   # kubectl, helm, oras from the tool cache",
        dirs.join(":")
    );
    if std::env::var_os("QUARRY_TOOL_HELM").is_none() {
        println!("  # helm and oras are built by `make tools-test` (make test does it)");
    }
    println!("  kubectl get qreg                      # Ready, endpoint, version");
    println!("  kubectl describe qreg {NAME}          # conditions and events");
    let (tls_flag, oras_tls) = match &files.ca_file {
        Some(ca) => (
            format!("--ca-file {}", ca.display()),
            format!("--ca-file {}", ca.display()),
        ),
        None => ("--plain-http".to_string(), "--plain-http".to_string()),
    };
    if let Some((user, password)) = &files.admin {
        println!("  helm registry login {listen} {tls_flag} -u {user} -p {password}");
        println!("  oras login {listen} {oras_tls} -u {user} -p {password}");
    }
    println!(
        "  helm create demo && helm package demo && helm push demo-0.1.0.tgz oci://{listen}/charts {tls_flag}"
    );
    println!(
        "  kubectl patch qreg {NAME} --type merge -p '{{\"spec\":{{\"features\":{{\"helm\":false}}}}}}'"
    );
    println!("  # …and the same helm push is now refused, naming FEATURE_HELM_OCI_SUPPORT");
    println!("  oras push {oras_tls} {listen}/demo/notes:v1 README.md:text/plain");
    if let (Some(cert_dir), Some((user, password))) = (&files.cert_dir, &files.admin) {
        println!(
            "  skopeo login --cert-dir {} -u {user} -p {password} {listen}",
            cert_dir.display()
        );
    }
    println!();
    println!(
        "Ctrl-C stops everything. Component logs: {}",
        cp.dir().display()
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc_on(move || stop.store(true, std::sync::atomic::Ordering::SeqCst))?;
    }
    // Keep the local registry's files in step with the Secrets (config,
    // accounts, certificate), as the kubelet does for the pod.
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
        if let Ok(refreshed) = cp.pod_files(NAMESPACE, NAME, &pod_dir) {
            files = refreshed;
        }
        if let Ok(now) = rendered_config(&cp)
            && now != config
        {
            let staging = config_path.with_extension("new");
            std::fs::write(&staging, files.rewrite(&now))?;
            std::fs::rename(&staging, &config_path)?;
            eprintln!("the operator rendered a new configuration; the registry reloads it");
            config = now;
        }
    }
    eprintln!("stopping…");
    drop(cp);
    Ok(())
}

/// Run `f` on SIGINT or SIGTERM.
fn ctrlc_on(f: impl Fn() + Send + 'static) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        });
        f();
    });
    Ok(())
}
