//! `[storage]`: where blobs live.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `fs`: blobs under the data directory (the embedded default). `s3`:
    /// blobs in an S3-compatible object store (`[storage.s3]`), which
    /// several berth replicas may share.
    pub kind: StorageKind,
    /// With `s3`, a blob GET answers `307` to a presigned URL of the object
    /// (valid a few minutes), so the bytes go from the store to the client
    /// directly; clients must then reach the store's endpoint. Ignored with `fs`.
    pub redirect_pulls: bool,
    pub s3: S3Config,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    #[default]
    Fs,
    S3,
}

/// `[storage.s3]`: the object store of `storage.kind = "s3"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// URL of the S3 API (`http://127.0.0.1:3900` for a local Garage).
    /// Unset: AWS S3 of `region`.
    pub endpoint: Option<String>,
    /// The bucket; it must exist.
    pub bucket: String,
    /// Region the store signs requests for (Garage: its `s3_region`).
    pub region: String,
    /// Key prefix of everything berth stores (`blobs/`, `uploads/`,
    /// `quarantine/` go under it), so that one bucket can serve several
    /// registries. Empty: the bucket's root.
    pub prefix: String,
    /// Access key. Unset (with the secret): the standard AWS sources
    /// (`AWS_*` variables, a web identity token, container or instance
    /// credentials).
    pub access_key_id: Option<String>,
    /// Secret key of `access_key_id`.
    pub secret_access_key: Option<String>,
    /// File whose first line is the secret key, instead of `secret_access_key`.
    pub secret_access_key_file: Option<PathBuf>,
    /// Allow an `http://` endpoint (a store on the same host or network).
    pub allow_http: bool,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted
    /// ones (`bucket.endpoint/key`). Garage, MinIO and Ceph RGW usually need it.
    pub path_style: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: StorageKind::Fs,
            redirect_pulls: false,
            s3: S3Config::default(),
        }
    }
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            bucket: String::new(),
            region: "us-east-1".into(),
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
            secret_access_key_file: None,
            allow_http: false,
            path_style: false,
        }
    }
}

impl StorageConfig {
    /// Adds what is wrong with the settings to `problems`, one line each.
    pub fn check(&self, problems: &mut Vec<String>) {
        if self.kind != StorageKind::S3 {
            return;
        }
        let s3 = &self.s3;
        if s3.bucket.trim().is_empty() {
            problems.push("storage.kind = \"s3\" needs storage.s3.bucket".into());
        }
        if s3.region.trim().is_empty() {
            problems.push("storage.s3.region is empty".into());
        }
        if let Some(endpoint) = &s3.endpoint {
            match endpoint.split_once("://") {
                Some(("https", rest)) if !rest.is_empty() => {}
                Some(("http", rest)) if !rest.is_empty() => {
                    if !s3.allow_http {
                        problems.push(format!(
                            "storage.s3.endpoint = {endpoint:?} is plain HTTP: set \
                             storage.s3.allow_http = true or use https://"
                        ));
                    }
                }
                _ => problems.push(format!(
                    "storage.s3.endpoint = {endpoint:?}: not a URL such as http://host:port"
                )),
            }
        }
        let secret = s3.secret_access_key.is_some() || s3.secret_access_key_file.is_some();
        if s3.secret_access_key.is_some() && s3.secret_access_key_file.is_some() {
            problems.push(
                "storage.s3.secret_access_key and storage.s3.secret_access_key_file are both \
                 set: set one"
                    .into(),
            );
        }
        if s3.access_key_id.is_some() != secret {
            problems.push(
                "storage.s3.access_key_id and a secret key (storage.s3.secret_access_key or \
                 storage.s3.secret_access_key_file) go together: set both or neither"
                    .into(),
            );
        }
        if let Some(path) = s3.secret_access_key_file.as_ref().filter(|p| !p.is_file()) {
            problems.push(format!(
                "storage.s3.secret_access_key_file = {path:?}: no such file"
            ));
        }
    }

    /// A copy fit to print: the secret key replaced.
    pub fn redacted(&self) -> StorageConfig {
        let mut shown = self.clone();
        if shown.s3.secret_access_key.is_some() {
            shown.s3.secret_access_key = Some("<redacted>".into());
        }
        shown
    }
}

impl S3Config {
    /// The secret key, from the setting or the first line of its file.
    pub fn secret_key(&self) -> std::io::Result<Option<String>> {
        if let Some(key) = &self.secret_access_key {
            return Ok(Some(key.clone()));
        }
        let Some(path) = &self.secret_access_key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Some(text.lines().next().unwrap_or("").trim().to_string()))
    }
}

/// Settings for a bucket of the test S3 servers (`storage::test_s3`).
#[cfg(test)]
pub(crate) fn test_config(target: &super::test_s3::S3Target) -> StorageConfig {
    let s3 = S3Config {
        endpoint: Some(target.endpoint.clone()),
        bucket: target.bucket.clone(),
        region: target.region.clone(),
        prefix: target.prefix.clone(),
        access_key_id: Some(target.access_key_id.clone()),
        secret_access_key: Some(target.secret_access_key.clone()),
        secret_access_key_file: None,
        allow_http: true,
        path_style: true,
    };
    let config = StorageConfig {
        kind: StorageKind::S3,
        redirect_pulls: true,
        s3,
    };
    let mut problems = Vec::new();
    config.check(&mut problems);
    assert_eq!(problems, Vec::<String>::new());
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3() -> StorageConfig {
        let mut c = StorageConfig {
            kind: StorageKind::S3,
            ..StorageConfig::default()
        };
        c.s3.bucket = "registry".into();
        c
    }

    fn problems(c: &StorageConfig) -> Vec<String> {
        let mut p = Vec::new();
        c.check(&mut p);
        p
    }

    #[test]
    fn fs_needs_nothing_and_s3_needs_a_bucket() {
        assert!(problems(&StorageConfig::default()).is_empty());
        assert!(problems(&s3()).is_empty());
        let mut c = s3();
        c.s3.bucket.clear();
        assert_eq!(
            problems(&c),
            vec!["storage.kind = \"s3\" needs storage.s3.bucket".to_string()]
        );
    }

    #[test]
    fn endpoints_and_credentials_are_checked() {
        let mut c = s3();
        c.s3.endpoint = Some("http://127.0.0.1:3900".into());
        assert_eq!(problems(&c).len(), 1, "http needs allow_http");
        c.s3.allow_http = true;
        assert!(problems(&c).is_empty());
        c.s3.endpoint = Some("127.0.0.1:3900".into());
        assert!(problems(&c)[0].contains("not a URL"));
        c.s3.endpoint = None;
        c.s3.access_key_id = Some("GK1".into());
        assert!(problems(&c)[0].contains("set both or neither"));
        c.s3.secret_access_key_file = Some("/nonexistent/secret".into());
        assert_eq!(
            problems(&c),
            vec![
                "storage.s3.secret_access_key_file = \"/nonexistent/secret\": no such file"
                    .to_string()
            ]
        );
    }

    #[test]
    fn the_secret_comes_from_its_file_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\nrest\n").unwrap();
        let mut c = s3();
        c.s3.secret_access_key_file = Some(file);
        assert_eq!(c.s3.secret_key().unwrap().as_deref(), Some("from-file"));
        c.s3.secret_access_key_file = None;
        c.s3.secret_access_key = Some("inline".into());
        assert_eq!(c.s3.secret_key().unwrap().as_deref(), Some("inline"));
        assert_eq!(
            c.redacted().s3.secret_access_key.as_deref(),
            Some("<redacted>")
        );
    }
}
