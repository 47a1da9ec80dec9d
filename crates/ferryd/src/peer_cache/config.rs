//! The `[peer_cache]` section of ferryd's configuration file (TOML), checked into settings the
//! daemon can use. Off by default: without the section, or with `enabled = false`, the daemon
//! neither serves nor asks peers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::DaemonError;
use crate::limits::{LimitSettings, Limits};

/// The configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    peer_cache: Option<RawPeerCache>,
    #[serde(default)]
    limits: LimitSettings,
    #[serde(default)]
    network: crate::conditions::NetworkSection,
    #[serde(default)]
    power: crate::conditions::PowerSection,
    #[serde(default)]
    daemon: crate::daemon_wide::DaemonSection,
}

/// `[peer_cache]` as written; every field but `enabled` has a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeerCache {
    #[serde(default)]
    enabled: bool,
    listen: Option<String>,
    #[serde(default)]
    peers: Vec<String>,
    discovery: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    dir: Option<PathBuf>,
    max_size_bytes: Option<u64>,
    max_age_s: Option<u64>,
    upload_limit_bps: Option<u64>,
    peer_timeout_ms: Option<u64>,
    bad_peer_s: Option<u64>,
    min_file_size: Option<u64>,
    min_peer_rate_bps: Option<u64>,
    max_uploads: Option<usize>,
}

/// How peers are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Only the configured `peers`.
    Static,
    /// The configured `peers` plus those found by mDNS on the LAN.
    Mdns,
}

impl Discovery {
    /// The configuration word.
    pub fn as_str(self) -> &'static str {
        match self {
            Discovery::Static => "static",
            Discovery::Mdns => "mdns",
        }
    }
}

/// The default port peers serve on.
pub const DEFAULT_PORT: u16 = 7170;

/// Usable peer-cache settings (only built when the cache is enabled).
#[derive(Debug, Clone)]
pub struct PeerCacheConfig {
    /// Where the cache serves peers.
    pub listen: SocketAddr,
    /// Static peers, `address:port`.
    pub peers: Vec<SocketAddr>,
    /// Static or mDNS.
    pub discovery: Discovery,
    /// The fleet secret every peer request is authenticated with.
    pub secret: Vec<u8>,
    /// The fleet's TLS identity, derived from the secret.
    pub tls: ferry_peer::tls::FleetTls,
    /// Where cached content is kept (default: `<state dir>/cache`).
    pub dir: PathBuf,
    /// Size limit of the cache in bytes.
    pub max_size_bytes: u64,
    /// Entries unused for this long are evicted.
    pub max_age: Duration,
    /// Upload bandwidth towards peers, bytes per second.
    pub upload_limit_bps: Option<u64>,
    /// How long a lookup waits for peers before going to the origin.
    pub peer_timeout: Duration,
    /// How long a failed peer is skipped.
    pub bad_peer: Duration,
    /// Smaller files are fetched from the origin without asking peers.
    pub min_file_size: u64,
    /// A peer delivering less than this over 5 s is left for the origin (`None`: never).
    pub min_peer_rate_bps: Option<u64>,
    /// Peers served at once (more get 503).
    pub max_uploads: usize,
}

/// What the configuration file says, and which file it was.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file read, if one was.
    pub file: Option<PathBuf>,
    /// `Some` when the peer cache is enabled.
    pub peer_cache: Option<PeerCacheConfig>,
    /// The limits: `flags` over `[limits]` over the defaults.
    pub limits: Limits,
    /// `[network]` and `[power]`: network cost and power policy.
    pub policy: crate::conditions::PolicySettings,
    /// `[daemon]`: the daemon-wide transfer settings the file sets.
    pub daemon: crate::daemon_wide::DaemonSettings,
}

/// The default configuration file: `/etc/ferry/ferryd.toml` in system mode,
/// `$XDG_CONFIG_HOME/ferry/ferryd.toml` (else `~/.config/ferry/ferryd.toml`) per user.
pub fn default_path(system: bool) -> Option<PathBuf> {
    if system {
        return Some(PathBuf::from("/etc/ferry/ferryd.toml"));
    }
    let env = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_CONFIG_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".config")))
        .map(|d| d.join("ferry").join("ferryd.toml"))
}

/// Reads the configuration: `explicit` must exist; the default file may be absent (defaults).
/// `flags` are the limits given on the command line, which win over the file's.
pub fn load(
    explicit: Option<&Path>,
    default: Option<PathBuf>,
    state_dir: &Path,
    flags: &LimitSettings,
) -> Result<Config, DaemonError> {
    let no_file = || {
        Ok(Config {
            limits: Limits::resolve(flags, &LimitSettings::default())
                .map_err(DaemonError::Config)?,
            ..Config::default()
        })
    };
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => match default {
            Some(p) => (p, false),
            None => return no_file(),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return no_file();
        }
        Err(e) => {
            return Err(DaemonError::Config(format!(
                "cannot read the configuration file {}: {e}",
                path.display()
            )));
        }
    };
    let limits = parse_limits(&text, &path, flags)?;
    let policy = parse_policy(&text, &path)?;
    let daemon = parse_daemon(&text, &path)?;
    parse(&text, &path, state_dir).map(|peer_cache| Config {
        file: Some(path),
        peer_cache,
        limits,
        policy,
        daemon,
    })
}

/// The `[network]` and `[power]` sections of a configuration file's text.
pub fn parse_policy(
    text: &str,
    path: &Path,
) -> Result<crate::conditions::PolicySettings, DaemonError> {
    let file = file_config(text, path)?;
    Ok(crate::conditions::PolicySettings::from_sections(
        file.network,
        file.power,
    ))
}

/// The `[daemon]` section of a configuration file's text, checked; errors name the file and
/// the key.
pub fn parse_daemon(
    text: &str,
    path: &Path,
) -> Result<crate::daemon_wide::DaemonSettings, DaemonError> {
    let file = file_config(text, path)?;
    file.daemon.check().map_err(|e| config_error(path, e))
}

/// The whole file, as written; a syntax error or an unknown key names the file.
fn file_config(text: &str, path: &Path) -> Result<FileConfig, DaemonError> {
    toml::from_str(text).map_err(|e| config_error(path, e.message().to_owned()))
}

fn config_error(path: &Path, what: String) -> DaemonError {
    DaemonError::Config(format!(
        "configuration file {}: {what}; fix it and start ferryd again",
        path.display()
    ))
}

/// The `[limits]` of a configuration file's text, with `flags` over them; errors name the
/// file and the setting.
pub fn parse_limits(text: &str, path: &Path, flags: &LimitSettings) -> Result<Limits, DaemonError> {
    let file = file_config(text, path)?;
    Limits::resolve(flags, &file.limits).map_err(|e| config_error(path, e))
}

/// Parses a configuration file's text; errors name the file and the setting.
pub fn parse(
    text: &str,
    path: &Path,
    state_dir: &Path,
) -> Result<Option<PeerCacheConfig>, DaemonError> {
    let bad = |what: String| config_error(path, what);
    let file: FileConfig = toml::from_str(text).map_err(|e| bad(e.message().to_owned()))?;
    let Some(raw) = file.peer_cache.filter(|p| p.enabled) else {
        return Ok(None);
    };
    let addr = |s: &str, setting: &str| -> Result<SocketAddr, DaemonError> {
        s.parse::<SocketAddr>().map_err(|e| {
            bad(format!(
                "[peer_cache] {setting} {s:?} is not an address:port ({e}), e.g. \"192.168.1.5:{DEFAULT_PORT}\""
            ))
        })
    };
    let listen = match &raw.listen {
        Some(l) => addr(l, "listen")?,
        None => SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
    };
    let peers = raw
        .peers
        .iter()
        .map(|p| addr(p, "peers entry"))
        .collect::<Result<Vec<_>, _>>()?;
    let discovery = match raw.discovery.as_deref() {
        None | Some("static") => Discovery::Static,
        Some("mdns") => Discovery::Mdns,
        Some(other) => {
            return Err(bad(format!(
                "[peer_cache] discovery {other:?} is unknown (use \"static\" or \"mdns\")"
            )));
        }
    };
    let secret = match (&raw.secret, &raw.secret_file) {
        (Some(s), None) => s.trim().as_bytes().to_vec(),
        (None, Some(f)) => read_secret_file(f).map_err(bad)?,
        (Some(_), Some(_)) => {
            return Err(bad(
                "[peer_cache] has both secret and secret_file; keep one".into(),
            ));
        }
        (None, None) => {
            return Err(bad(
                "[peer_cache] needs a fleet secret shared by every host (secret = \"…\" or secret_file = \"/path\"); peers never serve unauthenticated requests".into(),
            ));
        }
    };
    if secret.len() < ferry_peer::auth::MIN_SECRET_BYTES {
        return Err(bad(format!(
            "the fleet secret is {} bytes; use at least {} (e.g. `head -c 32 /dev/urandom | base64`)",
            secret.len(),
            ferry_peer::auth::MIN_SECRET_BYTES
        )));
    }
    let tls = ferry_peer::tls::FleetTls::from_secret(&secret).map_err(|e| bad(e.to_string()))?;
    Ok(Some(PeerCacheConfig {
        listen,
        peers,
        discovery,
        secret,
        tls,
        dir: raw.dir.unwrap_or_else(|| state_dir.join("cache")),
        max_size_bytes: raw.max_size_bytes.unwrap_or(10 * 1024 * 1024 * 1024),
        max_age: Duration::from_secs(raw.max_age_s.unwrap_or(90 * 24 * 3600)),
        upload_limit_bps: raw.upload_limit_bps.filter(|&b| b > 0),
        peer_timeout: Duration::from_millis(raw.peer_timeout_ms.unwrap_or(500).max(1)),
        bad_peer: Duration::from_secs(raw.bad_peer_s.unwrap_or(600)),
        min_file_size: raw.min_file_size.unwrap_or(1024 * 1024),
        min_peer_rate_bps: Some(raw.min_peer_rate_bps.unwrap_or(256 * 1024)).filter(|&b| b > 0),
        max_uploads: raw.max_uploads.unwrap_or(3).max(1),
    }))
}

/// Reads the fleet secret from `path`, refusing a file that its group or others may read or
/// write (as ssh refuses such a key file): anyone who reads it can join the fleet.
fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("cannot read secret_file {}: {e}", path.display()))?
        .permissions()
        .mode();
    if secret_mode_too_open(mode) {
        return Err(format!(
            "secret_file {} has mode {:04o}: its group or others may read it, and anyone who \
             reads it can join the fleet; restrict it with `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read secret_file {}: {e}", path.display()))?;
    Ok(text.trim().as_bytes().to_vec())
}

/// Whether a secret file's mode lets its group or others at it.
fn secret_mode_too_open(mode: u32) -> bool {
    mode & 0o077 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Option<PeerCacheConfig>, String> {
        parse(
            text,
            Path::new("/etc/ferry/ferryd.toml"),
            Path::new("/var/lib/ferry"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn off_unless_enabled() {
        assert!(p("").unwrap().is_none());
        assert!(p("[peer_cache]\nenabled = false\n").unwrap().is_none());
    }

    #[test]
    fn enabled_with_defaults() {
        let c = p("[peer_cache]\nenabled = true\nsecret = \"0123456789abcdef\"\n")
            .unwrap()
            .unwrap();
        assert_eq!(c.listen.port(), DEFAULT_PORT);
        assert_eq!(c.discovery, Discovery::Static);
        assert_eq!(c.dir, Path::new("/var/lib/ferry/cache"));
        assert_eq!(c.max_uploads, 3);
        assert_eq!(c.peer_timeout, Duration::from_millis(500));
        assert_eq!(c.min_peer_rate_bps, Some(256 * 1024));
        let waits = p(
            "[peer_cache]\nenabled = true\nsecret = \"0123456789abcdef\"\nmin_peer_rate_bps = 0\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(waits.min_peer_rate_bps, None, "0 waits for slow peers");
    }

    #[test]
    fn mistakes_name_the_file_and_setting() {
        let e = p("[peer_cache]\nenabled = true\n").unwrap_err();
        assert!(
            e.contains("/etc/ferry/ferryd.toml") && e.contains("secret"),
            "{e}"
        );
        let e = p("[peer_cache]\nenabled = true\nsecret = \"short\"\n").unwrap_err();
        assert!(e.contains("at least 16"), "{e}");
        let e =
            p("[peer_cache]\nenabled = true\nsecret = \"0123456789abcdef\"\npeers = [\"nope\"]\n")
                .unwrap_err();
        assert!(e.contains("peers entry \"nope\""), "{e}");
        let e =
            p("[peer_cache]\nenabled = true\nsecret = \"0123456789abcdef\"\ndiscovery = \"dht\"\n")
                .unwrap_err();
        assert!(e.contains("discovery \"dht\""), "{e}");
        let e = p("[peer_cache]\nenabeld = true\n").unwrap_err();
        assert!(e.contains("enabeld"), "{e}");
    }

    #[test]
    fn limits_come_from_the_file_under_the_flags() {
        let path = Path::new("/etc/ferry/ferryd.toml");
        let text = "[limits]\nhandlers_per_user = 3\nconnections_per_user = 9\n";
        let flags = LimitSettings {
            connections_per_user: Some(20),
            ..LimitSettings::default()
        };
        let l = parse_limits(text, path, &flags).unwrap();
        assert_eq!((l.handlers_per_user, l.connections_per_user), (3, 20));
        assert_eq!(
            parse_limits("", path, &LimitSettings::default()).unwrap(),
            Limits::default()
        );
        for (text, says) in [
            ("[limits]\nhandlers_per_usr = 3\n", "handlers_per_usr"),
            (
                "[limits]\njobs_per_user = 0\n",
                "[limits] jobs_per_user = 0",
            ),
        ] {
            let e = parse_limits(text, path, &LimitSettings::default())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("/etc/ferry/ferryd.toml") && e.contains(says),
                "{e}"
            );
        }
    }

    #[test]
    fn a_secret_file_only_its_owner_may_read() {
        assert!(!secret_mode_too_open(0o100600));
        assert!(!secret_mode_too_open(0o100400));
        assert!(secret_mode_too_open(0o100644));
        assert!(secret_mode_too_open(0o100640));
        assert!(secret_mode_too_open(0o100602));
    }
}
