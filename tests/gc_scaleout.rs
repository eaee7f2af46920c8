//! Every test of `tests/gc.rs`, on PostgreSQL + S3 (Garage), with several
//! replicas: see `tests/gc_support/mod.rs`.

#[path = "gc.rs"]
mod gc;
