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

/// The environment that points a `berth serve` process at the stack
/// `config` was configured for (none on the embedded default).
pub fn binary_env(config: &berth::config::Config) -> Vec<(&'static str, String)> {
    if !on() {
        return Vec::new();
    }
    let s3 = &config.storage.s3;
    let some = |v: &Option<String>| v.clone().expect("configured by `configure`");
    vec![
        ("BERTH_METADATA__URL", config.metadata.url.clone()),
        ("BERTH_METADATA__MAX_CONNECTIONS", "8".into()),
        ("BERTH_STORAGE__KIND", "s3".into()),
        ("BERTH_STORAGE__S3__ENDPOINT", some(&s3.endpoint)),
        ("BERTH_STORAGE__S3__REGION", s3.region.clone()),
        ("BERTH_STORAGE__S3__BUCKET", s3.bucket.clone()),
        ("BERTH_STORAGE__S3__PREFIX", s3.prefix.clone()),
        ("BERTH_STORAGE__S3__ACCESS_KEY_ID", some(&s3.access_key_id)),
        (
            "BERTH_STORAGE__S3__SECRET_ACCESS_KEY",
            some(&s3.secret_access_key),
        ),
        ("BERTH_STORAGE__S3__ALLOW_HTTP", "true".into()),
        ("BERTH_STORAGE__S3__PATH_STYLE", "true".into()),
    ]
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
    std::fs::remove_file(blob_file(config, digest)).expect("blob file where the fs layout says");
}

/// Where the filesystem store keeps `digest`'s bytes.
fn blob_file(config: &berth::config::Config, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    config
        .data_dir
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex)
}

/// Whether the registry's store holds `digest`'s bytes.
pub async fn blob_stored(config: &berth::config::Config, digest: &str) -> bool {
    use berth::storage::BlobRead as _;
    if on() {
        let digest: berth::oci::Digest = digest.parse().unwrap();
        return object_store(config)
            .await
            .stat(&digest)
            .await
            .unwrap()
            .is_some();
    }
    blob_file(config, digest).is_file()
}

/// Replaces a committed blob's bytes with `bytes` behind the registry's
/// back (bit rot, or an operator's mistake).
pub async fn overwrite_blob_bytes(config: &berth::config::Config, digest: &str, bytes: &[u8]) {
    use berth::storage::{BlobAdmin as _, UploadStore as _};
    if on() {
        let store = object_store(config).await;
        let digest: berth::oci::Digest = digest.parse().unwrap();
        // A commit keeps bytes already stored under the digest.
        store.delete(&digest).await.unwrap();
        let id = uuid::Uuid::new_v4().to_string();
        store.create(&id).await.unwrap();
        let mut staged = store.open_upload(&id).await.unwrap();
        let body = bytes::Bytes::copy_from_slice(bytes);
        let stream = futures_util::stream::once(async move { Ok(body) });
        staged.append(Box::pin(stream), None).await.unwrap();
        staged.commit(&digest).await.unwrap();
        return;
    }
    std::fs::write(blob_file(config, digest), bytes).expect("blob file where the fs layout says");
}

/// Digests of every blob the registry's store holds.
pub async fn stored_blobs(config: &berth::config::Config) -> std::collections::BTreeSet<String> {
    use berth::storage::BlobAdmin as _;
    use futures_util::TryStreamExt as _;
    if on() {
        let store = object_store(config).await;
        let listed: Vec<berth::oci::Digest> = store.list().try_collect().await.unwrap();
        return listed.iter().map(|d| d.to_string()).collect();
    }
    let mut found = std::collections::BTreeSet::new();
    let Ok(algorithms) = std::fs::read_dir(config.data_dir.join("blobs")) else {
        return found;
    };
    for algorithm in algorithms.flatten() {
        let algo = algorithm.file_name().into_string().unwrap();
        for prefix in std::fs::read_dir(algorithm.path()).unwrap().flatten() {
            for file in std::fs::read_dir(prefix.path()).unwrap().flatten() {
                let name = file.file_name().into_string().unwrap();
                found.insert(format!("{algo}:{name}"));
            }
        }
    }
    found
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

/// A plain HTTP GET, as a client following a redirect makes it.
pub async fn fetch(url: &str) -> (u16, Vec<u8>) {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

/// Runs one SQL statement on the registry's metadata database, behind its
/// back (what an older berth or an operator did); the rows it affected.
pub async fn execute(config: &berth::config::Config, sql: &str) -> u64 {
    let url = config.metadata_url();
    if on() {
        let db = sqlx::PgPool::connect(&url).await.unwrap();
        let done = sqlx::query(sql).execute(&db).await.unwrap();
        db.close().await;
        return done.rows_affected();
    }
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let done = sqlx::query(sql).execute(&db).await.unwrap();
    db.close().await;
    done.rows_affected()
}

/// The one integer that `sql` selects from the registry's metadata
/// database.
pub async fn scalar(config: &berth::config::Config, sql: &str) -> i64 {
    let url = config.metadata_url();
    if on() {
        let db = sqlx::PgPool::connect(&url).await.unwrap();
        let got: i64 = sqlx::query_scalar(sql).fetch_one(&db).await.unwrap();
        db.close().await;
        return got;
    }
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let got: i64 = sqlx::query_scalar(sql).fetch_one(&db).await.unwrap();
    db.close().await;
    got
}
