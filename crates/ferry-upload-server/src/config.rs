//! The configuration file (`--config PATH`, TOML). Every key is shown, commented, in
//! `dist/ferry-upload-server.toml.example` and described in `docs/UPLOAD-SERVER.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why the configuration cannot be used; each message names the file or key to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this server.
    #[error("the configuration file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("the configuration is invalid: {0}")]
    Invalid(String),
}

/// How the server application hears of a finished upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationType {
    /// Not notified: the file goes to the destination on Close-Session.
    #[default]
    None,
    /// Told where the file is (`BITS-Request-DataFile-Name`).
    ByReference,
    /// Sent the file's bytes as the body of the notification.
    ByValue,
}

/// One upload directory: a URL prefix mapped to a directory on disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    /// The URL path prefix, e.g. `/upload`.
    pub url_prefix: String,
    /// The directory uploads land in.
    pub path: PathBuf,
    /// Where sessions live; must be on the same filesystem as `path` so Close-Session is a
    /// rename. Default: `PATH/.ferry-upload-sessions`.
    #[serde(default)]
    pub session_dir: Option<PathBuf>,
    /// Largest file accepted, in bytes; absent means no limit.
    #[serde(default)]
    pub max_upload_size: Option<u64>,
    /// Largest fragment accepted in one request, in bytes; absent means no limit beyond
    /// `max_upload_size`.
    #[serde(default)]
    pub max_fragment_size: Option<u64>,
    /// Permissions of a finished file, octal (`"0640"`): sessions are private (0600) until
    /// Close-Session gives the file these.
    #[serde(default = "default_file_mode")]
    pub file_mode: String,
    /// Whether an upload may replace an existing file.
    #[serde(default)]
    pub allow_overwrite: bool,
    /// Open sessions the directory holds at most; more Create-Sessions get 503 until some
    /// close, are cancelled or expire (each session holds disk space and a directory).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Seconds a session may stay idle before it and its data are deleted (14 days).
    #[serde(default = "default_session_timeout")]
    pub session_timeout_secs: u64,
    /// How the server application is notified.
    #[serde(default)]
    pub notification: NotificationType,
    /// Where the notification is POSTed (required unless `notification = "none"`).
    #[serde(default)]
    pub notification_url: Option<String>,
    /// Seconds to wait for the server application's answer.
    #[serde(default = "default_notification_timeout")]
    pub notification_timeout_secs: u64,
}

fn default_session_timeout() -> u64 {
    14 * 24 * 3600
}

fn default_file_mode() -> String {
    "0640".to_owned()
}

/// Parses an octal permission string such as `0640`; at most `0777` (no set-id or sticky
/// bits on uploaded files).
pub fn parse_mode(s: &str) -> Option<u32> {
    let m = u32::from_str_radix(s, 8).ok()?;
    (m <= 0o777 && !s.is_empty()).then_some(m)
}

fn default_max_sessions() -> usize {
    1000
}

fn default_notification_timeout() -> u64 {
    300
}

impl Directory {
    /// The session directory, defaulted.
    pub fn sessions(&self) -> PathBuf {
        self.session_dir
            .clone()
            .unwrap_or_else(|| self.path.join(".ferry-upload-sessions"))
    }

    /// The finished files' permissions (checked by [`Config::check`]).
    pub fn mode(&self) -> u32 {
        parse_mode(&self.file_mode).unwrap_or(0o640)
    }

    /// The idle timeout.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_secs(self.session_timeout_secs)
    }
}

/// TLS: the server speaks HTTPS with this certificate chain and key (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// HTTP Basic authentication against a users file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Lines `NAME:PHC-HASH` (argon2, from `ferry-upload-server hash-password`).
    pub users_file: PathBuf,
    /// The realm named in `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
}

fn default_realm() -> String {
    "ferry-upload".to_owned()
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// HTTPS, if set.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// The scheme and host clients reach this server by (`https://uploads.example.org`), for
    /// the reply URLs it hands out; needed behind a reverse proxy. Default: the request's
    /// `Host` with `https` if `[tls]` is set, else `http`.
    #[serde(default)]
    pub public_origin: Option<String>,
    /// Basic authentication, if set (then every request needs it).
    #[serde(default)]
    pub auth: Option<Auth>,
    /// The upload directories.
    #[serde(default, rename = "directory")]
    pub directories: Vec<Directory>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Checks what the types cannot: prefixes, notification URLs, limits.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(o) = &self.public_origin
            && (!(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/'))
        {
            return Err(ConfigError::Invalid(
                "public_origin must be like https://host[:port], without a path or trailing /"
                    .into(),
            ));
        }
        if self.directories.is_empty() {
            return Err(ConfigError::Invalid(
                "no [[directory]] is configured: add one with url_prefix and path".into(),
            ));
        }
        for (i, d) in self.directories.iter().enumerate() {
            let at = format!("[[directory]] #{} ({})", i + 1, d.url_prefix);
            if !d.url_prefix.starts_with('/')
                || (d.url_prefix.len() > 1 && d.url_prefix.ends_with('/'))
            {
                return Err(ConfigError::Invalid(format!(
                    "{at}: url_prefix must start with / and not end with one"
                )));
            }
            if !d.path.is_absolute() {
                return Err(ConfigError::Invalid(format!("{at}: path must be absolute")));
            }
            if d.session_dir.as_ref().is_some_and(|s| !s.is_absolute()) {
                return Err(ConfigError::Invalid(format!(
                    "{at}: session_dir must be absolute"
                )));
            }
            if parse_mode(&d.file_mode).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "{at}: file_mode must be octal permissions up to 0777, like \"0640\""
                )));
            }
            if d.session_timeout_secs == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{at}: session_timeout_secs must be > 0"
                )));
            }
            match (d.notification, &d.notification_url) {
                (NotificationType::None, Some(_)) => {
                    return Err(ConfigError::Invalid(format!(
                        "{at}: notification_url is set but notification = \"none\""
                    )));
                }
                (NotificationType::None, None) => {}
                (_, None) => {
                    return Err(ConfigError::Invalid(format!(
                        "{at}: notification needs notification_url"
                    )));
                }
                (_, Some(u)) => {
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        return Err(ConfigError::Invalid(format!(
                            "{at}: notification_url must be an http:// or https:// URL"
                        )));
                    }
                }
            }
            if self.directories[..i]
                .iter()
                .any(|o| o.url_prefix == d.url_prefix)
            {
                return Err(ConfigError::Invalid(format!(
                    "{at}: url_prefix is used twice"
                )));
            }
        }
        Ok(())
    }

    /// The directory whose prefix is the longest match for `path`, and the rest of the path.
    pub fn directory_for<'p>(&self, path: &'p str) -> Option<(usize, &'p str)> {
        self.directories
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                crate::protocol::strip_url_prefix(path, &d.url_prefix).map(|r| (i, d, r))
            })
            .max_by_key(|(_, d, _)| d.url_prefix.len())
            .map(|(i, _, r)| (i, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.check().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn a_minimal_config_gets_the_spec_defaults() {
        let c = parse(
            "listen = \"127.0.0.1:8080\"\n[[directory]]\nurl_prefix = \"/upload\"\npath = \"/srv/up\"\n",
        )
        .unwrap();
        let d = &c.directories[0];
        assert_eq!(d.session_timeout(), Duration::from_secs(14 * 24 * 3600));
        assert!(!d.allow_overwrite);
        assert_eq!(d.notification, NotificationType::None);
        assert_eq!(
            d.sessions(),
            PathBuf::from("/srv/up/.ferry-upload-sessions")
        );
    }

    #[test]
    fn inconsistent_configs_are_refused_with_the_key() {
        let base = "listen = \"127.0.0.1:8080\"\n[[directory]]\npath = \"/srv/up\"\n";
        let e = parse(&format!("{base}url_prefix = \"upload\"\n")).unwrap_err();
        assert!(e.contains("url_prefix"), "{e}");
        let e = parse(&format!(
            "{base}url_prefix = \"/u\"\nnotification = \"by-value\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("notification_url"), "{e}");
        let e = parse(&format!("{base}url_prefix = \"/u\"\nbogus = 1\n")).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        assert!(
            parse("listen = \"127.0.0.1:1\"\n")
                .unwrap_err()
                .contains("[[directory]]")
        );
    }

    #[test]
    fn the_shipped_example_parses_and_shows_every_key() {
        let text = include_str!("../../../dist/ferry-upload-server.toml.example");
        parse(text).unwrap();
        // With every commented key and table switched on, it still parses.
        let all: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest
                            .split_once(" = ")
                            .is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c =
            parse(&all.replace("notification = \"none\"", "notification = \"by-value\"")).unwrap();
        assert!(c.tls.is_some() && c.auth.is_some());
        for key in [
            "listen",
            "public_origin",
            "cert",
            "key",
            "users_file",
            "realm",
            "url_prefix",
            "path",
            "session_dir",
            "max_upload_size",
            "max_fragment_size",
            "allow_overwrite",
            "file_mode",
            "max_sessions",
            "session_timeout_secs",
            "notification",
            "notification_url",
            "notification_timeout_secs",
        ] {
            assert!(
                text.contains(&format!("{key} = ")),
                "the example lacks {key}"
            );
        }
    }

    #[test]
    fn file_modes_are_octal_permissions_only() {
        assert_eq!(parse_mode("0640"), Some(0o640));
        assert_eq!(parse_mode("644"), Some(0o644));
        for bad in ["4755", "0x1ff", "", "rw-r-----", "0888"] {
            assert_eq!(parse_mode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_longest_prefix_wins() {
        let c = parse(
            "listen = \"127.0.0.1:8080\"\n[[directory]]\nurl_prefix = \"/\"\npath = \"/a\"\n\
             [[directory]]\nurl_prefix = \"/up\"\npath = \"/b\"\n",
        )
        .unwrap();
        assert_eq!(c.directory_for("/up/x"), Some((1, "/x")));
        assert_eq!(c.directory_for("/upx"), Some((0, "upx")));
    }
}
