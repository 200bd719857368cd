//! Bearer tokens by scope: `read` (telemetry, history, metrics) and `admin` (also the actions),
//! each in its own file, reread when the file changes so that a token is rotated by writing its
//! file (see `docs/agent.md`, "Horde operates the box").
//!
//! A request's token is compared in constant time with both; the admin token also grants read. A
//! file that becomes unreadable or invalid keeps the token it held (an operator's slip must not
//! lock Horde out) and the problem is reported until the file is fixed.

use crate::config::ConfigError;
use parking_lot::RwLock;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// Who made a request: its token's scope and fingerprint (for the audit log; never the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub scope: Scope,
    pub fingerprint: String,
}

/// The first 8 bytes of the token's SHA-256, hex: names a token in logs without revealing it.
pub fn fingerprint(token: &str) -> String {
    hex::encode(&sha2::Sha256::digest(token.as_bytes())[..8])
}

/// Reads a token file: one line, at least 16 characters, no whitespace inside.
pub fn read_token_file(path: &Path) -> Result<String, ConfigError> {
    let shown = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
    let token = text.trim();
    if token.len() < 16 || token.chars().any(char::is_whitespace) {
        return Err(ConfigError::Parse {
            path: shown,
            reason: "the token must be one line of at least 16 characters without spaces".into(),
        });
    }
    Ok(token.to_string())
}

/// A token and the file it came from, with what the file looked like when it was read.
struct Held {
    path: PathBuf,
    token: String,
    stamp: Option<(SystemTime, u64)>,
    /// Why the file's current contents are not in use, when they are not.
    problem: Option<String>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
}

impl Held {
    fn load(path: &Path) -> Result<Held, ConfigError> {
        let stamp = stamp(path);
        let token = read_token_file(path)?;
        Ok(Held { path: path.to_path_buf(), token, stamp, problem: None })
    }

    /// Rereads the file if it changed; returns a line for the log when something happened.
    fn refresh(&mut self, kind: Scope) -> Option<String> {
        let now = stamp(&self.path);
        if now == self.stamp {
            return None;
        }
        self.stamp = now;
        match read_token_file(&self.path) {
            Ok(token) if token == self.token => {
                self.problem = None;
                None
            }
            Ok(token) => {
                self.token = token;
                self.problem = None;
                Some(format!("the {} token was replaced (now {})", kind.as_str(), fingerprint(&self.token)))
            }
            Err(e) => {
                let problem =
                    format!("{e}; the {} token in use is still {}", kind.as_str(), fingerprint(&self.token));
                let changed = self.problem.as_ref() != Some(&problem);
                self.problem = Some(problem.clone());
                changed.then_some(problem)
            }
        }
    }
}

/// The tokens the agent accepts.
pub struct Tokens {
    read: RwLock<Held>,
    admin: Option<RwLock<Held>>,
}

impl Tokens {
    /// Reads the read token's file and, when given, the admin token's; both must be valid and
    /// differ.
    pub fn load(read: &Path, admin: Option<&Path>) -> Result<Tokens, ConfigError> {
        let read = Held::load(read)?;
        let admin = admin.map(Held::load).transpose()?;
        if admin.as_ref().is_some_and(|a| a.token == read.token) {
            return Err(ConfigError::Invalid("the admin token must differ from the read token".into()));
        }
        Ok(Tokens { read: RwLock::new(read), admin: admin.map(RwLock::new) })
    }

    /// The scope a presented token has (none: not a token this agent accepts).
    pub fn caller(&self, presented: &[u8]) -> Option<Caller> {
        let check = |held: &RwLock<Held>, scope: Scope| {
            let held = held.read();
            bool::from(presented.ct_eq(held.token.as_bytes()))
                .then(|| Caller { scope, fingerprint: fingerprint(&held.token) })
        };
        // Both compared every time: the time taken does not say which one matched.
        let admin = self.admin.as_ref().and_then(|a| check(a, Scope::Admin));
        let read = check(&self.read, Scope::Read);
        admin.or(read)
    }

    /// The tokens themselves (for a support bundle to search its contents for and redact).
    pub fn secrets(&self) -> Vec<String> {
        let mut out = vec![self.read.read().token.clone()];
        if let Some(admin) = &self.admin {
            out.push(admin.read().token.clone());
        }
        out
    }

    /// Whether an admin token is configured.
    pub fn has_admin(&self) -> bool {
        self.admin.is_some()
    }

    /// Rereads the token files that changed; the log lines to write.
    pub fn refresh(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.read.write().refresh(Scope::Read).into_iter().collect();
        if let Some(admin) = &self.admin {
            lines.extend(admin.write().refresh(Scope::Admin));
        }
        lines
    }

    /// What is wrong with the token files now (a file that does not hold a usable token).
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.read.read().problem.clone().into_iter().collect();
        if let Some(admin) = &self.admin {
            out.extend(admin.read().problem.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_rotation_and_a_bad_file_keeps_the_old_token() {
        let dir = tempfile::tempdir().unwrap();
        let (read, admin) = (dir.path().join("read"), dir.path().join("admin"));
        std::fs::write(&read, "read-token-0123456789\n").unwrap();
        std::fs::write(&admin, "admin-token-0123456789\n").unwrap();
        let tokens = Tokens::load(&read, Some(&admin)).unwrap();
        assert_eq!(tokens.caller(b"read-token-0123456789").map(|c| c.scope), Some(Scope::Read));
        assert_eq!(tokens.caller(b"admin-token-0123456789").map(|c| c.scope), Some(Scope::Admin));
        assert_eq!(tokens.caller(b"read-token-012345678"), None);
        assert_eq!(tokens.caller(b""), None);
        let fp = tokens.caller(b"admin-token-0123456789").unwrap().fingerprint;
        assert_eq!(fp.len(), 16);
        assert!(!fp.contains("admin"));

        // Rotation: the new token works, the old one does not.
        std::fs::write(&read, "read-token-rotated-0001\n").unwrap();
        let lines = tokens.refresh();
        assert!(lines.iter().any(|l| l.contains("the read token was replaced")), "{lines:?}");
        assert_eq!(tokens.caller(b"read-token-0123456789"), None);
        assert!(tokens.caller(b"read-token-rotated-0001").is_some());
        assert!(tokens.refresh().is_empty(), "nothing changed");

        // A bad file keeps the token in use and says why, once; fixed, the problem goes.
        std::fs::write(&admin, "short\n").unwrap();
        let lines = tokens.refresh();
        assert!(lines.iter().any(|l| l.contains("at least 16 characters")), "{lines:?}");
        assert!(tokens.caller(b"admin-token-0123456789").is_some());
        assert_eq!(tokens.problems().len(), 1);
        assert!(tokens.refresh().is_empty());
        std::fs::remove_file(&admin).unwrap();
        assert!(tokens.refresh().iter().any(|l| l.contains("admin")));
        assert!(tokens.caller(b"admin-token-0123456789").is_some());
        std::fs::write(&admin, "admin-token-rotated-002\n").unwrap();
        tokens.refresh();
        assert!(tokens.problems().is_empty());
        assert_eq!(tokens.caller(b"admin-token-rotated-002").map(|c| c.scope), Some(Scope::Admin));

        // The same token for both is refused at start.
        std::fs::write(&admin, "read-token-rotated-0001\n").unwrap();
        assert!(Tokens::load(&read, Some(&admin)).is_err());
        assert!(!Tokens::load(&read, None).unwrap().has_admin());
    }
}
