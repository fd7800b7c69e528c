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
use quarry_e2e::kube::{Cluster, Condition, b64, secret_yaml, tls_secret_yaml};
use quarry_e2e::run;
use quarry_e2e::secure::{TestCa, client_trusting, hash_password};

const NS: &str = "sec";
const CR: &str = "reg";

/// The registry pod template, as JSON text.
fn pod_template(c: &Cluster) -> String {
    c.jsonpath(NS, &format!("deployment/{CR}-registry"), "{.spec.template}")
}

fn openssl(args: &[&str]) -> String {
    String::from_utf8_lossy(&run(Command::new("openssl").args(args)).stdout).into_owned()
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The user's accounts Secret `accounts`.
fn accounts_secret_yaml(accounts: &str) -> String {
    secret_yaml(NS, "accounts", &[("accounts.yaml", accounts)])
}

#[test]
fn generated_credentials_and_certificates_drive_a_real_https_registry() {
    let mut c = Cluster::start();
    c.cp.install_crd().expect("CRD installed");
    c.start_operator();
    c.create_namespace(NS);
    c.apply(&format!(
        "apiVersion: quarry.dev/v1alpha1\nkind: QuarryRegistry\nmetadata: {{name: {CR}, namespace: {NS}}}\nspec:\n  serverHostname: registry.example.com\n  components:\n  - {{kind: storage, managed: false}}\n"
    ));
    c.wait_ready(NS, CR);

    // --- secure by default: what was made, and where status says it is ------
    let qreg = format!("qreg/{CR}");
    assert_eq!(
        c.jsonpath(NS, &qreg, "{.status.caConfigMap}"),
        "reg-registry-ca"
    );
    assert_eq!(
        c.jsonpath(NS, &qreg, "{.status.credentialsSecret}"),
        "reg-registry-credentials"
    );
    assert_eq!(
        c.jsonpath(NS, &qreg, "{.status.pullSecret}"),
        "reg-registry-pull"
    );
    assert_eq!(
        c.jsonpath(NS, &qreg, "{.status.registryUrl}"),
        "https://registry.example.com"
    );
    assert_eq!(
        c.jsonpath(NS, &qreg, "{.status.uiUrl}"),
        "https://registry.example.com/ui/"
    );
    assert!(
        !c.jsonpath(NS, &qreg, "{.status.certificateNotAfter}")
            .is_empty()
    );
    let Condition {
        status,
        reason,
        message,
    } = c.condition(NS, CR, "ComponentTlsReady");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "CertificateIssued"),
        "{message}"
    );
    assert_eq!(
        c.jsonpath(NS, "secret/reg-registry-tls", "{.type}"),
        "kubernetes.io/tls"
    );
    assert_eq!(
        c.jsonpath(NS, "secret/reg-registry-pull", "{.type}"),
        "kubernetes.io/dockerconfigjson"
    );
    let deployment = "deployment/reg-registry";
    let args = c.jsonpath(NS, deployment, "{.spec.template.spec.containers[0].args}");
    assert!(
        args.contains("--tls-cert") && args.contains("/etc/quarry/tls/tls.crt"),
        "{args}"
    );
    assert_eq!(
        c.jsonpath(
            NS,
            deployment,
            "{.spec.template.spec.containers[0].readinessProbe.httpGet.scheme}"
        ),
        "HTTPS"
    );
    let config = c.secret(NS, "reg-config", "config.yaml");
    for line in [
        "AUTH_ACCOUNTS_FILE: /etc/quarry/auth/accounts.yaml",
        "AUTH_TOKEN_KEY_FILE: /etc/quarry/auth/token.key",
        "PREFERRED_URL_SCHEME: https",
    ] {
        assert!(config.contains(line), "{line} missing:\n{config}");
    }
    let (admin, admin_password) = (
        c.secret(NS, "reg-registry-credentials", "admin-username"),
        c.secret(NS, "reg-registry-credentials", "admin-password"),
    );
    assert_eq!(admin, "admin");
    assert!(admin_password.len() >= 32);
    assert!(c.secret(NS, "reg-registry-auth", "token.key").len() >= 32);
    let docker_config = c.secret(NS, "reg-registry-pull", ".dockerconfigjson");
    assert!(
        docker_config.contains("registry.example.com")
            && docker_config.contains("reg-registry.sec.svc:5000"),
        "{docker_config}"
    );

    // --- the serving certificate: names, and chained to the published CA ----
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let ca_pem = c.jsonpath(NS, "configmap/reg-registry-ca", "{.data.ca\\.crt}");
    assert!(ca_pem.contains("BEGIN CERTIFICATE"), "{ca_pem}");
    std::fs::write(dir.join("ca.crt"), &ca_pem).unwrap();
    std::fs::write(
        dir.join("tls.crt"),
        c.secret(NS, "reg-registry-tls", "tls.crt"),
    )
    .unwrap();
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
    let before = c.resource_versions(NS, &generated);
    c.patch(NS, CR, r#"{"metadata":{"annotations":{"touch":"1"}}}"#);
    std::thread::sleep(Duration::from_secs(3));
    c.cp.stop_process("operator");
    c.start_operator();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        before,
        c.resource_versions(NS, &generated),
        "generated objects were rewritten"
    );
    assert_eq!(
        admin_password,
        c.secret(NS, "reg-registry-credentials", "admin-password")
    );

    // --- a deleted credentials Secret: new passwords, no pod roll -------------
    let template = pod_template(&c);
    let accounts_before = c.secret(NS, "reg-registry-auth", "accounts.yaml");
    let token_key = c.secret(NS, "reg-registry-auth", "token.key");
    c.kubectl(&["delete", "-n", NS, "secret/reg-registry-credentials"]);
    c.wait("new credentials", Duration::from_secs(30), || {
        let now = c.secret(NS, "reg-registry-credentials", "admin-password");
        !now.is_empty()
            && now != admin_password
            && c.secret(NS, "reg-registry-auth", "accounts.yaml") != accounts_before
    });
    assert_eq!(token_key, c.secret(NS, "reg-registry-auth", "token.key"));
    assert_eq!(
        template,
        pod_template(&c),
        "new passwords changed the pod template"
    );

    // --- the real registry with what the operator made: helm and skopeo ------
    let pod = tempfile::tempdir().unwrap();
    let files = c.cp.pod_files(NS, CR, pod.path()).unwrap();
    assert_eq!(files.scheme(), "https");
    let registry = files.start_registry();
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
    let template = pod_template(&c);
    std::fs::write(
        dir.join("ca.key"),
        c.secret(NS, "reg-registry-ca-key", "ca.key"),
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
    c.merge_patch(
        NS,
        "secret/reg-registry-tls",
        &format!(
            r#"{{"data":{{"tls.crt":"{}","tls.key":"{}"}}}}"#,
            b64(short.as_bytes()),
            b64(short_key.as_bytes())
        ),
    );
    c.wait("the operator renews", Duration::from_secs(30), || {
        let now = c.secret(NS, "reg-registry-tls", "tls.crt");
        !now.is_empty() && now != short
    });
    std::fs::write(&cert_file, c.secret(NS, "reg-registry-tls", "tls.crt")).unwrap();
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
    let events = c.kubectl(&[
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
    assert_eq!(
        template,
        pod_template(&c),
        "renewal changed the pod template"
    );

    // --- a user's accounts Secret: checked first, then copied without a roll --
    let running = c.resource_versions(NS, &["deployment/reg-registry", "secret/reg-registry-auth"]);
    c.apply(&accounts_secret_yaml(
        "accounts:\n  alice:\n    password_hash: nope\n    access: {\"*\": [pull]}\n",
    ));
    c.patch(NS, CR, r#"{"spec":{"auth":{"accountsSecret":"accounts"}}}"#);
    c.wait("invalid accounts reported", Duration::from_secs(30), || {
        let valid = c.condition(NS, CR, "ConfigValid");
        valid.status == "False"
            && valid
                .message
                .contains("spec.auth.accountsSecret[accounts.yaml]")
            && valid
                .message
                .contains("accounts.alice.password_hash: not a bcrypt hash")
    });
    assert_eq!(
        running,
        c.resource_versions(NS, &["deployment/reg-registry", "secret/reg-registry-auth"]),
        "an invalid accounts Secret changed what runs"
    );
    let hash = hash_password("alice's password");
    let alice = format!(
        "accounts:\n  alice:\n    password_hash: \"{hash}\"\n    access: {{\"*\": [pull, push]}}\n"
    );
    c.apply(&accounts_secret_yaml(&alice));
    c.wait(
        "accounts copied for the registry",
        Duration::from_secs(30),
        || {
            c.secret(NS, "reg-registry-auth", "accounts.yaml") == alice
                && c.condition(NS, CR, "ConfigValid").status == "True"
        },
    );
    c.wait_ready(NS, CR);
    assert_eq!(
        template,
        pod_template(&c),
        "new accounts changed the pod template"
    );
    let with_bob =
        format!("{alice}  bob:\n    password_hash: \"{hash}\"\n    access: {{team: [pull]}}\n");
    c.apply(&accounts_secret_yaml(&with_bob));
    let took = c.wait(
        "an accounts edit is copied",
        Duration::from_secs(30),
        || c.secret(NS, "reg-registry-auth", "accounts.yaml") == with_bob,
    );
    assert!(took < Duration::from_secs(5), "accounts edit took {took:?}");
    assert_eq!(
        template,
        pod_template(&c),
        "an accounts edit changed the pod template"
    );
    // The running registry takes the new accounts from the refreshed files.
    let refreshed = c.cp.pod_files(NS, CR, pod.path()).unwrap();
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
    c.patch(NS, CR, r#"{"spec":{"tls":{"certificateSecret":"mycert"}}}"#);
    c.wait(
        "a missing certificate Secret is reported",
        Duration::from_secs(30),
        || {
            let valid = c.condition(NS, CR, "ConfigValid");
            valid.status == "False"
                && valid
                    .message
                    .contains("spec.tls.certificateSecret: Secret \"mycert\" not found")
        },
    );
    assert_eq!(
        template,
        pod_template(&c),
        "an invalid resource changed the pod template"
    );
    c.apply(&tls_secret_yaml(NS, "mycert", &cert1, &key1));
    c.wait(
        "the user's certificate is mounted",
        Duration::from_secs(30),
        || {
            c.jsonpath(
                NS,
                deployment,
                "{.spec.template.spec.volumes[?(@.name==\"tls\")].secret.secretName}",
            ) == "mycert"
                && c.condition(NS, CR, "ComponentTlsReady").reason == "CertificateProvided"
        },
    );
    c.wait_ready(NS, CR);
    assert!(c.jsonpath(NS, &qreg, "{.status.caConfigMap}").is_empty());
    let provided = pod_template(&c);
    let (cert2, key2) = user_ca.issue(&["registry.example.com", "rotated.example.com"]);
    c.apply(&tls_secret_yaml(NS, "mycert", &cert2, &key2));
    c.wait("the rotation is seen", Duration::from_secs(30), || {
        c.condition(NS, CR, "ComponentTlsReady")
            .message
            .contains("rotated.example.com")
    });
    assert_eq!(
        provided,
        pod_template(&c),
        "a certificate rotation changed the pod template"
    );

    // --- switched off: plain HTTP, no login ----------------------------------------
    c.patch(NS, CR, r#"{"spec":{"auth":{"enabled":false},"tls":null,"components":[{"kind":"storage","managed":false},{"kind":"tls","managed":false}]}}"#);
    c.wait("auth and TLS off", Duration::from_secs(30), || {
        let config = c.secret(NS, "reg-config", "config.yaml");
        !config.contains("AUTH_ACCOUNTS_FILE")
            && c.jsonpath(NS, &qreg, "{.status.registryUrl}") == "http://registry.example.com"
    });
    c.wait_ready(NS, CR);
    let args = c.jsonpath(NS, deployment, "{.spec.template.spec.containers[0].args}");
    assert!(!args.contains("--tls-cert"), "{args}");
    let open = tempfile::tempdir().unwrap();
    let files = c.cp.pod_files(NS, CR, open.path()).unwrap();
    assert_eq!(files.scheme(), "http");
    let plain = files.start_registry();
    let status = quarry_e2e::http::blocking()
        .get(format!("{}/v2/", plain.url()))
        .send()
        .expect("GET /v2/")
        .status();
    assert_eq!(status.as_u16(), 200);
}
