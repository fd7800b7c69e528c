//! Which endpoint a `/v2/...` path names. Repository names contain any
//! number of `/`, so the endpoint is read from the end of the path.

/// An endpoint under `/v2/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tags,
    Manifest(String),
    Blob(String),
    UploadStart,
    Upload(String),
    Referrers(String),
}

impl Endpoint {
    /// Label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Endpoint::Tags => "tags",
            Endpoint::Manifest(_) => "manifest",
            Endpoint::Blob(_) => "blob",
            Endpoint::UploadStart => "upload_start",
            Endpoint::Upload(_) => "upload",
            Endpoint::Referrers(_) => "referrers",
        }
    }
}

/// Split the path after `/v2/` into repository name and endpoint.
pub fn parse(path: &str) -> Option<(&str, Endpoint)> {
    if let Some(name) = path.strip_suffix("/tags/list") {
        return Some((name, Endpoint::Tags));
    }
    for suffix in ["/blobs/uploads/", "/blobs/uploads"] {
        if let Some(name) = path.strip_suffix(suffix) {
            return Some((name, Endpoint::UploadStart));
        }
    }
    let (rest, last) = path.rsplit_once('/')?;
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Some((name, Endpoint::Upload(last.to_string())));
    }
    let (name, kind) = rest.rsplit_once('/')?;
    let endpoint = match kind {
        "manifests" => Endpoint::Manifest(last.to_string()),
        "blobs" => Endpoint::Blob(last.to_string()),
        "referrers" => Endpoint::Referrers(last.to_string()),
        _ => return None,
    };
    Some((name, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_endpoints_from_the_end() {
        assert_eq!(parse("a/b/tags/list"), Some(("a/b", Endpoint::Tags)));
        assert_eq!(
            parse("a/blobs/uploads/"),
            Some(("a", Endpoint::UploadStart))
        );
        assert_eq!(
            parse("a/blobs/blobs/uploads/"),
            Some(("a/blobs", Endpoint::UploadStart))
        );
        assert_eq!(
            parse("x/y/z/blobs/uploads/123"),
            Some(("x/y/z", Endpoint::Upload("123".into())))
        );
        assert_eq!(
            parse("m/manifests/latest"),
            Some(("m", Endpoint::Manifest("latest".into())))
        );
        assert_eq!(
            parse("m/manifests/blobs/sha256:x"),
            Some(("m/manifests", Endpoint::Blob("sha256:x".into())))
        );
        assert_eq!(
            parse("r/referrers/sha256:x"),
            Some(("r", Endpoint::Referrers("sha256:x".into())))
        );
        assert_eq!(parse("nothing"), None);
        assert_eq!(parse("a/unknown/x"), None);
    }
}
