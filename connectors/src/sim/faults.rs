//! Fault plans and drift switches of the simulators.
//!
//! Faults are counters ("the next 20 requests are throttled"), so a test gets the same number
//! of faults whatever order concurrent requests arrive in. Drift changes what the payloads
//! look like until it is switched off.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::normalize::normalize_key;

/// What goes wrong, per platform. Counters count down as requests consume them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// The next N data requests get the platform's own rate-limit answer (Meta: HTTP 400
    /// with codes 80000/17/613/4/80004 and usage headers at 100%; Google Ads: HTTP 429
    /// RESOURCE_EXHAUSTED with a `retryDelay`; Naver: HTTP 429 with no hint).
    pub throttle: u32,
    /// Meta: `estimated_time_to_regain_access` (minutes) sent with throttled answers.
    pub regain_minutes: u32,
    /// Google Ads: the `retryDelay` sent with throttled answers, in milliseconds.
    pub retry_delay_ms: u64,
    /// The next N data requests get a generic HTTP 429 with `Retry-After: 1`.
    pub retry_after: u32,
    /// The next N data requests get HTTP 500 or 503.
    pub server_errors: u32,
    /// The next N successful bodies are cut in half.
    pub truncate: u32,
    /// The next N requests are answered after `slow_ms`.
    pub slow: u32,
    pub slow_ms: u64,
    /// Every data request for this account fails with HTTP 500 (a permanent failure).
    pub fail_account: Option<String>,
    /// Meta: the next N report runs end "Job Failed"; Naver: the next N report jobs end in
    /// `ERROR`.
    pub job_failures: u32,
    /// Google Ads: the daily operations quota is spent (429 with a day-long retryDelay).
    pub quota_exhausted: bool,
    /// Data requests allowed in any one-second window per platform (0: no limit); beyond
    /// it, requests get the platform's rate-limit answer.
    pub rate_limit_per_second: u32,
}

/// The fault one request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Throttle,
    RetryAfter,
    QuotaGone,
    ServerError(u16),
    Truncate,
    Slow(u64),
}

impl Faults {
    /// Consume the fault for the next request on `account`.
    pub fn take(&mut self, account: Option<&str>) -> Fault {
        if account.is_some() && self.fail_account.as_deref() == account {
            return Fault::ServerError(500);
        }
        if self.quota_exhausted {
            return Fault::QuotaGone;
        }
        let take = |n: &mut u32| {
            if *n > 0 {
                *n -= 1;
                true
            } else {
                false
            }
        };
        if take(&mut self.throttle) {
            return Fault::Throttle;
        }
        if take(&mut self.retry_after) {
            return Fault::RetryAfter;
        }
        if take(&mut self.server_errors) {
            return Fault::ServerError(if self.server_errors.is_multiple_of(2) {
                500
            } else {
                503
            });
        }
        if take(&mut self.slow) {
            return Fault::Slow(self.slow_ms);
        }
        if take(&mut self.truncate) {
            return Fault::Truncate;
        }
        Fault::None
    }
}

/// How keys are spelled when key-case drift is on.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyCase {
    /// As the platform documents them.
    #[default]
    Native,
    /// `IMPRESSIONS`, `COST_MICROS`.
    Upper,
    /// `Impressions`, `CostMicros`.
    Pascal,
    /// `cost_micros` (Google's proto field names instead of JSON names).
    Snake,
}

/// A renamed field.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rename {
    pub from: String,
    pub to: String,
}

/// Schema drift switches, per platform.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Drift {
    /// Every row gains a field the client does not know.
    pub added_field: bool,
    /// A field is sent under another name (names as the platform spells them).
    pub rename: Option<Rename>,
    /// Keys change case.
    pub key_case: KeyCase,
    /// Rows of this account carry values that do not parse ("n/a" impressions).
    pub malformed_account: Option<String>,
    /// The platform's older payload shape, which files still in circulation have (Naver: `AD`
    /// reports without the appended View count column, conversion types as codes 1–5).
    pub legacy_format: bool,
    /// GA4: the long tail is folded into an `(other)` row and the report is thresholded
    /// (`dataLossFromOtherRow`, `subjectToThresholding`).
    pub folded_rows: bool,
}

impl Drift {
    /// Apply the renames and key case to a row (recursively).
    pub fn reshape(&self, value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let k = match &self.rename {
                        Some(r) if r.from == k => r.to.clone(),
                        _ => k,
                    };
                    out.insert(self.spell(&k), self.reshape(v));
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.reshape(v)).collect())
            }
            other => other,
        }
    }

    fn spell(&self, key: &str) -> String {
        let snake = || normalize_key(key);
        match self.key_case {
            KeyCase::Native => key.to_string(),
            KeyCase::Upper => snake().to_uppercase(),
            KeyCase::Snake => snake(),
            KeyCase::Pascal => snake()
                .split('_')
                .map(|part| {
                    let mut c = part.chars();
                    c.next()
                        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_run_down_in_order() {
        let mut f = Faults {
            throttle: 2,
            server_errors: 1,
            ..Faults::default()
        };
        assert_eq!(f.take(None), Fault::Throttle);
        assert_eq!(f.take(None), Fault::Throttle);
        assert!(matches!(f.take(None), Fault::ServerError(_)));
        assert_eq!(f.take(None), Fault::None);
        f.fail_account = Some("9".into());
        assert_eq!(f.take(Some("9")), Fault::ServerError(500));
        assert_eq!(f.take(Some("8")), Fault::None);
    }

    #[test]
    fn drift_reshapes_keys_recoverably() {
        let row = json!({"metrics": {"costMicros": "5"}, "adGroupAd": {"ad": {"id": "1"}}});
        for case in [KeyCase::Upper, KeyCase::Pascal, KeyCase::Snake] {
            let d = Drift {
                key_case: case,
                ..Drift::default()
            };
            let flat = crate::normalize::flatten(&d.reshape(row.clone()), &Default::default());
            assert_eq!(flat["metrics_cost_micros"], json!("5"), "{case:?}");
            assert_eq!(flat["ad_group_ad_ad_id"], json!("1"), "{case:?}");
        }
        let d = Drift {
            rename: Some(Rename {
                from: "costMicros".into(),
                to: "spendMicros".into(),
            }),
            ..Drift::default()
        };
        assert_eq!(d.reshape(row)["metrics"]["spendMicros"], json!("5"));
    }
}
