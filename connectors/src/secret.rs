//! Secrets (tokens, keys): where config says to find them, and a value type that never
//! shows itself. A secret is read from an environment variable or a file; literal values in
//! `tidemark.toml` are refused so a config file can be committed and shared.

use std::path::PathBuf;

use serde::Deserialize;

/// Where a secret lives, as written in config: `{ env = "VAR" }` or `{ file = "path" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SecretSpelling")]
pub struct SecretRef {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// How a secret may be written in config. A bare string is accepted by the parser only so
/// that it can be refused with a message that does not repeat the value.
#[derive(Deserialize)]
#[serde(untagged)]
enum SecretSpelling {
    Where {
        env: Option<String>,
        file: Option<PathBuf>,
    },
    Literal(#[allow(dead_code)] String),
}

impl TryFrom<SecretSpelling> for SecretRef {
    type Error = &'static str;

    fn try_from(spelling: SecretSpelling) -> Result<Self, Self::Error> {
        match spelling {
            SecretSpelling::Where { env, file } => Ok(SecretRef { env, file }),
            SecretSpelling::Literal(_) => Err(
                "secrets are not written into tidemark.toml: use { env = \"VAR\" } or { file = \"path\" }",
            ),
        }
    }
}

/// A secret value. `Debug` and `Display` print `<redacted>`; only [`Secret::expose`] gives
/// the value, and callers pass it straight to a request header.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for a request header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, stable, non-reversible name for the credential (for throttle keys and logs).
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.0.as_bytes());
        hex::encode(&digest[..4])
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl SecretRef {
    /// Where the secret is read from, for messages (never the value).
    pub fn describe(&self) -> String {
        match (&self.env, &self.file) {
            (Some(var), _) => format!("environment variable {var}"),
            (None, Some(path)) => format!("file {}", path.display()),
            (None, None) => "nowhere (set env or file)".into(),
        }
    }

    /// Read the secret. `key` names the config key for messages (`sources.meta.access_token`).
    pub fn resolve(&self, key: &str) -> Result<Secret, String> {
        match (&self.env, &self.file) {
            (Some(_), Some(_)) => Err(format!("{key}: give either env or file, not both")),
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_string())),
                Ok(_) => Err(format!("{key}: environment variable {var} is empty")),
                Err(_) => Err(format!(
                    "{key}: environment variable {var} is not set; export it with the credential"
                )),
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_string())),
                Ok(_) => Err(format!("{key}: file {} is empty", path.display())),
                Err(e) => Err(format!("{key}: cannot read {}: {e}", path.display())),
            },
            (None, None) => Err(format!(
                "{key}: say where the secret is, e.g. {{ env = \"VAR\" }} or {{ file = \"path\" }}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("EAAB-very-secret");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert!(!s.fingerprint().contains("secret"));
        assert_eq!(s.fingerprint().len(), 8);
    }

    #[test]
    fn missing_variable_names_the_key_and_variable() {
        let r = SecretRef {
            env: Some("TIDEMARK_TEST_SURELY_UNSET".into()),
            file: None,
        };
        let e = r.resolve("sources.meta.access_token").unwrap_err();
        assert!(
            e.contains("sources.meta.access_token") && e.contains("TIDEMARK_TEST_SURELY_UNSET")
        );
    }
}
