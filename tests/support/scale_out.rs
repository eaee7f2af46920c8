//! The scale-out stack for integration test files that run twice: once as
//! themselves on the embedded default (SQLite + filesystem), and once
//! compiled again as a module of a `*_scaleout` test target, where every
//! registry they open gets a fresh PostgreSQL database and a fresh key
//! prefix in a Garage bucket (real servers, started once per test
//! process). No test is copied: the target's name decides the stack.

#[path = "postgres.rs"]
mod postgres;
#[path = "s3.rs"]
mod s3;

/// Whether this test process runs the scale-out stack.
pub fn on() -> bool {
    env!("CARGO_CRATE_NAME").ends_with("_scaleout")
}

/// Points `config` at the scale-out stack when this process runs it.
pub async fn configure(config: &mut berth::config::Config) {
    if !on() {
        return;
    }
    config.metadata.url = postgres::fresh_database().await;
    // Tests open many registries at once; each needs only a few connections.
    config.metadata.max_connections = 4;
    let target = s3::garage();
    let s3 = &mut config.storage.s3;
    config.storage.kind = berth::storage::StorageKind::S3;
    s3.endpoint = Some(target.endpoint);
    s3.region = target.region;
    s3.bucket = target.bucket;
    s3.prefix = target.prefix;
    s3.access_key_id = Some(target.access_key_id);
    s3.secret_access_key = Some(target.secret_access_key);
    s3.allow_http = true;
    s3.path_style = true;
}

/// The Range an upload session reports while a chunk of `range` is still
/// arriving: the filesystem stages bytes as they arrive; an object store
/// holds a chunk's bytes once its request has finished with them.
pub fn staged_while_in_flight(range: &'static str) -> &'static str {
    if on() {
        "0-0"
    } else {
        range
    }
}

/// The registry's blob store, opened a second time beside it (an object
/// store has no lock; the filesystem store's is held by the registry).
async fn object_store(config: &berth::config::Config) -> berth::storage::S3Store {
    berth::storage::S3Store::open(&config.storage)
        .await
        .expect("opening the test bucket")
}

/// Upload sessions holding staged bytes in the registry's store.
pub async fn staged_sessions(config: &berth::config::Config) -> usize {
    use berth::storage::UploadStore as _;
    if on() {
        return object_store(config).await.staged().await.unwrap().len();
    }
    std::fs::read_dir(config.data_dir.join("uploads"))
        .unwrap()
        .count()
}

/// Removes a committed blob's bytes behind the registry's back.
pub async fn remove_blob_bytes(config: &berth::config::Config, digest: &str) {
    use berth::storage::BlobAdmin as _;
    if on() {
        let digest: berth::oci::Digest = digest.parse().unwrap();
        object_store(config).await.delete(&digest).await.unwrap();
        return;
    }
    let hex = digest.strip_prefix("sha256:").unwrap();
    let path = config
        .data_dir
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex);
    std::fs::remove_file(&path).expect("blob file where the fs layout says");
}

/// Removes an upload session's staged bytes behind the registry's back.
pub async fn remove_staging(config: &berth::config::Config, id: &str) {
    use berth::storage::UploadStore as _;
    if on() {
        let staged = object_store(config).await.open_upload(id).await.unwrap();
        staged.abort().await.unwrap();
        return;
    }
    std::fs::remove_file(config.data_dir.join("uploads").join(id)).expect("staging file");
}

/// Blob storage that a test can cut off from the registry and reconnect:
/// on the filesystem its blob tree is replaced by a file; on S3 the
/// registry reaches the store through a forwarder that, cut, refuses and
/// drops every connection.
pub struct Cuttable {
    data_dir: std::path::PathBuf,
    cut: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Cuttable {
    /// Puts the forwarder (on S3) between `config`'s registry and its store.
    /// Call inside a Tokio runtime, before the registry opens.
    pub fn insert(config: &mut berth::config::Config) -> Cuttable {
        let (cut, _) = tokio::sync::watch::channel(false);
        let cut = std::sync::Arc::new(cut);
        if on() {
            let endpoint = config.storage.s3.endpoint.clone().expect("an S3 endpoint");
            let upstream = endpoint.trim_start_matches("http://").to_string();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tokio::spawn(forward(listener, upstream, cut.clone()));
            config.storage.s3.endpoint = Some(format!("http://127.0.0.1:{port}"));
        }
        Cuttable {
            data_dir: config.data_dir.clone(),
            cut,
        }
    }

    pub fn cut(&self) {
        if !on() {
            let blobs = self.data_dir.join("blobs");
            std::fs::rename(&blobs, self.data_dir.join("blobs.away")).unwrap();
            // A file where the blob tree should be: every lookup fails with
            // an I/O error (not "no such blob").
            std::fs::write(&blobs, b"").unwrap();
        }
        self.cut.send_replace(true);
    }

    pub fn mend(&self) {
        if !on() {
            let blobs = self.data_dir.join("blobs");
            std::fs::remove_file(&blobs).unwrap();
            std::fs::rename(self.data_dir.join("blobs.away"), &blobs).unwrap();
        }
        self.cut.send_replace(false);
    }
}

async fn forward(
    listener: tokio::net::TcpListener,
    upstream: String,
    cut: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
) {
    while let Ok((mut client, _)) = listener.accept().await {
        if *cut.borrow() {
            continue; // dropped: the connection is reset
        }
        let upstream = upstream.clone();
        let mut cut = cut.subscribe();
        tokio::spawn(async move {
            let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.wait_for(|cut| *cut) => {}
            }
        });
    }
}
