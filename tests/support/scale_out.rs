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
