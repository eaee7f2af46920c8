//! Failed-login counts that replicas sharing the metadata pool, so that
//! the login limits hold across them (see `auth::limiter`): each replica
//! records how its attempts ended, and reads back what the others recorded.

use async_trait::async_trait;

use super::Result;

/// How one login attempt ended, for the limiter key `key` (an account
/// from a source network, or a source network alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Wrong credentials, at `at` (Unix ms).
    Failed { key: String, at: i64 },
    /// The right credentials, at `at`: the key's failures are cleared, and
    /// it is trusted until `trusted_until` (Unix ms).
    Succeeded {
        key: String,
        at: i64,
        trusted_until: i64,
    },
}

/// A key's shared count, as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedLogins {
    pub key: String,
    /// Failures since the key was last cleared (or forgotten).
    pub failures: u32,
    /// The last failure (Unix ms; 0 for none).
    pub last_failure: i64,
    /// The last success (Unix ms; 0 for none).
    pub cleared: i64,
    /// Trusted until (Unix ms; 0 for never).
    pub trusted_until: i64,
}

#[async_trait]
pub trait LoginLedger: Send + Sync {
    /// Records `outcomes`, in order. A key whose last failure is older
    /// than `forget_ms` starts counting again from zero.
    async fn record_logins(&self, outcomes: &[LoginOutcome], forget_ms: i64) -> Result<()>;
    /// The keys changed after `cursor` (a value returned earlier, or 0),
    /// and the cursor to pass next time. Keys may come again: merging is
    /// idempotent.
    async fn logins_since(&self, cursor: i64) -> Result<(Vec<SharedLogins>, i64)>;
    /// Deletes keys unchanged since `before` (Unix ms); how many.
    async fn forget_logins(&self, before: i64) -> Result<u64>;
}
