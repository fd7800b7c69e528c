//! The operator with spec.proxyCache and spec.mirroring on a real control
//! plane: the credentials Secret is rendered into the registry's config,
//! and that config really pulls through, and mirrors from, a Quarry
//! upstream with accounts; a wrong password is refused in ConfigValid,
//! naming the upstream, with the Deployment untouched; once accepted, an
//! entry stays accepted while its upstream is down.

use std::time::Duration;

use quarry_e2e::clients::oras;
use quarry_e2e::kube::{Cluster, secret_yaml};
use quarry_e2e::secure::{ADMIN, PASSWORD, accounts_yaml, client_trusting, hash_password};
use quarry_e2e::{Registry, http, run, sha256};

const NS: &str = "cache";

fn login_yaml(password: &str) -> String {
    secret_yaml(
        NS,
        "upstream-login",
        &[("username", ADMIN), ("password", password)],
    )
}

#[test]
fn caches_and_mirrors_with_the_secrets_login_and_refuse_a_wrong_one() {
    // The upstream: a Quarry with accounts (token flow) on plain HTTP.
    let dir = tempfile::tempdir().unwrap();
    let accounts = dir.path().join("accounts.yaml");
    std::fs::write(&accounts, accounts_yaml(&hash_password(PASSWORD))).unwrap();
    let key = dir.path().join("token.key");
    std::fs::write(&key, hex::encode(rand::random::<[u8; 32]>())).unwrap();
    let mut upstream = Registry::start_with_config(Some(&format!(
        "AUTH_ACCOUNTS_FILE: {}\nAUTH_TOKEN_KEY_FILE: {}\n",
        accounts.display(),
        key.display()
    )));
    let content = b"a layer that lives upstream".to_vec();
    let digest = sha256(&content);
    let pushed = http::blocking()
        .post(format!(
            "{}/v2/team/app/blobs/uploads/?digest={digest}",
            upstream.url()
        ))
        .basic_auth(ADMIN, Some(PASSWORD))
        .body(content.clone())
        .send()
        .unwrap();
    assert_eq!(pushed.status(), 201, "{}", upstream.log_text());
    // A tagged artifact for the mirror to copy.
    let oras_home = tempfile::tempdir().unwrap();
    run(oras(oras_home.path())
        .args(["login", "--plain-http", "-u", ADMIN, "-p", PASSWORD])
        .arg(upstream.host()));
    std::fs::write(oras_home.path().join("notes.txt"), b"mirrored notes").unwrap();
    run(oras(oras_home.path())
        .args(["push", "--plain-http"])
        .arg(format!("{}/team/notes:v1", upstream.host()))
        .arg("notes.txt"));

    let mut c = Cluster::start();
    c.cp.install_crd().expect("CRD installed");
    c.start_operator();
    c.create_namespace(NS);
    c.apply(&login_yaml(PASSWORD));
    let upstream_host = upstream.host();
    let registry_yaml = |mirror_extra: &str| {
        format!(
            "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: edge, namespace: {NS}}}\nspec:\n  proxyCache:\n  - {{namespace: mirror, upstream: '{}', credentialsSecret: upstream-login, expiration: 1h, insecure: true}}\n  mirroring:\n    interval: 1m\n    repositories:\n    - {{repository: local/notes, upstream: '{}/team/notes', credentialsSecret: upstream-login{mirror_extra}}}\n  components:\n  - {{kind: storage, managed: false}}\n",
            upstream_host, upstream_host
        )
    };
    c.apply(&registry_yaml(", insecure: true"));
    c.wait("Ready", Duration::from_secs(120), || c.ready(NS, "edge"));

    // The rendered config pulls through the upstream with the Secret's login.
    let work = tempfile::tempdir().unwrap();
    let files = c.cp.pod_files(NS, "edge", work.path()).unwrap();
    assert!(
        files.config.contains("FEATURE_PROXY_CACHE: true"),
        "{}",
        files.config
    );
    assert!(
        files.config.contains("expiration_s: 3600"),
        "{}",
        files.config
    );
    let env = files.registry_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let edge = Registry::start_with(Some(&files.config), &env);
    let (user, password) = files.admin.clone().expect("the generated admin");
    let ca = files.ca_file.clone().expect("the managed CA");
    let pulled = client_trusting(&ca)
        .get(format!(
            "https://{}/v2/mirror/team/app/blobs/{digest}",
            edge.host()
        ))
        .basic_auth(&user, Some(&password))
        .send()
        .unwrap();
    assert_eq!(pulled.status(), 200, "{}", edge.log_text());
    assert_eq!(pulled.bytes().unwrap().as_ref(), content.as_slice());
    // ... and mirrors the tagged artifact with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let tags = client_trusting(&ca)
            .get(format!("https://{}/v2/local/notes/tags/list", edge.host()))
            .basic_auth(&user, Some(&password))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        if tags.contains("\"v1\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not mirrored: {tags}\n{}",
            edge.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Downloads spool on the data volume: the root filesystem is read-only.
    let deployment = "deployment/edge-registry";
    let env = c.jsonpath(NS, deployment, "{.spec.template.spec.containers[0].env}");
    assert!(
        env.contains("TMPDIR") && env.contains("/var/lib/quarry"),
        "{env}"
    );

    // A wrong password: refused before rollout, naming the upstream.
    let before = c.jsonpath(NS, deployment, "{.metadata.resourceVersion}");
    c.apply(&login_yaml("not the password"));
    c.wait("ConfigValid=False", Duration::from_secs(60), || {
        c.condition(NS, "edge", "ConfigValid").status == "False"
    });
    let message = c.condition(NS, "edge", "ConfigValid").message;
    assert!(
        message.contains("spec.mirroring.repositories[0].upstream"),
        "{message}"
    );
    assert!(
        message.contains("spec.proxyCache[0].upstream")
            && message.contains(&upstream.host())
            && message.contains("refused the credentials"),
        "{message}"
    );
    assert_eq!(
        c.jsonpath(NS, deployment, "{.metadata.resourceVersion}"),
        before
    );
    assert!(!c.config_yaml(NS, "edge").contains("not the password"));

    // Fixed again: valid, and the running config is the good one.
    c.apply(&login_yaml(PASSWORD));
    c.wait("ConfigValid=True", Duration::from_secs(60), || {
        c.condition(NS, "edge", "ConfigValid").status == "True"
    });

    // The upstream goes away: the entries stay accepted (their probes
    // passed with these very settings), so an unrelated change still rolls
    // out; a down upstream is the registry's to report, not a refusal.
    upstream.kill9();
    c.patch(NS, "edge", r#"{"spec":{"mirroring":{"interval":"2m"}}}"#);
    c.wait(
        "the new interval rolled out with the upstream down",
        Duration::from_secs(60),
        || {
            c.config_yaml(NS, "edge")
                .contains("REPO_MIRROR_INTERVAL: 120")
        },
    );
    let valid = c.condition(NS, "edge", "ConfigValid");
    assert_eq!(valid.status, "True", "{}", valid.message);
    c.wait_ready(NS, "edge");
    let before = c.jsonpath(NS, deployment, "{.metadata.resourceVersion}");

    // A CA ConfigMap that is missing, then not PEM: refused under the
    // field, and the ConfigMap's creation alone wakes the operator (an
    // invalid resource waits for a change).
    c.apply(&registry_yaml(", caConfigMap: corp-ca"));
    let ca_refused = |what: &str| {
        let message = c.condition(NS, "edge", "ConfigValid").message;
        message.contains("spec.mirroring.repositories[0].caConfigMap") && message.contains(what)
    };
    c.wait(
        "the missing ConfigMap refused",
        Duration::from_secs(60),
        || ca_refused("ConfigMap \"corp-ca\" not found"),
    );
    c.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: corp-ca, namespace: {NS}}}\ndata:\n  ca.crt: not a certificate\n"
    ));
    c.wait(
        "the ConfigMap without PEM refused",
        Duration::from_secs(60),
        || ca_refused("is not PEM certificates"),
    );
    assert_eq!(
        c.jsonpath(NS, deployment, "{.metadata.resourceVersion}"),
        before,
        "an invalid CA touched the Deployment"
    );
}
