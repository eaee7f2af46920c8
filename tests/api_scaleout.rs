//! Every test of `tests/api.rs`, on PostgreSQL + S3 (Garage): see
//! `tests/support/scale_out.rs`.

#[path = "api.rs"]
mod api;
