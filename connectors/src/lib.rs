//! # tidemark-connectors
//!
//! Everything that talks to ad platforms: the source framework, platform clients and their
//! normalization into per-source tables and the canonical `ad_performance` rows, throttling,
//! raw landing and replay, and built-in simulators that stand in for the platforms on loopback
//! (for `tidemark demo`, `tidemark sim serve` and the tests).
//!
//! # Layout
//! - [`config`]: `[sources.*]` in `tidemark.toml`; [`secret`]: credentials that never print.
//! - [`api_versions`]: each platform's API versions and sunset dates; the default; verdicts.
//! - [`source`]: the `Source` trait; the platform clients: spend platforms [`meta`],
//!   [`google_ads`], [`naver`] and [`kakao`]; attribution platforms [`appsflyer`] and [`ga4`].
//! - [`throttle`]: per-credential concurrency caps, platform-signalled waits, retries.
//! - [`raw`]: landing payloads in `raw/` with a manifest, quarantine, reading runs back.
//! - [`journal`]: a run's plan and committed jobs under `_tidemark/`, for resuming.
//! - [`queue`]: the distributed job queue on Redis Streams (consumer group, heartbeat, XAUTOCLAIM).
//! - [`normalize`]: drift-tolerant JSON → Arrow (key case, aliases, added fields, exact decimals).
//! - [`sync`]: plan → fetch → land → normalize → one commit per table; replay from raw.
//! - [`gaps`]: slices of the configured history the ledger says are missing or stale.
//! - [`status`]: freshness, unfinished jobs and quarantine per source and account.
//! - [`sim`]: faithful simulators of every platform over a seeded ground truth.
//!
//! # Key decision
//! A sync produces the complete current rows of every (source, account, day) in its window and
//! hands them to the engine's replace contract; connectors never patch rows. Pages are
//! normalized only from the bytes that were landed, so a replay from `raw/` yields the same
//! tables as the sync that fetched them.

pub mod api_versions;
pub mod appsflyer;
pub mod config;
pub mod error;
pub mod ga4;
pub mod gaps;
pub mod google_ads;
pub mod journal;
pub mod kakao;
/// Leases live in the engine (marts use them too); re-exported where the scheduler found them.
pub use engine::lease;
pub mod meta;
pub mod naver;
pub mod normalize;
pub mod oauth;
pub mod queue;
pub mod raw;
pub mod secret;
pub mod sim;
pub mod source;
pub mod status;
pub mod sync;
pub mod throttle;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;

pub use error::{Error, Result};
pub use window::Window;

use config::{Platform, ResolvedSource};
use secret::Secret;
use source::Source;
use throttle::{Limits, Throttle};

/// The HTTP client every platform client uses (rustls, bounded connect time).
pub(crate) fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .user_agent(concat!("tidemark/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Config(format!("cannot set up the HTTP client: {e}")))
}

/// `text` with every occurrence of the secret's value replaced (platform messages sometimes
/// echo what they were sent).
pub(crate) fn scrub(text: &str, secret: &Secret) -> String {
    let value = secret.expose();
    if value.len() < 4 {
        return text.to_string();
    }
    text.replace(value, "<redacted>")
}

/// Whether sources are built to call platforms or only to read landed pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Credentials are read and checked.
    Fetch,
    /// No credentials are read; the sources are only used to normalize `raw/` pages.
    Replay,
}

/// Build the clients for `sources`. Sources sharing a credential share one throttle.
pub fn build_sources(sources: &[ResolvedSource], purpose: Purpose) -> Result<Vec<Arc<dyn Source>>> {
    build_sources_with(sources, |source, secret, key| match purpose {
        Purpose::Replay => Ok(Secret::new("")),
        Purpose::Fetch => secret
            .resolve(&format!("sources.{}.{key}", source.name))
            .map_err(Error::Config),
    })
}

/// Build the clients for `sources`, reading each secret with `resolve(source, where, key)`
/// (for embedding: the demo hands the simulators' credentials over directly).
pub fn build_sources_with(
    sources: &[ResolvedSource],
    resolve: impl Fn(&ResolvedSource, &secret::SecretRef, &str) -> Result<Secret>,
) -> Result<Vec<Arc<dyn Source>>> {
    let mut throttles: HashMap<String, Arc<Throttle>> = HashMap::new();
    let mut built: Vec<Arc<dyn Source>> = Vec::new();
    for source in sources {
        let secret = |r: &secret::SecretRef, key: &str| resolve(source, r, key);
        let c = &source.config;
        let credential = match (source.platform, &c.access_token, &c.oauth) {
            (Platform::NaverSearchAd, _, _) => {
                let needed = |r: &Option<secret::SecretRef>, key: &str| match r {
                    Some(r) => secret(r, key),
                    None => Err(Error::Config(format!(
                        "[sources.{}]: Naver Search Ad needs {key}",
                        source.name
                    ))),
                };
                oauth::Credential::Signing {
                    key: needed(&c.api_key, "api_key")?,
                    secret: needed(&c.secret_key, "secret_key")?,
                }
            }
            (_, Some(token), _) => oauth::Credential::Static {
                token: secret(token, "access_token")?,
                origin: token.describe(),
            },
            (_, None, Some(o)) => oauth::Credential::Refreshing(oauth::Refresher::new(
                o.token_url
                    .clone()
                    .unwrap_or_else(|| source.platform.default_token_url().to_string()),
                o.client_id.clone(),
                secret(&o.client_secret, "oauth.client_secret")?,
                secret(&o.refresh_token, "oauth.refresh_token")?,
                o.refresh_token.describe(),
                http_client()?,
            )),
            (_, None, None) => {
                return Err(Error::Config(format!(
                    "[sources.{}]: no credential configured",
                    source.name
                )))
            }
        };
        let defaults = Limits::default();
        let limits = Limits {
            max_concurrency: c.max_concurrency.unwrap_or(defaults.max_concurrency),
            max_attempts: c.max_attempts.unwrap_or(defaults.max_attempts),
            max_wait: c.max_wait.unwrap_or(defaults.max_wait),
            request_timeout: c.request_timeout.unwrap_or(defaults.request_timeout),
            base_backoff: c.backoff.unwrap_or(defaults.base_backoff),
            max_requests_per_second: c.max_requests_per_second.filter(|r| *r > 0.0),
            ..defaults
        };
        let key = format!("{}/{}", source.platform, credential.fingerprint());
        let throttle = Arc::clone(
            throttles
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Throttle::new(key, limits))),
        );
        match source.platform {
            Platform::Meta => {
                let oauth::Credential::Static { token, .. } = credential else {
                    return Err(Error::Config(format!(
                        "[sources.{}]: Meta takes access_token",
                        source.name
                    )));
                };
                built.push(Arc::new(meta::MetaSource::new(source, token, throttle)?))
            }
            Platform::GoogleAds => {
                let developer = match &c.developer_token {
                    Some(r) => secret(r, "developer_token")?,
                    None => {
                        return Err(Error::Config(format!(
                            "[sources.{}]: Google Ads needs developer_token",
                            source.name
                        )))
                    }
                };
                built.push(Arc::new(google_ads::GoogleAdsSource::new(
                    source, credential, developer, throttle,
                )?))
            }
            Platform::KakaoMoment => built.push(Arc::new(kakao::KakaoSource::new(
                source, credential, throttle,
            )?)),
            Platform::Ga4 => {
                built.push(Arc::new(ga4::Ga4Source::new(source, credential, throttle)?))
            }
            Platform::AppsFlyer => {
                let oauth::Credential::Static { token, origin } = credential else {
                    return Err(Error::Config(format!(
                        "[sources.{}]: AppsFlyer takes access_token",
                        source.name
                    )));
                };
                built.push(Arc::new(appsflyer::AppsFlyerSource::new(
                    source, token, origin, throttle,
                )?))
            }
            Platform::NaverSearchAd => {
                let oauth::Credential::Signing { key, secret } = credential else {
                    unreachable!("Naver sources are given a signing credential above")
                };
                built.push(Arc::new(naver::NaverSource::new(
                    source, key, secret, throttle,
                )?))
            }
        }
    }
    Ok(built)
}
