//! `ferry cache list|info|delete|clear`: the peer cache, the validated downloads this host serves
//! to its peers (bitsadmin `/cache`). `--json` prints the daemon's answer as it is.

use anyhow::Context as _;
use ferry_client::proto::cache::{
    CacheDeleteParams, CacheDeleteResult, CacheEntry, CacheInfo, CacheListParams, CacheListResult,
};
use ferry_client::proto::error::ErrorCode;
use ferry_client::proto::method::{self, Method};
use ferry_client::proto::params::Empty;
use ferry_client::{Client, ClientError};
use serde_json::{Value, json};

use super::Ctx;
use crate::cli::{CacheArgs, CacheCommand, CacheDeleteArgs};
use crate::exit_code;
use crate::output::{self, bytes_text, seconds_text, short_key};
use crate::usage::UsageError;

/// What `ferry cache info` and `ferry peers list` say when the daemon runs without the cache.
pub const OFF_HINT: &str = "the peer cache is off; enable it in ferryd's config file \
                            ([peer_cache] enabled = true) and restart ferryd";

/// The length of a full content key (SHA-256 in hex).
const KEY_LEN: usize = 64;

/// Runs `ferry cache …`.
pub async fn run(ctx: &Ctx, a: CacheArgs) -> anyhow::Result<u8> {
    match a.command {
        CacheCommand::List => list(ctx).await,
        CacheCommand::Info => info(ctx).await,
        CacheCommand::Delete(a) => delete(ctx, a).await,
        CacheCommand::Clear => clear(ctx).await,
    }
}

/// Calls a peer-cache method and keeps the daemon's exact answer (for `--json`) beside the
/// decoded one. `what` completes "cannot …" in the error message.
pub async fn call_both<M: Method>(
    client: &Client,
    params: M::Params,
    what: &str,
) -> anyhow::Result<(Value, M::Result)> {
    let name = M::NAME;
    let raw: Value = client
        .call_json::<M>(params)
        .await
        .map_err(|e| explain(e, name))
        .with_context(|| format!("cannot {what}"))?;
    let typed = serde_json::from_value(raw.clone())
        .with_context(|| format!("unexpected {name} answer from ferryd"))?;
    Ok((raw, typed))
}

/// Turns "method not found" into what it means here: a daemon older than the peer cache.
fn explain(e: ClientError, name: &str) -> anyhow::Error {
    match e.daemon_error() {
        Some(d) if d.code == ErrorCode::METHOD_NOT_FOUND.0 => anyhow::anyhow!(
            "the running ferryd does not know `{name}`: it is older than this ferry and has no \
             peer cache; restart ferryd so that the installed version runs"
        ),
        _ => e.into(),
    }
}

/// One row of `ferry cache list`.
pub fn entry_row(e: &CacheEntry) -> Vec<String> {
    vec![
        short_key(&e.key).to_owned(),
        bytes_text(e.size),
        e.last_access.clone(),
        e.times_served.to_string(),
        e.url.clone(),
    ]
}

/// Prints the entries (`--json`: the daemon's `{entries}` answer).
async fn list(ctx: &Ctx) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let (raw, r): (Value, CacheListResult) =
        call_both::<method::CacheList>(&client, CacheListParams {}, "list the peer cache").await?;
    if ctx.json {
        output::json(&raw)?;
        return Ok(exit_code::OK);
    }
    if r.entries.is_empty() {
        // An empty list from a daemon whose cache is off would hide the reason (an older
        // daemon does not say, so ask it).
        let enabled = match r.enabled {
            Some(e) => e,
            None => client.cache_info().await.map_or(true, |i| i.enabled),
        };
        if !enabled {
            outln!("{OFF_HINT}")?;
            return Ok(exit_code::OK);
        }
    }
    let rows: Vec<Vec<String>> = r.entries.iter().map(entry_row).collect();
    outln!(
        "{}",
        output::table(&["KEY", "SIZE", "LAST USED", "SERVED", "URL"], &rows)
    )?;
    Ok(exit_code::OK)
}

/// The `key: value` lines of `ferry cache info` for an enabled cache.
pub fn info_lines(i: &CacheInfo) -> Vec<(&'static str, String)> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    vec![
        ("enabled", if i.enabled { "yes" } else { "no" }.to_owned()),
        ("config file", opt(&i.config_file)),
        ("listen", opt(&i.listen)),
        ("discovery", opt(&i.discovery)),
        ("dir", opt(&i.dir)),
        ("entries", i.entries.to_string()),
        (
            "size",
            format!(
                "{} / {}",
                bytes_text(i.used_bytes),
                bytes_text(i.max_size_bytes)
            ),
        ),
        ("max age", seconds_text(i.max_age_s)),
        (
            "upload limit",
            i.upload_limit_bps
                .map_or_else(|| "none".to_owned(), |b| format!("{}/s", bytes_text(b))),
        ),
        ("bytes served", bytes_text(i.bytes_served)),
        ("requests refused", i.requests_refused.to_string()),
    ]
}

/// Prints the cache's settings and use, or why there is no cache and how to turn it on.
async fn info(ctx: &Ctx) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let (raw, i): (Value, CacheInfo) =
        call_both::<method::CacheInfo>(&client, Empty {}, "read the peer cache's settings").await?;
    if ctx.json {
        output::json(&raw)?;
    } else if !i.enabled {
        outln!("{OFF_HINT}")?;
        if let Some(path) = &i.config_file {
            outln!("config file: {path}")?;
        }
    } else {
        output::print_lines(&info_lines(&i))?;
    }
    Ok(exit_code::OK)
}

/// `N entry`/`N entries (SIZE)`.
fn deleted_text(r: &CacheDeleteResult) -> String {
    let noun = if r.deleted == 1 { "entry" } else { "entries" };
    format!("deleted {} {noun} ({})", r.deleted, bytes_text(r.bytes))
}

/// Picks the key `arg` names among `keys`: itself when it is a full key, else the one key it is
/// a prefix of. `Ok(None)`: no key matches. A KEY that is not hex is a usage error; a prefix
/// of several keys is an error that lists them.
pub fn match_key(arg: &str, keys: &[&str]) -> anyhow::Result<Option<String>> {
    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(UsageError::new(format!(
            "KEY {arg:?} is not a content key: give the hex KEY `ferry cache list` shows, or \
             --url URL to delete by URL"
        ))
        .into());
    }
    let lower = arg.to_ascii_lowercase();
    if lower.len() >= KEY_LEN {
        return Ok(Some(lower));
    }
    let found: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| k.starts_with(&lower))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).to_owned())),
        many => anyhow::bail!(
            "KEY {arg} is ambiguous: it matches {}; give more of the key",
            many.iter()
                .map(|k| short_key(k))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Removes the entry KEY names (a full key or a unique prefix) or every entry of `--url`.
async fn delete(ctx: &Ctx, a: CacheDeleteArgs) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let (params, what) = match (a.key, a.url) {
        (Some(key), None) => {
            // A full key goes as it is; a prefix (the table shows 12 characters) is looked up.
            let keys = if key.len() >= KEY_LEN {
                Vec::new()
            } else {
                let (_, r): (Value, CacheListResult) = call_both::<method::CacheList>(
                    &client,
                    CacheListParams {},
                    "list the peer cache",
                )
                .await?;
                r.entries.into_iter().map(|e| e.key).collect()
            };
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let Some(full) = match_key(&key, &refs)? else {
                return print_deleted(ctx, None, &format!("key {key}"));
            };
            (
                CacheDeleteParams {
                    key: Some(full),
                    url: None,
                },
                format!("key {key}"),
            )
        }
        (None, Some(url)) => (
            CacheDeleteParams {
                key: None,
                url: Some(url.clone()),
            },
            format!("URL {url}"),
        ),
        // clap's group requires exactly one of them.
        _ => return Err(UsageError::new("give either KEY or --url URL").into()),
    };
    let (raw, r): (Value, CacheDeleteResult) = call_both::<method::CacheDelete>(
        &client,
        params,
        &format!("delete the cache entry with {what}"),
    )
    .await?;
    print_deleted(ctx, Some((raw, r)), &what)
}

/// Prints what a delete removed; nothing removed is not an error.
fn print_deleted(
    ctx: &Ctx,
    answer: Option<(Value, CacheDeleteResult)>,
    what: &str,
) -> anyhow::Result<u8> {
    let (raw, r) = answer.unwrap_or_else(|| {
        let r = CacheDeleteResult::default();
        (json!({"deleted": r.deleted, "bytes": r.bytes}), r)
    });
    if ctx.json {
        output::json(&raw)?;
    } else if r.deleted == 0 {
        outln!("no cache entry matched {what}")?;
    } else {
        outln!("{}", deleted_text(&r))?;
    }
    Ok(exit_code::OK)
}

/// Removes every entry.
async fn clear(ctx: &Ctx) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let (raw, r): (Value, CacheDeleteResult) =
        call_both::<method::CacheClear>(&client, Empty {}, "clear the peer cache").await?;
    if ctx.json {
        output::json(&raw)?;
    } else {
        outln!("{}", deleted_text(&r))?;
    }
    Ok(exit_code::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> String {
        std::iter::repeat_n(c, KEY_LEN).collect()
    }

    #[test]
    fn keys_match_by_unique_prefix() {
        let (a, b) = (
            format!("ab{}", &key('0')[2..]),
            format!("ac{}", &key('1')[2..]),
        );
        let keys = [a.as_str(), b.as_str()];
        assert_eq!(match_key("AB", &keys).unwrap(), Some(a.clone()));
        assert_eq!(match_key("ac1", &keys).unwrap(), Some(b.clone()));
        assert_eq!(match_key("ff", &keys).unwrap(), None);
        // A full key is taken as it is, listed or not.
        assert_eq!(match_key(&key('f'), &keys).unwrap(), Some(key('f')));
        let e = match_key("a", &keys).unwrap_err().to_string();
        assert!(e.contains("ambiguous") && e.contains("ab0000000000"), "{e}");
        let e = match_key("https://h/x", &keys).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e}");
        assert!(match_key("", &keys).is_err());
    }

    #[test]
    fn deleted_counts() {
        let one = CacheDeleteResult {
            deleted: 1,
            bytes: 2048,
        };
        assert_eq!(deleted_text(&one), "deleted 1 entry (2.00 KiB)");
        assert_eq!(
            deleted_text(&CacheDeleteResult::default()),
            "deleted 0 entries (0 B)"
        );
    }

    #[test]
    fn rows_and_lines() {
        let e = CacheEntry {
            key: key('a'),
            url: "https://h/a.iso".into(),
            validator: "etag \"x\"".into(),
            size: 1536,
            sha256: key('b'),
            owner_uid: 1000,
            job_id: "j".into(),
            file_index: 0,
            published: "2025-01-01T00:00:00Z".into(),
            last_access: "2025-01-02T00:00:00Z".into(),
            times_served: 3,
        };
        assert_eq!(
            entry_row(&e),
            [
                "aaaaaaaaaaaa",
                "1.50 KiB",
                "2025-01-02T00:00:00Z",
                "3",
                "https://h/a.iso"
            ]
        );
        let info = CacheInfo {
            enabled: true,
            max_size_bytes: 1 << 30,
            max_age_s: 90 * 86_400,
            ..CacheInfo::default()
        };
        let lines = info_lines(&info);
        assert!(lines.contains(&("size", "0 B / 1.00 GiB".to_owned())));
        assert!(lines.contains(&("max age", "90d".to_owned())));
        assert!(lines.contains(&("upload limit", "none".to_owned())));
        assert!(lines.contains(&("listen", "-".to_owned())));
    }
}
