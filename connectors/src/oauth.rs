//! Credentials that may need refreshing. Meta takes long-lived (system user) tokens; Google
//! access tokens last an hour, so a Google source can instead hold an OAuth 2.0 client and a
//! refresh token and get a fresh access token from the token endpoint when the cached one is
//! about to expire (RFC 6749 §6: `grant_type=refresh_token`). Naver Search Ad signs each
//! request with an API key's secret instead of sending a token.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::secret::Secret;

/// Google's token endpoint.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// A cached token is renewed this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(120);

/// How a source authenticates.
pub enum Credential {
    /// A token used as given.
    Static { token: Secret, origin: String },
    /// An OAuth client that refreshes access tokens.
    Refreshing(Refresher),
    /// An API key and the secret that signs each request (Naver Search Ad); no bearer token.
    Signing { key: Secret, secret: Secret },
}

/// The refresh-token flow with a cached access token.
pub struct Refresher {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub refresh_token: Secret,
    /// Where the refresh token comes from, for messages.
    pub origin: String,
    http: reqwest::Client,
    cached: Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl Refresher {
    pub fn new(
        token_url: String,
        client_id: String,
        client_secret: Secret,
        refresh_token: Secret,
        origin: String,
        http: reqwest::Client,
    ) -> Self {
        Refresher {
            token_url,
            client_id,
            client_secret,
            refresh_token,
            origin,
            http,
            cached: Mutex::new(None),
        }
    }

    async fn access_token(&self) -> Result<Secret, String> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref() {
            if *expires > Instant::now() + EXPIRY_MARGIN {
                return Ok(token.clone());
            }
        }
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("refresh_token", self.refresh_token.expose()),
        ];
        let response = self
            .http
            .post(&self.token_url)
            .form(&form)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "OAuth token endpoint {} unreachable: {}",
                    self.token_url,
                    e.without_url()
                )
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            format!(
                "OAuth token endpoint {}: {}",
                self.token_url,
                e.without_url()
            )
        })?;
        if !status.is_success() {
            let why = serde_json::from_slice::<TokenError>(&body)
                .map(|e| format!("{} ({})", e.error, e.error_description.unwrap_or_default()))
                .unwrap_or_else(|_| format!("HTTP {status}"));
            let fix = if why.starts_with("invalid_client") {
                "check client_id and client_secret"
            } else {
                "the refresh token was revoked or expired: create a new one"
            };
            return Err(format!(
                "OAuth refresh at {} was refused: {why}; {fix} (refresh token from {})",
                self.token_url, self.origin
            ));
        }
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "OAuth token endpoint {} answered without an access token: {e}",
                self.token_url
            )
        })?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        tracing::debug!(token_url = %self.token_url, lifetime_s = lifetime.as_secs(), "refreshed the OAuth access token");
        let secret = Secret::new(token.access_token);
        *cached = Some((secret.clone(), Instant::now() + lifetime));
        Ok(secret)
    }
}

impl Credential {
    /// A usable access token (refreshed when needed).
    pub async fn access_token(&self) -> Result<Secret, String> {
        match self {
            Credential::Static { token, .. } => Ok(token.clone()),
            Credential::Refreshing(r) => r.access_token().await,
            Credential::Signing { .. } => {
                Err("this source signs its requests and has no access token".into())
            }
        }
    }

    /// Where the credential comes from, for messages.
    pub fn origin(&self) -> &str {
        match self {
            Credential::Static { origin, .. } => origin,
            Credential::Refreshing(r) => &r.origin,
            Credential::Signing { .. } => "api_key and secret_key",
        }
    }

    /// A stable name for the credential (throttle keys): the token's or the refresh token's.
    pub fn fingerprint(&self) -> String {
        match self {
            Credential::Static { token, .. } => token.fingerprint(),
            Credential::Refreshing(r) => r.refresh_token.fingerprint(),
            Credential::Signing { key, .. } => key.fingerprint(),
        }
    }

    /// Every secret value this credential holds, for scrubbing messages.
    pub fn secrets(&self) -> Vec<&Secret> {
        match self {
            Credential::Static { token, .. } => vec![token],
            Credential::Refreshing(r) => vec![&r.client_secret, &r.refresh_token],
            Credential::Signing { key, secret } => vec![key, secret],
        }
    }
}
