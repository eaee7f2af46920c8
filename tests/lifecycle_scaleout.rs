//! Every test of `tests/lifecycle.rs`, on PostgreSQL + S3 (Garage): see
//! `tests/support/scale_out.rs`.

#[path = "lifecycle.rs"]
mod lifecycle;
