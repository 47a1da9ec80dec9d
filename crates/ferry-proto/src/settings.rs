//! A job's owner-settable properties, their defaults, and the one place where the raw
//! `job.create`/`job.set` parameters become validated settings.
//!
//! [`JobSettings`] is what the daemon keeps (inside the store's job row) and what
//! [`Job`](crate::Job) shows (flattened, so the wire names are the field names). A
//! [`SettingsChange`] is a `job.set` that passed validation; [`SettingsChange::apply`] writes it.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, ProtoError};
use crate::job::Priority;
use crate::notify::NotifyFlags;
use crate::params::{CreateParams, Credentials, SetParams};
use crate::policy::{CostPolicy, PowerPolicy};

/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 256;
/// The longest description, in characters.
pub const MAX_DESCRIPTION: usize = 1024;
/// The most bytes all custom headers of a job may take (each counted with its `\r\n`).
pub const MAX_HEADERS: usize = 16_384;
/// The longest credential user name, in characters.
pub const MAX_CREDENTIAL_USER: usize = 300;
/// The longest credential password, in characters.
pub const MAX_CREDENTIAL_PASSWORD: usize = 65_535;
/// The largest `max_parallel_files`.
pub const MAX_PARALLEL_FILES: u32 = 256;

/// Every property of a job its owner may set, with the defaults a new job gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSettings {
    /// Human name, not unique.
    pub display_name: String,
    /// Free text.
    pub description: String,
    /// Scheduling priority.
    pub priority: Priority,
    /// BITS notify flags.
    pub notify_flags: u32,
    /// The handler name notifications go to, if any.
    pub notify_handler: Option<String>,
    /// The command line run for transferred/error, if any.
    pub notify_cmdline: Option<Vec<String>>,
    /// Retry delay after a transient error.
    pub minimum_retry_delay_s: u64,
    /// How long transient errors may go without progress before the job fails.
    pub no_progress_timeout_s: u64,
    /// Limit on active transfer time.
    pub max_download_time_s: u64,
    /// Coalescing interval for modification callbacks.
    pub minimum_notification_interval_ms: u64,
    /// Extra request headers, sent with every request of the job.
    pub custom_headers: Vec<Header>,
    /// Per-job bandwidth limit in bytes per second.
    pub bandwidth_limit_bps: Option<u64>,
    /// How many files of the job may be in flight at once.
    pub max_parallel_files: u32,
    /// HTTP credentials. Write-only: never serialised, so no answer can carry them (the store
    /// persists them itself, and [`Job`](crate::Job) says only whether they are set).
    #[serde(skip)]
    pub credentials: Option<Credentials>,
    /// Per-job proxy URL.
    pub proxy: Option<String>,
    /// Whether redirects from https to http are followed.
    pub allow_https_to_http: bool,
    /// Whether the peer cache may be used for this job.
    pub peer_caching: bool,
    /// Whether the daemon completes the job itself once every file is transferred (and passed
    /// its SHA-256 check), so the files arrive even when the program that asked is gone.
    pub auto_complete: bool,
    /// Which network costs the job may use, as set; `None`: the daemon's default for its
    /// priority (`not_metered` for background, `any` for foreground, unless ferryd.toml says
    /// otherwise). An addition to protocol 1; old daemons omit it.
    pub cost_policy: Option<CostPolicy>,
    /// Whether the job waits for mains power, as set; `None`: the daemon's default (`any`
    /// unless ferryd.toml says otherwise). An addition to protocol 1; old daemons omit it.
    pub power_policy: Option<PowerPolicy>,
}

impl JobSettings {
    /// The custom headers in their `Name: value` form.
    pub fn header_lines(&self) -> Vec<String> {
        self.custom_headers
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The default retry delay (BITS: 600 s).
    pub const DEFAULT_MINIMUM_RETRY_DELAY_S: u64 = 600;
    /// The default no-progress timeout (BITS: 14 days).
    pub const DEFAULT_NO_PROGRESS_TIMEOUT_S: u64 = 1_209_600;
    /// The default max download time (BITS: 90 days); `job.set` with null returns to it.
    pub const DEFAULT_MAX_DOWNLOAD_TIME_S: u64 = 7_776_000;
    /// The default coalescing interval of modification callbacks.
    pub const DEFAULT_MINIMUM_NOTIFICATION_INTERVAL_MS: u64 = 500;
    /// The default file parallelism.
    pub const DEFAULT_MAX_PARALLEL_FILES: u32 = 8;
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            display_name: String::new(),
            description: String::new(),
            priority: Priority::Normal,
            notify_flags: NotifyFlags::DEFAULT,
            notify_handler: None,
            notify_cmdline: None,
            minimum_retry_delay_s: Self::DEFAULT_MINIMUM_RETRY_DELAY_S,
            no_progress_timeout_s: Self::DEFAULT_NO_PROGRESS_TIMEOUT_S,
            max_download_time_s: Self::DEFAULT_MAX_DOWNLOAD_TIME_S,
            minimum_notification_interval_ms: Self::DEFAULT_MINIMUM_NOTIFICATION_INTERVAL_MS,
            custom_headers: Vec::new(),
            bandwidth_limit_bps: None,
            max_parallel_files: Self::DEFAULT_MAX_PARALLEL_FILES,
            credentials: None,
            proxy: None,
            allow_https_to_http: false,
            peer_caching: true,
            auto_complete: false,
            cost_policy: None,
            power_policy: None,
        }
    }
}

/// One custom request header, parsed once from its `Name: value` form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Header {
    /// The header name (an HTTP token).
    pub name: String,
    /// The value, without surrounding whitespace.
    pub value: String,
}

impl TryFrom<&str> for Header {
    type Error = SettingsError;

    fn try_from(h: &str) -> Result<Header, SettingsError> {
        let bad = |why: &'static str| SettingsError::Header {
            header: h.to_owned(),
            why,
        };
        let Some((name, value)) = h.split_once(':') else {
            return Err(bad("must look like \"Name: value\""));
        };
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(bad("has an invalid header name"));
        }
        if h.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(bad("contains a line break or NUL"));
        }
        Ok(Header {
            name: name.trim().to_owned(),
            value: value.trim().to_owned(),
        })
    }
}

impl TryFrom<String> for Header {
    type Error = SettingsError;

    fn try_from(h: String) -> Result<Header, SettingsError> {
        Header::try_from(h.as_str())
    }
}

impl From<Header> for String {
    fn from(h: Header) -> String {
        h.to_string()
    }
}

impl std::fmt::Display for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.value)
    }
}

/// Why a `job.create` or `job.set` parameter is not a valid setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A text is longer than its limit.
    #[error("{field} is longer than {max} characters")]
    TooLong {
        /// The parameter.
        field: &'static str,
        /// Its limit.
        max: usize,
    },
    /// `notify_flags` has unknown bits.
    #[error("notify_flags {0} has bits other than 1, 2, 4, 8, 16, 32")]
    NotifyFlags(u32),
    /// `notify_cmdline` is empty.
    #[error("notify_cmdline must be a non-empty argv array")]
    EmptyCmdline,
    /// `notify_cmdline[0]` is relative.
    #[error("notify_cmdline[0] {0:?} must be an absolute path (no PATH search)")]
    RelativeCmdline(String),
    /// `notify_handler` is the empty string.
    #[error("notify_handler must not be empty")]
    EmptyHandler,
    /// A custom header is malformed.
    #[error("custom header {header:?} {why}")]
    Header {
        /// The header as given.
        header: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `bandwidth_limit_bps` is 0.
    #[error("bandwidth_limit_bps must be positive, or null for no limit")]
    ZeroBandwidth,
    /// `max_parallel_files` is out of range.
    #[error("max_parallel_files must be between 1 and {MAX_PARALLEL_FILES}")]
    ParallelFiles,
    /// The credential scheme is not `basic`.
    #[error("credential scheme {0:?} is not supported; use \"basic\"")]
    CredentialScheme(String),
    /// The proxy is not an http, https or socks5 URL.
    #[error("proxy {0:?} is not an http, https or socks5 URL")]
    Proxy(String),
}

impl SettingsError {
    /// The parameter concerned.
    pub fn field(&self) -> &'static str {
        match self {
            SettingsError::TooLong { field, .. } => field,
            SettingsError::NotifyFlags(_) => "notify_flags",
            SettingsError::EmptyCmdline | SettingsError::RelativeCmdline(_) => "notify_cmdline",
            SettingsError::EmptyHandler => "notify_handler",
            SettingsError::Header { .. } => "custom_headers",
            SettingsError::ZeroBandwidth => "bandwidth_limit_bps",
            SettingsError::ParallelFiles => "max_parallel_files",
            SettingsError::CredentialScheme(_) => "credentials.scheme",
            SettingsError::Proxy(_) => "proxy",
        }
    }
}

impl From<SettingsError> for ProtoError {
    fn from(e: SettingsError) -> ProtoError {
        let message = e.to_string();
        match e {
            SettingsError::TooLong { field, .. } => {
                ProtoError::invalid_params(field, message).with("bits", "BG_E_STRING_TOO_LONG")
            }
            SettingsError::CredentialScheme(_) => {
                ProtoError::kind(ErrorKind::Unsupported, message).with("field", e.field())
            }
            _ => ProtoError::invalid_params(e.field(), message),
        }
    }
}

/// A `job.set` (or the settings part of a `job.create`) that passed validation: applying it
/// cannot fail.
#[derive(Debug, Clone)]
pub struct SettingsChange {
    /// The checked params; their `custom_headers` moved to `headers`, parsed.
    params: SetParams,
    headers: Option<Vec<Header>>,
}

fn check_len(field: &'static str, text: &str, max: usize) -> Result<(), SettingsError> {
    if text.chars().count() > max {
        return Err(SettingsError::TooLong { field, max });
    }
    Ok(())
}

impl TryFrom<SetParams> for SettingsChange {
    type Error = SettingsError;

    fn try_from(mut p: SetParams) -> Result<SettingsChange, SettingsError> {
        if let Some(n) = &p.display_name {
            check_len("display_name", n, MAX_DISPLAY_NAME)?;
        }
        if let Some(n) = &p.description {
            check_len("description", n, MAX_DESCRIPTION)?;
        }
        if let Some(f) = p.notify_flags
            && NotifyFlags::new(f).is_none()
        {
            return Err(SettingsError::NotifyFlags(f));
        }
        if let Some(Some(argv)) = &p.notify_cmdline {
            match argv.first() {
                None => return Err(SettingsError::EmptyCmdline),
                Some(p) if !p.starts_with('/') => {
                    return Err(SettingsError::RelativeCmdline(p.clone()));
                }
                Some(_) => {}
            }
        }
        if let Some(Some(h)) = &p.notify_handler
            && h.is_empty()
        {
            return Err(SettingsError::EmptyHandler);
        }
        let headers = match p.custom_headers.take() {
            None => None,
            Some(hs) => {
                let total: usize = hs.iter().map(|h| h.len() + 2).sum();
                if total > MAX_HEADERS {
                    return Err(SettingsError::TooLong {
                        field: "custom_headers",
                        max: MAX_HEADERS,
                    });
                }
                Some(
                    hs.iter()
                        .map(|h| Header::try_from(h.as_str()))
                        .collect::<Result<Vec<_>, _>>()?,
                )
            }
        };
        if let Some(Some(0)) = p.bandwidth_limit_bps {
            return Err(SettingsError::ZeroBandwidth);
        }
        if let Some(n) = p.max_parallel_files
            && !(1..=MAX_PARALLEL_FILES).contains(&n)
        {
            return Err(SettingsError::ParallelFiles);
        }
        if let Some(Some(cr)) = &p.credentials {
            if cr.scheme != "basic" {
                return Err(SettingsError::CredentialScheme(cr.scheme.clone()));
            }
            check_len("credentials.user", &cr.user, MAX_CREDENTIAL_USER)?;
            check_len(
                "credentials.password",
                &cr.password,
                MAX_CREDENTIAL_PASSWORD,
            )?;
        }
        if let Some(Some(proxy)) = &p.proxy {
            match url::Url::parse(proxy) {
                Ok(u) if matches!(u.scheme(), "http" | "https" | "socks5" | "socks5h") => {}
                _ => return Err(SettingsError::Proxy(proxy.clone())),
            }
        }
        Ok(SettingsChange { params: p, headers })
    }
}

impl TryFrom<&CreateParams> for SettingsChange {
    type Error = SettingsError;

    /// The settings a `job.create` gives, validated as `job.set` validates them.
    fn try_from(p: &CreateParams) -> Result<SettingsChange, SettingsError> {
        SettingsChange::try_from(SetParams {
            display_name: Some(p.display_name.clone()),
            description: p.description.clone(),
            priority: p.priority,
            cost_policy: p.cost_policy.map(Some),
            power_policy: p.power_policy.map(Some),
            ..SetParams::default()
        })
    }
}

impl SettingsChange {
    /// The job the change is for.
    pub fn job_id(&self) -> &str {
        &self.params.job_id
    }

    /// Whether it sets or removes credentials (BITS allows that in more states).
    pub fn sets_credentials(&self) -> bool {
        self.params.credentials.is_some()
    }

    /// Whether it turns `auto_complete` on.
    pub fn enables_auto_complete(&self) -> bool {
        self.params.auto_complete == Some(true)
    }

    /// Writes the change into `s`; returns the wire names of the settings it set, in the
    /// order of [`JobSettings`]'s fields.
    pub fn apply(self, s: &mut JobSettings) -> Vec<String> {
        let SettingsChange { params: p, headers } = self;
        let mut fields = Vec::new();
        macro_rules! put {
            ($name:ident, $value:expr) => {
                if let Some(v) = p.$name {
                    s.$name = $value(v);
                    fields.push(stringify!($name).to_string());
                }
            };
        }
        put!(display_name, |v| v);
        put!(description, |v| v);
        put!(priority, |v| v);
        put!(notify_flags, |v| v);
        put!(notify_cmdline, |v| v);
        put!(notify_handler, |v| v);
        put!(minimum_retry_delay_s, |v| v);
        put!(no_progress_timeout_s, |v| v);
        put!(max_download_time_s, |v: Option<u64>| v
            .unwrap_or(JobSettings::DEFAULT_MAX_DOWNLOAD_TIME_S));
        put!(minimum_notification_interval_ms, |v| v);
        if let Some(hs) = headers {
            s.custom_headers = hs;
            fields.push("custom_headers".to_string());
        }
        put!(bandwidth_limit_bps, |v| v);
        put!(max_parallel_files, |v| v);
        put!(credentials, |v| v);
        put!(proxy, |v| v);
        put!(allow_https_to_http, |v| v);
        put!(peer_caching, |v| v);
        put!(auto_complete, |v| v);
        put!(cost_policy, |v| v);
        put!(power_policy, |v| v);
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn change(p: SetParams) -> Result<SettingsChange, SettingsError> {
        SettingsChange::try_from(p)
    }

    #[test]
    fn headers_are_parsed_once_and_shown_canonically() {
        let h = Header::try_from("X-Token:  abc ").unwrap();
        assert_eq!((h.name.as_str(), h.value.as_str()), ("X-Token", "abc"));
        assert_eq!(serde_json::to_value(&h).unwrap(), "X-Token: abc");
        let back: Header = serde_json::from_value("X-A: b".into()).unwrap();
        assert_eq!(back.name, "X-A");
        for bad in ["no colon", ": v", "Bad Name: v", "X: a\r\nY: b", "X: \0"] {
            assert!(Header::try_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invalid_params_name_the_field() {
        let long_name = "x".repeat(MAX_DISPLAY_NAME + 1);
        let cases = [
            (json!({"notify_flags": 64}), "notify_flags"),
            (json!({"notify_cmdline": ["rel"]}), "notify_cmdline"),
            (json!({"notify_handler": ""}), "notify_handler"),
            (json!({"custom_headers": ["nope"]}), "custom_headers"),
            (json!({"bandwidth_limit_bps": 0}), "bandwidth_limit_bps"),
            (json!({"max_parallel_files": 0}), "max_parallel_files"),
            (json!({"proxy": "ftp://p"}), "proxy"),
            (json!({"display_name": long_name}), "display_name"),
            (
                json!({"credentials": {"scheme": "digest", "user": "u", "password": "p"}}),
                "credentials.scheme",
            ),
        ];
        for (mut raw, field) in cases {
            raw["job_id"] = json!("j");
            let p: SetParams = serde_json::from_value(raw).unwrap();
            let e = change(p).unwrap_err();
            assert_eq!(e.field(), field, "{e}");
            let wire = ProtoError::from(e);
            let data = wire.data.unwrap_or_default();
            assert_eq!(data["field"], field, "{data}");
        }
    }

    #[test]
    fn null_max_download_time_returns_to_the_default() {
        let mut s = JobSettings {
            max_download_time_s: 5,
            ..JobSettings::default()
        };
        let fields = change(SetParams {
            max_download_time_s: Some(None),
            ..SetParams::default()
        })
        .unwrap()
        .apply(&mut s);
        assert_eq!(fields, ["max_download_time_s"]);
        assert_eq!(s, JobSettings::default());
    }

    #[test]
    fn credentials_are_never_serialised() {
        let s = JobSettings {
            credentials: Some(Credentials {
                scheme: "basic".into(),
                user: "u".into(),
                password: "hunter2".into(),
            }),
            ..JobSettings::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("credentials"),
            "{text}"
        );
    }

    proptest! {
        /// Whatever a change sets is what the settings hold afterwards, and it reports exactly
        /// the settings it was given.
        #[test]
        fn apply_sets_what_was_given(
            retry in proptest::option::of(0u64..100_000),
            parallel in proptest::option::of(1u32..=MAX_PARALLEL_FILES),
            peer in proptest::option::of(any::<bool>()),
            limit in proptest::option::of(proptest::option::of(1u64..u64::MAX)),
        ) {
            let mut s = JobSettings::default();
            let fields = change(SetParams {
                minimum_retry_delay_s: retry,
                max_parallel_files: parallel,
                peer_caching: peer,
                bandwidth_limit_bps: limit,
                ..SetParams::default()
            })
            .unwrap()
            .apply(&mut s);
            let given = [retry.is_some(), limit.is_some(), parallel.is_some(), peer.is_some()];
            prop_assert_eq!(fields.len(), given.iter().filter(|g| **g).count());
            prop_assert_eq!(s.minimum_retry_delay_s, retry.unwrap_or(JobSettings::DEFAULT_MINIMUM_RETRY_DELAY_S));
            prop_assert_eq!(s.max_parallel_files, parallel.unwrap_or(JobSettings::DEFAULT_MAX_PARALLEL_FILES));
            prop_assert_eq!(s.peer_caching, peer.unwrap_or(true));
            prop_assert_eq!(s.bandwidth_limit_bps, limit.flatten());
        }
    }
}
