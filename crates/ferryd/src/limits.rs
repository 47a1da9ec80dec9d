//! Quotas per user and bounds per connection: the `[limits]` settings of ferryd.toml, their
//! defaults and command-line flags, resolved once into one [`Limits`]; the `limit_exceeded`
//! refusal every limit answers with; and the per-uid counts of what is held open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_proto::{ErrorKind, MAX_LINE_BYTES, ProtoError};
use serde::Deserialize;

/// Defines every limit once: its `[limits]` key (the field name), its doc, its default and the
/// command-line flag that overrides it, if any.
macro_rules! limits {
    ($( $(#[doc = $doc:literal])* $key:ident = $default:expr, flag = $flag:expr; )*) => {
        /// Limits that protect the daemon; each names the setting that raises it.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Limits {
            $( $(#[doc = $doc])* pub $key: u64, )*
        }

        impl Default for Limits {
            fn default() -> Self {
                Limits { $( $key: $default, )* }
            }
        }

        /// What one source (the `[limits]` section, or the command line) sets; unset keys fall
        /// through to the next source.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct LimitSettings {
            $( $(#[doc = $doc])* pub $key: Option<u64>, )*
        }

        /// Every key with its flag, for messages.
        const KEYS: &[(&str, Option<&str>)] = &[ $( (stringify!($key), $flag), )* ];

        impl Limits {
            /// One value from the flags over the file over the defaults. A file value of 0 is a
            /// mistake (every limit needs at least one of its kind); the error names the key.
            pub fn resolve(flags: &LimitSettings, file: &LimitSettings) -> Result<Limits, String> {
                let default = Limits::default();
                $(
                    if file.$key == Some(0) {
                        return Err(format!(
                            "[limits] {} = 0 would refuse everything; use at least 1 (default {})",
                            stringify!($key),
                            default.$key
                        ));
                    }
                )*
                Ok(Limits { $( $key: flags.$key.or(file.$key).unwrap_or(default.$key), )* })
            }
        }
    };
}

limits! {
    /// Files in one job.
    files_per_job = 100_000, flag = Some("--max-files-per-job");
    /// Files in all of one user's non-final jobs together.
    files_per_user = 1_000_000, flag = None;
    /// Non-final jobs one user may have.
    jobs_per_user = 10_000, flag = Some("--max-jobs-per-user");
    /// Non-final jobs in the daemon.
    jobs_per_daemon = 100_000, flag = Some("--max-jobs");
    /// Ranges of one file.
    ranges_per_file = 500, flag = Some("--max-ranges-per-file");
    /// Connections one uid may hold open at once.
    connections_per_user = 128, flag = Some("--max-connections-per-user");
    /// Handlers one uid may register.
    handlers_per_user = 64, flag = None;
    /// Bytes of one handler's argv (each argument counts one more, its terminating NUL).
    handler_argv_bytes = 64 * 1024, flag = None;
    /// Bytes of the argv of all of one uid's handlers together.
    handler_argv_bytes_per_user = 1024 * 1024, flag = None;
    /// Connections of one uid that may follow events at once.
    followers_per_user = 8, flag = None;
    /// Bytes of followed events one connection may leave unread; the replay waits for the
    /// reader below it, and a connection that stays above it is closed.
    follow_backlog_bytes = 1024 * 1024, flag = Some("--max-follow-backlog");
    /// Bytes of answers and notifications one connection may leave unread: reading and
    /// handling its requests pause at a quarter of it (and the connection is closed when that
    /// lasts [`STALL_PATIENCE`] without progress), and past it the connection is closed.
    unsent_reply_bytes = 4 * 1024 * 1024, flag = None;
}

/// How long a connection may leave its answers (a quarter of `unsent_reply_bytes`) or its
/// followed events (`follow_backlog_bytes`) unread without reading any before it is closed.
pub const STALL_PATIENCE: Duration = Duration::from_secs(10);

impl Limits {
    /// The bounds every client connection is served with.
    pub fn connection_bounds(&self) -> ferry_rpc::Bounds {
        let close_at = as_usize(self.unsent_reply_bytes);
        ferry_rpc::Bounds {
            max_line: MAX_LINE_BYTES,
            pause_reading_at: (close_at / 4).max(1),
            close_at,
            stall_timeout: Some(STALL_PATIENCE),
        }
    }
}

/// A limit in bytes or items as a `usize` (saturating on 32-bit targets).
pub fn as_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// How to raise the limit `key`: the `[limits]` key, and its flag if it has one.
pub fn how_to_raise(key: &str) -> String {
    let flag = KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, f)| *f)
        .map(|f| format!(", or ferryd {f} N"))
        .unwrap_or_default();
    format!("`{key} = N` under [limits] in ferryd.toml{flag}")
}

/// The `limit_exceeded` refusal of limit `key` (value `value`): `what` happened, then the limit,
/// its value and how to raise it; its data names the key as `limit`.
pub fn exceeded(key: &'static str, value: u64, what: impl std::fmt::Display) -> ProtoError {
    ProtoError::kind(
        ErrorKind::LimitExceeded,
        format!(
            "{what} (limit {key} = {value}; raise it with {})",
            how_to_raise(key)
        ),
    )
    .with("limit", key)
}

/// Bytes an argv costs: every argument plus its terminating NUL, as `execve` counts them.
pub fn argv_bytes(argv: &[String]) -> u64 {
    argv.iter().map(|a| a.len() as u64 + 1).sum()
}

/// What one uid's handler registrations cost: how many, and their argv bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerUsage {
    /// How many handlers the uid has registered (against `handlers_per_user`).
    pub count: u64,
    /// Their argv bytes together.
    pub argv_bytes: u64,
}

/// Whether `uid` may register a handler whose argv costs `bytes`, given what its other
/// registrations cost (`others` leaves out a registration of the same name, which this one
/// replaces).
pub fn check_handler(
    limits: &Limits,
    uid: u32,
    others: HandlerUsage,
    bytes: u64,
) -> Result<(), ProtoError> {
    if bytes > limits.handler_argv_bytes {
        return Err(exceeded(
            "handler_argv_bytes",
            limits.handler_argv_bytes,
            format!("the handler's argv is {bytes} bytes"),
        )
        .with("field", "argv"));
    }
    if others.count >= limits.handlers_per_user {
        return Err(exceeded(
            "handlers_per_user",
            limits.handlers_per_user,
            format!(
                "user {uid} already has {} handlers registered; unregister some",
                others.count
            ),
        ));
    }
    let total = others.argv_bytes.saturating_add(bytes);
    if total > limits.handler_argv_bytes_per_user {
        return Err(exceeded(
            "handler_argv_bytes_per_user",
            limits.handler_argv_bytes_per_user,
            format!(
                "user {uid}'s handlers would hold {total} bytes of argv; unregister some or shorten them"
            ),
        )
        .with("field", "argv"));
    }
    Ok(())
}

/// What each uid holds open at once (connections, followers), counted by [`UidSlot`]s.
#[derive(Debug, Default)]
pub struct UidCounts(Mutex<HashMap<u32, u64>>);

/// One counted thing of a uid; dropping it gives the slot back.
#[derive(Debug)]
pub struct UidSlot {
    counts: Arc<UidCounts>,
    uid: u32,
}

impl UidCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, u64>> {
        // A poisoned map is still a valid map: every update is a single step.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for `uid`, or `None` when it already holds `limit`.
    pub fn take(self: &Arc<Self>, uid: u32, limit: u64) -> Option<UidSlot> {
        let mut map = self.lock();
        let open = map.entry(uid).or_default();
        if *open >= limit {
            return None;
        }
        *open += 1;
        Some(UidSlot {
            counts: self.clone(),
            uid,
        })
    }
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock();
        if let Some(open) = map.get_mut(&self.uid) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                map.remove(&self.uid);
            }
        }
    }
}

/// How many unfinished jobs, and files in them, the daemon and each user hold: what
/// `jobs_per_daemon`, `jobs_per_user` and `files_per_user` are checked against. Counted at
/// start from the store, then kept in step by job creation, file additions, ownership changes
/// and the transition that makes a job final.
#[derive(Debug, Default)]
pub struct Quotas {
    /// Unfinished jobs in total.
    live_jobs: u64,
    /// Unfinished jobs per uid.
    per_user: HashMap<u32, u64>,
    /// Files of the unfinished jobs per uid.
    files_per_user: HashMap<u32, u64>,
}

impl Quotas {
    /// The counts the store holds at start.
    pub fn counted(per_user: HashMap<u32, u64>, files_per_user: HashMap<u32, u64>) -> Quotas {
        Quotas {
            live_jobs: per_user.values().sum(),
            per_user,
            files_per_user,
        }
    }

    /// Unfinished jobs in total.
    pub fn live_jobs(&self) -> u64 {
        self.live_jobs
    }

    /// Refuses a new job past `jobs_per_daemon` or the user's `jobs_per_user`.
    pub fn check_new_job(&self, limits: &Limits, uid: u32) -> Result<(), ProtoError> {
        if self.live_jobs >= limits.jobs_per_daemon {
            return Err(exceeded(
                "jobs_per_daemon",
                limits.jobs_per_daemon,
                format!(
                    "the daemon already holds {} unfinished jobs; complete or cancel some",
                    self.live_jobs
                ),
            ));
        }
        let have = self.per_user.get(&uid).copied().unwrap_or(0);
        if have >= limits.jobs_per_user {
            return Err(exceeded(
                "jobs_per_user",
                limits.jobs_per_user,
                format!("user {uid} already has {have} unfinished jobs; complete or cancel some"),
            ));
        }
        Ok(())
    }

    /// Counts `adding` files more for `uid`, or refuses past `files_per_user` (`max`).
    pub fn take_files(&mut self, uid: u32, adding: u64, max: u64) -> Result<(), ProtoError> {
        let have = self.files_per_user.entry(uid).or_default();
        let would = have.saturating_add(adding);
        if would > max {
            return Err(exceeded(
                "files_per_user",
                max,
                format!(
                    "user {uid}'s unfinished jobs would hold {would} files; complete or cancel some"
                ),
            ));
        }
        *have = would;
        Ok(())
    }

    /// Counts a new job of `uid` (its files were taken with [`Quotas::take_files`]).
    pub fn count_job(&mut self, uid: u32) {
        self.live_jobs += 1;
        *self.per_user.entry(uid).or_default() += 1;
    }

    /// A job of `owner` with `files` files became final: it counts no more.
    pub fn job_finished(&mut self, owner: u32, files: u64) {
        self.live_jobs = self.live_jobs.saturating_sub(1);
        if let Some(n) = self.per_user.get_mut(&owner) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = self.files_per_user.get_mut(&owner) {
            *n = n.saturating_sub(files);
        }
    }

    /// A job with `files` files moved from `old` to `new` (ownership taken).
    pub fn job_moved(&mut self, old: u32, new: u32, files: u64) {
        if old == new {
            return;
        }
        if let Some(n) = self.per_user.get_mut(&old) {
            *n = n.saturating_sub(1);
        }
        *self.per_user.entry(new).or_default() += 1;
        if let Some(n) = self.files_per_user.get_mut(&old) {
            *n = n.saturating_sub(files);
        }
        *self.files_per_user.entry(new).or_default() += files;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota_limits(jobs: u64, per_user: u64) -> Limits {
        Limits {
            jobs_per_daemon: jobs,
            jobs_per_user: per_user,
            ..Limits::resolve(&LimitSettings::default(), &LimitSettings::default())
                .expect("the defaults resolve")
        }
    }

    #[test]
    fn issue_12_quotas_follow_creation_files_ownership_and_the_end_of_a_job() {
        let limits = quota_limits(3, 2);
        let mut q = Quotas::counted([(1, 1)].into(), [(1, 4)].into());
        assert_eq!(q.live_jobs(), 1);
        assert!(q.check_new_job(&limits, 1).is_ok());
        q.take_files(1, 2, 10).expect("within files_per_user");
        q.count_job(1);
        let e = q.check_new_job(&limits, 1).unwrap_err();
        assert!(e.message.contains("user 1 already has 2"), "{}", e.message);
        assert!(q.take_files(1, 5, 10).is_err(), "6 + 5 files is past 10");
        q.job_moved(1, 2, 2);
        assert!(q.check_new_job(&limits, 1).is_ok());
        q.count_job(1);
        let e = q.check_new_job(&limits, 2).unwrap_err();
        assert!(e.message.contains("3 unfinished jobs"), "{}", e.message);
        q.job_finished(2, 2);
        assert_eq!(q.live_jobs(), 2);
        q.take_files(2, 10, 10)
            .expect("the finished job's files no longer count");
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let file = LimitSettings {
            handlers_per_user: Some(2),
            jobs_per_user: Some(5),
            ..LimitSettings::default()
        };
        let flags = LimitSettings {
            jobs_per_user: Some(7),
            ..LimitSettings::default()
        };
        let l = Limits::resolve(&flags, &file).unwrap();
        assert_eq!(l.handlers_per_user, 2, "from the file");
        assert_eq!(l.jobs_per_user, 7, "the flag wins");
        assert_eq!(
            l.connections_per_user,
            Limits::default().connections_per_user
        );
        let e = Limits::resolve(
            &flags,
            &LimitSettings {
                followers_per_user: Some(0),
                ..LimitSettings::default()
            },
        )
        .unwrap_err();
        assert!(e.contains("followers_per_user = 0"), "{e}");
    }

    #[test]
    fn a_refusal_names_the_limit_its_value_and_the_settings() {
        let e = exceeded("connections_per_user", 3, "too many");
        assert!(e.is(ErrorKind::LimitExceeded));
        let m = &e.message;
        assert!(m.starts_with("too many"), "{m}");
        assert!(m.contains("connections_per_user = 3"), "{m}");
        assert!(m.contains("[limits] in ferryd.toml"), "{m}");
        assert!(m.contains("--max-connections-per-user"), "{m}");
        let e = exceeded("handlers_per_user", 64, "x");
        assert!(!e.message.contains("--"), "no flag: {}", e.message);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["data"]["limit"], "handlers_per_user");
    }

    #[test]
    fn handler_quotas() {
        let l = Limits {
            handlers_per_user: 2,
            handler_argv_bytes: 100,
            handler_argv_bytes_per_user: 150,
            ..Limits::default()
        };
        let none = HandlerUsage::default();
        assert!(check_handler(&l, 1, none, 100).is_ok());
        let limit = |r: Result<(), ProtoError>| {
            serde_json::to_value(r.unwrap_err()).unwrap()["data"]["limit"].clone()
        };
        assert_eq!(limit(check_handler(&l, 1, none, 101)), "handler_argv_bytes");
        let one = HandlerUsage {
            count: 1,
            argv_bytes: 100,
        };
        assert!(check_handler(&l, 1, one, 50).is_ok());
        assert_eq!(
            limit(check_handler(&l, 1, one, 51)),
            "handler_argv_bytes_per_user"
        );
        let two = HandlerUsage {
            count: 2,
            argv_bytes: 2,
        };
        assert_eq!(limit(check_handler(&l, 1, two, 1)), "handlers_per_user");
        assert_eq!(argv_bytes(&["/bin/x".into(), "a".into()]), 9);
    }

    #[test]
    fn uid_slots_are_counted_per_uid_and_given_back() {
        let counts = Arc::new(UidCounts::default());
        let a = counts.take(1, 2).unwrap();
        let _b = counts.take(1, 2).unwrap();
        assert!(counts.take(1, 2).is_none());
        assert!(counts.take(2, 2).is_some(), "another uid");
        drop(a);
        assert!(counts.take(1, 2).is_some());
    }

    #[test]
    fn reading_pauses_at_a_quarter_of_the_unsent_limit() {
        let b = Limits::default().connection_bounds();
        assert_eq!(b.close_at, 4 * 1024 * 1024);
        assert_eq!(b.pause_reading_at, 1024 * 1024);
        assert_eq!(b.max_line, MAX_LINE_BYTES);
        assert_eq!(b.stall_timeout, Some(STALL_PATIENCE));
    }
}
