//! Leases on warehouse objects: at most one holder at a time, and a holder that dies cannot
//! keep it forever. A lease is a small JSON object (holder, expiry) created with put-if-absent;
//! the holder renews it well before it expires; anyone may take over a lease whose expiry has
//! passed. Used for "one scheduler per warehouse" and "one refresher per mart".
//!
//! Takeover is delete-then-create, so two processes taking over the same expired lease at the
//! same moment can both believe they won until the next renewal, when the loser sees another
//! holder and stops. Renew at a third of the lease time or more often.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A name for this process as a lease holder or queue consumer: host, pid and a random
/// suffix (a restarted process with a reused pid is still someone else).
pub fn process_id() -> String {
    format!(
        "{}:{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// What a lease object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub holder: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A held lease.
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    path: Path,
    holder: String,
    ttl: Duration,
    acquired_at: DateTime<Utc>,
}

fn lease_error(path: &Path, e: object_store::Error) -> Error {
    Error::store(path, e)
}

async fn read(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Option<LeaseRecord>> {
    match store.get(path).await {
        Ok(result) => {
            let data = result.bytes().await.map_err(|e| lease_error(path, e))?;
            Ok(serde_json::from_slice(&data).ok())
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(lease_error(path, e)),
    }
}

impl Lease {
    /// Take the lease at `path` for `holder`, or say who holds it and until when.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        path: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease> {
        let path = Path::from(path);
        for _ in 0..2 {
            let now = Utc::now();
            let record = LeaseRecord {
                holder: holder.to_string(),
                acquired_at: now,
                expires_at: now + chrono::Duration::from_std(ttl).unwrap_or_default(),
            };
            let body = serde_json::to_vec_pretty(&record).expect("serializes");
            let create = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match store.put_opts(&path, PutPayload::from(body), create).await {
                Ok(_) => {
                    return Ok(Lease {
                        store,
                        path,
                        holder: holder.to_string(),
                        ttl,
                        acquired_at: now,
                    })
                }
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(lease_error(&path, e)),
            }
            match read(&store, &path).await? {
                Some(current) if current.expires_at > Utc::now() => {
                    return Err(Error::LeaseHeld {
                        path: path.to_string(),
                        holder: current.holder,
                        until: current.expires_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                    })
                }
                _ => {
                    tracing::warn!(lease = %path, "taking over an expired lease");
                    match store.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(lease_error(&path, e)),
                    }
                }
            }
        }
        Err(Error::LeaseHeld {
            path: path.to_string(),
            holder: "another process taking it over at the same moment".into(),
            until: "it renews".into(),
        })
    }

    /// Extend the lease. `false` when someone else holds it now (stop working).
    pub async fn renew(&self) -> Result<bool> {
        match read(&self.store, &self.path).await? {
            Some(current) if current.holder == self.holder => {}
            _ => return Ok(false),
        }
        let record = LeaseRecord {
            holder: self.holder.clone(),
            acquired_at: self.acquired_at,
            expires_at: Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or_default(),
        };
        self.store
            .put(
                &self.path,
                PutPayload::from(serde_json::to_vec_pretty(&record).expect("serializes")),
            )
            .await
            .map_err(|e| lease_error(&self.path, e))?;
        Ok(true)
    }

    /// Give the lease up (if still ours).
    pub async fn release(self) -> Result<()> {
        if let Some(current) = read(&self.store, &self.path).await? {
            if current.holder == self.holder {
                match self.store.delete(&self.path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(lease_error(&self.path, e)),
                }
            }
        }
        Ok(())
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_expired_leases_are_taken_over() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let a = Lease::acquire(Arc::clone(&store), "l", "a", Duration::from_secs(60))
            .await
            .unwrap();
        let refused = Lease::acquire(Arc::clone(&store), "l", "b", Duration::from_secs(60))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(refused.contains("held by a"), "{refused}");
        assert!(a.renew().await.unwrap());
        a.release().await.unwrap();
        let b = Lease::acquire(Arc::clone(&store), "l", "b", Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // b died without releasing; its lease expired; c takes over and b learns it lost.
        let c = Lease::acquire(Arc::clone(&store), "l", "c", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(!b.renew().await.unwrap());
        assert!(c.renew().await.unwrap());
    }
}
