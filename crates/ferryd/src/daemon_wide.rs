//! The `[daemon]` section of ferryd.toml: settings that hold for every job at once, so that an
//! autostarted daemon (which gets no flags) can have them too. Each key also has a flag, and a
//! flag wins over the file, which wins over the default (as for `[limits]`).
//!
//! | key | flag | default |
//! |---|---|---|
//! | `bandwidth_limit` | `--bandwidth-limit` | none: one bucket shared by every background job's transfers, on top of each job's own limit |
//! | `connections_per_host` | `--max-connections-per-host` | 16 transfers talking to one `host:port` at once, across all jobs |
//! | `retry_delay_floor_s` | `--retry-delay-floor` | 5: no job retries sooner, whatever its `minimum_retry_delay_s` |

use serde::Deserialize;

/// The most transfers one host may get at once (`connections_per_host`).
pub const MAX_CONNECTIONS_PER_HOST: u64 = 1024;
/// The highest retry floor accepted: a day (a higher floor would park every failed job).
pub const MAX_RETRY_DELAY_FLOOR_S: u64 = 86_400;

/// `[daemon]` as written. `bandwidth_limit` is a number of bytes per second or a string with a
/// unit (`"1M"`, `"500K"`, as `ferry --limit-rate` takes it), so it is read as any value and
/// checked by [`DaemonSection::check`], which gives a better message than a type error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    bandwidth_limit: Option<toml::Value>,
    connections_per_host: Option<i64>,
    retry_delay_floor_s: Option<i64>,
}

/// What one source (the file's `[daemon]`, or the command line) sets; unset keys fall through
/// to the next source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Bytes per second for all background transfers together.
    pub bandwidth_limit_bps: Option<u64>,
    /// Transfers talking to one host at once.
    pub connections_per_host: Option<u64>,
    /// The smallest retry delay, in seconds.
    pub retry_delay_floor_s: Option<u64>,
}

impl DaemonSection {
    /// The section's values, checked; an error names the key, what was wrong and what is
    /// accepted.
    pub fn check(&self) -> Result<DaemonSettings, String> {
        let bandwidth_limit_bps = match &self.bandwidth_limit {
            None => None,
            Some(toml::Value::Integer(n)) if *n >= 1 => u64::try_from(*n).ok(),
            Some(toml::Value::String(s)) => Some(
                ferry_core::units::parse_rate(s)
                    .map_err(|e| format!("[daemon] bandwidth_limit: {e}"))?,
            ),
            Some(other) => {
                let other = match other {
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => "that value".to_owned(),
                };
                return Err(format!(
                    "[daemon] bandwidth_limit = {other} is not a rate: give bytes per second \
                     (at least 1) or a string with a unit such as \"500K\" or \"1M\"; leave it out \
                     for no daemon-wide limit"
                ));
            }
        };
        let connections_per_host = in_range(
            "connections_per_host",
            self.connections_per_host,
            1..=MAX_CONNECTIONS_PER_HOST,
            "(default 16)",
        )?;
        let retry_delay_floor_s = in_range(
            "retry_delay_floor_s",
            self.retry_delay_floor_s,
            0..=MAX_RETRY_DELAY_FLOOR_S,
            "seconds (default 5)",
        )?;
        Ok(DaemonSettings {
            bandwidth_limit_bps,
            connections_per_host,
            retry_delay_floor_s,
        })
    }
}

/// A whole-number key's value, if set, when it lies in `range`; else an error naming the key.
fn in_range(
    key: &str,
    value: Option<i64>,
    range: std::ops::RangeInclusive<u64>,
    default: &str,
) -> Result<Option<u64>, String> {
    match value {
        None => Ok(None),
        Some(n) => u64::try_from(n)
            .ok()
            .filter(|v| range.contains(v))
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "[daemon] {key} = {n} is out of range: use {} to {} {default}",
                    range.start(),
                    range.end()
                )
            }),
    }
}

/// The daemon's values of the `[daemon]` settings (the `DaemonOptions` fields they set).
#[derive(Debug)]
pub struct Targets<'a> {
    /// `bandwidth_limit_bps`.
    pub bandwidth_limit_bps: &'a mut Option<u64>,
    /// `max_connections_per_host`.
    pub connections_per_host: &'a mut usize,
    /// `retry_delay_floor_s`.
    pub retry_delay_floor_s: &'a mut u64,
}

impl DaemonSettings {
    /// Sets the daemon's values from `flags` over `self` (the file's) over what they hold
    /// already (the defaults, or what an embedder of [`crate::run`] chose).
    pub fn apply(&self, flags: &DaemonSettings, to: Targets<'_>) {
        if let Some(bps) = flags.bandwidth_limit_bps.or(self.bandwidth_limit_bps) {
            *to.bandwidth_limit_bps = Some(bps);
        }
        if let Some(n) = flags.connections_per_host.or(self.connections_per_host) {
            *to.connections_per_host = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(s) = flags.retry_delay_floor_s.or(self.retry_delay_floor_s) {
            *to.retry_delay_floor_s = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DaemonOptions;

    fn targets(opts: &mut DaemonOptions) -> Targets<'_> {
        Targets {
            bandwidth_limit_bps: &mut opts.bandwidth_limit_bps,
            connections_per_host: &mut opts.max_connections_per_host,
            retry_delay_floor_s: &mut opts.retry_delay_floor_s,
        }
    }

    fn section(text: &str) -> Result<DaemonSettings, String> {
        // Only `[daemon]` is looked at here; the other sections have their own tests.
        #[derive(Deserialize)]
        struct File {
            daemon: DaemonSection,
        }
        let f: File = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        f.daemon.check()
    }

    #[test]
    fn the_example_configuration_shows_the_defaults() {
        let text = include_str!("../../../dist/ferryd.toml.example");
        let s = section(text).unwrap();
        let opts = DaemonOptions::resolve(false, Some("/s".into()), Some("/d".into())).unwrap();
        assert_eq!(s.bandwidth_limit_bps, opts.bandwidth_limit_bps);
        assert_eq!(
            s.connections_per_host,
            Some(opts.max_connections_per_host as u64)
        );
        assert_eq!(s.retry_delay_floor_s, Some(opts.retry_delay_floor_s));
    }

    #[test]
    fn rates_take_the_clis_units_or_bytes() {
        let s = section("[daemon]\nbandwidth_limit = \"1M\"").unwrap();
        assert_eq!(s.bandwidth_limit_bps, Some(1 << 20));
        let s = section("[daemon]\nbandwidth_limit = 65536").unwrap();
        assert_eq!(s.bandwidth_limit_bps, Some(65536));
        for bad in ["\"1Q\"", "0", "-5", "1.5", "true", "\"0\""] {
            let e = section(&format!("[daemon]\nbandwidth_limit = {bad}")).unwrap_err();
            assert!(
                e.contains("bandwidth_limit") && e.contains("500K"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn counts_out_of_range_name_the_key_and_the_range() {
        let e = section("[daemon]\nconnections_per_host = 0").unwrap_err();
        assert!(
            e.contains("connections_per_host") && e.contains("1 to 1024"),
            "{e}"
        );
        let e = section("[daemon]\nretry_delay_floor_s = -1").unwrap_err();
        assert!(
            e.contains("retry_delay_floor_s") && e.contains("0 to 86400"),
            "{e}"
        );
        let e = section("[daemon]\nretry_floor = 3").unwrap_err();
        assert!(e.contains("retry_floor"), "an unknown key is named: {e}");
        let s = section("[daemon]\nconnections_per_host = 2\nretry_delay_floor_s = 0").unwrap();
        assert_eq!(
            (s.connections_per_host, s.retry_delay_floor_s),
            (Some(2), Some(0))
        );
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_the_defaults() {
        let mut opts = DaemonOptions::resolve(
            false,
            Some("/tmp/x.sock".into()),
            Some("/tmp/x-state".into()),
        )
        .unwrap();
        let defaults = (
            opts.bandwidth_limit_bps,
            opts.max_connections_per_host,
            opts.retry_delay_floor_s,
        );
        DaemonSettings::default().apply(&DaemonSettings::default(), targets(&mut opts));
        assert_eq!(
            (
                opts.bandwidth_limit_bps,
                opts.max_connections_per_host,
                opts.retry_delay_floor_s
            ),
            defaults,
            "nothing set: the defaults stay"
        );
        let file = DaemonSettings {
            bandwidth_limit_bps: Some(1000),
            connections_per_host: Some(3),
            retry_delay_floor_s: Some(30),
        };
        let flags = DaemonSettings {
            retry_delay_floor_s: Some(1),
            ..DaemonSettings::default()
        };
        file.apply(&flags, targets(&mut opts));
        assert_eq!(opts.bandwidth_limit_bps, Some(1000));
        assert_eq!(opts.max_connections_per_host, 3);
        assert_eq!(opts.retry_delay_floor_s, 1, "the flag wins");
    }
}
