//! Printing: lines and JSON on stdout, messages on stderr, tables, and the human form of jobs.
//!
//! stdout is written with `writeln!` rather than `println!`, because `println!` panics when the
//! reader went away (`ferry monitor | head`); the broken pipe comes back as an error instead and
//! `main` ends quietly.

use std::fmt;
use std::io::Write;

use ferry_proto::{File, Job, Progress, Waiting};
use indicatif::HumanBytes;
use serde::Serialize;

/// Writes one formatted line to stdout, returning the I/O error (e.g. a broken pipe).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

/// Writes one formatted line to stderr, ignoring failure (there is nowhere left to report it).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::err_line(format_args!($($arg)*))
    };
}

/// Writes one line to stdout.
pub fn line(args: fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes one line to stderr, ignoring failure.
pub fn err_line(args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args);
    let _ = err.write_all(b"\n");
}

/// Prints a value as pretty JSON on stdout (one document per command).
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    line(format_args!("{text}"))?;
    Ok(())
}

/// Prints a value as compact JSON on one line (streams such as `ferry monitor --json`).
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string(value)?;
    line(format_args!("{text}"))?;
    Ok(())
}

/// The first 8 characters of a job id, as tables show it.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// The local time zone's offset, read once while the process has a single thread (the only
/// time the C library's time zone data may be read safely); UTC if it cannot be read.
static LOCAL_OFFSET: std::sync::OnceLock<time::UtcOffset> = std::sync::OnceLock::new();

/// Reads the local offset; call first thing in `main`, before any thread starts.
pub fn init_local_offset() {
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    let _ = LOCAL_OFFSET.set(offset);
}

/// An RFC 3339 time from the daemon (UTC) as people read it: in the local time zone, to the
/// second, with the offset (`2026-12-04 11:00:07 +01:00`); text that is not a time as it is.
pub fn local_time(rfc3339: &str) -> String {
    let offset = LOCAL_OFFSET.get().copied().unwrap_or(time::UtcOffset::UTC);
    in_zone(rfc3339, offset)
}

/// [`local_time`] for a given offset.
pub fn in_zone(rfc3339: &str, offset: time::UtcOffset) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]"
    );
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(offset).format(&format).ok())
        .unwrap_or_else(|| rfc3339.to_owned())
}

/// `transferred / total` bytes in binary units; `?` while the total is unknown.
pub fn bytes_fraction(transferred: u64, total: Option<u64>) -> String {
    match total {
        Some(t) => format!("{} / {}", HumanBytes(transferred), HumanBytes(t)),
        None => format!("{} / ?", HumanBytes(transferred)),
    }
}

/// `x/y` files.
pub fn files_fraction(p: &Progress) -> String {
    format!("{}/{}", p.files_transferred, p.files_total)
}

/// A short phrase for why a job is not moving (`retry_delay until …`, `slots_busy, 3 ahead`).
pub fn waiting_text(w: &Waiting) -> String {
    let mut s = w.reason.replace('_', " ");
    if let Some(until) = &w.until {
        s.push_str(&format!(" until {}", local_time(until)));
    }
    if let Some(ahead) = w.ahead {
        s.push_str(&format!(", {ahead} ahead"));
    }
    s
}

/// A duration in seconds as a short human string (`90s` → `1m30s`).
pub fn seconds_text(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// The `key: value` lines `ferry info` prints for a job.
pub fn job_lines(job: &Job) -> Vec<(&'static str, String)> {
    let opt = |v: Option<&str>| v.map_or_else(|| "-".to_owned(), str::to_owned);
    let mut lines = vec![
        ("id", job.job_id.clone()),
        ("name", job.settings.display_name.clone()),
        ("description", job.settings.description.clone()),
        ("type", job.job_type.as_str().to_owned()),
        ("owner uid", job.owner_uid.to_string()),
        ("state", job.state.to_string()),
        ("priority", job.settings.priority.as_str().to_owned()),
        (
            "bytes",
            bytes_fraction(job.progress.bytes_transferred, job.progress.bytes_total),
        ),
        ("files", files_fraction(&job.progress)),
        ("created", local_time(&job.times.created)),
        ("modified", local_time(&job.times.modified)),
        (
            "transfer completed",
            opt(job
                .times
                .transfer_completed
                .as_deref()
                .map(local_time)
                .as_deref()),
        ),
    ];
    if let Some(w) = &job.waiting {
        lines.push(("waiting", waiting_text(w)));
    }
    if let Some(e) = &job.error {
        lines.push(("error", format!("{}: {}", e.code, e.description)));
    }
    lines.extend([
        ("error count", job.error_count.to_string()),
        ("notify flags", job.settings.notify_flags.to_string()),
        (
            "notify interface",
            if job.notify_interface { "yes" } else { "no" }.to_owned(),
        ),
        (
            "notify handler",
            opt(job.settings.notify_handler.as_deref()),
        ),
        (
            "notify cmdline",
            job.settings
                .notify_cmdline
                .as_ref()
                .map_or_else(|| "-".to_owned(), |argv| argv.join(" ")),
        ),
        (
            "retry delay",
            seconds_text(job.settings.minimum_retry_delay_s),
        ),
        (
            "no-progress timeout",
            seconds_text(job.settings.no_progress_timeout_s),
        ),
        (
            "max download time",
            seconds_text(job.settings.max_download_time_s),
        ),
        (
            "notification interval",
            format!("{}ms", job.settings.minimum_notification_interval_ms),
        ),
        (
            "headers",
            if job.settings.custom_headers.is_empty() {
                "-".to_owned()
            } else {
                job.settings.header_lines().join("; ")
            },
        ),
        (
            "bandwidth limit",
            job.settings
                .bandwidth_limit_bps
                .map_or_else(|| "none".to_owned(), |b| format!("{}/s", HumanBytes(b))),
        ),
        (
            "max parallel files",
            job.settings.max_parallel_files.to_string(),
        ),
        (
            "credentials",
            if job.credentials_set { "set" } else { "unset" }.to_owned(),
        ),
        ("proxy", opt(job.settings.proxy.as_deref())),
        (
            "https to http",
            if job.settings.allow_https_to_http {
                "allowed"
            } else {
                "refused"
            }
            .to_owned(),
        ),
        (
            "peer caching",
            if job.settings.peer_caching {
                "on"
            } else {
                "off"
            }
            .to_owned(),
        ),
        (
            "auto complete",
            if job.settings.auto_complete {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
        ),
        (
            "cost policy",
            job.settings
                .cost_policy
                .map_or_else(|| "default".to_owned(), |p| p.to_string()),
        ),
        (
            "power policy",
            job.settings
                .power_policy
                .map_or_else(|| "default".to_owned(), |p| p.to_string()),
        ),
    ]);
    lines
}

/// Prints `key: value` lines with the values aligned.
pub fn print_lines(lines: &[(&str, String)]) -> anyhow::Result<()> {
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in lines {
        // An empty value (e.g. no description) would leave trailing blanks.
        let line = format!("{:<width$} {v}", format!("{k}:"));
        outln!("{}", line.trim_end())?;
    }
    Ok(())
}

/// Prints a job as aligned `key: value` lines.
pub fn print_job(job: &Job) -> anyhow::Result<()> {
    print_lines(&job_lines(job))
}

/// The first 12 characters of a peer-cache content key, as tables show it.
pub fn short_key(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

/// A byte count in binary units (`1.50 KiB`).
pub fn bytes_text(bytes: u64) -> String {
    HumanBytes(bytes).to_string()
}

/// One row of `ferry files`.
pub fn file_row(f: &File) -> Vec<String> {
    let status = if f.completed {
        "completed"
    } else if f.transferred {
        "transferred"
    } else if f.bytes_transferred > 0 {
        "partial"
    } else {
        "pending"
    };
    vec![
        f.file_index.to_string(),
        status.to_owned(),
        bytes_fraction(f.bytes_transferred, f.bytes_total),
        f.remote_url.clone(),
        f.local_path.clone(),
    ]
}

/// One row of `ferry list`.
pub fn job_row(j: &Job) -> Vec<String> {
    vec![
        short_id(&j.job_id).to_owned(),
        j.state.to_string(),
        j.settings.priority.as_str().to_owned(),
        bytes_fraction(j.progress.bytes_transferred, j.progress.bytes_total),
        files_fraction(&j.progress),
        j.settings.display_name.clone(),
    ]
}

/// A plain text table: columns padded to their widest cell, the last one left ragged.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, cell) in cells.enumerate().take(columns) {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        line.trim_end().to_owned()
    };
    let mut out = render(&mut headers.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&render(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_local_to_the_second() {
        let plus_one = time::UtcOffset::from_hms(1, 0, 0).unwrap();
        assert_eq!(
            in_zone("2026-12-04T10:00:07.123456789Z", plus_one),
            "2026-12-04 11:00:07 +01:00"
        );
        assert_eq!(
            in_zone("2026-12-04T10:00:07Z", time::UtcOffset::UTC),
            "2026-12-04 10:00:07 +00:00"
        );
        assert_eq!(in_zone("not a time", plus_one), "not a time");
    }

    #[test]
    fn short_keys() {
        assert_eq!(short_key(&"ab".repeat(32)), "abababababab");
        assert_eq!(short_key("abc"), "abc");
    }

    #[test]
    fn short_ids() {
        assert_eq!(short_id("0123456789abcdef"), "01234567");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["ID", "STATE", "NAME"],
            &[
                vec!["a".into(), "transferring".into(), "x y".into()],
                vec!["bbbb".into(), "error".into(), "z".into()],
            ],
        );
        assert_eq!(
            t,
            "ID    STATE         NAME\na     transferring  x y\nbbbb  error         z"
        );
    }

    #[test]
    fn seconds() {
        assert_eq!(seconds_text(0), "0s");
        assert_eq!(seconds_text(90), "1m30s");
        assert_eq!(seconds_text(1_209_600), "14d");
    }

    #[test]
    fn fractions() {
        assert_eq!(bytes_fraction(0, None), "0 B / ?");
        assert_eq!(bytes_fraction(1024, Some(2048)), "1.00 KiB / 2.00 KiB");
    }
}
