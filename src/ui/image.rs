//! What an image page shows, read leniently from a manifest, an index or an
//! image config: unknown or missing fields are simply not shown.

use serde_json::Value;

/// A descriptor as listed on the page.
#[derive(Debug, Clone, PartialEq)]
pub struct Desc {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub platform: Option<String>,
    pub artifact_type: Option<String>,
    pub annotations: Vec<(String, String)>,
}

/// A manifest or index, as the page needs it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Doc {
    pub is_index: bool,
    pub config: Option<Desc>,
    pub layers: Vec<Desc>,
    pub children: Vec<Desc>,
    pub subject: Option<Desc>,
    pub artifact_type: Option<String>,
    pub annotations: Vec<(String, String)>,
}

impl Doc {
    /// Config plus layers: what a pull transfers.
    pub fn compressed_size(&self) -> u64 {
        self.config.iter().chain(&self.layers).map(|d| d.size).sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub created: Option<String>,
    pub created_by: String,
    pub comment: Option<String>,
    pub empty_layer: bool,
}

/// The parts of an image config people look for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub created: Option<String>,
    pub platform: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub exposed_ports: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub history: Vec<HistoryEntry>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(v: Option<&Value>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `linux/arm64/v8` from a platform object.
pub fn platform(v: &Value) -> Option<String> {
    let os = v.get("os")?.as_str()?;
    let arch = v.get("architecture")?.as_str()?;
    let mut label = format!("{os}/{arch}");
    if let Some(variant) = v.get("variant").and_then(Value::as_str) {
        label.push('/');
        label.push_str(variant);
    }
    Some(label)
}

fn desc(v: &Value) -> Option<Desc> {
    Some(Desc {
        media_type: text(v, "mediaType").unwrap_or_default(),
        digest: text(v, "digest")?,
        size: v.get("size").and_then(Value::as_u64).unwrap_or(0),
        platform: v.get("platform").and_then(platform),
        artifact_type: text(v, "artifactType"),
        annotations: pairs(v.get("annotations")),
    })
}

fn descs(v: Option<&Value>) -> Vec<Desc> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(desc).collect())
        .unwrap_or_default()
}

/// Reads a stored manifest or index (already validated when pushed).
pub fn parse_doc(bytes: &[u8], media_type: &str) -> Option<Doc> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    Some(Doc {
        is_index: crate::oci::media::is_index(media_type) || v.get("manifests").is_some(),
        config: v.get("config").and_then(desc),
        layers: descs(v.get("layers")),
        children: descs(v.get("manifests")),
        subject: v.get("subject").and_then(desc),
        artifact_type: text(&v, "artifactType"),
        annotations: pairs(v.get("annotations")),
    })
}

/// The platforms an index names, for the tag list.
pub fn index_platforms(bytes: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .map(|v| descs(v.get("manifests")))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|d| d.platform)
        .filter(|p| p != "unknown/unknown")
        .collect()
}

/// Reads an image config blob; `None` when it is not a JSON object (an
/// artifact's config, say).
pub fn parse_config(bytes: &[u8]) -> Option<Config> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.as_object()?;
    let c = v.get("config").unwrap_or(&Value::Null);
    let mut ports: Vec<String> = c
        .get("ExposedPorts")
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    ports.sort();
    let history = v
        .get("history")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|h| HistoryEntry {
                    created: text(h, "created"),
                    created_by: text(h, "created_by").unwrap_or_default(),
                    comment: text(h, "comment"),
                    empty_layer: h
                        .get("empty_layer")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Config {
        created: text(&v, "created"),
        platform: platform(&v),
        entrypoint: strings(c.get("Entrypoint")),
        cmd: strings(c.get("Cmd")),
        env: strings(c.get("Env")),
        exposed_ports: ports,
        labels: pairs(c.get("Labels")),
        user: text(c, "User"),
        working_dir: text(c, "WorkingDir"),
        history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configs_show_what_docker_inspect_shows() {
        let config = json!({
            "architecture": "arm64", "os": "linux", "variant": "v8",
            "created": "2024-01-02T03:04:05Z",
            "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["PATH=/bin"],
                       "ExposedPorts": {"80/tcp": {}, "443/tcp": {}}, "Labels": {"b": "2", "a": "1"},
                       "User": "1000", "WorkingDir": "/app"},
            "history": [{"created_by": "ADD file", "empty_layer": false}, {"created_by": "CMD", "empty_layer": true}]
        });
        let c = parse_config(config.to_string().as_bytes()).unwrap();
        assert_eq!(c.platform.as_deref(), Some("linux/arm64/v8"));
        assert_eq!(c.entrypoint, ["/bin/sh", "-c"]);
        assert_eq!(c.exposed_ports, ["443/tcp", "80/tcp"]);
        assert_eq!(c.labels[0], ("a".to_string(), "1".to_string()));
        assert_eq!(c.user.as_deref(), Some("1000"));
        assert_eq!(c.working_dir.as_deref(), Some("/app"));
        assert_eq!(c.history.len(), 2);
        assert!(c.history[1].empty_layer);
        assert_eq!(parse_config(b"[1]"), None);
    }

    #[test]
    fn manifests_sum_config_and_layers() {
        let m = json!({"schemaVersion": 2, "config": {"mediaType": "c", "digest": "sha256:a", "size": 10},
            "layers": [{"mediaType": "l", "digest": "sha256:b", "size": 100}, {"mediaType": "l", "digest": "sha256:c", "size": 1000}]});
        let doc = parse_doc(m.to_string().as_bytes(), crate::oci::media::OCI_MANIFEST).unwrap();
        assert!(!doc.is_index);
        assert_eq!(doc.compressed_size(), 1110);
        let i = json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "m", "digest": "sha256:d", "size": 5, "platform": {"os": "linux", "architecture": "amd64"}}]});
        assert_eq!(index_platforms(i.to_string().as_bytes()), ["linux/amd64"]);
    }
}
