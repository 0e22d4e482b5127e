//! Who may do what: the identities file (TOML) names each identity, how it authenticates (a
//! bearer token, of which only a BLAKE3 hash is stored; a TLS client certificate, by the
//! SHA-256 fingerprint of its DER) and its permissions per repository. Tokens are 256 random
//! bits, so a fast hash is enough to make the file useless for logging in; they are shown
//! once, when made, and compared in constant time.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What an identity may do in one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Read and list every object.
    Read,
    /// Create objects that do not exist yet (packs, index segments, snapshots, locks, audit
    /// entries) and delete its own locks: back up, never delete or overwrite.
    Append,
    /// Delete packs, segments and snapshots, as forget and prune do; holds `append` too
    /// (prune writes repacked packs and index segments).
    Delete,
    /// Change key slots and keyrings.
    Keys,
    /// Everything, `init` included.
    Admin,
}

/// The repositories entry that stands for every repository not named.
pub const ANY_REPOSITORY: &str = "*";

/// The prefix of every token, so a leaked one is recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "cairn_";

/// One identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Its name, as the server log records it.
    pub name: String,
    /// BLAKE3 of its bearer token, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_blake3: Option<String>,
    /// SHA-256 of its client certificate (DER), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_sha256: Option<String>,
    /// Permissions by repository name.
    #[serde(default)]
    pub repositories: BTreeMap<String, Vec<Permission>>,
}

impl Identity {
    /// Whether it holds `permission` in `repository` (admin holds every permission, delete
    /// holds append). The
    /// entry `*` holds for every repository the identity has no entry of its own for.
    pub fn may(&self, repository: &str, permission: Permission) -> bool {
        self.repositories.get(repository).or_else(|| self.repositories.get(ANY_REPOSITORY)).is_some_and(|p| {
            p.contains(&permission)
                    || p.contains(&Permission::Admin)
                    // Maintenance writes too: prune stores repacked packs and new index
                    // segments, forget and prune their audit entries.
                    || (permission == Permission::Append && p.contains(&Permission::Delete))
        })
    }
}

/// The identities file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identities {
    /// Every identity, by order in the file.
    #[serde(default, rename = "identity")]
    pub identities: Vec<Identity>,
    /// The most each repository may hold, in bytes, by repository name (`*`: every one not
    /// named). Writes of identities that may not delete are refused beyond it; see
    /// [`crate::quota`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "sizes")]
    pub quotas: BTreeMap<String, u64>,
}

/// Quotas as bytes or as sizes with a unit (`"500GiB"`, `"2T"`: powers of 1024).
fn sizes<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<BTreeMap<String, u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    let raw = BTreeMap::<String, Size>::deserialize(d)?;
    raw.into_iter()
        .map(|(repo, size)| match size {
            Size::Bytes(b) => Ok((repo, b)),
            Size::Text(t) => parse_size::Config::new()
                .with_binary()
                .parse_size(t.trim())
                .map(|b| (repo.clone(), b))
                .map_err(|e| serde::de::Error::custom(format!("quota of {repo}: not a size: {t:?} ({e})"))),
        })
        .collect()
}

fn token_hash(token: &str) -> blake3::Hash {
    blake3::hash(token.as_bytes())
}

impl Identities {
    /// Parses and checks an identities file's text (`origin` names it in errors): names are
    /// unique and non-empty, hashes are 64 hex digits.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let ids: Identities = toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        let mut names = std::collections::HashSet::new();
        let mut credentials = std::collections::HashSet::new();
        for id in &ids.identities {
            for credential in id.token_blake3.iter().chain(&id.certificate_sha256) {
                if !credentials.insert(credential.to_ascii_lowercase()) {
                    return Err(Error::Config(format!(
                        "{origin}: identity {}: its token or certificate is another identity's too",
                        id.name
                    )));
                }
            }
            if id.name.is_empty() || !names.insert(id.name.as_str()) {
                return Err(Error::Config(format!(
                    "{origin}: identity names must be unique and not empty: {:?}",
                    id.name
                )));
            }
            for hash in id.token_blake3.iter().chain(&id.certificate_sha256) {
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Error::Config(format!(
                        "{origin}: identity {}: {hash:?} is not 64 hex digits",
                        id.name
                    )));
                }
            }
        }
        Ok(ids)
    }

    /// The quota of `repository`: its own entry, else the `*` entry, else none.
    pub fn quota(&self, repository: &str) -> Option<u64> {
        self.quotas.get(repository).or_else(|| self.quotas.get(ANY_REPOSITORY)).copied()
    }

    /// Reads the identities file at `path`; a missing file holds no identities.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Identities::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Writes the file atomically (a temporary file renamed over it, mode 0600).
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = toml::to_string(self).map_err(|e| Error::Internal(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        file.write_all(text.as_bytes()).map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Adds an identity `name` with a new token and no permissions yet; returns the token,
    /// which is stored nowhere (only its hash is).
    pub fn add(&mut self, name: &str) -> Result<String> {
        if name.is_empty() || self.identities.iter().any(|i| i.name == name) {
            return Err(Error::Config(format!("an identity named {name:?} exists already, or the name is empty")));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        zeroize::Zeroize::zeroize(&mut secret);
        self.identities.push(Identity {
            name: name.to_string(),
            token_blake3: Some(token_hash(&token).to_hex().to_string()),
            certificate_sha256: None,
            repositories: BTreeMap::new(),
        });
        Ok(token)
    }

    /// Adds an identity `name` authenticated by the client certificate with this SHA-256
    /// fingerprint (hex), with no permissions yet.
    pub fn add_certificate(&mut self, name: &str, sha256_hex: &str) -> Result<()> {
        if name.is_empty() || self.identities.iter().any(|i| i.name == name) {
            return Err(Error::Config(format!("an identity named {name:?} exists already, or the name is empty")));
        }
        if self.by_certificate(sha256_hex).is_some() {
            return Err(Error::Config("that certificate is another identity's already".into()));
        }
        self.identities.push(Identity {
            name: name.to_string(),
            token_blake3: None,
            certificate_sha256: Some(sha256_hex.to_ascii_lowercase()),
            repositories: BTreeMap::new(),
        });
        Ok(())
    }

    /// The identity whose token this is. Every identity's hash is compared, each in constant
    /// time, so the answer's timing tells nothing about which hash came close.
    pub fn by_token(&self, token: &str) -> Option<&Identity> {
        let presented = token_hash(token);
        let mut found = None;
        for id in &self.identities {
            let Some(stored) = id.token_blake3.as_deref().and_then(|h| blake3::Hash::from_hex(h).ok()) else {
                continue;
            };
            // `blake3::Hash` compares in constant time.
            if stored == presented && found.is_none() {
                found = Some(id);
            }
        }
        found
    }

    /// The identity whose client certificate has this SHA-256 fingerprint (hex).
    pub fn by_certificate(&self, sha256_hex: &str) -> Option<&Identity> {
        self.identities
            .iter()
            .find(|id| id.certificate_sha256.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(sha256_hex)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_entry_holds_for_repositories_not_named() {
        let id = Identity {
            name: "ops".into(),
            token_blake3: None,
            certificate_sha256: None,
            repositories: BTreeMap::from([
                ("*".to_string(), vec![Permission::Read]),
                ("web".to_string(), vec![Permission::Append]),
            ]),
        };
        assert!(id.may("any", Permission::Read));
        assert!(!id.may("any", Permission::Append));
        assert!(id.may("web", Permission::Append));
        assert!(!id.may("web", Permission::Read), "a repository's own entry replaces the star");
    }

    #[test]
    fn a_new_identity_logs_in_with_its_token_and_the_file_holds_only_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identities.toml");
        let mut ids = Identities::load(&path).unwrap();
        let token = ids.add("web1").unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 64);
        ids.identities[0].repositories.insert("main".into(), vec![Permission::Append]);
        let other = ids.add("admin").unwrap();
        ids.identities[1].repositories.insert("main".into(), vec![Permission::Admin]);
        ids.save(&path).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token[TOKEN_PREFIX.len()..]) && !text.contains(&other[TOKEN_PREFIX.len()..]));
        let ids = Identities::load(&path).unwrap();
        let web1 = ids.by_token(&token).unwrap();
        assert_eq!(web1.name, "web1");
        assert!(web1.may("main", Permission::Append));
        assert!(!web1.may("main", Permission::Delete) && !web1.may("main", Permission::Read));
        assert!(!web1.may("other", Permission::Append), "permissions are per repository");
        let admin = ids.by_token(&other).unwrap();
        assert!(admin.may("main", Permission::Delete) && admin.may("main", Permission::Keys));
        assert!(ids.by_token("cairn_wrong").is_none());
        assert!(ids.by_token(&token[..token.len() - 1]).is_none());
        assert!(ids.clone().add("web1").is_err(), "names are unique");
    }

    #[test]
    fn a_malformed_file_is_refused_with_its_name() {
        let shared_token = format!(
            "[[identity]]\nname = \"a\"\ntoken_blake3 = \"{0}\"\n[[identity]]\nname = \"b\"\ntoken_blake3 = \"{0}\"\n",
            "ab".repeat(32)
        );
        for bad in [
            "[[identity]]\nname = \"a\"\ntoken_blake3 = \"abc\"\n",
            "[[identity]]\nname = \"a\"\n[[identity]]\nname = \"a\"\n",
            shared_token.as_str(),
            "[[identity]]\nname = \"a\"\n[identity.repositories]\nmain = [\"everything\"]\n",
            "[[identity]]\nname = \"a\"\ntoken = \"cairn_in_clear\"\n",
            "not toml at all [",
        ] {
            let e = Identities::parse(bad, "ids.toml").unwrap_err();
            assert!(e.to_string().starts_with("ids.toml"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_certificate_fingerprint_names_its_identity() {
        let fp = "AB".repeat(32);
        let text = format!(
            "[[identity]]\nname = \"laptop\"\ncertificate_sha256 = \"{fp}\"\n[identity.repositories]\nmain = [\"read\"]\n"
        );
        let ids = Identities::parse(&text, "ids.toml").unwrap();
        assert_eq!(ids.by_certificate(&fp.to_lowercase()).map(|i| i.name.as_str()), Some("laptop"));
        assert!(ids.by_certificate(&"00".repeat(32)).is_none());
        assert!(ids.by_token("cairn_x").is_none(), "an identity without a token has no token");
    }
}
