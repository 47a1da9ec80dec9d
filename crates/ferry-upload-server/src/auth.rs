//! HTTP Basic authentication against a users file of argon2 hashes.
//!
//! Verifying an argon2 hash is slow on purpose, and BITS sends credentials with every packet,
//! so a verified `Authorization` value is remembered by its SHA-256 (never the password).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Why the users file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// It could not be read.
    #[error("cannot read the users file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `NAME:HASH` with an argon2 PHC hash.
    #[error(
        "the users file {path}, line {line}: {message} (expected NAME:HASH from `ferry-upload-server hash-password`)"
    )]
    Line {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: &'static str,
    },
}

/// Splits `Authorization: Basic BASE64` into user and password; `None` if it is not that.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, b64) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// Parses the users file's text: `NAME:HASH` per line, `#` comments and blank lines ignored.
pub fn parse_users(path: &str, text: &str) -> Result<HashMap<String, String>, UsersError> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message| UsersError::Line {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        let (name, hash) = line.split_once(':').ok_or_else(|| err("no ':'"))?;
        if name.is_empty() {
            return Err(err("empty user name"));
        }
        PasswordHash::new(hash).map_err(|_| err("the hash is not a PHC string"))?;
        if users.insert(name.to_owned(), hash.to_owned()).is_some() {
            return Err(err("the user is listed twice"));
        }
    }
    Ok(users)
}

/// Hashes a password for the users file (argon2id, random salt).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// The users and the cache of verified header values.
pub struct Users {
    users: HashMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Verified instead of a missing user's hash, so an unknown name costs as long as a
    /// wrong password and the timing does not tell which names exist.
    dummy: String,
}

/// Remembered verified headers at most; beyond it the cache starts over.
const CACHE_MAX: usize = 1024;

impl Users {
    /// Loads the users file.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: shown.clone(),
            source,
        })?;
        Ok(Users::new(parse_users(&shown, &text)?))
    }

    fn new(users: HashMap<String, String>) -> Users {
        Users {
            users,
            verified: Mutex::new(HashSet::new()),
            dummy: hash_password("").unwrap_or_default(),
        }
    }

    /// The user of an `Authorization` value verified before, if it was: fast.
    pub fn cached(&self, header: &str) -> Option<String> {
        let key: [u8; 32] = Sha256::digest(header.as_bytes()).into();
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if !cache.contains(&key) {
            return None;
        }
        parse_basic(header).map(|(user, _)| user)
    }

    /// The user an `Authorization` value authenticates, if any. Slow (argon2) on a value not
    /// seen before; call it off the async threads.
    pub fn check(&self, header: &str) -> Option<String> {
        if let Some(user) = self.cached(header) {
            return Some(user);
        }
        let (user, pass) = parse_basic(header)?;
        let key: [u8; 32] = Sha256::digest(header.as_bytes()).into();
        let (hash, known) = match self.users.get(&user) {
            Some(h) => (h, true),
            None => (&self.dummy, false),
        };
        let parsed = PasswordHash::new(hash).ok()?;
        let ok = argon2::Argon2::default()
            .verify_password(pass.as_bytes(), &parsed)
            .is_ok();
        if !(ok && known) {
            return None;
        }
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key);
        Some(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_headers_parse() {
        // "alice:s3cr:et" — the password may hold colons.
        let h = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et")
        );
        assert_eq!(parse_basic(&h), Some(("alice".into(), "s3cr:et".into())));
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let hash = hash_password("pw").unwrap();
        let users = Users::new(parse_users("t", &format!("# comment\nalice:{hash}\n")).unwrap());
        let enc = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(users.check(&enc("alice:pw")), Some("alice".into()));
        assert_eq!(users.check(&enc("alice:pw")), Some("alice".into()));
        assert_eq!(users.check(&enc("alice:nope")), None);
        assert_eq!(users.check(&enc("bob:pw")), None);
    }

    #[test]
    fn bad_users_files_name_the_line() {
        let e = parse_users("f", "alice:plaintext\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
        assert!(parse_users("f", "nocolon\n").is_err());
    }
}
