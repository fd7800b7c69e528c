//! Operator benchmark (part of `make bench`): time from creating a
//! QuarryRegistry to Ready, 100 resources in 100 namespaces converging,
//! the operator's peak RSS, and writes caused by a no-op resync. Prints a
//! Markdown section on stdout.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use quarry_e2e::cluster::ControlPlane;
use quarry_e2e::{free_port, workspace_root};

const COUNT: usize = 100;

fn kubectl(cp: &ControlPlane, args: &[&str]) -> anyhow::Result<String> {
    cp.kubectl_out(args)
}

fn cr(ns: &str) -> String {
    format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: registry, namespace: {ns}}}\nspec:\n  components:\n  - {{kind: storage, managed: false}}\n"
    )
}

fn ready_count(cp: &ControlPlane) -> usize {
    kubectl(cp, &["get", "qreg", "-A", "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}"])
        .map(|s| s.lines().filter(|l| *l == "True").count())
        .unwrap_or(0)
}

/// resourceVersion of every object the operator touches.
fn versions(cp: &ControlPlane) -> anyhow::Result<BTreeMap<String, String>> {
    let out = kubectl(
        cp,
        &[
            "get",
            "qreg,deployments,services,serviceaccounts,secrets",
            "-A",
            "-l",
            "app.kubernetes.io/managed-by=quarry-operator",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name} {.metadata.resourceVersion}{\"\\n\"}{end}",
        ],
    )?;
    let crs = kubectl(
        cp,
        &[
            "get",
            "qreg",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name} {.metadata.resourceVersion}{\"\\n\"}{end}",
        ],
    )?;
    Ok(out
        .lines()
        .chain(crs.lines())
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect())
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if f() {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what}: not after {timeout:?}")
}

fn main() -> anyhow::Result<()> {
    let mut cp = ControlPlane::start()?;
    let root = workspace_root();
    cp.install_crd()?;
    let operator_bin = root.join("target/release/quarry-operator");
    let start_operator = |cp: &mut ControlPlane| -> anyhow::Result<u32> {
        let mut cmd = Command::new(&operator_bin);
        cmd.args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
            .env("RUST_LOG", "warn");
        cp.start_process("operator", cmd)
    };
    let pid = start_operator(&mut cp)?;

    // One resource, alone.
    kubectl(&cp, &["create", "namespace", "single"])?;
    let single = Instant::now();
    cp.apply_yaml(&cr("single"))?;
    wait("single Ready", Duration::from_secs(120), || {
        ready_count(&cp) == 1
    })?;
    let single_ready = single.elapsed();

    // 100 resources in 100 namespaces, created at once.
    let mut yaml = String::new();
    for i in 0..COUNT {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: bench-{i}}}\n---\n"
        ));
    }
    cp.apply_yaml(&yaml)?;
    let mut crs = String::new();
    for i in 0..COUNT {
        crs.push_str(&cr(&format!("bench-{i}")));
        crs.push_str("---\n");
    }
    let many = Instant::now();
    cp.apply_yaml(&crs)?;
    wait("100 Ready", Duration::from_secs(300), || {
        ready_count(&cp) == COUNT + 1
    })?;
    let many_ready = many.elapsed();
    let peak = peak_rss_kib(pid);

    // No-op resync: restart the operator (a full resync of everything) and
    // count objects whose resourceVersion moved.
    std::thread::sleep(Duration::from_secs(3));
    let before = versions(&cp)?;
    cp.stop_process("operator");
    start_operator(&mut cp)?;
    std::thread::sleep(Duration::from_secs(15));
    let after = versions(&cp)?;
    let changed = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .count();

    println!("## Operator");
    println!();
    println!(
        "Local control plane (tests/src/cluster.rs: etcd, kube-apiserver v1.37.2, controller manager, scheduler, one kwok node), release operator binary, storage unmanaged (no volume provisioner here)."
    );
    println!();
    println!("| measure | result | target |");
    println!("|---|---|---|");
    println!(
        "| one QuarryRegistry: create -> Ready | {:.1} s | |",
        single_ready.as_secs_f64()
    );
    println!(
        "| {COUNT} QuarryRegistries in {COUNT} namespaces: create -> all Ready | {:.1} s | < 60 s |",
        many_ready.as_secs_f64()
    );
    println!(
        "| operator peak RSS during that | {:.1} MiB | < 64 MiB |",
        peak as f64 / 1024.0
    );
    println!(
        "| objects written by a full no-op resync (operator restart, {} objects watched) | {changed} | 0 |",
        before.len()
    );
    Ok(())
}
