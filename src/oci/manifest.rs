use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::digest::Digest;

pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

    /// Every manifest media type berth stores and serves.
    pub const ALL: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_LIST
    }

    /// The bare type of a header value such as `type/sub; charset=utf-8`.
    pub fn essence(value: &str) -> &str {
        value.split(';').next().unwrap_or("").trim()
    }
}

/// A content descriptor as found in manifests and indexes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("Docker schema1 manifests are not supported (deprecated since 2017); push with a client that writes Docker schema2 or OCI manifests")]
    Schema1,
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("manifest mediaType {body:?} does not match Content-Type {header:?}")]
    MediaTypeMismatch { body: String, header: String },
    #[error("{0}")]
    Invalid(String),
}

/// What the registry needs to know about a manifest it is asked to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedManifest {
    /// Effective media type: the body's `mediaType`, else the request's
    /// Content-Type, else inferred from the shape.
    pub media_type: String,
    /// The type reported to the referrers API: `artifactType`, else the
    /// config's media type for image manifests.
    pub artifact_type: Option<String>,
    pub subject: Option<Descriptor>,
    /// Blobs that must exist in the repository (config and layers).
    pub blobs: Vec<Descriptor>,
    /// Manifests that must exist in the repository (index children).
    pub children: Vec<Descriptor>,
    pub annotations: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<Map<String, Value>>,
    // Schema1 markers.
    fs_layers: Option<Value>,
    signatures: Option<Value>,
}

impl ParsedManifest {
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
        let header = content_type.map(media::essence).filter(|t| {
            !t.is_empty() && *t != "application/json" && *t != "application/octet-stream"
        });
        if matches!(
            header,
            Some(media::DOCKER_SCHEMA1 | media::DOCKER_SCHEMA1_SIGNED)
        ) {
            return Err(ManifestError::Schema1);
        }
        let raw = Raw::read(body)?;
        let media_type = raw.media_type_given(header)?;
        if media::is_index(&media_type) {
            raw.into_index(media_type)
        } else {
            raw.into_image(media_type)
        }
    }
}

impl Raw {
    /// The JSON body, refused when it is (or looks like) schema 1 or is not
    /// schema version 2.
    fn read(body: &[u8]) -> Result<Raw, ManifestError> {
        let raw: Raw = serde_json::from_slice(body).map_err(|e| {
            // A schema1 body fails typed parsing on its descriptors; say why.
            if looks_like_schema1(body) {
                ManifestError::Schema1
            } else {
                ManifestError::Json(e.to_string())
            }
        })?;
        if raw.fs_layers.is_some() || raw.signatures.is_some() {
            return Err(ManifestError::Schema1);
        }
        match raw.schema_version.as_ref().and_then(Value::as_i64) {
            Some(2) => Ok(raw),
            Some(1) => Err(ManifestError::Schema1),
            _ => Err(ManifestError::SchemaVersion),
        }
    }

    /// The media type: the body's, which must agree with the `Content-Type`
    /// header when both are given; else the header's; else inferred.
    fn media_type_given(&self, header: Option<&str>) -> Result<String, ManifestError> {
        let inferred = if self.manifests.is_some() {
            media::OCI_INDEX
        } else {
            media::OCI_MANIFEST
        };
        let media_type = match (&self.media_type, header) {
            (Some(body), Some(h)) if body != h => {
                return Err(ManifestError::MediaTypeMismatch {
                    body: body.clone(),
                    header: h.to_string(),
                })
            }
            (Some(body), _) => body.clone(),
            (None, Some(h)) => h.to_string(),
            (None, None) => inferred.to_string(),
        };
        if matches!(
            media_type.as_str(),
            media::DOCKER_SCHEMA1 | media::DOCKER_SCHEMA1_SIGNED
        ) {
            return Err(ManifestError::Schema1);
        }
        if !media::ALL.contains(&media_type.as_str()) {
            return Err(ManifestError::UnsupportedMediaType(media_type));
        }
        Ok(media_type)
    }

    fn into_index(self, media_type: String) -> Result<ParsedManifest, ManifestError> {
        let children = self
            .manifests
            .ok_or_else(|| ManifestError::Invalid("an index needs a \"manifests\" array".into()))?;
        if self.config.is_some() || self.layers.is_some() {
            return Err(ManifestError::Invalid(
                "an index cannot have config or layers".into(),
            ));
        }
        Ok(ParsedManifest {
            media_type,
            artifact_type: self.artifact_type,
            subject: self.subject,
            blobs: Vec::new(),
            children,
            annotations: self.annotations,
        })
    }

    fn into_image(self, media_type: String) -> Result<ParsedManifest, ManifestError> {
        let config = self.config.ok_or_else(|| {
            ManifestError::Invalid("an image manifest needs a \"config\" descriptor".into())
        })?;
        let layers = self.layers.ok_or_else(|| {
            ManifestError::Invalid("an image manifest needs a \"layers\" array".into())
        })?;
        if self.manifests.is_some() {
            return Err(ManifestError::Invalid(
                "an image manifest cannot list manifests".into(),
            ));
        }
        let artifact_type = self
            .artifact_type
            .or_else(|| Some(config.media_type.clone()));
        let mut blobs = vec![config];
        // Foreign (non-distributable) layers live elsewhere and are never pushed here.
        blobs.extend(layers.into_iter().filter(|l| !is_foreign(l)));
        Ok(ParsedManifest {
            media_type,
            artifact_type,
            subject: self.subject,
            blobs,
            children: Vec::new(),
            annotations: self.annotations,
        })
    }
}

fn is_foreign(layer: &Descriptor) -> bool {
    layer.urls.as_ref().is_some_and(|u| !u.is_empty())
        && (layer.media_type == media::DOCKER_FOREIGN_LAYER
            || layer.media_type.contains("nondistributable"))
}

fn looks_like_schema1(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("schemaVersion").and_then(Value::as_i64))
        == Some(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn image_manifest_lists_config_and_layers() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":3}}]}}"#,
            media::OCI_MANIFEST,
            d(1),
            d(2)
        );
        let m = ParsedManifest::parse(body.as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn manifest_without_media_type_uses_header_or_shape() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":5}}]}}"#,
            media::OCI_MANIFEST,
            d(3)
        );
        let m = ParsedManifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.media_type, media::OCI_INDEX);
        assert_eq!(m.children.len(), 1);
        let m = ParsedManifest::parse(body.as_bytes(), Some(media::DOCKER_LIST)).unwrap();
        assert_eq!(m.media_type, media::DOCKER_LIST);
    }

    #[test]
    fn schema1_is_refused_clearly() {
        let body = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[],"history":[]}"#;
        assert_eq!(
            ParsedManifest::parse(body, None),
            Err(ManifestError::Schema1)
        );
        assert_eq!(
            ParsedManifest::parse(b"{}", Some(media::DOCKER_SCHEMA1_SIGNED)),
            Err(ManifestError::Schema1)
        );
    }

    #[test]
    fn bad_manifests_are_invalid() {
        assert!(matches!(
            ParsedManifest::parse(b"not json", None),
            Err(ManifestError::Json(_))
        ));
        assert_eq!(
            ParsedManifest::parse(br#"{"schemaVersion":3}"#, None),
            Err(ManifestError::SchemaVersion)
        );
        let no_layers = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{}","size":1}}}}"#,
            d(1)
        );
        assert!(matches!(
            ParsedManifest::parse(no_layers.as_bytes(), None),
            Err(ManifestError::Invalid(_))
        ));
        let bad_digest = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]}"#;
        assert!(matches!(
            ParsedManifest::parse(bad_digest.as_bytes(), None),
            Err(ManifestError::Json(_))
        ));
        let mismatch = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media::OCI_INDEX
        );
        assert!(matches!(
            ParsedManifest::parse(mismatch.as_bytes(), Some(media::OCI_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
    }

    #[test]
    fn artifact_type_and_subject_are_kept() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/x-sbom","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[],"subject":{{"mediaType":"{}","digest":"{}","size":9}}}}"#,
            media::OCI_MANIFEST,
            media::OCI_EMPTY,
            d(1),
            media::OCI_MANIFEST,
            d(9)
        );
        let m = ParsedManifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some("application/x-sbom"));
        assert_eq!(m.subject.unwrap().digest.to_string(), d(9));
    }
}
