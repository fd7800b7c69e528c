//! Operator chaos on the local control plane (issue 13, item 5): the API
//! server SIGKILLed mid-reconcile and started again, etcd SIGKILLed and
//! started again on its data, the operator SIGKILLed between apply steps
//! and started again, watches dropped. After each: every QuarryRegistry
//! converges, each namespace holds exactly the objects its live resources
//! should own (one controlling, live owner each; none left of a deleted
//! resource), one pod per resource, and a resync of everything — the
//! operator started again, or the API server restarted under its watches —
//! writes nothing.
//!
//! The operator runs as deployed: leader election on a Lease, with a fixed
//! identity (a container restarted in its pod keeps its name).
//!
//! Found by it: after the API server was away a few seconds, the
//! operator's watches came back only after about five minutes, so it saw
//! no change meanwhile (its eleven watches share one backoff, which
//! doubled once per watch); operator/src/controller.rs now pauses a
//! constant half second there.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quarry_e2e::free_port;
use quarry_e2e::kube::{Cluster, REGISTRY_IMAGE};

/// `eprintln!` after the test's name and its seconds so far (`$clock`:
/// the name and when it started).
macro_rules! say {
    ($clock:expr, $($arg:tt)*) => {
        eprintln!("{} {:5.1} s: {}", $clock.0, $clock.1.elapsed().as_secs_f64(), format!($($arg)*))
    };
}

/// The kinds the operator makes (operator/src/resources: `ObjectKind`;
/// this control plane serves no Route or ServiceMonitor API).
const OWNED_KINDS: &str = "serviceaccounts,secrets,configmaps,persistentvolumeclaims,deployments,horizontalpodautoscalers,poddisruptionbudgets,services,ingresses";

/// The label on everything the operator makes.
const OURS: &str = "app.kubernetes.io/managed-by=quarry-operator";

/// How long a repair may take once the API server is back: the owned
/// watches must have been made again (the periodic requeue of a Ready
/// resource is 300 s).
const REWATCH_BOUND: Duration = Duration::from_secs(30);

/// One QuarryRegistry of a scenario and what it should own.
#[derive(Clone, Copy)]
struct Cr {
    ns: &'static str,
    name: &'static str,
    /// Whether the storage component is managed (a PVC, bound to a PV).
    volume: bool,
}

impl Cr {
    fn yaml(&self) -> String {
        let storage = if self.volume {
            ""
        } else {
            "  components:\n  - {kind: storage, managed: false}\n"
        };
        // Sweeps off: with them on, the operator reads the sweep journals
        // from the pods' IPs, and nothing serves at kwok's (on loopback);
        // the failed reads would only add noise to the resync checks.
        format!(
            "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: {}, namespace: {}}}\nspec:\n  garbageCollection: {{enabled: false}}\n{storage}",
            self.name, self.ns
        )
    }

    /// `Kind/name` of every object the operator makes for this resource.
    fn expected(&self) -> BTreeSet<String> {
        let n = self.name;
        let mut all = vec![
            format!("ServiceAccount/{n}-registry"),
            format!("Secret/{n}-config"),
            format!("Secret/{n}-registry-credentials"),
            format!("Secret/{n}-registry-pull"),
            format!("Secret/{n}-registry-auth"),
            format!("Secret/{n}-registry-ca-key"),
            format!("Secret/{n}-registry-tls"),
            format!("ConfigMap/{n}-registry-ca"),
            format!("Deployment/{n}-registry"),
            format!("Service/{n}-registry"),
        ];
        if self.volume {
            all.push(format!("PersistentVolumeClaim/{n}-data"));
        }
        all.into_iter().collect()
    }

    fn id(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }
}

/// A control plane with the CRD, `volumes` PVs, the namespaces, and the
/// operator as process `operator` with its metrics on the returned port.
fn start(namespaces: &[&str], volumes: usize) -> (Cluster, u16) {
    let mut c = Cluster::start();
    c.cp.install_crd().expect("CRD installed");
    for i in 0..volumes {
        c.cp.create_volume(&format!("pv-{i}")).unwrap();
    }
    for ns in namespaces {
        c.create_namespace(ns);
    }
    let metrics = free_port();
    c.start_operator_with(
        "operator",
        metrics,
        &[
            "--registry-image",
            REGISTRY_IMAGE,
            "--leader-election-namespace",
            "default",
            "--identity",
            "operator-0",
        ],
    );
    (c, metrics)
}

/// Poll `check` every 200 ms until it is `Ok`; after `timeout`, fail with
/// its last complaint and the operator's log. How long it took.
fn eventually(
    c: &Cluster,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Duration {
    let started = Instant::now();
    loop {
        let last = match check() {
            Ok(()) => return started.elapsed(),
            Err(why) => why,
        };
        if started.elapsed() > timeout {
            panic!(
                "{what}: not after {timeout:?}: {last}\n{}\n{}",
                c.operator_log(),
                c.cp.logs("kube-controller-manager")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The items of `kubectl get <kinds> -n <ns> -o json [extra]`.
fn items(
    c: &Cluster,
    ns: &str,
    kinds: &str,
    extra: &[&str],
) -> Result<Vec<serde_json::Value>, String> {
    let mut args = vec!["get", kinds, "-n", ns, "-o", "json"];
    args.extend(extra);
    let json = c.cp.kubectl_out(&args).map_err(|e| e.to_string())?;
    let list: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

fn text(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Whether `ns` holds exactly what `live` should own and nothing of
/// anyone else: every object of the owned kinds that carries our label or
/// names a QuarryRegistry as owner has exactly one owner, the controlling
/// owner, a QuarryRegistry that exists, whose instance label it carries,
/// and is one of that resource's expected objects; each live resource has
/// all of its objects, and its Deployment controls as many ReplicaSets as
/// the resource's entry in `live` says (one per pod template it was
/// given), one of them scaled up, and one pod.
fn owned_exactly(c: &Cluster, ns: &str, live: &[(Cr, usize)]) -> Result<(), String> {
    let crs: BTreeMap<String, String> = items(c, ns, "quarryregistries", &[])?
        .iter()
        .map(|q| {
            (
                text(&q["metadata"]["uid"]).to_string(),
                text(&q["metadata"]["name"]).to_string(),
            )
        })
        .collect();
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in items(c, ns, OWNED_KINDS, &[])? {
        let meta = &item["metadata"];
        let id = format!("{}/{}", text(&item["kind"]), text(&meta["name"]));
        let owners = meta["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ours = text(&meta["labels"]["app.kubernetes.io/managed-by"]) == "quarry-operator";
        if !ours && !owners.iter().any(|o| o["kind"] == "QuarryRegistry") {
            continue; // the namespace's own (default ServiceAccount, root CA)
        }
        let [owner] = owners.as_slice() else {
            return Err(format!("{ns}/{id} has owners {owners:?}"));
        };
        let Some(cr) = crs.get(text(&owner["uid"])) else {
            return Err(format!(
                "{ns}/{id} is owned by {owner}, which does not exist"
            ));
        };
        if owner["kind"] != "QuarryRegistry" || owner["controller"] != true {
            return Err(format!(
                "{ns}/{id}: owner {owner} is not a controlling QuarryRegistry"
            ));
        }
        if text(&meta["labels"]["app.kubernetes.io/instance"]) != cr {
            return Err(format!("{ns}/{id} (of {cr}) has labels {}", meta["labels"]));
        }
        found.entry(cr.clone()).or_default().insert(id);
    }
    for (cr, _) in live {
        let have = found.remove(cr.name).unwrap_or_default();
        if have != cr.expected() {
            let missing: Vec<_> = cr.expected().difference(&have).cloned().collect();
            let extra: Vec<_> = have.difference(&cr.expected()).cloned().collect();
            return Err(format!("{}: missing {missing:?}, extra {extra:?}", cr.id()));
        }
    }
    if !found.is_empty() {
        return Err(format!(
            "{ns}: objects of resources not expected: {found:?}"
        ));
    }
    // What the Deployment controller made of each live Deployment. (What
    // a deleted Deployment left is the garbage collector's to remove.)
    for (cr, replica_sets) in live {
        let selector = format!("app.kubernetes.io/instance={}", cr.name);
        let deployment = c.jsonpath(
            ns,
            &format!("deployment/{}-registry", cr.name),
            "{.metadata.uid}",
        );
        let controlled_by = |o: &serde_json::Value, uid: &str| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|all| {
                    all.iter()
                        .any(|r| r["uid"] == uid && r["controller"] == true)
                })
        };
        let sets: Vec<serde_json::Value> = items(c, ns, "replicasets", &["-l", &selector])?
            .into_iter()
            .filter(|rs| controlled_by(rs, &deployment))
            .collect();
        let scaled: Vec<&str> = sets
            .iter()
            .filter(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(0) > 0)
            .map(|rs| text(&rs["metadata"]["uid"]))
            .collect();
        // ReplicaSets count by pod template. A Deployment deleted and made
        // again while the garbage collector lags (after an API server
        // restart) adopts its predecessor's ReplicaSet and, the name being
        // taken, makes a second one for the same template: two sets, one
        // template, which is Kubernetes's doing. A template the operator
        // changed is a second template.
        let mut templates: Vec<String> = sets
            .iter()
            .map(|rs| {
                let mut t = rs["spec"]["template"].clone();
                if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
                    labels.remove("pod-template-hash");
                }
                t.to_string()
            })
            .collect();
        templates.sort();
        templates.dedup();
        if templates.len() != *replica_sets || scaled.len() != 1 {
            // What set them apart: each one's revision and pod template.
            let described: Vec<String> = sets
                .iter()
                .map(|rs| {
                    format!(
                        "revision {} replicas {} template {}",
                        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
                        rs["spec"]["replicas"],
                        rs["spec"]["template"]
                    )
                })
                .collect();
            return Err(format!(
                "{}: {} ReplicaSets ({} scaled up) with {} pod templates, expected {replica_sets} (1):\n{}",
                cr.id(),
                sets.len(),
                scaled.len(),
                templates.len(),
                described.join("\n")
            ));
        }
        let pods: Vec<String> = items(c, ns, "pods", &["-l", &selector])?
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| {
                sets.iter()
                    .any(|rs| controlled_by(p, text(&rs["metadata"]["uid"])))
            })
            .map(|p| text(&p["metadata"]["name"]).to_string())
            .collect();
        if pods.len() != 1 {
            return Err(format!("{}: pods {pods:?}, expected one", cr.id()));
        }
    }
    Ok(())
}

/// Check `owned_exactly` for every namespace of `live` (waiting up to 30 s
/// for what the controllers do after the operator: ReplicaSets scaled
/// down, old pods gone).
fn assert_owned_exactly(c: &Cluster, live: &[(Cr, usize)]) {
    let namespaces: BTreeSet<&str> = live.iter().map(|(cr, _)| cr.ns).collect();
    for ns in namespaces {
        let here: Vec<(Cr, usize)> = live.iter().copied().filter(|(cr, _)| cr.ns == ns).collect();
        eventually(
            c,
            &format!("the objects of {ns}"),
            Duration::from_secs(30),
            || owned_exactly(c, ns, &here),
        );
    }
}

/// `Kind/ns/name -> resourceVersion` of the QuarryRegistries (status
/// included) and everything labelled as the operator's in `namespaces`.
fn versions(c: &Cluster, namespaces: &[&str]) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    for ns in namespaces {
        let objects = items(c, ns, "quarryregistries", &[])
            .and_then(|mut q| {
                q.extend(items(c, ns, OWNED_KINDS, &["-l", OURS])?);
                Ok(q)
            })
            .unwrap_or_else(|e| panic!("listing {ns}: {e}\n{}", c.operator_log()));
        for o in objects {
            all.insert(
                format!("{}/{ns}/{}", text(&o["kind"]), text(&o["metadata"]["name"])),
                text(&o["metadata"]["resourceVersion"]).to_string(),
            );
        }
    }
    all
}

/// The operator's counters (`quarry_operator_*`), summed over labels;
/// empty while it does not answer.
fn counters(port: u16) -> BTreeMap<String, f64> {
    let body = quarry_e2e::http::blocking()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| l.starts_with("quarry_operator_")) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = key.split('{').next().unwrap_or(key).to_string();
        *out.entry(name).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

fn counter(all: &BTreeMap<String, f64>, name: &str) -> f64 {
    all.get(&format!("quarry_operator_{name}_total"))
        .copied()
        .unwrap_or(0.0)
}

/// Wait until the operator has finished `at_least` more successful
/// reconciles than `before` counted and then none for 2 s.
fn settle(
    c: &Cluster,
    port: u16,
    before: &BTreeMap<String, f64>,
    at_least: f64,
) -> BTreeMap<String, f64> {
    let ok = |m: &BTreeMap<String, f64>| {
        m.get("quarry_operator_reconciles_total")
            .copied()
            .unwrap_or(0.0)
            - m.get("quarry_operator_reconcile_errors_total")
                .copied()
                .unwrap_or(0.0)
    };
    let base = ok(before);
    eventually(
        c,
        "the resync's reconciles",
        Duration::from_secs(60),
        || {
            let now = ok(&counters(port));
            match now - base >= at_least {
                true => Ok(()),
                false => Err(format!("{} of {at_least} reconciles", now - base)),
            }
        },
    );
    let quiet_from = Instant::now();
    let mut last = counters(port);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = counters(port);
        if counter(&now, "reconciles") == counter(&last, "reconciles") {
            return now;
        }
        assert!(
            quiet_from.elapsed() < Duration::from_secs(30),
            "the operator keeps reconciling unchanged resources: {now:?}\n{}",
            c.operator_log()
        );
        last = now;
    }
}

/// A resync of every resource (`resync` makes it happen) writes nothing:
/// no resourceVersion of a QuarryRegistry or of an owned object moves, and
/// the operator counts no status write and no delete. Returns the number
/// of reconciles the resync made.
fn assert_resync_writes_nothing(
    c: &mut Cluster,
    port: u16,
    namespaces: &[&str],
    crs: usize,
    what: &str,
    resync: impl FnOnce(&mut Cluster) -> BTreeMap<String, f64>,
) -> f64 {
    let before = versions(c, namespaces);
    let counted = resync(c);
    let after = settle(c, port, &counted, crs as f64);
    for name in ["status_writes", "orphan_deletes"] {
        assert_eq!(
            counter(&after, name),
            counter(&counted, name),
            "{what}: {name} counted during a resync of unchanged resources\n{}",
            c.operator_log()
        );
    }
    let now = versions(c, namespaces);
    let moved: Vec<String> = before
        .iter()
        .filter(|(k, v)| now.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {v} -> {:?}", now.get(k)))
        .collect();
    assert!(
        moved.is_empty() && before.len() == now.len(),
        "{what}: a resync of unchanged resources wrote: {moved:?} ({} objects before, {} after)\n{}",
        before.len(),
        now.len(),
        c.operator_log()
    );
    counter(&after, "reconciles") - counter(&counted, "reconciles")
}

/// Start the operator again after a SIGKILL; its counters start at zero.
fn restart_operator(c: &mut Cluster) -> BTreeMap<String, f64> {
    c.cp.restart("operator").unwrap();
    BTreeMap::new()
}

fn wait_all_ready(c: &Cluster, crs: &[Cr]) {
    for cr in crs {
        c.wait_ready(cr.ns, cr.name);
    }
}

fn uid(c: &Cluster, ns: &str, what: &str) -> String {
    c.jsonpath(ns, what, "{.metadata.uid}")
}

/// The operator's objects in a namespace as the API server reports them,
/// from one `kubectl get --watch` per kind it applies there: a line per
/// object listed or changed, within milliseconds (a `kubectl get` poll
/// takes longer than the operator's whole apply).
struct Changes {
    lines: mpsc::Receiver<String>,
    /// Every object seen so far.
    seen: BTreeSet<String>,
    watchers: Vec<Child>,
}

impl Changes {
    fn watch(c: &Cluster, ns: &str) -> Changes {
        let (tx, lines) = mpsc::channel();
        let mut watchers = Vec::new();
        for kind in [
            "serviceaccounts",
            "secrets",
            "configmaps",
            "persistentvolumeclaims",
            "deployments",
            "services",
        ] {
            let mut child =
                c.cp.kubectl()
                    .args(["--request-timeout=0", "get", kind, "-n", ns, "-l", OURS])
                    .args(["--watch", "-o", "name"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("kubectl get --watch");
            let out = child.stdout.take().expect("stdout");
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            watchers.push(child);
        }
        Changes {
            lines,
            seen: BTreeSet::new(),
            watchers,
        }
    }

    /// Take lines until `done` (given each line and what was seen) holds;
    /// fail after 60 s naming `what`.
    fn until(
        &mut self,
        c: &Cluster,
        what: &str,
        mut done: impl FnMut(&str, &BTreeSet<String>) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(wait) else {
                panic!(
                    "{what}: not after 60 s (seen {:?})\n{}",
                    self.seen,
                    c.operator_log()
                );
            };
            self.seen.insert(line.clone());
            if done(&line, &self.seen) {
                return;
            }
        }
    }
}

impl Changes {
    /// Take every line there is now.
    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.insert(line);
        }
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        for w in &mut self.watchers {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

#[test]
fn api_server_killed_mid_reconcile_and_under_the_watches() {
    let clock = ("chaos/api", Instant::now());
    let (mut c, port) = start(&["alpha", "beta"], 1);
    say!(clock, "control plane and operator started");
    let registry = Cr {
        ns: "alpha",
        name: "registry",
        volume: true,
    };
    let mirror = Cr {
        ns: "beta",
        name: "mirror",
        volume: false,
    };
    let cache = Cr {
        ns: "beta",
        name: "cache",
        volume: false,
    };
    let crs = [registry, mirror, cache];

    // --- the API server SIGKILLed as soon as the operator has made the first
    //     two objects of alpha/registry (of eleven), down 3 s ---------------------
    let mut changes = Changes::watch(&c, "alpha");
    std::thread::sleep(Duration::from_secs(1));
    let all: Vec<String> = crs.iter().map(Cr::yaml).collect();
    c.apply(&all.join("---\n"));
    changes.until(&c, "alpha/registry's first objects", |_, seen| {
        seen.len() >= 2
    });
    c.cp.kill("kube-apiserver").unwrap();
    drop(changes);
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    c.cp.revive("kube-apiserver").unwrap();
    let made = |ns: &str| {
        c.kubectl_ok(&["get", OWNED_KINDS, "-n", ns, "-l", OURS, "-o", "name"])
            .map(|out| out.lines().count())
            .unwrap_or(0)
    };
    say!(
        clock,
        "API server down for {:?} (kill to ready); objects made: alpha {}, beta {} (of 11, 20)",
        down.elapsed(),
        made("alpha"),
        made("beta")
    );
    let back = Instant::now();
    wait_all_ready(&c, &crs);
    say!(
        clock,
        "all three Ready {:?} after the API server was back ({} reconciles failed)",
        back.elapsed(),
        counter(&counters(port), "reconcile_errors")
    );
    assert!(
        c.cp.running("operator"),
        "the operator exited\n{}",
        c.operator_log()
    );
    assert_owned_exactly(&c, &[(registry, 1), (mirror, 1), (cache, 1)]);

    // --- watches dropped: the API server restarted, then owned objects deleted
    //     and a spec changed; each repaired through the new watches -------------
    wait_all_ready(&c, &crs);
    let repair = [
        ("alpha", "deployment/registry-registry"),
        ("beta", "service/mirror-registry"),
        ("beta", "configmap/cache-registry-ca"),
        ("beta", "secret/mirror-registry-tls"),
    ];
    let uids: Vec<String> = repair.iter().map(|(ns, o)| uid(&c, ns, o)).collect();
    let restarted = Instant::now();
    c.cp.restart("kube-apiserver").unwrap();
    say!(clock, "API server restarted: {:?}", restarted.elapsed());
    let back = Instant::now();
    for (ns, object) in repair {
        c.kubectl(&["delete", "-n", ns, object, "--wait=false"]);
    }
    c.patch("beta", "cache", r#"{"spec":{"features":{"helm":false}}}"#);
    eventually(&c, "the deleted objects made again", REWATCH_BOUND, || {
        for ((ns, object), old) in repair.iter().zip(&uids) {
            let now = uid(&c, ns, object);
            if now.is_empty() || &now == old {
                return Err(format!("{ns}/{object} not made again"));
            }
        }
        Ok(())
    });
    say!(
        clock,
        "deleted objects made again {:?} after the restart",
        back.elapsed()
    );
    eventually(&c, "the spec change seen", REWATCH_BOUND, || {
        match c
            .config_yaml("beta", "cache")
            .contains("FEATURE_HELM_OCI_SUPPORT: false")
        {
            true => Ok(()),
            false => Err("beta/cache still renders Helm on".into()),
        }
    });
    say!(
        clock,
        "spec change seen {:?} after the restart",
        back.elapsed()
    );
    wait_all_ready(&c, &crs);
    say!(clock, "all Ready again");
    assert!(
        c.cp.running("operator"),
        "the operator exited\n{}",
        c.operator_log()
    );
    // The recreated Deployment starts a new ReplicaSet history.
    assert_owned_exactly(&c, &[(registry, 1), (mirror, 1), (cache, 2)]);
    // The certificate made again is the kept CA's; the CA ConfigMap made
    // again holds that CA.
    assert_generated_agree(&c, "beta", "mirror");
    assert_generated_agree(&c, "beta", "cache");
    say!(clock, "objects exactly as expected");

    // --- a resync writes nothing: after the watches are made again, and after
    //     the operator starts again ----------------------------------------------
    let namespaces = ["alpha", "beta"];
    let reconciles =
        assert_resync_writes_nothing(&mut c, port, &namespaces, 3, "API server restart", |c| {
            let before = counters(port);
            c.cp.restart("kube-apiserver").unwrap();
            before
        });
    say!(
        clock,
        "resync after an API server restart: {reconciles} reconciles, no writes"
    );
    let reconciles = assert_resync_writes_nothing(
        &mut c,
        port,
        &namespaces,
        3,
        "operator restart",
        restart_operator,
    );
    say!(
        clock,
        "resync after an operator restart: {reconciles} reconciles, no writes"
    );
    assert_owned_exactly(&c, &[(registry, 1), (mirror, 1), (cache, 2)]);
    say!(clock, "done");
}

#[test]
fn operator_killed_between_apply_steps_and_etcd_restarted() {
    let clock = ("chaos/kill", Instant::now());
    let (mut c, port) = start(&["gamma"], 1);
    say!(clock, "control plane and operator started");
    let cr = Cr {
        ns: "gamma",
        name: "registry",
        volume: true,
    };
    let present = |c: &Cluster| {
        c.kubectl_ok(&["get", OWNED_KINDS, "-n", "gamma", "-l", OURS, "-o", "name"])
            .map(|out| out.lines().count())
            .unwrap_or(0)
    };
    let mut changes = Changes::watch(&c, "gamma");
    // Each watch lists first: let them start before anything is made.
    std::thread::sleep(Duration::from_secs(1));

    // --- a fresh resource: the operator SIGKILLed as soon as k of its objects
    //     exist (applied in order: ServiceAccount, Secrets — config,
    //     credentials, pull, auth, CA, certificate — ConfigMap, PVC,
    //     Deployment, Service), started again each time --------------------------
    c.apply(&cr.yaml());
    let mut cuts = Vec::new();
    for (round, k) in [1, 3, 6, 8, 10].into_iter().enumerate() {
        if round > 0 {
            c.cp.revive("operator").unwrap();
        }
        changes.until(&c, &format!("{k} objects"), |_, seen| seen.len() >= k);
        c.cp.kill("operator").unwrap();
        cuts.push(format!("{k}: {}", present(&c)));
    }
    // And by the clock, from its start.
    for ms in [200, 500, 1000] {
        c.cp.revive("operator").unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        c.cp.kill("operator").unwrap();
        cuts.push(format!("{ms} ms: {}", present(&c)));
    }
    say!(clock, "killed at (wanted: objects there): {cuts:?}");
    c.cp.revive("operator").unwrap();
    let took = c.wait_ready("gamma", "registry");
    say!(clock, "Ready {took:?} after the last start");
    // One pod template all along: no ReplicaSet of a second.
    assert_owned_exactly(&c, &[(cr, 1)]);
    assert_generated_agree(&c, "gamma", "registry");

    // --- a spec change: killed as soon as the new config is written (the
    //     Deployment comes after it), then 300 ms after the next start -------------
    let hash = |c: &Cluster| {
        c.jsonpath(
            "gamma",
            "deployment/registry-registry",
            "{.spec.template.metadata.annotations.quarry\\.dev/config-hash}",
        )
    };
    let old_hash = hash(&c);
    changes.drain();
    c.patch(
        "gamma",
        "registry",
        r#"{"spec":{"features":{"helm":false}}}"#,
    );
    changes.until(&c, "the new config", |line, _| {
        line == "secret/registry-config"
    });
    c.cp.kill("operator").unwrap();
    assert!(
        c.config_yaml("gamma", "registry")
            .contains("FEATURE_HELM_OCI_SUPPORT: false")
    );
    say!(
        clock,
        "killed after the new config; Deployment {}",
        if hash(&c) == old_hash {
            "not yet changed"
        } else {
            "already changed"
        }
    );
    c.cp.revive("operator").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.cp.kill("operator").unwrap();
    c.cp.revive("operator").unwrap();
    let took = c.wait_ready("gamma", "registry");
    say!(clock, "spec change Ready {took:?} after the last start");
    assert_ne!(hash(&c), old_hash, "the new config did not roll out");
    assert_eq!(
        hash(&c),
        c.jsonpath("gamma", "qreg/registry", "{.status.configHash}"),
        "status reports another config than the Deployment runs"
    );
    assert_owned_exactly(&c, &[(cr, 2)]);
    assert_generated_agree(&c, "gamma", "registry");
    drop(changes);

    // A second resource beside it, to delete later.
    let scratch = Cr {
        ns: "gamma",
        name: "scratch",
        volume: false,
    };
    c.apply(&scratch.yaml());
    c.wait_ready("gamma", "scratch");

    // --- etcd SIGKILLed and started again on its data, the operator running;
    //     then a spec change ---------------------------------------------------------
    let old_hash = hash(&c);
    let restarted = Instant::now();
    c.cp.restart("etcd").unwrap();
    say!(
        clock,
        "etcd restarted, API ready: {:?}",
        restarted.elapsed()
    );
    c.patch(
        "gamma",
        "registry",
        r#"{"spec":{"features":{"referrers":false}}}"#,
    );
    let took = c.wait_ready("gamma", "registry");
    say!(
        clock,
        "spec change after the etcd restart Ready in {took:?}"
    );
    let config = c.config_yaml("gamma", "registry");
    assert!(config.contains("FEATURE_REFERRERS_API: false"), "{config}");
    assert_ne!(hash(&c), old_hash, "the new config did not roll out");
    assert_eq!(
        hash(&c),
        c.jsonpath("gamma", "qreg/registry", "{.status.configHash}"),
        "status reports another config than the Deployment runs"
    );
    assert!(
        c.cp.running("operator"),
        "the operator exited\n{}",
        c.operator_log()
    );
    assert_owned_exactly(&c, &[(cr, 3), (scratch, 1)]);

    // --- a deleted resource leaves nothing behind, and the other's intact ------------
    c.kubectl(&["delete", "-n", "gamma", "qreg/scratch"]);
    let took = eventually(
        &c,
        "gamma/scratch's objects collected",
        Duration::from_secs(60),
        || owned_exactly(&c, "gamma", &[(cr, 3)]),
    );
    say!(clock, "gamma/scratch's objects collected in {took:?}");

    // --- a resync writes nothing ---------------------------------------------------
    let reconciles = assert_resync_writes_nothing(
        &mut c,
        port,
        &["gamma"],
        1,
        "operator restart",
        restart_operator,
    );
    say!(
        clock,
        "resync after an operator restart: {reconciles} reconciles, no writes"
    );
    say!(clock, "done");
}

/// The generated Secrets agree with each other however the writes were
/// cut: the CA ConfigMap, the CA Secret and the serving certificate's CA
/// are one certificate, which signed the serving certificate; the pull
/// secret holds the robot's password from the credentials Secret.
fn assert_generated_agree(c: &Cluster, ns: &str, name: &str) {
    let ca_key = c.secret(ns, &format!("{name}-registry-ca-key"), "ca.crt");
    let tls = c.secret_data(ns, &format!("{name}-registry-tls"));
    let ca_map = c.jsonpath(
        ns,
        &format!("configmap/{name}-registry-ca"),
        "{.data.ca\\.crt}",
    );
    let tls_ca = String::from_utf8_lossy(&tls["ca.crt"]).into_owned();
    assert!(!ca_key.is_empty() && ca_key == ca_map && ca_key == tls_ca);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), &ca_key).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &tls["tls.crt"]).unwrap();
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile", "ca.crt", "tls.crt"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "the serving certificate is not signed by the CA: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let credentials = c.secret_data(ns, &format!("{name}-registry-credentials"));
    let robot = |k: &str| String::from_utf8_lossy(&credentials[k]).into_owned();
    let pull = c.secret(ns, &format!("{name}-registry-pull"), ".dockerconfigjson");
    let auth = quarry_e2e::kube::b64(
        format!("{}:{}", robot("robot-username"), robot("robot-password")).as_bytes(),
    );
    assert!(
        pull.contains(&auth),
        "the pull secret does not hold the robot's password: {pull}"
    );
}
