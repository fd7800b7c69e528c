//! The UI's HTML. maud escapes every value spliced in, so what users
//! pushed (annotations, labels, chart files) is always text; no page has
//! a script, and the Content-Security-Policy forbids them besides.

use maud::{DOCTYPE, Markup, html};

use super::inspect::{Chart, ImageConfig, Kind, Manifest, Referrer};
use super::session::Viewer;
pub use crate::quota::short_bytes as bytes;

/// Where the page is served, for the pull commands.
pub struct Site {
    /// `host[:port]` as the browser reached it.
    pub host: String,
    pub viewer: Viewer,
    /// Whether the registry has accounts (else there is nothing to log in
    /// to).
    pub accounts: bool,
}

pub fn repo_url(repo: &str) -> String {
    format!("/ui/repo/{repo}")
}

pub fn manifest_url(repo: &str, digest: &str) -> String {
    format!("/ui/manifest/{repo}@{digest}")
}

fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

/// The page frame.
pub fn layout(site: &Site, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Quarry" }
                link rel="stylesheet" href="/ui/style.css";
            }
            body {
                header {
                    a.brand href="/ui/" { "Quarry" }
                    nav {
                        a href="/ui/" { "Repositories" }
                        a href="/ui/policy" { "Policy" }
                    }
                    div.who {
                        @if let Some(account) = &site.viewer.account {
                            span { "Signed in as " b { (account) } }
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(site.viewer.csrf);
                                button type="submit" { "Sign out" }
                            }
                        } @else if site.accounts {
                            a href="/ui/login" { "Sign in" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn message(site: &Site, title: &str, text: &str) -> Markup {
    layout(site, title, html! { h1 { (title) } p.message { (text) } })
}

/// One repository in the list.
pub struct RepoRow {
    pub namespace: String,
    pub name: String,
    pub tags: usize,
    /// The blobs its tagged manifests name, by digest, with their sizes.
    pub blobs: std::collections::HashMap<String, u64>,
}

/// The size of a set of blobs, each counted once.
fn size(blobs: &std::collections::HashMap<String, u64>) -> u64 {
    blobs.values().sum()
}

pub fn repositories(site: &Site, query: &str, rows: &[RepoRow], hidden_hint: bool) -> Markup {
    layout(
        site,
        "Repositories",
        html! {
            h1 { "Repositories" }
            form.search method="get" action="/ui/" {
                input type="search" name="q" value=(query) placeholder="Search by name" aria-label="Search by name";
                button type="submit" { "Search" }
            }
            @if rows.is_empty() {
                p.message { "No repository to show." }
                @if hidden_hint { p { "Sign in to see the repositories your account may pull." } }
            } @else {
                table.repositories {
                    thead { tr { th { "Repository" } th { "Tags" } th { "Size" } } }
                    tbody {
                        @for group in by_namespace(rows) {
                            tr.namespace data-namespace=(group.name) {
                                th { (group.name) "/" }
                                th { (group.tags) }
                                th.size { (bytes(group.size)) }
                            }
                            @for row in &group.members {
                                tr.repository data-repository=(row.name) {
                                    td { a href=(repo_url(&row.name)) { (row.name) } }
                                    td { (row.tags) }
                                    td.size { (bytes(size(&row.blobs))) }
                                }
                            }
                        }
                    }
                }
                p.message { "Sizes count each blob the tagged manifests name once per repository (and once per namespace for its total)." }
            }
        },
    )
}

/// A namespace of the list: its repositories, their tags, and the size of
/// what they name together (shared blobs once).
struct NamespaceGroup<'a> {
    name: &'a str,
    members: Vec<&'a RepoRow>,
    tags: usize,
    size: u64,
}

/// The rows grouped by namespace, in order (the list is sorted by name).
fn by_namespace(rows: &[RepoRow]) -> Vec<NamespaceGroup<'_>> {
    let mut groups: Vec<(&str, Vec<&RepoRow>)> = Vec::new();
    for row in rows {
        match groups.last_mut() {
            Some((ns, members)) if *ns == row.namespace => members.push(row),
            _ => groups.push((&row.namespace, vec![row])),
        }
    }
    groups
        .into_iter()
        .map(|(name, members)| {
            let union: std::collections::HashMap<&String, u64> = members
                .iter()
                .flat_map(|r| r.blobs.iter().map(|(d, s)| (d, *s)))
                .collect();
            NamespaceGroup {
                name,
                tags: members.iter().map(|r| r.tags).sum(),
                size: union.values().sum(),
                members,
            }
        })
        .collect()
}

/// One tag of a repository page.
pub struct TagRow {
    pub tag: String,
    pub manifest: Option<std::sync::Arc<Manifest>>,
    /// When the tag was last set (RFC 3339).
    pub pushed: String,
    /// Signature, SBOM and attestation tags folded under this one.
    pub supplements: Vec<(String, String)>,
}

pub fn pull_command(host: &str, repo: &str, tag: &str, kind: &Kind) -> String {
    match kind {
        Kind::HelmChart => {
            let chart = repo.rsplit('/').next().unwrap_or(repo);
            let base = repo.rsplit_once('/').map_or("", |(b, _)| b);
            let base = if base.is_empty() {
                host.to_string()
            } else {
                format!("{host}/{base}")
            };
            format!("helm pull oci://{base}/{chart} --version {tag}")
        }
        Kind::Image | Kind::Index => format!("podman pull {host}/{repo}:{tag}"),
        _ => format!("oras pull {host}/{repo}:{tag}"),
    }
}

pub fn repository(
    site: &Site,
    repo: &str,
    rows: &[TagRow],
    loose_supplements: &[(String, String)],
    may_delete: bool,
) -> Markup {
    layout(
        site,
        repo,
        html! {
            h1 { (repo) }
            @if rows.is_empty() { p.message { "This repository has no tags." } }
            table.tags {
                thead { tr { th { "Tag" } th { "Kind" } th { "Digest" } th { "Size" } th { "Pushed" } th { "Pull" } @if may_delete { th {} } } }
                tbody {
                    @for row in rows {
                        tr.tag data-tag=(row.tag) {
                            td.name { (row.tag) }
                            @match &row.manifest {
                                Some(m) => {
                                    td.kind { (m.kind.label()) }
                                    td.digest { a href=(manifest_url(repo, &m.digest.to_string())) title=(m.digest.to_string()) { (short(&m.digest.to_string())) } }
                                    td.size { (bytes(m.size)) }
                                    td.pushed { (row.pushed) }
                                    td.pull { code { (pull_command(&site.host, repo, &row.tag, &m.kind)) } }
                                }
                                None => {
                                    td.kind { "unreadable" } td {} td {} td.pushed { (row.pushed) } td {}
                                }
                            }
                            @if may_delete {
                                td { button.delete type="submit" form="delete-tag" name="tag" value=(row.tag) { "Delete tag" } }
                            }
                        }
                        @if !row.supplements.is_empty() {
                            tr.supplements {
                                td colspan="7" {
                                    @for (tag, kind) in &row.supplements {
                                        span.supplement { (kind) ": " code { (tag) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if may_delete {
                // One form for every row's button (its name=tag says which).
                form #delete-tag method="post" action="/ui/delete-tag" {
                    input type="hidden" name="csrf" value=(site.viewer.csrf);
                    input type="hidden" name="repository" value=(repo);
                }
            }
            @if !loose_supplements.is_empty() {
                details {
                    summary { "Signature and SBOM tags of untagged manifests (" (loose_supplements.len()) ")" }
                    ul { @for (tag, kind) in loose_supplements { li { (kind) ": " code { (tag) } } } }
                }
            }
        },
    )
}

/// Everything the manifest page shows.
pub struct ManifestPage<'a> {
    pub repo: &'a str,
    pub manifest: &'a Manifest,
    pub tags: Vec<String>,
    pub config: Option<ImageConfig>,
    pub chart: Option<Chart>,
    pub referrers: Vec<Referrer>,
}

fn pairs(title: &str, rows: &[(String, String)]) -> Markup {
    html! {
        @if !rows.is_empty() {
            h2 { (title) }
            table.pairs { tbody { @for (k, v) in rows { tr { th { (k) } td { (v) } } } } }
        }
    }
}

fn tree(repo: &str, nodes: &[Referrer]) -> Markup {
    html! {
        ul.tree {
            @for node in nodes {
                li.referrer data-kind=(node.manifest.kind.label()) {
                    span.kind { (node.manifest.kind.label()) }
                    " "
                    a href=(manifest_url(repo, &node.manifest.digest.to_string())) { (short(&node.manifest.digest.to_string())) }
                    @if let Some(t) = &node.manifest.artifact_type { " " span.type { (t) } }
                    " " span.found { "(" (node.found_by) ")" }
                    @if !node.details.is_empty() {
                        ul.details { @for d in &node.details { li { (d) } } }
                    }
                    @if !node.children.is_empty() { (tree(repo, &node.children)) }
                }
            }
        }
    }
}

pub fn manifest(site: &Site, page: &ManifestPage<'_>) -> Markup {
    let m = page.manifest;
    let digest = m.digest.to_string();
    let reference = page.tags.first().cloned().unwrap_or_else(|| digest.clone());
    layout(
        site,
        &format!("{}@{}", page.repo, short(&digest)),
        html! {
            h1 { a href=(repo_url(page.repo)) { (page.repo) } " @ " span.digest { (digest) } }
            table.pairs {
                tbody {
                    tr { th { "Kind" } td.kind { (m.kind.label()) } }
                    tr { th { "Media type" } td { (m.media_type) } }
                    @if let Some(t) = &m.artifact_type { tr { th { "Artifact type" } td { (t) } } }
                    tr { th { "Size" } td { (bytes(m.size)) } }
                    @if !page.tags.is_empty() { tr { th { "Tags" } td { (page.tags.join(", ")) } } }
                    tr { th { "Pull" } td { code { (pull_command(&site.host, page.repo, &reference, &m.kind)) } } }
                }
            }
            @if m.kind == Kind::Index || !m.entries().is_empty() {
                h2 { "Platforms" }
                table.platforms {
                    thead { tr { th { "Platform" } th { "Digest" } th { "Size" } } }
                    tbody {
                        @for e in m.entries() {
                            tr {
                                td { (e.platform.clone().unwrap_or_else(|| e.artifact_type.clone().unwrap_or_default())) }
                                td { a href=(manifest_url(page.repo, &e.digest)) { (short(&e.digest)) } }
                                td { (bytes(e.size)) }
                            }
                        }
                    }
                }
            }
            @if let Some(c) = &page.chart {
                h2 { "Helm chart" }
                table.pairs.chart {
                    tbody {
                        tr { th { "Name" } td { (c.name) } }
                        tr { th { "Version" } td { (c.version) } }
                        tr { th { "App version" } td { (c.app_version) } }
                        tr { th { "Description" } td { (c.description) } }
                        @if !c.dependencies.is_empty() { tr { th { "Dependencies" } td { (c.dependencies.join(", ")) } } }
                        @if !c.maintainers.is_empty() { tr { th { "Maintainers" } td { (c.maintainers.join(", ")) } } }
                        tr { th { "Provenance" } td { @if c.provenance { "pushed" } @else { "none" } } }
                    }
                }
                @if let Some(values) = &c.values { h3 { "values.yaml" } pre.values { (values) } }
                @if let Some(readme) = &c.readme { h3 { "README" } pre.readme { (readme) } }
            }
            @if let Some(c) = &page.config {
                h2 { "Config" }
                table.pairs.config {
                    tbody {
                        tr { th { "Created" } td { (c.created) } }
                        tr { th { "Platform" } td { (c.platform) } }
                        tr { th { "Entrypoint" } td { code { (c.entrypoint) } } }
                        tr { th { "Command" } td { code { (c.cmd) } } }
                        @if !c.env.is_empty() { tr { th { "Environment" } td { @for e in &c.env { code { (e) } br; } } } }
                    }
                }
                (pairs("Labels", &c.labels))
            }
            @let layers = m.layers();
            @if !layers.is_empty() {
                h2 { "Layers" }
                table.layers {
                    thead { tr { th { "Digest" } th { "Media type" } th { "Size" } } }
                    tbody { @for l in &layers { tr { td { (short(&l.digest)) } td { (l.media_type) } td { (bytes(l.size)) } } } }
                }
            }
            (pairs("Annotations", &m.annotations()))
            h2 { "Referrers" }
            @if page.referrers.is_empty() { p.message { "Nothing refers to this manifest." } }
            @else { (tree(page.repo, &page.referrers)) }
        },
    )
}

pub fn login(site: &Site, error: Option<&str>) -> Markup {
    layout(
        site,
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.login method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(site.viewer.csrf);
                label { "Username " input type="text" name="username" autocomplete="username" required; }
                label { "Password " input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// The policy page: what this registry accepts, in words.
pub fn policy(site: &Site, lines: &[(String, String)]) -> Markup {
    layout(
        site,
        "Policy",
        html! {
            h1 { "What this registry accepts" }
            table.pairs.policy { tbody { @for (k, v) in lines { tr { th { (k) } td { (v) } } } } }
        },
    )
}

pub const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1d232a;background:#f7f8fa}
header{display:flex;gap:1.5rem;align-items:center;padding:.6rem 1.2rem;background:#24323f;color:#fff}
header a{color:#fff;text-decoration:none}.brand{font-weight:700;font-size:1.2rem}
nav{display:flex;gap:1rem}.who{margin-left:auto;display:flex;gap:.6rem;align-items:center}
.who form{display:inline}main{padding:1rem 1.5rem;max-width:80rem}
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:1rem}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e3e6ea;vertical-align:top}
table.pairs th{width:12rem;color:#4a5562}code{font-size:.85rem;word-break:break-all}
pre{background:#fff;border:1px solid #e3e6ea;padding:.6rem;overflow:auto;max-height:30rem}
.supplement{margin-right:1rem;color:#4a5562}.error{color:#a11}.message{color:#4a5562}
ul.tree{list-style:none;padding-left:1.2rem;border-left:2px solid #d4d9de}.tree .kind{font-weight:600}
.tree .found,.tree .type{color:#4a5562}form.search{margin-bottom:1rem}
h1{font-size:1.5rem}.digest{word-break:break-all}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_commands_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(
            pull_command("reg:5000", "charts/demo", "0.1.0", &Kind::HelmChart),
            "helm pull oci://reg:5000/charts/demo --version 0.1.0"
        );
        assert_eq!(
            pull_command("reg:5000", "apps/web", "1", &Kind::Index),
            "podman pull reg:5000/apps/web:1"
        );
    }

    #[test]
    fn pushed_text_is_escaped() {
        let site = Site {
            host: "h".into(),
            viewer: Viewer {
                account: None,
                csrf: String::new(),
            },
            accounts: false,
        };
        let page = message(&site, "t", "<script>alert(1)</script>").into_string();
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
    }
}
