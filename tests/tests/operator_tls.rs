//! The operator's auth and TLS on a real control plane: generated accounts,
//! token key, CA and serving certificate that stay put across resyncs and
//! restarts; the certificate chains to the published CA and names the
//! Service and serverHostname; renewal without a pod roll; a user's
//! accounts Secret checked (invalid: nothing running changes) and applied
//! without a roll; a user's certificate Secret mounted and rotated without a
//! roll. And the proof that it all fits together: the real registry,
//! started with exactly what the operator rendered and generated, serves
//! helm and skopeo over HTTPS with the generated admin account, and the
//! pull-only robot cannot push.

use std::process::Command;
use std::time::Duration;

use quarry_e2e::clients::{helm, skopeo};
use quarry_e2e::cluster::{ControlPlane, PodFiles};
use quarry_e2e::secure::{TestCa, client_trusting, hash_password};
use quarry_e2e::{Registry, free_port, run, workspace_root};

const NS: &str = "sec";
const CR: &str = "reg";

struct Scenario {
    cp: ControlPlane,
}

impl Scenario {
    fn kubectl(&self, args: &[&str]) -> String {
        self.cp.kubectl_out(args).unwrap_or_else(|e| {
            panic!("{e}\n{}", self.cp.logs("operator"));
        })
    }

    fn get(&self, what: &str, path: &str) -> String {
        self.cp
            .kubectl_out(&["get", "-n", NS, what, "-o", &format!("jsonpath={path}")])
            .unwrap_or_default()
    }

    fn condition(&self, type_: &str) -> (String, String, String) {
        let base = format!("{{.status.conditions[?(@.type==\"{type_}\")]");
        let qreg = format!("qreg/{CR}");
        (
            self.get(&qreg, &format!("{base}.status}}")),
            self.get(&qreg, &format!("{base}.reason}}")),
            self.get(&qreg, &format!("{base}.message}}")),
        )
    }

    fn wait(&self, what: &str, timeout: Duration, f: impl FnMut() -> bool) -> Duration {
        self.cp.wait_for(what, timeout, f)
    }

    fn wait_ready(&self) {
        let qreg = format!("qreg/{CR}");
        self.wait("Ready", Duration::from_secs(120), || {
            self.condition("Ready").0 == "True"
                && self.get(&qreg, "{.status.observedGeneration}")
                    == self.get(&qreg, "{.metadata.generation}")
        });
    }

    fn patch(&self, patch: &str) {
        self.kubectl(&[
            "patch",
            "-n",
            NS,
            &format!("qreg/{CR}"),
            "--type",
            "merge",
            "-p",
            patch,
        ]);
    }

    fn secret(&self, name: &str, key: &str) -> String {
        self.cp
            .secret_data(NS, name)
            .ok()
            .and_then(|d| d.get(key).map(|v| String::from_utf8_lossy(v).into_owned()))
            .unwrap_or_default()
    }

    fn versions(&self, objects: &[&str]) -> Vec<String> {
        objects
            .iter()
            .map(|o| format!("{o}={}", self.get(o, "{.metadata.resourceVersion}")))
            .collect()
    }

    /// The registry pod template, as JSON text.
    fn template(&self) -> String {
        self.get(&format!("deployment/{CR}-registry"), "{.spec.template}")
    }

    fn start_operator(&mut self) {
        let mut cmd = Command::new(workspace_root().join("target/debug/quarry-operator"));
        cmd.args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--registry-image", "example.invalid/quarry-registry"])
            .env("RUST_LOG", "info,kube=warn");
        self.cp.start_process("operator", cmd).unwrap();
    }
}

fn openssl(args: &[&str]) -> String {
    String::from_utf8_lossy(&run(Command::new("openssl").args(args)).stdout).into_owned()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The registry process standing in for the pod, started from `files`.
fn start_registry(files: &PodFiles) -> Registry {
    let mut env = files.registry_env();
    env.push(("QUARRY_RELOAD_INTERVAL_SECONDS".into(), "1".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Registry::start_with(Some(&files.config), &env)
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tls_secret_yaml(name: &str, cert: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {NS}}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(cert.as_bytes()),
        b64(key.as_bytes())
    )
}

fn accounts_secret_yaml(accounts: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: accounts, namespace: {NS}}}\ndata:\n  accounts.yaml: {}\n",
        b64(accounts.as_bytes())
    )
}

#[test]
fn generated_credentials_and_certificates_drive_a_real_https_registry() {
    let cp = ControlPlane::start().expect("control plane starts");
    let mut s = Scenario { cp };
    s.cp.install_crd().expect("CRD installed");
    s.start_operator();
    s.kubectl(&["create", "namespace", NS]);
    s.cp.apply_yaml(&format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: {CR}, namespace: {NS}}}\nspec:\n  serverHostname: registry.example.com\n  components:\n  - {{kind: storage, managed: false}}\n"
    ))
    .unwrap();
    s.wait_ready();

    // --- secure by default: what was made, and where status says it is ------
    let qreg = format!("qreg/{CR}");
    assert_eq!(s.get(&qreg, "{.status.caConfigMap}"), "reg-registry-ca");
    assert_eq!(
        s.get(&qreg, "{.status.credentialsSecret}"),
        "reg-registry-credentials"
    );
    assert_eq!(s.get(&qreg, "{.status.pullSecret}"), "reg-registry-pull");
    assert_eq!(
        s.get(&qreg, "{.status.registryUrl}"),
        "https://registry.example.com"
    );
    assert!(!s.get(&qreg, "{.status.certificateNotAfter}").is_empty());
    let (status, reason, message) = s.condition("ComponentTlsReady");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "CertificateIssued"),
        "{message}"
    );
    assert_eq!(
        s.get("secret/reg-registry-tls", "{.type}"),
        "kubernetes.io/tls"
    );
    assert_eq!(
        s.get("secret/reg-registry-pull", "{.type}"),
        "kubernetes.io/dockerconfigjson"
    );
    let deployment = "deployment/reg-registry";
    let args = s.get(deployment, "{.spec.template.spec.containers[0].args}");
    assert!(
        args.contains("--tls-cert") && args.contains("/etc/quarry/tls/tls.crt"),
        "{args}"
    );
    assert_eq!(
        s.get(
            deployment,
            "{.spec.template.spec.containers[0].readinessProbe.httpGet.scheme}"
        ),
        "HTTPS"
    );
    let config = s.secret("reg-config", "config.yaml");
    for line in [
        "AUTH_ACCOUNTS_FILE: /etc/quarry/auth/accounts.yaml",
        "AUTH_TOKEN_KEY_FILE: /etc/quarry/auth/token.key",
        "PREFERRED_URL_SCHEME: https",
    ] {
        assert!(config.contains(line), "{line} missing:\n{config}");
    }
    let (admin, admin_password) = (
        s.secret("reg-registry-credentials", "admin-username"),
        s.secret("reg-registry-credentials", "admin-password"),
    );
    assert_eq!(admin, "admin");
    assert!(admin_password.len() >= 32);
    assert!(s.secret("reg-registry-auth", "token.key").len() >= 32);
    let docker_config = s.secret("reg-registry-pull", ".dockerconfigjson");
    assert!(
        docker_config.contains("registry.example.com")
            && docker_config.contains("reg-registry.sec.svc:5000"),
        "{docker_config}"
    );

    // --- the serving certificate: names, and chained to the published CA ----
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let ca_pem = s.get("configmap/reg-registry-ca", "{.data.ca\\.crt}");
    assert!(ca_pem.contains("BEGIN CERTIFICATE"), "{ca_pem}");
    std::fs::write(dir.join("ca.crt"), &ca_pem).unwrap();
    std::fs::write(dir.join("tls.crt"), s.secret("reg-registry-tls", "tls.crt")).unwrap();
    let ca_file = dir.join("ca.crt").display().to_string();
    let cert_file = dir.join("tls.crt").display().to_string();
    let verified = openssl(&["verify", "-CAfile", &ca_file, &cert_file]);
    assert!(verified.contains(": OK"), "{verified}");
    let sans = openssl(&[
        "x509",
        "-in",
        &cert_file,
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    for name in [
        "DNS:reg-registry,",
        "DNS:reg-registry.sec,",
        "DNS:reg-registry.sec.svc,",
        "DNS:reg-registry.sec.svc.cluster.local",
        "DNS:registry.example.com",
        "IP Address:127.0.0.1",
    ] {
        assert!(sans.contains(name), "{name} not in {sans}");
    }

    // --- generated once: a forced reconcile and a restart change nothing ------
    let generated = [
        "secret/reg-registry-credentials",
        "secret/reg-registry-pull",
        "secret/reg-registry-auth",
        "secret/reg-registry-ca-key",
        "secret/reg-registry-tls",
        "configmap/reg-registry-ca",
        "secret/reg-config",
        "deployment/reg-registry",
    ];
    let before = s.versions(&generated);
    s.patch(r#"{"metadata":{"annotations":{"touch":"1"}}}"#);
    std::thread::sleep(Duration::from_secs(3));
    s.cp.stop_process("operator");
    s.start_operator();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        before,
        s.versions(&generated),
        "generated objects were rewritten"
    );
    assert_eq!(
        admin_password,
        s.secret("reg-registry-credentials", "admin-password")
    );

    // --- a deleted credentials Secret: new passwords, no pod roll -------------
    let template = s.template();
    let accounts_before = s.secret("reg-registry-auth", "accounts.yaml");
    let token_key = s.secret("reg-registry-auth", "token.key");
    s.kubectl(&["delete", "-n", NS, "secret/reg-registry-credentials"]);
    s.wait("new credentials", Duration::from_secs(30), || {
        let now = s.secret("reg-registry-credentials", "admin-password");
        !now.is_empty()
            && now != admin_password
            && s.secret("reg-registry-auth", "accounts.yaml") != accounts_before
    });
    assert_eq!(token_key, s.secret("reg-registry-auth", "token.key"));
    assert_eq!(
        template,
        s.template(),
        "new passwords changed the pod template"
    );

    // --- the real registry with what the operator made: helm and skopeo ------
    let pod = tempfile::tempdir().unwrap();
    let files = s.cp.pod_files(NS, CR, pod.path()).unwrap();
    assert_eq!(files.scheme(), "https");
    let registry = start_registry(&files);
    let host = registry.host();
    let ca = files.ca_file.clone().expect("CA file");
    let cert_dir = files.cert_dir.clone().expect("cert dir");
    let (user, password) = files.admin.clone().expect("admin");
    let (robot, robot_password) = files.robot.clone().expect("robot");
    assert_eq!(robot, "robot");
    // Unauthenticated: refused, with the token realm over https.
    let anonymous = client_trusting(&ca)
        .get(format!("https://{host}/v2/"))
        .send()
        .expect("GET /v2/ over HTTPS trusting only the published CA");
    assert_eq!(anonymous.status().as_u16(), 401);
    let challenge = anonymous
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(challenge.contains("https://"), "{challenge}");

    run(helm(dir)
        .args(["registry", "login", &host, "-u", &user, "-p", &password])
        .arg("--ca-file")
        .arg(&ca));
    run(helm(dir).args(["create", "demo"]));
    run(helm(dir).args(["package", "demo"]));
    run(helm(dir)
        .args(["push", "demo-0.1.0.tgz", &format!("oci://{host}/charts")])
        .arg("--ca-file")
        .arg(&ca));
    std::fs::create_dir_all(dir.join("pulled")).unwrap();
    run(helm(dir)
        .args([
            "pull",
            &format!("oci://{host}/charts/demo"),
            "--version",
            "0.1.0",
            "-d",
            "pulled",
        ])
        .arg("--ca-file")
        .arg(&ca));
    assert!(dir.join("pulled/demo-0.1.0.tgz").exists());

    let auth_file = dir.join("auth.json");
    run(skopeo()
        .args(["login", "-u", &user, "-p", &password, "--cert-dir"])
        .arg(&cert_dir)
        .arg("--authfile")
        .arg(&auth_file)
        .arg(&host));
    let layout = dir.join("layout");
    let image = quarry_e2e::oci::write_image_layout(&layout, "v1", 2, 32 * 1024);
    run(skopeo()
        .args(["copy", "--dest-cert-dir"])
        .arg(&cert_dir)
        .arg("--authfile")
        .arg(&auth_file)
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{host}/team/app:1")));

    // The robot pulls and cannot push.
    let robot_auth = dir.join("robot.json");
    run(skopeo()
        .args(["login", "-u", &robot, "-p", &robot_password, "--cert-dir"])
        .arg(&cert_dir)
        .arg("--authfile")
        .arg(&robot_auth)
        .arg(&host));
    run(skopeo()
        .args(["copy", "--src-cert-dir"])
        .arg(&cert_dir)
        .arg("--authfile")
        .arg(&robot_auth)
        .arg(format!("docker://{host}/team/app:1"))
        .arg(format!("oci:{}:v1", dir.join("back").display())));
    let index = std::fs::read_to_string(dir.join("back/index.json")).unwrap();
    assert!(index.contains(&image.manifest_digest), "{index}");
    let refused = skopeo()
        .args(["copy", "--dest-cert-dir"])
        .arg(&cert_dir)
        .arg("--authfile")
        .arg(&robot_auth)
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{host}/team/robot-push:1"))
        .output()
        .unwrap();
    let text = output_text(&refused).to_lowercase();
    assert!(
        !refused.status.success() && (text.contains("denied") || text.contains("unauthorized")),
        "the pull-only robot pushed: {text}"
    );

    // --- renewal: a certificate close to expiry is replaced, pods stay --------
    let template = s.template();
    std::fs::write(
        dir.join("ca.key"),
        s.secret("reg-registry-ca-key", "ca.key"),
    )
    .unwrap();
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:reg-registry,DNS:reg-registry.sec,DNS:reg-registry.sec.svc,DNS:reg-registry.sec.svc.cluster.local,DNS:localhost,DNS:registry.example.com,IP:127.0.0.1\n",
    )
    .unwrap();
    let p = |name: &str| dir.join(name).display().to_string();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p("short.key"),
        "-subj",
        "/CN=short",
        "-out",
        &p("short.csr"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("short.csr"),
        "-CA",
        &ca_file,
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "5",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("short.crt"),
    ]);
    let short = std::fs::read_to_string(dir.join("short.crt")).unwrap();
    let short_key = std::fs::read_to_string(dir.join("short.key")).unwrap();
    s.kubectl(&[
        "patch",
        "-n",
        NS,
        "secret/reg-registry-tls",
        "--type",
        "merge",
        "-p",
        &format!(
            r#"{{"data":{{"tls.crt":"{}","tls.key":"{}"}}}}"#,
            b64(short.as_bytes()),
            b64(short_key.as_bytes())
        ),
    ]);
    s.wait("the operator renews", Duration::from_secs(30), || {
        let now = s.secret("reg-registry-tls", "tls.crt");
        !now.is_empty() && now != short
    });
    std::fs::write(&cert_file, s.secret("reg-registry-tls", "tls.crt")).unwrap();
    let end = openssl(&[
        "x509",
        "-in",
        &cert_file,
        "-noout",
        "-checkend",
        &(80 * 86_400).to_string(),
    ]);
    assert!(end.contains("will not expire"), "{end}");
    assert!(openssl(&["verify", "-CAfile", &ca_file, &cert_file]).contains(": OK"));
    let events = s.kubectl(&[
        "get",
        "events",
        "-n",
        NS,
        "--field-selector",
        "reason=CertificateIssued",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains("the certificate expires in") && events.contains("renewed 30 days before"),
        "{events}"
    );
    assert_eq!(template, s.template(), "renewal changed the pod template");

    // --- a user's accounts Secret: checked first, then copied without a roll --
    let running = s.versions(&["deployment/reg-registry", "secret/reg-registry-auth"]);
    s.cp.apply_yaml(&accounts_secret_yaml(
        "accounts:\n  alice:\n    password_hash: nope\n    access: {\"*\": [pull]}\n",
    ))
    .unwrap();
    s.patch(r#"{"spec":{"auth":{"accountsSecret":"accounts"}}}"#);
    s.wait("invalid accounts reported", Duration::from_secs(30), || {
        let (status, _, message) = s.condition("ConfigValid");
        status == "False"
            && message.contains("spec.auth.accountsSecret[accounts.yaml]")
            && message.contains("accounts.alice.password_hash: not a bcrypt hash")
    });
    assert_eq!(
        running,
        s.versions(&["deployment/reg-registry", "secret/reg-registry-auth"]),
        "an invalid accounts Secret changed what runs"
    );
    let hash = hash_password("alice's password");
    let alice = format!(
        "accounts:\n  alice:\n    password_hash: \"{hash}\"\n    access: {{\"*\": [pull, push]}}\n"
    );
    s.cp.apply_yaml(&accounts_secret_yaml(&alice)).unwrap();
    s.wait(
        "accounts copied for the registry",
        Duration::from_secs(30),
        || {
            s.secret("reg-registry-auth", "accounts.yaml") == alice
                && s.condition("ConfigValid").0 == "True"
        },
    );
    s.wait_ready();
    assert_eq!(
        template,
        s.template(),
        "new accounts changed the pod template"
    );
    let with_bob =
        format!("{alice}  bob:\n    password_hash: \"{hash}\"\n    access: {{team: [pull]}}\n");
    s.cp.apply_yaml(&accounts_secret_yaml(&with_bob)).unwrap();
    let took = s.wait(
        "an accounts edit is copied",
        Duration::from_secs(30),
        || s.secret("reg-registry-auth", "accounts.yaml") == with_bob,
    );
    assert!(took < Duration::from_secs(5), "accounts edit took {took:?}");
    assert_eq!(
        template,
        s.template(),
        "an accounts edit changed the pod template"
    );
    // The running registry takes the new accounts from the refreshed files.
    let refreshed = s.cp.pod_files(NS, CR, pod.path()).unwrap();
    assert!(refreshed.admin.is_some(), "the credentials Secret is kept");
    std::thread::sleep(Duration::from_millis(2500));
    run(helm(dir)
        .args([
            "registry",
            "login",
            &host,
            "-u",
            "bob",
            "-p",
            "alice's password",
        ])
        .arg("--ca-file")
        .arg(&ca));
    let refused = helm(dir)
        .args(["registry", "login", &host, "-u", &user, "-p", &password])
        .arg("--ca-file")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "the generated admin still logs in with a user accounts Secret in force"
    );
    drop(registry);

    // --- a user's certificate Secret: mounted as is, rotated without a roll ----
    let user_ca = TestCa::new("user CA");
    let (cert1, key1) = user_ca.issue(&["registry.example.com"]);
    s.patch(r#"{"spec":{"tls":{"certificateSecret":"mycert"}}}"#);
    s.wait(
        "a missing certificate Secret is reported",
        Duration::from_secs(30),
        || {
            let (status, _, message) = s.condition("ConfigValid");
            status == "False"
                && message.contains("spec.tls.certificateSecret: Secret \"mycert\" not found")
        },
    );
    assert_eq!(
        template,
        s.template(),
        "an invalid resource changed the pod template"
    );
    s.cp.apply_yaml(&tls_secret_yaml("mycert", &cert1, &key1))
        .unwrap();
    s.wait(
        "the user's certificate is mounted",
        Duration::from_secs(30),
        || {
            s.get(
                deployment,
                "{.spec.template.spec.volumes[?(@.name==\"tls\")].secret.secretName}",
            ) == "mycert"
                && s.condition("ComponentTlsReady").1 == "CertificateProvided"
        },
    );
    s.wait_ready();
    assert!(s.get(&qreg, "{.status.caConfigMap}").is_empty());
    let provided = s.template();
    let (cert2, key2) = user_ca.issue(&["registry.example.com", "rotated.example.com"]);
    s.cp.apply_yaml(&tls_secret_yaml("mycert", &cert2, &key2))
        .unwrap();
    s.wait("the rotation is seen", Duration::from_secs(30), || {
        s.condition("ComponentTlsReady")
            .2
            .contains("rotated.example.com")
    });
    assert_eq!(
        provided,
        s.template(),
        "a certificate rotation changed the pod template"
    );

    // --- switched off: plain HTTP, no login ----------------------------------------
    s.patch(r#"{"spec":{"auth":{"enabled":false},"tls":null,"components":[{"kind":"storage","managed":false},{"kind":"tls","managed":false}]}}"#);
    s.wait("auth and TLS off", Duration::from_secs(30), || {
        let config = s.secret("reg-config", "config.yaml");
        !config.contains("AUTH_ACCOUNTS_FILE")
            && s.get(&qreg, "{.status.registryUrl}") == "http://registry.example.com"
    });
    s.wait_ready();
    let args = s.get(deployment, "{.spec.template.spec.containers[0].args}");
    assert!(!args.contains("--tls-cert"), "{args}");
    let open = tempfile::tempdir().unwrap();
    let files = s.cp.pod_files(NS, CR, open.path()).unwrap();
    assert_eq!(files.scheme(), "http");
    let plain = start_registry(&files);
    let status = quarry_e2e::http::blocking()
        .get(format!("{}/v2/", plain.url()))
        .send()
        .expect("GET /v2/")
        .status();
    assert_eq!(status.as_u16(), 200);
}
