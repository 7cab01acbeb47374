//! Who is calling: users and their argon2 password hashes from the config, bearer tokens
//! (signed, with an expiry) handed out by the handshake, grants (what each user may read) and
//! a brake on password guessing.
//!
//! A token is `base64url(user "\n" expiry) "." base64url(HMAC-SHA256(secret, payload))` with
//! a secret drawn when the server starts, so tokens die with the server and cannot be forged
//! without it. Passwords never reach a log; failed logins are logged by user name only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;

use super::config::UserConfig;
use crate::Role;

/// Failed logins allowed for a user within [`FAILURE_WINDOW`] before logins are refused for
/// [`LOCKOUT`].
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
const LOCKOUT: Duration = Duration::from_secs(60);

/// Why a caller was turned away. The messages are what the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: log in with user and password (Basic auth on the handshake), then send the bearer token it returns")]
    Missing,
    #[error("unknown user or wrong password")]
    BadCredentials,
    #[error("too many failed logins for this user; try again in {0} s")]
    LockedOut(u64),
    #[error("the token has expired; log in again")]
    Expired,
    #[error("the token is not valid (not issued by this server, altered, or from before its restart); log in again")]
    BadToken,
    #[error("malformed authorization header: expected 'Basic …' or 'Bearer …'")]
    Malformed,
}

/// One entry of a user's grants.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    All,
    Name(String),
    Prefix(String),
}

/// What a user may read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(Vec<Grant>);

impl Grants {
    pub fn parse(entries: &[String]) -> Self {
        Grants(
            entries
                .iter()
                .map(|e| match e.trim() {
                    "*" => Grant::All,
                    prefix if prefix.ends_with('*') => {
                        Grant::Prefix(prefix.trim_end_matches('*').to_string())
                    }
                    name => Grant::Name(name.to_string()),
                })
                .collect(),
        )
    }

    /// Whether `name` (a table or mart, or `tidemark.<system table>`) is granted.
    pub fn allows(&self, name: &str) -> bool {
        self.0.iter().any(|g| match g {
            Grant::All => true,
            Grant::Name(n) => n == name,
            Grant::Prefix(p) => name.starts_with(p.as_str()),
        })
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub grants: Grants,
}

struct Account {
    hash: String,
    role: Role,
    grants: Grants,
}

#[derive(Default)]
struct Failures {
    recent: Vec<Instant>,
    locked_until: Option<Instant>,
}

/// Checks passwords and tokens.
pub struct Authenticator {
    accounts: BTreeMap<String, Account>,
    /// Checked for unknown user names, so they cost as much as a wrong password.
    stand_in_hash: String,
    check_slots: CheckSlots,
    secret: [u8; 32],
    ttl: Duration,
    failures: Mutex<HashMap<String, Failures>>,
}

/// A counting semaphore for password checks, which block their thread.
struct CheckSlots {
    free: Mutex<usize>,
    freed: std::sync::Condvar,
}

impl CheckSlots {
    fn new(slots: usize) -> Self {
        CheckSlots {
            free: Mutex::new(slots.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Run `check` once a slot is free.
    fn run<T>(&self, check: impl FnOnce() -> T) -> T {
        let mut free = self.free.lock().expect("check slots lock");
        while *free == 0 {
            free = self.freed.wait(free).expect("check slots lock");
        }
        *free -= 1;
        drop(free);
        let result = check();
        *self.free.lock().expect("check slots lock") += 1;
        self.freed.notify_one();
        result
    }
}

/// Hash a password for the config (`tidemark user add`).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// From the `[users.*]` sections; a malformed hash is an error naming the user.
    pub fn new(users: &BTreeMap<String, UserConfig>, ttl: Duration) -> Result<Self, String> {
        let mut accounts = BTreeMap::new();
        for (name, user) in users {
            PasswordHash::new(&user.password_hash).map_err(|e| {
                format!("[users.{name}] password_hash is not an argon2 hash ({e}); set it with `tidemark user add {name}`")
            })?;
            accounts.insert(
                name.clone(),
                Account {
                    hash: user.password_hash.clone(),
                    role: user.role.into(),
                    grants: Grants::parse(&user.grants),
                },
            );
        }
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        let stand_in_hash = hash_password(&format!("{:x?}", &secret[..8]))?;
        Ok(Authenticator {
            accounts,
            stand_in_hash,
            check_slots: CheckSlots::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            ),
            secret,
            ttl,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// The users configured.
    pub fn user_count(&self) -> usize {
        self.accounts.len()
    }

    fn user(&self, name: &str) -> Option<User> {
        self.accounts.get(name).map(|a| User {
            name: name.to_string(),
            role: a.role,
            grants: a.grants.clone(),
        })
    }

    /// Check a password (slow on purpose: argon2). Repeated failures lock the user out for
    /// a while, whatever the password.
    pub fn login(&self, name: &str, password: &str) -> Result<User, AuthError> {
        if let Some(wait) = self.locked_for(name) {
            tracing::warn!(user = name, "login refused: locked out after failed logins");
            return Err(AuthError::LockedOut(wait.as_secs().max(1)));
        }
        // An unknown name is checked against a stand-in hash, so it takes as long as a wrong
        // password and the timing does not tell which user names exist.
        let (known, hash) = match self.accounts.get(name) {
            Some(account) => (true, account.hash.as_str()),
            None => (false, self.stand_in_hash.as_str()),
        };
        let check = || {
            PasswordHash::new(hash).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
        };
        // Argon2 takes tens of milliseconds of CPU and 19 MiB: on a multi-threaded runtime, let
        // the other requests on this worker move to another thread meanwhile, and run only as
        // many checks at once as there are cores (50 clients logging in together would
        // otherwise hold a gigabyte).
        let multi_threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let matches = if multi_threaded {
            tokio::task::block_in_place(|| self.check_slots.run(check))
        } else {
            self.check_slots.run(check)
        };
        let verified = known && matches;
        if verified {
            self.failures.lock().expect("failures lock").remove(name);
            tracing::info!(user = name, "login");
            return Ok(self.user(name).expect("verified users exist"));
        }
        tracing::warn!(user = name, "failed login");
        self.record_failure(name);
        Err(AuthError::BadCredentials)
    }

    fn locked_for(&self, name: &str) -> Option<Duration> {
        let failures = self.failures.lock().expect("failures lock");
        let until = failures.get(name)?.locked_until?;
        until.checked_duration_since(Instant::now())
    }

    fn record_failure(&self, name: &str) {
        let mut all = self.failures.lock().expect("failures lock");
        let entry = all.entry(name.to_string()).or_default();
        let now = Instant::now();
        entry
            .recent
            .retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        entry.recent.push(now);
        if entry.recent.len() >= MAX_FAILURES {
            entry.locked_until = Some(now + LOCKOUT);
            entry.recent.clear();
        }
    }

    fn signature(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(payload);
        mac
    }

    /// A bearer token for `user`, valid for the configured lifetime.
    pub fn issue(&self, user: &User) -> String {
        self.issue_until(user, now_unix() + self.ttl.as_secs())
    }

    fn issue_until(&self, user: &User, expiry: u64) -> String {
        let payload = format!("{}\n{expiry}", user.name);
        let mac = self.signature(payload.as_bytes()).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// The user a token was issued to, if it is genuine and unexpired.
    pub fn verify(&self, token: &str) -> Result<User, AuthError> {
        let (payload, mac) = token.split_once('.').ok_or(AuthError::BadToken)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AuthError::BadToken)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| AuthError::BadToken)?;
        self.signature(&payload)
            .verify_slice(&mac)
            .map_err(|_| AuthError::BadToken)?;
        let payload = String::from_utf8(payload).map_err(|_| AuthError::BadToken)?;
        let (name, expiry) = payload.split_once('\n').ok_or(AuthError::BadToken)?;
        let expiry: u64 = expiry.parse().map_err(|_| AuthError::BadToken)?;
        if expiry <= now_unix() {
            return Err(AuthError::Expired);
        }
        // A user removed from the config loses access at the next restart (the secret changes).
        self.user(name).ok_or(AuthError::BadToken)
    }

    /// The caller named by an `authorization` header: `Bearer <token>` or `Basic <b64>`.
    pub fn authenticate(&self, header: Option<&str>) -> Result<User, AuthError> {
        let header = header.ok_or(AuthError::Missing)?.trim();
        if let Some(token) = header.strip_prefix("Bearer ") {
            return self.verify(token.trim());
        }
        if let Some(basic) = header.strip_prefix("Basic ") {
            let (name, password) = decode_basic(basic)?;
            return self.login(&name, &password);
        }
        Err(AuthError::Malformed)
    }
}

/// Standard base64, with or without `=` padding: the Go Flight client (under ADBC) sends
/// Basic credentials unpadded.
const BASIC: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// `user:password` from the base64 of Basic auth.
pub fn decode_basic(encoded: &str) -> Result<(String, String), AuthError> {
    let bytes = BASIC
        .decode(encoded.trim())
        .map_err(|_| AuthError::Malformed)?;
    let text = String::from_utf8(bytes).map_err(|_| AuthError::Malformed)?;
    let (name, password) = text.split_once(':').ok_or(AuthError::Malformed)?;
    Ok((name.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flight::config::RoleName;

    fn authenticator() -> Authenticator {
        let users = BTreeMap::from([(
            "ana".to_string(),
            UserConfig {
                password_hash: hash_password("s3cret").unwrap(),
                role: RoleName::Reader,
                grants: vec!["daily_*".into(), "fx_rates".into()],
            },
        )]);
        Authenticator::new(&users, Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn tokens_are_issued_verified_and_refused_when_forged_or_expired() {
        let auth = authenticator();
        let ana = auth.login("ana", "s3cret").unwrap();
        let token = auth.issue(&ana);
        assert_eq!(auth.verify(&token).unwrap().name, "ana");
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {token}")))
                .unwrap()
                .name,
            "ana"
        );
        // Same payload, another server's secret: forged.
        let other = authenticator();
        assert_eq!(other.verify(&token), Err(AuthError::BadToken));
        // A payload changed to another user keeps the old signature: forged.
        let (_, mac) = token.split_once('.').unwrap();
        let forged = format!("{}.{mac}", URL_SAFE_NO_PAD.encode("root\n99999999999"));
        assert_eq!(auth.verify(&forged), Err(AuthError::BadToken));
        let expired = auth.issue_until(&ana, now_unix() - 1);
        assert_eq!(auth.verify(&expired), Err(AuthError::Expired));
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            auth.authenticate(Some("Digest x")),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn wrong_passwords_lock_the_user_out_for_a_while() {
        let auth = authenticator();
        assert_eq!(auth.login("nobody", "x"), Err(AuthError::BadCredentials));
        for _ in 0..MAX_FAILURES {
            assert_eq!(auth.login("ana", "guess"), Err(AuthError::BadCredentials));
        }
        assert!(matches!(
            auth.login("ana", "s3cret"),
            Err(AuthError::LockedOut(_))
        ));
        let basic = base64::engine::general_purpose::STANDARD.encode("ana:s3cret");
        assert!(matches!(
            auth.authenticate(Some(&format!("Basic {basic}"))),
            Err(AuthError::LockedOut(_))
        ));
    }

    #[test]
    fn basic_credentials_decode_with_or_without_padding() {
        let padded = base64::engine::general_purpose::STANDARD.encode("ana:not-the-password");
        assert!(padded.ends_with('='));
        let unpadded = padded.trim_end_matches('=');
        for encoded in [padded.as_str(), unpadded] {
            assert_eq!(
                decode_basic(encoded),
                Ok(("ana".to_string(), "not-the-password".to_string()))
            );
        }
        assert_eq!(decode_basic("%%%"), Err(AuthError::Malformed));
    }

    #[test]
    fn grants_allow_names_prefixes_and_everything() {
        let grants = Grants::parse(&["daily_*".into(), "fx_rates".into()]);
        assert!(grants.allows("daily_campaign_performance"));
        assert!(grants.allows("fx_rates"));
        assert!(!grants.allows("ad_performance"));
        assert!(!grants.allows("tidemark.slices"));
        assert!(Grants::parse(&["*".into()]).allows("tidemark.slices"));
        assert!(!Grants::default().allows("x"));
    }
}
