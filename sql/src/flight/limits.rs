//! How much one query and one user may take: a cap on queries running at once across the
//! server and per user (further queries wait their turn, up to the query timeout), and the
//! per-query timeout itself. Memory is limited per query by its session's memory pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The permits a running query holds; dropping them lets the next query start.
#[derive(Debug)]
pub struct Slot {
    _global: OwnedSemaphorePermit,
    _user: OwnedSemaphorePermit,
}

/// Concurrency caps.
pub struct Limits {
    global: Arc<Semaphore>,
    per_user: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_user_max: usize,
    pub timeout: Duration,
}

impl Limits {
    pub fn new(max_concurrent: usize, per_user_max: usize, timeout: Duration) -> Self {
        Limits {
            global: Arc::new(Semaphore::new(max_concurrent.max(1))),
            per_user: Mutex::new(HashMap::new()),
            per_user_max: per_user_max.max(1),
            timeout,
        }
    }

    /// Wait for a slot for `user` (its own cap first, then the server's), at most the query
    /// timeout.
    pub async fn acquire(&self, user: &str) -> Result<Slot, String> {
        let mine = self
            .per_user
            .lock()
            .expect("limits lock")
            .entry(user.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_user_max)))
            .clone();
        let wait = async {
            let user_permit = mine.acquire_owned().await.expect("never closed");
            let global_permit = self
                .global
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            Slot {
                _global: global_permit,
                _user: user_permit,
            }
        };
        tokio::time::timeout(self.timeout, wait).await.map_err(|_| {
            format!(
                "waited {} s for a free query slot ({} per user, {} in all are running); try again later",
                self.timeout.as_secs(),
                self.per_user_max,
                self.global.available_permits()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_waits_beyond_its_cap_while_others_run() {
        let limits = Limits::new(10, 2, Duration::from_millis(200));
        let a1 = limits.acquire("a").await.unwrap();
        let _a2 = limits.acquire("a").await.unwrap();
        // A third query of "a" waits, and gives up at the timeout.
        let third = limits.acquire("a").await;
        assert!(third.unwrap_err().contains("free query slot"));
        // Another user is not held up by "a".
        let _b = limits.acquire("b").await.unwrap();
        drop(a1);
        assert!(limits.acquire("a").await.is_ok());
    }
}
