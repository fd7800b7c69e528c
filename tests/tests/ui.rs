//! The web UI against a registry filled by real clients (crane image and
//! multi-platform index, helm push of a chart with values and a README,
//! cosign sign, oras artifacts with an SBOM and a signature of the SBOM),
//! then restarted with accounts: login, each view, escaping of pushed
//! text, CSRF and rights: over HTTP page by page, and in real headless
//! Chromium (`chromium_signs_in_shows_each_view_and_runs_nothing_pushed`).

use quarry_e2e::clients::{cosign, cosign_sign_plain_http, crane, helm, oras, skopeo_copy_layout};
use quarry_e2e::oci::write_image_layout;
use quarry_e2e::secure::{ADMIN, PASSWORD, READER, accounts_yaml, hash_password};
use quarry_e2e::{Registry, run, run_text};

const XSS: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

/// An HTTP client that does not follow redirects (to see the cookies).
fn client() -> reqwest::blocking::Client {
    quarry_e2e::http::blocking_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `name=value` of a Set-Cookie header named `name`.
fn set_cookie(response: &reqwest::blocking::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

/// The value of the hidden `csrf` field of a page.
fn csrf_field(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

struct Browser {
    http: reqwest::blocking::Client,
    base: String,
    cookie: String,
}

impl Browser {
    fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    fn post(&self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> (u16, String) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            );
        if let Some(o) = origin {
            request = request.header("Origin", o);
        }
        let r = request.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// Log in through the form; the session cookie is kept.
    fn log_in(base: &str, user: &str) -> Browser {
        let http = client();
        let form = http.get(format!("{base}/ui/login")).send().unwrap();
        let login_cookie = set_cookie(&form, "quarry_login").expect("login cookie");
        let csrf = csrf_field(&form.text().unwrap());
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("username", user), ("password", PASSWORD), ("csrf", &csrf)])
            .finish();
        let r = http
            .post(format!("{base}/ui/login"))
            .header("Cookie", &login_cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "login of {user} refused");
        let session = set_cookie(&r, "quarry_session").expect("session cookie");
        let raw = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("quarry_session="))
            .unwrap()
            .to_string();
        assert!(
            raw.contains("HttpOnly") && raw.contains("SameSite=Strict"),
            "{raw}"
        );
        Browser {
            http,
            base: base.to_string(),
            cookie: session,
        }
    }
}

/// What `filled` pushed.
struct Filled {
    registry: Registry,
    image: String,
    other: String,
    /// The two-platform index, signed as an OCI 1.1 referrer.
    index: String,
}

/// A registry filled by real clients, restarted with the test accounts.
fn filled(dir: &std::path::Path) -> Filled {
    let mut registry = Registry::start_with_config(Some("FEATURE_UI: true\n"));
    let host = registry.host();

    // An image with skopeo, and a two-platform index with crane.
    let image = write_image_layout(&dir.join("img"), "v1", 2, 8 * 1024);
    run(&mut skopeo_copy_layout(
        &dir.join("img"),
        &format!("{host}/apps/web:1"),
    ));
    let other = write_image_layout(&dir.join("img2"), "v1", 1, 4 * 1024);
    run(crane(dir)
        .args(["push", "--insecure"])
        .arg(dir.join("img2"))
        .arg(format!("{host}/apps/web:arm")));
    run(crane(dir)
        .args(["index", "append", "--insecure", "-m"])
        .arg(format!("{host}/apps/web:1"))
        .arg("-m")
        .arg(format!("{host}/apps/web:arm"))
        .arg("-t")
        .arg(format!("{host}/apps/web:multi")));
    // cosign signs the image (the sha256-<hex>.sig tag scheme).
    run(cosign(dir).arg("generate-key-pair"));
    run(&mut cosign_sign_plain_http(
        dir,
        &format!("{host}/apps/web@{}", image.manifest_digest),
    ));
    // ... and the index, as an OCI 1.1 referrer (the other storage mode).
    let index = run_text(
        crane(dir)
            .args(["digest", "--insecure"])
            .arg(format!("{host}/apps/web:multi")),
    )
    .trim()
    .to_string();
    run(
        cosign_sign_plain_http(dir, &format!("{host}/apps/web@{index}"))
            .env("COSIGN_EXPERIMENTAL", "1")
            .arg("--registry-referrers-mode=oci-1-1"),
    );
    // A chart with values and a README carrying a payload.
    run(helm(dir).args(["create", "demo"]));
    std::fs::write(dir.join("demo/README.md"), format!("# Demo\n{XSS}\n")).unwrap();
    std::fs::write(dir.join("demo/values.yaml"), "replicaCount: 3\n").unwrap();
    run(helm(dir).args(["package", "demo"]));
    run(helm(dir)
        .args(["push", "--plain-http", "demo-0.1.0.tgz"])
        .arg(format!("oci://{host}/charts")));
    // An artifact with a hostile annotation, an SBOM and its signature.
    std::fs::write(dir.join("a.txt"), "artifact\n").unwrap();
    std::fs::write(
        dir.join("sbom.json"),
        r#"{"spdxVersion":"SPDX-2.3","packages":[{"name":"zlib","versionInfo":"1.3"},{"name":"openssl","versionInfo":"3.0"}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("sig.txt"), "signature of the sbom\n").unwrap();
    let artifact = format!("{host}/apps/tool:v1");
    run(oras(dir)
        .args([
            "push",
            "--plain-http",
            "--artifact-type",
            "application/vnd.example.tool",
        ])
        .arg("--annotation")
        .arg(format!("note={XSS}"))
        .arg(&artifact)
        .arg("a.txt:text/plain"));
    let sbom = run_text(
        oras(dir)
            .args([
                "attach",
                "--plain-http",
                "--format",
                "json",
                "--artifact-type",
                "application/spdx+json",
            ])
            .arg(&artifact)
            .arg("sbom.json:application/spdx+json"),
    );
    let sbom: serde_json::Value = serde_json::from_str(&sbom).unwrap();
    let sbom_digest = sbom["digest"].as_str().unwrap().to_string();
    run(oras(dir)
        .args([
            "attach",
            "--plain-http",
            "--artifact-type",
            "application/vnd.example.signature",
        ])
        .arg(format!("{host}/apps/tool@{sbom_digest}"))
        .arg("sig.txt:text/plain"));
    // A repository the reader may see.
    run(crane(dir)
        .args(["push", "--insecure"])
        .arg(dir.join("img2"))
        .arg(format!("{host}/team/app:1")));

    // The same storage, now with accounts.
    let accounts = dir.join("accounts.yaml");
    std::fs::write(&accounts, accounts_yaml(&hash_password(PASSWORD))).unwrap();
    let key = dir.join("token.key");
    std::fs::write(&key, hex::encode(rand::random::<[u8; 32]>())).unwrap();
    // Policies of a namespace nobody pushes to, for the policy page.
    let policies = "FEATURE_IMMUTABLE_TAGS: true\nIMMUTABLE_TAGS_POLICIES: [{namespace: archive, tagPattern: 'v.*'}]\nFEATURE_QUOTA_MANAGEMENT: true\nNAMESPACE_QUOTAS: [{namespace: archive, limit_bytes: 1073741824}]\nFEATURE_AUTO_PRUNE: true\nAUTO_PRUNE_POLICIES: [{namespace: archive, method: number_of_tags, value: 5}]\n";
    registry.write_config(&format!(
        "AUTH_ACCOUNTS_FILE: {}\nAUTH_TOKEN_KEY_FILE: {}\n{policies}",
        accounts.display(),
        key.display()
    ));
    registry.restart();
    Filled {
        registry,
        image: image.manifest_digest,
        other: other.manifest_digest,
        index,
    }
}

#[test]
fn the_ui_shows_images_charts_signatures_and_sboms_with_rights_and_csrf() {
    let work = tempfile::tempdir().unwrap();
    let Filled {
        registry,
        image,
        other,
        index,
    } = filled(work.path());
    let host = registry.host();
    let base = registry.url();

    // / goes to the UI; /v2/ is untouched.
    let root = client().get(format!("{base}/")).send().unwrap();
    assert!(root.status().is_redirection());
    assert_eq!(root.headers()["location"], "/ui/");
    assert_eq!(
        client()
            .get(format!("{base}/v2/"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );

    // Anonymous: nothing to see, asked to sign in.
    let anonymous = Browser {
        http: client(),
        base: base.clone(),
        cookie: String::new(),
    };
    let (status, html) = anonymous.get("/ui/");
    assert_eq!(status, 200);
    assert!(
        !html.contains("apps/web") && html.contains("Sign in"),
        "{html}"
    );
    let (status, _) = anonymous.get("/ui/repo/apps/web");
    assert_eq!(status, 404);

    let admin = Browser::log_in(&base, ADMIN);
    let (_, html) = admin.get("/ui/");
    for repo in ["apps/web", "apps/tool", "charts/demo", "team/app"] {
        assert!(html.contains(repo), "{repo} missing from the list:\n{html}");
    }
    // Sizes: a namespace of one repository has that repository's size.
    let cell = |html: &str, marker: &str| {
        let at = html
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} missing:\n{html}"));
        let row = html[at..].split("</tr>").next().unwrap();
        let size = row.rsplit("class=\"size\">").next().unwrap();
        size.split('<').next().unwrap().to_string()
    };
    let team = cell(&html, "data-namespace=\"team\"");
    assert_eq!(team, cell(&html, "data-repository=\"team/app\""));
    assert!(team.ends_with("KiB"), "team/ is {team}");
    let (_, html) = admin.get("/ui/?q=char");
    assert!(
        html.contains("charts/demo") && !html.contains("apps/web"),
        "{html}"
    );

    // The repository: kinds, the pull command, the signature folded.
    let (_, html) = admin.get("/ui/repo/apps/web");
    let row = |tag: &str| {
        let at = html
            .find(&format!("data-tag=\"{tag}\""))
            .unwrap_or_else(|| panic!("no row for {tag}:\n{html}"));
        html[at..].split("</tr>").next().unwrap().to_string()
    };
    assert!(row("1").contains(">image<"), "{}", row("1"));
    assert!(
        row("multi").contains("multi-platform index"),
        "{}",
        row("multi")
    );
    assert!(
        row("1").contains(&format!("podman pull {host}/apps/web:1"))
            || row("1").contains("podman pull")
    );
    let sig_tag = format!("{}.sig", image.replace(':', "-"));
    assert!(
        !html.contains(&format!("data-tag=\"{sig_tag}\"")),
        "the signature tag is listed as a tag of its own"
    );
    assert!(
        html.contains(&sig_tag),
        "the signature is not folded under its image"
    );
    assert!(
        html.contains("Delete tag"),
        "the admin has no delete button"
    );

    // The image: layers, config, the cosign signature with its payload.
    let (_, html) = admin.get(&format!("/ui/manifest/apps/web@{}", image));
    assert!(html.contains("Layers") && html.contains("Config"), "{html}");
    assert!(html.contains("signature"), "{html}");
    assert!(
        html.contains(&format!("signs {}", image)),
        "the signed payload is not shown:\n{html}"
    );
    // The index: both platforms.
    let (_, html) = admin.get("/ui/repo/apps/web");
    let multi_digest = {
        let r = row("multi");
        let at = r.find("/ui/manifest/apps/web@").unwrap() + 22;
        r[at..].split('"').next().unwrap().to_string()
    };
    let (_, html_index) = admin.get(&format!("/ui/manifest/apps/web@{multi_digest}"));
    assert!(html_index.contains("Platforms"), "{html_index}");
    assert_eq!(multi_digest, index);
    assert!(
        html_index.contains("(referrers API)") && html_index.contains(&format!("signs {index}")),
        "the OCI 1.1 cosign signature of the index is not in its tree:\n{html_index}"
    );
    assert!(html_index.contains(&image[7..19]), "{html_index}");
    assert!(html_index.contains(&other[7..19]), "{html_index}");
    drop(html);

    // The chart: Chart.yaml, values and README, the payload inert.
    let (_, html) = admin.get("/ui/repo/charts/demo");
    assert!(html.contains("Helm chart"), "{html}");
    assert!(html.contains("helm pull oci://"), "{html}");
    let at = html.find("/ui/manifest/charts/demo@").unwrap();
    let link = html[at..].split('"').next().unwrap().to_string();
    let (_, html) = admin.get(&link);
    assert!(
        html.contains("replicaCount: 3"),
        "values.yaml missing:\n{html}"
    );
    assert!(html.contains("0.1.0") && html.contains("# Demo"), "{html}");
    assert!(
        !html.contains("<script>") && !html.contains("<img src=x"),
        "unescaped:\n{html}"
    );
    assert!(html.contains("&lt;script&gt;"), "{html}");

    // The artifact: the annotation escaped; SBOM with packages; its signature below it.
    let (_, html) = admin.get("/ui/repo/apps/tool");
    let at = html.find("/ui/manifest/apps/tool@").unwrap();
    let link = html[at..].split('"').next().unwrap().to_string();
    let (_, html) = admin.get(&link);
    assert!(
        html.contains("artifact (application/vnd.example.tool)"),
        "{html}"
    );
    assert!(
        !html.contains("<script>") && !html.contains("onerror=alert(2)>"),
        "unescaped:\n{html}"
    );
    assert!(
        html.contains("SPDX: 2 packages") && html.contains("package openssl 3.0"),
        "{html}"
    );
    let sbom_at = html.find("SPDX: 2 packages").unwrap();
    assert!(
        html[sbom_at..].contains("application/vnd.example.signature"),
        "the SBOM's signature is not below the SBOM:\n{html}"
    );
    let (_, policy) = admin.get("/ui/policy");
    assert!(policy.contains("FEATURE_HELM_OCI_SUPPORT"), "{policy}");
    for words in [
        "namespace archive: tags matching v.* cannot be moved or deleted",
        "namespace archive: 1.0 GiB (reject at 100 %)",
        "namespace archive: the newest 5 tags are kept",
    ] {
        assert!(policy.contains(words), "{words:?} missing:\n{policy}");
    }

    // CSRF: a post without the token, or from another site, is refused.
    let (_, page) = admin.get("/ui/repo/apps/web");
    let csrf = csrf_field(&page);
    let delete = |csrf: &str, origin: Option<&str>| {
        admin.post(
            "/ui/delete-tag",
            &[("csrf", csrf), ("repository", "apps/web"), ("tag", "arm")],
            origin,
        )
    };
    assert_eq!(delete("", None).0, 403);
    assert_eq!(delete("0123456789abcdef", None).0, 403);
    assert_eq!(delete(&csrf, Some("https://evil.example")).0, 403);
    assert!(
        admin
            .get("/ui/repo/apps/web")
            .1
            .contains("data-tag=\"arm\""),
        "deleted without a token"
    );
    assert_eq!(delete(&csrf, Some(&base)).0, 303);
    assert!(
        !admin
            .get("/ui/repo/apps/web")
            .1
            .contains("data-tag=\"arm\""),
        "not deleted"
    );

    // The reader: only team/, no delete button, the endpoint refuses.
    let reader = Browser::log_in(&base, READER);
    let (_, html) = reader.get("/ui/");
    assert!(
        html.contains("team/app") && !html.contains("apps/web"),
        "{html}"
    );
    assert_eq!(reader.get("/ui/repo/apps/web").0, 404);
    assert_eq!(
        reader.get(&format!("/ui/manifest/apps/web@{}", image)).0,
        404
    );
    let (_, html) = reader.get("/ui/repo/team/app");
    assert!(
        html.contains("data-tag=\"1\"") && !html.contains("Delete tag"),
        "{html}"
    );
    let csrf = csrf_field(&html);
    let (status, _) = reader.post(
        "/ui/delete-tag",
        &[("csrf", &csrf), ("repository", "team/app"), ("tag", "1")],
        None,
    );
    assert_eq!(status, 403);
    assert!(reader.get("/ui/repo/team/app").1.contains("data-tag=\"1\""));
    // A session does not open /v2/.
    let v2 = client()
        .get(format!("{base}/v2/team/app/tags/list"))
        .header("Cookie", &reader.cookie)
        .send()
        .unwrap();
    assert_eq!(v2.status().as_u16(), 401);
    let bearer = reader
        .cookie
        .trim_start_matches("quarry_session=")
        .to_string();
    let v2 = client()
        .get(format!("{base}/v2/team/app/tags/list"))
        .bearer_auth(bearer)
        .send()
        .unwrap();
    assert_ne!(
        v2.status().as_u16(),
        200,
        "a UI session worked as a /v2/ token"
    );

    // Signing out clears the cookie.
    let r = reader
        .http
        .post(format!("{base}/ui/logout"))
        .header("Cookie", &reader.cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cleared = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with("quarry_session=gone") && v.contains("Max-Age=0"));
    assert!(cleared, "the session cookie was not cleared");
}

#[test]
fn feature_ui_false_turns_it_off() {
    let registry = Registry::start_with_config(Some("FEATURE_UI: false\n"));
    for path in ["/", "/ui/", "/ui/login", "/ui/repo/a/b"] {
        let status = client()
            .get(format!("{}{path}", registry.url()))
            .send()
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 404, "{path}");
    }
    let v2 = client()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .unwrap();
    assert_eq!(v2.status().as_u16(), 200);
}

/// The same registry in a real Chromium: sign in through the form, each
/// view, pushed payloads inert (no dialog, no script, no injected element),
/// a cross-site form post refused, a reader without the delete button.
/// Screenshots go to target/ui-screenshots/.
#[test]
fn chromium_signs_in_shows_each_view_and_runs_nothing_pushed() {
    let work = tempfile::tempdir().unwrap();
    let Filled {
        registry, image, ..
    } = filled(work.path());
    let base = registry.url();
    let shots = quarry_e2e::workspace_root().join("target/ui-screenshots");
    let browser = quarry_e2e::browser::Browser::start();
    let inert = |page: &str| {
        assert_eq!(browser.dialog(), None, "{page}: a dialog opened");
        assert_eq!(
            browser.execute("return document.scripts.length"),
            0,
            "{page}: a script element"
        );
        assert_eq!(
            browser.execute("return document.querySelectorAll('img, [onerror]').length"),
            0,
            "{page}: an injected element"
        );
    };

    browser.goto(&format!("{base}/"));
    assert!(browser.url().ends_with("/ui/"), "{}", browser.url());
    browser.click("header .who a");
    browser.type_into("input[name=username]", ADMIN);
    browser.type_into("input[name=password]", PASSWORD);
    browser.click("form.login button");
    browser.wait_for_text("header", "Signed in as admin");
    assert!(browser.text("table.repositories").contains("charts/demo"));
    browser.screenshot(&shots.join("repositories.png"));

    browser.goto(&format!("{base}/ui/repo/apps/web"));
    assert!(
        browser
            .text("tr[data-tag=multi] .kind")
            .contains("multi-platform index")
    );
    assert!(
        browser.text("tr.supplements").contains(".sig"),
        "{}",
        browser.text("body")
    );
    browser.screenshot(&shots.join("repository.png"));

    browser.goto(&format!("{base}/ui/manifest/apps/web@{image}"));
    assert!(browser.text("ul.tree").contains(&format!("signs {image}")));
    browser.screenshot(&shots.join("image.png"));

    browser.goto(&format!("{base}/ui/repo/charts/demo"));
    browser.click("td.digest a");
    browser.wait_for_text("pre.values", "replicaCount: 3");
    assert!(
        browser.text("pre.readme").contains(XSS),
        "the README payload is not shown as text: {}",
        browser.text("pre.readme")
    );
    inert("chart");
    browser.screenshot(&shots.join("chart.png"));

    browser.goto(&format!("{base}/ui/repo/apps/tool"));
    browser.click("td.digest a");
    browser.wait_for_text("body", XSS);
    assert!(browser.text("ul.tree").contains("SPDX: 2 packages"));
    inert("artifact");
    browser.screenshot(&shots.join("referrers.png"));

    // A form on another site posting to the delete endpoint.
    let forged = format!(
        "data:text/html,<form method=post action='{base}/ui/delete-tag'><input name=repository value=apps/web><input name=tag value=1><input name=csrf value=forged><button id=go>go</button></form>"
    );
    browser.goto(&forged);
    browser.click("#go");
    browser.wait_for_text("body", "Refused");
    browser.goto(&format!("{base}/ui/repo/apps/web"));
    assert!(
        browser.find("tr[data-tag='1']").is_some(),
        "the cross-site post deleted the tag"
    );
    // The admin's own delete button works.
    browser.click("tr[data-tag=arm] button.delete");
    browser.wait_for_text("h1", "apps/web");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while browser.find("tr[data-tag=arm]").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the delete button did not delete"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Sign out; the reader sees team/ only and no delete button.
    browser.click("header form button");
    browser.wait_for_text("header", "Sign in");
    browser.goto(&format!("{base}/ui/login"));
    browser.type_into("input[name=username]", READER);
    browser.type_into("input[name=password]", PASSWORD);
    browser.click("form.login button");
    browser.wait_for_text("header", "Signed in as team+reader");
    assert!(!browser.text("body").contains("apps/web"));
    browser.goto(&format!("{base}/ui/repo/apps/web"));
    assert!(browser.text("h1").contains("Not found"));
    browser.goto(&format!("{base}/ui/repo/team/app"));
    assert!(browser.find("tr[data-tag='1']").is_some());
    assert!(
        browser.find("button.delete").is_none(),
        "the reader has a delete button"
    );
    browser.screenshot(&shots.join("reader.png"));
}

/// Over HTTPS the session cookie is Secure; anonymous viewers see exactly
/// the namespaces anonymous pulls may read.
#[test]
fn over_https_cookies_are_secure_and_anonymous_viewers_see_anonymous_namespaces() {
    let secure = quarry_e2e::secure::SecureRegistry::start("ANONYMOUS_PULL_NAMESPACES: [team]\n");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    write_image_layout(&dir.join("img"), "v1", 1, 4 * 1024);
    run(crane(dir).env("SSL_CERT_FILE", &secure.ca_file).args([
        "auth",
        "login",
        &secure.host(),
        "-u",
        ADMIN,
        "-p",
        PASSWORD,
    ]));
    for repo in ["team/app", "private/app"] {
        run(crane(dir)
            .env("SSL_CERT_FILE", &secure.ca_file)
            .arg("push")
            .arg(dir.join("img"))
            .arg(format!("{}/{repo}:1", secure.host())));
    }
    let http = quarry_e2e::secure::client_trusting(&secure.ca_file);
    let list = http
        .get(format!("{}/ui/", secure.url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        list.contains("team/app") && !list.contains("private/app"),
        "{list}"
    );
    let no_redirects = quarry_e2e::http::blocking_builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&secure.ca_file).unwrap()).unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = no_redirects
        .get(format!("{}/ui/login", secure.url()))
        .send()
        .unwrap();
    let login_cookie = set_cookie(&form, "quarry_login").unwrap();
    let csrf = csrf_field(&form.text().unwrap());
    let r = no_redirects
        .post(format!("{}/ui/login", secure.url()))
        .header("Cookie", &login_cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("username", ADMIN), ("password", PASSWORD), ("csrf", &csrf)])
                .finish(),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let raw: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let session = raw
        .iter()
        .find(|c| c.starts_with("quarry_session="))
        .expect("a session cookie");
    assert!(
        session.contains("; Secure")
            && session.contains("HttpOnly")
            && session.contains("SameSite=Strict"),
        "{session}"
    );
}
