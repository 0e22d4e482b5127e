//! AWS credentials and region, found the way the AWS CLI finds them: the environment first
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then the profile named
//! by `AWS_PROFILE` (or `default`) in the shared credentials and config files
//! (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`, `~/.aws/credentials`, `~/.aws/config`).

use std::collections::HashMap;
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Static credentials. The secret parts are wiped when dropped and never printed.
#[derive(Clone)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`: not secret, shown in messages.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Zeroizing<String>,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// What the environment and the profile files say.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// Static credentials, if any were found.
    pub credentials: Option<Credentials>,
    /// `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile's `region`.
    pub region: Option<String>,
    /// Where the credentials came from, for messages ("environment", "profile default").
    pub source: String,
}

impl AwsSettings {
    /// Reads the process environment and the files it points to.
    pub fn from_env() -> Result<Self> {
        Self::resolve(&|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Resolves with `env` standing in for the process environment (tests).
    pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let home = env("HOME").map(PathBuf::from);
        let file = |var: &str, name: &str| {
            env(var).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
        };
        let creds_file = read_ini(file("AWS_SHARED_CREDENTIALS_FILE", "credentials"), &profile, false)?;
        let config_file = read_ini(file("AWS_CONFIG_FILE", "config"), &profile, true)?;
        let from_profile = |key: &str| creds_file.get(key).or_else(|| config_file.get(key)).cloned();

        let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).or_else(|| from_profile("region"));
        let (credentials, source) = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => (
                Some(Credentials {
                    access_key_id: id,
                    secret_access_key: Zeroizing::new(secret),
                    session_token: env("AWS_SESSION_TOKEN").map(Zeroizing::new),
                }),
                "environment".to_string(),
            ),
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::InvalidInput(
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together".into(),
                ));
            }
            (None, None) => match (from_profile("aws_access_key_id"), from_profile("aws_secret_access_key")) {
                (Some(id), Some(secret)) => (
                    Some(Credentials {
                        access_key_id: id,
                        secret_access_key: Zeroizing::new(secret),
                        session_token: from_profile("aws_session_token").map(Zeroizing::new),
                    }),
                    format!("profile {profile}"),
                ),
                _ if env("AWS_PROFILE").is_some() => {
                    return Err(Error::InvalidInput(format!(
                        "AWS_PROFILE={profile}: no aws_access_key_id/aws_secret_access_key for that profile in the shared credentials or config file"
                    )));
                }
                _ => (None, "none".to_string()),
            },
        };
        Ok(AwsSettings { credentials, region, source })
    }
}

/// The `key = value` pairs of one profile's section. In the config file, profiles other than
/// `default` are written `[profile NAME]`. A missing file is an empty section.
fn read_ini(path: Option<PathBuf>, profile: &str, config_style: bool) -> Result<HashMap<String, String>> {
    let Some(path) = path else { return Ok(HashMap::new()) };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(Error::InvalidInput(format!("cannot read {}: {e}", path.display()))),
    };
    Ok(parse_ini_section(&text, profile, config_style))
}

fn parse_ini_section(text: &str, profile: &str, config_style: bool) -> HashMap<String, String> {
    let wanted = |section: &str| {
        let section = section.trim();
        if config_style && profile != "default" {
            section.strip_prefix("profile").is_some_and(|s| s.starts_with(char::is_whitespace) && s.trim() == profile)
        } else {
            section == profile
        }
    };
    let mut out = HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = wanted(section);
        } else if inside && let Some((k, v)) = line.split_once('=') {
            out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_wins_over_profiles() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKIDENV".into()),
            ("AWS_SECRET_ACCESS_KEY", "secret-env".into()),
            ("AWS_SESSION_TOKEN", "tok".into()),
            ("AWS_DEFAULT_REGION", "eu-west-3".into()),
            ("HOME", "/nonexistent".into()),
        ]);
        let s = AwsSettings::resolve(&env).unwrap();
        let c = s.credentials.unwrap();
        assert_eq!(c.access_key_id, "AKIDENV");
        assert_eq!(c.secret_access_key.as_str(), "secret-env");
        assert_eq!(c.session_token.as_deref().map(String::as_str), Some("tok"));
        assert_eq!(s.region.as_deref(), Some("eu-west-3"));
        assert!(!format!("{c:?}").contains("secret-env"));
    }

    #[test]
    fn named_profile_from_the_shared_files() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        let config = dir.path().join("config");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = AKIDDEF\naws_secret_access_key = s-def\n\n[nightly]\n# comment\naws_access_key_id=AKIDNIGHT\naws_secret_access_key = s-night\n",
        )
        .unwrap();
        std::fs::write(&config, "[default]\nregion = us-east-2\n[profile nightly]\nregion = ap-south-1\n").unwrap();
        let base = vec![
            ("AWS_SHARED_CREDENTIALS_FILE", creds.display().to_string()),
            ("AWS_CONFIG_FILE", config.display().to_string()),
        ];
        let s = AwsSettings::resolve(&env_of(&base)).unwrap();
        assert_eq!(s.credentials.unwrap().access_key_id, "AKIDDEF");
        assert_eq!(s.region.as_deref(), Some("us-east-2"));

        let mut named = base.clone();
        named.push(("AWS_PROFILE", "nightly".into()));
        let s = AwsSettings::resolve(&env_of(&named)).unwrap();
        assert_eq!(s.credentials.as_ref().unwrap().access_key_id, "AKIDNIGHT");
        assert_eq!(s.credentials.unwrap().secret_access_key.as_str(), "s-night");
        assert_eq!((s.region.as_deref(), s.source.as_str()), (Some("ap-south-1"), "profile nightly"));

        let mut missing = base;
        missing.push(("AWS_PROFILE", "nope".into()));
        let e = AwsSettings::resolve(&env_of(&missing)).unwrap_err().to_string();
        assert!(e.contains("AWS_PROFILE=nope"), "{e}");
    }

    #[test]
    fn half_set_environment_is_an_error_and_nothing_set_is_none() {
        let e = AwsSettings::resolve(&env_of(&[("AWS_ACCESS_KEY_ID", "x".into())])).unwrap_err();
        assert!(e.to_string().contains("set together"));
        let s = AwsSettings::resolve(&env_of(&[("HOME", "/nonexistent".into())])).unwrap();
        assert!(s.credentials.is_none() && s.region.is_none());
    }
}
