//! Which backend a storage location of `DISTRIBUTED_STORAGE_CONFIG` names,
//! read from Quay's `[Driver, {parameters}]` shape with Quay's parameter
//! names: `LocalStorage`, `S3Storage` and `RadosGWStorage`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

/// Where an S3-compatible bucket is and how to reach it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct S3Settings {
    /// `http(s)://host:port`; `None` = AWS S3 for the region.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// Key prefix inside the bucket (Quay's `storage_path`), without
    /// leading or trailing `/`.
    pub prefix: String,
    /// From the parameters, else `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// `bucket` in the path (MinIO, Ceph RGW) rather than the host name.
    pub path_style: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

/// A storage location, ready to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageSettings {
    Local(PathBuf),
    S3(S3Settings),
}

/// Drivers this version understands.
pub const DRIVERS: &str = "LocalStorage, S3Storage, RadosGWStorage";

struct Params<'a> {
    driver: &'a str,
    map: &'a BTreeMap<String, Value>,
    problems: Vec<String>,
}

impl<'a> Params<'a> {
    fn string(&mut self, key: &str) -> Option<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::String(_)) => {
                self.problems.push(format!("{key} is empty"));
                None
            }
            Some(other) => {
                self.problems
                    .push(format!("{key} must be a string, not {other}"));
                None
            }
        }
    }

    fn required(&mut self, key: &str) -> String {
        let value = self.string(key);
        if value.is_none() && !self.map.contains_key(key) {
            self.problems
                .push(format!("{} needs the parameter {key}", self.driver));
        }
        value.unwrap_or_default()
    }

    fn port(&mut self, key: &str) -> Option<u16> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64().and_then(|n| u16::try_from(n).ok()) {
                Some(p) if p > 0 => Some(p),
                _ => {
                    self.problems
                        .push(format!("{key} {n} is not a port (1..65535)"));
                    None
                }
            },
            Some(Value::String(s)) => match s.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => {
                    self.problems
                        .push(format!("{key} {s:?} is not a port (1..65535)"));
                    None
                }
            },
            Some(other) => {
                self.problems
                    .push(format!("{key} must be a port number, not {other}"));
                None
            }
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        match self.map.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.problems
                    .push(format!("{key} must be true or false, not {other}"));
                default
            }
        }
    }
}

fn endpoint(host: Option<String>, port: Option<u16>, secure: bool) -> Option<String> {
    let host = host?;
    if host.starts_with("http://") || host.starts_with("https://") {
        return Some(match port {
            Some(p) => format!("{}:{p}", host.trim_end_matches('/')),
            None => host,
        });
    }
    let scheme = if secure { "https" } else { "http" };
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

fn prefix(raw: Option<String>) -> String {
    raw.unwrap_or_default().trim_matches('/').to_string()
}

/// Read a location. Problems are listed, one string each.
pub fn parse(driver: &str, map: &BTreeMap<String, Value>) -> Result<StorageSettings, Vec<String>> {
    let mut p = Params {
        driver,
        map,
        problems: Vec::new(),
    };
    let settings = match driver {
        "LocalStorage" => StorageSettings::Local(PathBuf::from(p.required("storage_path"))),
        "S3Storage" => {
            let bucket = p.required("s3_bucket");
            let host = p.string("host");
            let port = p.port("port");
            let secure = p.boolean("is_secure", true);
            let path_style_default = host.is_some();
            StorageSettings::S3(S3Settings {
                endpoint: endpoint(host, port, secure),
                bucket,
                region: p.string("s3_region").unwrap_or_else(|| "us-east-1".into()),
                prefix: prefix(p.string("storage_path")),
                access_key: p.string("s3_access_key"),
                secret_key: p.string("s3_secret_key"),
                path_style: p.boolean("path_style", path_style_default),
            })
        }
        "RadosGWStorage" => {
            let host = Some(p.required("hostname")).filter(|h| !h.is_empty());
            let port = p.port("port");
            let secure = p.boolean("is_secure", true);
            StorageSettings::S3(S3Settings {
                endpoint: endpoint(host, port, secure),
                bucket: p.required("bucket_name"),
                region: p.string("region").unwrap_or_else(|| "us-east-1".into()),
                prefix: prefix(p.string("storage_path")),
                access_key: p.string("access_key"),
                secret_key: p.string("secret_key"),
                path_style: true,
            })
        }
        other => {
            return Err(vec![format!(
                "storage driver {other:?} is not supported (supported: {DRIVERS})"
            )]);
        }
    };
    if let StorageSettings::S3(s3) = &settings
        && s3.access_key.is_some() != s3.secret_key.is_some()
    {
        p.problems.push(
            "give both the access key and the secret key, or neither (then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are used)"
                .into(),
        );
    }
    if p.problems.is_empty() {
        Ok(settings)
    } else {
        Err(p.problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: serde_json::Value) -> BTreeMap<String, Value> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn reads_quay_s3_and_radosgw_parameters() {
        let s3 = parse(
            "S3Storage",
            &params(serde_json::json!({
                "host": "minio.local", "port": 9000, "is_secure": false,
                "s3_bucket": "quarry", "storage_path": "/registry/", "s3_region": "eu-west-1",
                "s3_access_key": "ak", "s3_secret_key": "sk"
            })),
        )
        .unwrap();
        let StorageSettings::S3(s3) = s3 else {
            panic!("not S3")
        };
        assert_eq!(s3.endpoint.as_deref(), Some("http://minio.local:9000"));
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("quarry", "registry")
        );
        assert_eq!(s3.region, "eu-west-1");
        assert!(s3.path_style);
        let aws = parse("S3Storage", &params(serde_json::json!({"s3_bucket": "b"}))).unwrap();
        let StorageSettings::S3(aws) = aws else {
            panic!("not S3")
        };
        assert_eq!(aws.endpoint, None);
        assert!(!aws.path_style);
        let rgw = parse(
            "RadosGWStorage",
            &params(serde_json::json!({
                "hostname": "rgw", "port": "8080", "is_secure": true,
                "bucket_name": "b", "access_key": "a", "secret_key": "s"
            })),
        )
        .unwrap();
        let StorageSettings::S3(rgw) = rgw else {
            panic!("not S3")
        };
        assert_eq!(rgw.endpoint.as_deref(), Some("https://rgw:8080"));
    }

    #[test]
    fn lists_every_problem() {
        let problems = parse(
            "S3Storage",
            &params(serde_json::json!({"port": 70000, "is_secure": "yes", "s3_access_key": "a"})),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("s3_bucket"), "{problems:?}");
        let problems = parse("SwiftStorage", &BTreeMap::new()).unwrap_err();
        assert!(problems[0].contains("SwiftStorage"), "{problems:?}");
    }
}
