//! Every test of `tests/authz.rs` (the authorization matrix), on
//! PostgreSQL + S3 (Garage): see `tests/support/scale_out.rs`.

#[path = "authz.rs"]
mod authz;
