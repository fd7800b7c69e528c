//! Authentication and TLS with real clients: helm, skopeo, oras, crane and
//! cosign log in over HTTPS (a test CA, accounts hashed by the registry's
//! own CLI), the conformance suite runs with credentials, refusals are
//! precise and store nothing, and a rotated certificate is served without
//! a restart.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quarry_e2e::clients::{cosign, crane, helm, oras, oras_py, skopeo};
use quarry_e2e::conformance::{V1_MAX_SKIPPED, V1_MIN_PASSED, v1_suite};
use quarry_e2e::oci::write_image_layout;
use quarry_e2e::secure::{
    ADMIN, PASSWORD, PUSHER, READER, SecureRegistry, TestCa, accounts_yaml, client_trusting,
    hash_password,
};
use quarry_e2e::{run, run_text};
use reqwest::StatusCode;

/// Run a command expected to fail; its combined output.
fn fails(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{shown} succeeded:\n{text}");
    text
}

/// Go clients (crane, cosign, helm, oras) trust the test CA through this.
fn trust<'a>(cmd: &'a mut Command, registry: &SecureRegistry) -> &'a mut Command {
    cmd.env("SSL_CERT_FILE", &registry.ca_file)
}

/// The raw manifest as the admin sees it, or the HTTP status.
fn manifest_status(registry: &SecureRegistry, repo: &str, reference: &str) -> StatusCode {
    registry
        .http()
        .get(format!(
            "{}/v2/{repo}/manifests/{reference}",
            registry.url()
        ))
        .basic_auth(ADMIN, Some(PASSWORD))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .expect("GET manifest")
        .status()
}

fn catalog(registry: &SecureRegistry, user: Option<&str>) -> (StatusCode, Vec<String>) {
    let mut request = registry
        .http()
        .get(format!("{}/v2/_catalog", registry.url()));
    if let Some(user) = user {
        request = request.basic_auth(user, Some(PASSWORD));
    }
    let response = request.send().expect("GET catalog");
    let status = response.status();
    let body: serde_json::Value = response.json().unwrap_or_default();
    let repos = body["repositories"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (status, repos)
}

fn token(registry: &SecureRegistry, user: &str, scope: &str) -> String {
    let response = registry
        .http()
        .get(format!("{}/auth/token", registry.url()))
        .query(&[("service", "quarry-registry"), ("scope", scope)])
        .basic_auth(user, Some(PASSWORD))
        .send()
        .expect("token request");
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().expect("token JSON");
    body["token"].as_str().expect("token").to_string()
}

#[test]
fn helm_skopeo_oras_crane_and_cosign_log_in_and_work_over_https() {
    let registry = SecureRegistry::start("");
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();

    // helm: login with the CA file, push, pull.
    quarry_e2e::run_with_stdin(
        helm(dir)
            .args([
                "registry",
                "login",
                &host,
                "--username",
                ADMIN,
                "--password-stdin",
            ])
            .arg("--ca-file")
            .arg(&registry.ca_file),
        PASSWORD,
    );
    run(helm(dir).args(["create", "demo"]));
    run(helm(dir).args(["package", "demo"]));
    let pushed = run(helm(dir)
        .args(["push", "demo-0.1.0.tgz", &format!("oci://{host}/charts")])
        .arg("--ca-file")
        .arg(&registry.ca_file));
    let pushed = String::from_utf8_lossy(&pushed.stderr).to_string()
        + &String::from_utf8_lossy(&pushed.stdout);
    assert!(pushed.contains("Pushed:"), "{pushed}");
    std::fs::create_dir_all(dir.join("pulled")).unwrap();
    run(helm(dir)
        .args([
            "pull",
            &format!("oci://{host}/charts/demo"),
            "--version",
            "0.1.0",
        ])
        .args(["-d", "pulled", "--ca-file"])
        .arg(&registry.ca_file));
    assert!(dir.join("pulled/demo-0.1.0.tgz").exists());

    // skopeo: login with --cert-dir, copy an image in and back out.
    let auth_file = dir.join("containers-auth.json");
    run(skopeo()
        .args(["login", "--username", ADMIN, "--password", PASSWORD])
        .arg("--cert-dir")
        .arg(&registry.cert_dir)
        .arg("--authfile")
        .arg(&auth_file)
        .arg(&host));
    let layout = dir.join("layout");
    let image = write_image_layout(&layout, "v1", 2, 64 * 1024);
    run(skopeo()
        .arg("copy")
        .arg("--dest-cert-dir")
        .arg(&registry.cert_dir)
        .arg("--authfile")
        .arg(&auth_file)
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{host}/team/app:v1")));
    let back = dir.join("back");
    run(skopeo()
        .arg("copy")
        .arg("--src-cert-dir")
        .arg(&registry.cert_dir)
        .arg("--authfile")
        .arg(&auth_file)
        .arg(format!("docker://{host}/team/app:v1"))
        .arg(format!("oci:{}:v1", back.display())));
    let index = std::fs::read_to_string(back.join("index.json")).unwrap();
    assert!(index.contains(&image.manifest_digest), "{index}");

    // oras: login with the CA file, push an artifact, attach a signature,
    // discover it through the referrers API.
    run(oras(dir)
        .args(["login", &host, "-u", ADMIN, "-p", PASSWORD, "--ca-file"])
        .arg(&registry.ca_file));
    std::fs::write(dir.join("artifact.txt"), "artifact\n").unwrap();
    std::fs::write(dir.join("sig.txt"), "signature\n").unwrap();
    run(oras(dir)
        .args(["push", "--ca-file"])
        .arg(&registry.ca_file)
        .args([
            "--artifact-type",
            "application/vnd.example.artifact",
            &format!("{host}/team/artifact:v1"),
            "artifact.txt",
        ]));
    run(oras(dir)
        .args(["attach", "--ca-file"])
        .arg(&registry.ca_file)
        .args([
            "--artifact-type",
            "application/vnd.example.signature",
            &format!("{host}/team/artifact:v1"),
            "sig.txt",
        ]));
    let discovered = run_text(
        oras(dir)
            .args(["discover", "--format", "json", "--ca-file"])
            .arg(&registry.ca_file)
            .arg(format!("{host}/team/artifact:v1")),
    );
    assert!(
        discovered.contains("application/vnd.example.signature"),
        "{discovered}"
    );

    // crane and cosign read the credentials oras stored in
    // $HOME/.docker/config.json, and trust the CA through SSL_CERT_FILE.
    let cosign_image = dir.join("cosign-layout");
    let signed = write_image_layout(&cosign_image, "v1", 1, 16 * 1024);
    run(trust(crane(dir).arg("push"), &registry)
        .arg(&cosign_image)
        .arg(format!("{host}/signed/app:v1")));
    let reference = format!("{host}/signed/app@{}", signed.manifest_digest);
    run(cosign(dir).arg("generate-key-pair"));
    run(trust(&mut cosign(dir), &registry)
        .args(["sign", "--key", "cosign.key", "--tlog-upload=false"])
        .arg(&reference));
    let verified = run_text(
        trust(&mut cosign(dir), &registry)
            .args([
                "verify",
                "--key",
                "cosign.pub",
                "--insecure-ignore-tlog=true",
            ])
            .arg(&reference),
    );
    assert!(verified.contains(&signed.manifest_digest), "{verified}");

    // Without the CA, clients refuse the registry's certificate.
    let other = tempfile::tempdir().unwrap();
    let untrusted = fails(oras(other.path()).args(["login", &host, "-u", ADMIN, "-p", PASSWORD]));
    assert!(untrusted.contains("certificate"), "{untrusted}");
}

/// The Python ORAS client pushes and pulls with credentials. It asks for a
/// token with the scope of the first challenge (a blob HEAD) and reuses it
/// for the upload, asking again only after a 403: the blob HEAD's
/// challenge asks for pull and push, granted as far as the account goes.
#[test]
fn the_python_oras_client_pushes_and_pulls_with_credentials() {
    const SCRIPT: &str = r#"
import sys, oras.client
mode, host, user, password, target = sys.argv[1:6]
client = oras.client.OrasClient(hostname=host)
client.login(username=user, password=password)
if mode == "push":
    response = client.push(files=["artifact.txt"], target=target)
    print("pushed", response.status_code)
else:
    print("pulled", client.pull(target=target, outdir="pulled"))
"#;
    let registry = SecureRegistry::start("");
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(dir.join("artifact.txt"), "made by oras-py\n").unwrap();
    let python = |mode: &str, user: &str, target: &str| {
        let mut c = oras_py(dir);
        c.env("REQUESTS_CA_BUNDLE", &registry.ca_file)
            .args(["-c", SCRIPT, mode, &host, user, PASSWORD, target]);
        c
    };
    let target = format!("{host}/team/python:v1");
    let pushed = run_text(&mut python("push", PUSHER, &target));
    assert!(pushed.contains("pushed 201"), "{pushed}");
    let pulled = run_text(&mut python("pull", READER, &target));
    assert!(pulled.contains("pulled"), "{pulled}");
    assert_eq!(
        std::fs::read_to_string(dir.join("pulled/artifact.txt")).unwrap(),
        "made by oras-py\n"
    );
    // Not tried here: a pull-only account's push. oras-py retries a
    // refusal with backoff for two minutes before it reports it; the
    // refusal itself is `refusals_are_precise_and_store_nothing`'s.
}

/// TLS 1.2 and 1.3 only, and in 1.2 only forward-secret AEAD suites:
/// `openssl s_client` is let try what it would refuse itself (security
/// level 0) so the refusal is the server's.
#[test]
fn tls_speaks_only_1_2_and_1_3_with_modern_suites() {
    let registry = SecureRegistry::start("");
    let connect = |args: &[&str]| {
        let out = Command::new(quarry_e2e::tool("openssl"))
            .args(["s_client", "-connect", &registry.host()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    for refused in [
        &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"][..],
        &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
        &["-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"],
        &[
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0",
        ],
        &["-tls1_2", "-cipher", "AES128-GCM-SHA256:@SECLEVEL=0"],
    ] {
        let (ok, text) = connect(refused);
        assert!(
            !ok && text.contains("alert"),
            "{refused:?} was not refused by the server:\n{text}"
        );
    }
    let (ok, text) = connect(&["-tls1_2"]);
    assert!(ok, "TLS 1.2: {text}");
    assert!(
        text.contains("Cipher is ECDHE-") && (text.contains("GCM") || text.contains("CHACHA20")),
        "TLS 1.2 chose an old suite: {text}"
    );
    let (ok, text) = connect(&["-tls1_3"]);
    assert!(ok && text.contains("TLSv1.3"), "TLS 1.3: {text}");
}

#[test]
fn conformance_v1_with_credentials_over_https() {
    let registry = SecureRegistry::start("");
    let ca = registry.ca_file.display().to_string();
    v1_suite(
        &registry.url(),
        true,
        &[
            ("SSL_CERT_FILE", &ca),
            ("OCI_USERNAME", ADMIN),
            ("OCI_PASSWORD", PASSWORD),
        ],
    )
    .assert_clean(V1_MIN_PASSED, V1_MAX_SKIPPED, &registry.registry.log_text());
    // The suite really went through the token flow.
    let metrics = registry
        .http()
        .get(format!("{}/metrics", registry.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let issued = metrics
        .lines()
        .find(|l| l.starts_with("quarry_auth_tokens_issued_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_default();
    assert!(issued >= 1.0, "no token was issued:\n{metrics}");
}

#[test]
fn refusals_are_precise_and_store_nothing() {
    let registry = SecureRegistry::start("ANONYMOUS_PULL_NAMESPACES: [public]\n");
    let host = registry.host();
    let http = registry.http();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let layout = dir.join("layout");
    let image = write_image_layout(&layout, "v1", 1, 32 * 1024);

    // Anonymous push: 401 with a challenge naming the realm, service and
    // scope; a client that follows it gets a token without push.
    let response = http
        .post(format!("{}/v2/team/app/blobs/uploads/", registry.url()))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response
        .headers()
        .get("www-authenticate")
        .expect("challenge")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"https://{host}/auth/token\",service=\"quarry-registry\",scope=\"repository:team/app:pull,push\""
        )
    );
    let anonymous: serde_json::Value = http
        .get(format!("https://{host}/auth/token"))
        .query(&[
            ("service", "quarry-registry"),
            ("scope", "repository:team/app:pull,push"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let anonymous_token = anonymous["token"].as_str().unwrap();
    let retried = http
        .post(format!("{}/v2/team/app/blobs/uploads/", registry.url()))
        .bearer_auth(anonymous_token)
        .send()
        .unwrap();
    assert_eq!(retried.status(), StatusCode::UNAUTHORIZED);
    // A real client pushing without login is refused the same way.
    let out = fails(
        trust(crane(dir).arg("push"), &registry)
            .arg(&layout)
            .arg(format!("{host}/team/app:v1")),
    );
    // crane's first request is a HEAD, whose 401 has no body to print.
    assert!(out.contains("401 Unauthorized"), "{out}");

    // Wrong password: at the token endpoint and with Basic on /v2/.
    let wrong = http
        .get(format!("https://{host}/auth/token"))
        .basic_auth(ADMIN, Some("wrong"))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong = http
        .get(format!("https://{host}/v2/"))
        .basic_auth(ADMIN, Some("wrong"))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let out = fails(
        skopeo()
            .args(["login", "--username", ADMIN, "--password", "wrong"])
            .arg("--cert-dir")
            .arg(&registry.cert_dir)
            .arg("--authfile")
            .arg(dir.join("wrong-auth.json"))
            .arg(&host),
    );
    // skopeo words the 401 of the token endpoint itself.
    assert!(out.contains("invalid username/password"), "{out}");

    // The pull-only robot: its push is refused with 403 naming its rights.
    run(oras(dir)
        .args(["login", &host, "-u", READER, "-p", PASSWORD, "--ca-file"])
        .arg(&registry.ca_file));
    std::fs::write(dir.join("a.txt"), "robot content\n").unwrap();
    let out = fails(
        oras(dir)
            .args(["push", "--ca-file"])
            .arg(&registry.ca_file)
            .args([&format!("{host}/team/robot:v1"), "a.txt"]),
    );
    assert!(
        out.contains("account team+reader may not push in repository team/robot"),
        "{out}"
    );
    let robot_token = token(&registry, READER, "repository:team/robot:pull,push");
    let denied = http
        .post(format!("{}/v2/team/robot/blobs/uploads/", registry.url()))
        .bearer_auth(&robot_token)
        .send()
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let body = denied.text().unwrap();
    assert!(body.contains("DENIED"), "{body}");

    // A token for repository A used on repository B: 401 (ask for a token
    // for B) when the account could have one, 403 when it could not.
    let admin_a = token(&registry, ADMIN, "repository:team/a:pull,push");
    let on_b = http
        .get(format!("{}/v2/team/b/tags/list", registry.url()))
        .bearer_auth(&admin_a)
        .send()
        .unwrap();
    assert_eq!(on_b.status(), StatusCode::UNAUTHORIZED);
    assert!(
        on_b.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"repository:team/b:pull\"")
    );
    let pusher_team = token(&registry, PUSHER, "repository:team/a:pull,push");
    let elsewhere = http
        .post(format!("{}/v2/other/a/blobs/uploads/", registry.url()))
        .bearer_auth(&pusher_team)
        .send()
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
    // A token forged with another key is refused.
    let mut forged = admin_a.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let refused = http
        .get(format!("{}/v2/team/a/tags/list", registry.url()))
        .bearer_auth(&forged)
        .send()
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // Nothing of the refused pushes was stored.
    for repo in ["team/app", "team/robot", "other/a"] {
        assert_eq!(
            manifest_status(&registry, repo, "v1"),
            StatusCode::NOT_FOUND,
            "{repo}"
        );
    }
    let (_, repos) = catalog(&registry, Some(ADMIN));
    assert!(
        repos.is_empty(),
        "refused pushes left repositories: {repos:?}"
    );
    for layer in &image.layer_digests {
        let blob = http
            .head(format!("{}/v2/team/app/blobs/{layer}", registry.url()))
            .basic_auth(ADMIN, Some(PASSWORD))
            .send()
            .unwrap();
        assert_eq!(blob.status(), StatusCode::NOT_FOUND);
    }

    // Anonymous pull works where allowed, nowhere else; the catalog shows
    // each caller what they may pull.
    run(oras(dir)
        .args(["login", &host, "-u", ADMIN, "-p", PASSWORD, "--ca-file"])
        .arg(&registry.ca_file));
    for repo in ["public/tool", "team/app", "private/x"] {
        run(trust(crane(dir).arg("push"), &registry)
            .arg(&layout)
            .arg(format!("{host}/{repo}:v1")));
    }
    let stranger = tempfile::tempdir().unwrap();
    let pulled = run_text(
        trust(&mut crane(stranger.path()), &registry)
            .arg("digest")
            .arg(format!("{host}/public/tool:v1")),
    );
    assert_eq!(pulled.trim(), image.manifest_digest);
    let out = fails(
        trust(&mut crane(stranger.path()), &registry)
            .arg("digest")
            .arg(format!("{host}/team/app:v1")),
    );
    assert!(out.contains("UNAUTHORIZED"), "{out}");
    assert_eq!(catalog(&registry, None).1, vec!["public/tool"]);
    assert_eq!(
        catalog(&registry, Some(READER)).1,
        vec!["public/tool", "team/app"]
    );
    assert_eq!(
        catalog(&registry, Some(ADMIN)).1,
        vec!["private/x", "public/tool", "team/app"]
    );
}

#[test]
fn failed_logins_are_limited_per_client() {
    let registry = SecureRegistry::start("AUTH_FAILED_LOGINS_PER_MINUTE: 10\n");
    let http = registry.http();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let response = http
            .get(format!("{}/auth/token", registry.url()))
            .basic_auth(ADMIN, Some("guess"))
            .send()
            .unwrap();
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "Retry-After {retry}");
            let body = response.text().unwrap();
            assert!(body.contains("TOOMANYREQUESTS"), "{body}");
        }
    }
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((refused, limited), (10, 10), "{statuses:?}");
    // While limited, even the right password is not checked.
    let right = http
        .get(format!("{}/v2/", registry.url()))
        .basic_auth(ADMIN, Some(PASSWORD))
        .send()
        .unwrap();
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    // The log names the account, never the password.
    let log = registry.registry.log_text();
    assert!(log.contains("failed login"), "{log}");
    assert!(!log.contains("guess") && !log.contains(PASSWORD), "{log}");
}

#[test]
fn expired_tokens_are_refused() {
    let registry = SecureRegistry::start("AUTH_TOKEN_LIFETIME_SECONDS: 5\n");
    let http = registry.http();
    let bearer = token(&registry, ADMIN, "repository:team/a:pull");
    let fresh = http
        .get(format!("{}/v2/team/a/tags/list", registry.url()))
        .bearer_auth(&bearer)
        .send()
        .unwrap();
    // Authorized (the repository does not exist yet).
    assert_eq!(fresh.status(), StatusCode::NOT_FOUND);
    std::thread::sleep(Duration::from_secs(6));
    let expired = http
        .get(format!("{}/v2/team/a/tags/list", registry.url()))
        .bearer_auth(&bearer)
        .send()
        .unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert!(expired.headers().contains_key("www-authenticate"));
    let body = expired.text().unwrap();
    assert!(body.contains("expired"), "{body}");
}

#[test]
fn certificate_and_accounts_changes_apply_without_restart() {
    let registry = SecureRegistry::start("");
    let pid = registry.registry.pid();
    let old_client = registry.http();
    let ping = |client: &reqwest::blocking::Client| {
        client
            .get(format!("{}/v2/", registry.url()))
            .basic_auth(ADMIN, Some(PASSWORD))
            .send()
            .map(|r| r.status())
    };
    assert_eq!(ping(&old_client).unwrap(), StatusCode::OK);

    // Rotate to a certificate from another CA, as cert-manager would.
    let new_ca = TestCa::new("rotated CA");
    let (cert, key) = new_ca.issue(&["127.0.0.1", "localhost"]);
    let new_ca_file = registry.dir.path().join("new-ca.crt");
    std::fs::write(&new_ca_file, &new_ca.cert_pem).unwrap();
    registry.replace(&registry.key_file, &key);
    registry.replace(&registry.cert_file, &cert);
    let new_client = client_trusting(&new_ca_file);
    let deadline = Instant::now() + Duration::from_secs(15);
    while ping(&new_client).is_err() {
        assert!(
            Instant::now() < deadline,
            "new certificate not served:\n{}",
            registry.registry.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The connection opened before the rotation still works; a new
    // connection trusting only the old CA does not.
    assert_eq!(ping(&old_client).unwrap(), StatusCode::OK);
    assert!(ping(&client_trusting(&registry.ca_file)).is_err());
    assert_eq!(registry.registry.pid(), pid, "the registry restarted");

    // A broken pair keeps the certificate in force.
    registry.replace(&registry.cert_file, "not a certificate");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        ping(&client_trusting(&new_ca_file)).unwrap(),
        StatusCode::OK
    );

    // Accounts: a new password for the reader takes effect live.
    let reader_ok = |password: &str| {
        new_client
            .get(format!("{}/v2/", registry.url()))
            .basic_auth(READER, Some(password))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(reader_ok(PASSWORD), StatusCode::OK);
    let new_hash = hash_password("a new password");
    let old_hash = hash_password(PASSWORD);
    let yaml = accounts_yaml(&old_hash).replacen(
        &format!("{READER}:\n    password_hash: \"{old_hash}\""),
        &format!("{READER}:\n    password_hash: \"{new_hash}\""),
        1,
    );
    registry.replace(&registry.accounts_file, &yaml);
    let deadline = Instant::now() + Duration::from_secs(15);
    while reader_ok("a new password") != StatusCode::OK {
        assert!(Instant::now() < deadline, "new accounts file not read");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(reader_ok(PASSWORD), StatusCode::UNAUTHORIZED);
    assert_eq!(registry.registry.pid(), pid);
}
