//! Blob pushes over raw HTTP, the way registry clients do them, for tests
//! that count exactly which pushes the registry acknowledged.

use crate::sha256;

/// A Location as a URL: Quarry answers a path, distribution a whole URL.
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

/// `PATCH` one chunk starting at byte `from`; the session's next location.
pub async fn patch_chunk(
    client: &reqwest::Client,
    base: &str,
    location: &str,
    from: usize,
    part: &[u8],
) -> anyhow::Result<String> {
    let r = client
        .patch(absolute(base, location))
        .header(
            "content-range",
            format!("{}-{}", from, from + part.len() - 1),
        )
        .header("content-type", "application/octet-stream")
        .body(part.to_vec())
        .send()
        .await?;
    anyhow::ensure!(r.status() == 202, "patch: {}", r.status());
    Ok(r.headers()["location"].to_str()?.to_string())
}

/// Push `content` to `repo`: in two chunks (POST, PATCH, PATCH, PUT) or in
/// one monolithic POST. Ok(digest) only on 201.
pub async fn push_blob(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    content: Vec<u8>,
    chunked: bool,
) -> anyhow::Result<String> {
    let digest = sha256(&content);
    let resp = if chunked {
        let start = client
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .send()
            .await?;
        anyhow::ensure!(start.status() == 202, "start: {}", start.status());
        let mut location = start.headers()["location"].to_str()?.to_string();
        let half = content.len() / 2;
        for (from, part) in [(0, &content[..half]), (half, &content[half..])] {
            location = patch_chunk(client, base, &location, from, part).await?;
        }
        let url = absolute(base, &location);
        let separator = if url.contains('?') { '&' } else { '?' };
        client
            .put(format!("{url}{separator}digest={digest}"))
            .send()
            .await?
    } else {
        client
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
            .body(content)
            .send()
            .await?
    };
    anyhow::ensure!(resp.status() == 201, "commit: {}", resp.status());
    Ok(digest)
}
