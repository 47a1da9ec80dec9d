//! Where a file's bytes come from: the peer cache or the origin server.
//!
//! Asking peers costs a `HEAD` to the origin (which version does it serve now?) and one to each
//! usable peer, so [`choose`] first rules out, without any request, the files peers never serve
//! and the jobs that may not use them; then, once the origin has answered the probe, whether
//! that version is worth asking peers for. The daemon makes the requests; this module decides.

/// Peer rounds per file (a peer that fails hands over to the next peer or the origin) before
/// only the origin is asked.
pub const MAX_PEER_ROUNDS: u32 = 3;

/// What the daemon knows about a file before any request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceFacts {
    /// The daemon's peer cache is enabled.
    pub cache_enabled: bool,
    /// This fetch's round for the file (1 = first); see [`MAX_PEER_ROUNDS`].
    pub round: u32,
    /// The job lets this host ask peers.
    pub job_allows_peers: bool,
    /// Peers are kept out of this file (their bytes were wrong before).
    pub origin_only: bool,
    /// The owner asked for byte ranges, not the whole content (peers serve whole contents).
    pub ranged: bool,
    /// The URL is `http://` or `https://` (peers cache only those).
    pub http: bool,
    /// At least one known peer is not marked bad (and is not this host).
    pub usable_peers: bool,
    /// The file's size, when an earlier attempt learnt it.
    pub known_size: Option<u64>,
    /// The smallest file the cache shares.
    pub min_file_size: u64,
}

/// What the origin answered to the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probed {
    /// It answered; what it told.
    Answered {
        /// It named the version it serves (an `ETag` or `Last-Modified`).
        validator: bool,
        /// The content's size, if it told.
        size: Option<u64>,
    },
    /// It did not answer in time or failed (the origin fetch that follows reports that).
    Failed,
}

/// Why the origin is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OriginReason {
    /// The daemon has no peer cache.
    CacheDisabled,
    /// Peers were tried [`MAX_PEER_ROUNDS`] times for this file.
    RoundsExhausted,
    /// The job does not allow asking peers.
    JobDisallows,
    /// Peers' bytes for this file were wrong before.
    OriginOnly,
    /// The owner asked for byte ranges.
    Ranged,
    /// Not an HTTP(S) URL.
    NotHttp,
    /// No peer is known, or every known one is marked bad.
    NoUsablePeer,
    /// The content is empty or smaller than the cache shares.
    TooSmall,
    /// The origin did not answer the probe.
    ProbeFailed,
    /// The origin named no version or no size: peers cannot prove they hold the same content.
    Unversioned,
}

impl OriginReason {
    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            OriginReason::CacheDisabled => "cache_disabled",
            OriginReason::RoundsExhausted => "rounds_exhausted",
            OriginReason::JobDisallows => "job_disallows",
            OriginReason::OriginOnly => "origin_only",
            OriginReason::Ranged => "ranged",
            OriginReason::NotHttp => "not_http",
            OriginReason::NoUsablePeer => "no_usable_peer",
            OriginReason::TooSmall => "too_small",
            OriginReason::ProbeFailed => "probe_failed",
            OriginReason::Unversioned => "unversioned",
        }
    }
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Ask the origin which version it serves, then call [`choose`] again with its answer.
    Probe,
    /// Ask the usable peers for the content of this size (the first that holds it is used;
    /// if none does, the origin).
    AskPeers {
        /// The content's size, as the origin told.
        size: u64,
    },
    /// Fetch from the origin.
    Origin(OriginReason),
}

fn too_small(size: u64, min: u64) -> bool {
    size == 0 || size < min
}

/// Peers or origin for a file: with `probed` `None`, whether probing is worth it at all;
/// with the origin's answer, whether to ask peers.
pub fn choose(f: &SourceFacts, probed: Option<Probed>) -> Source {
    use OriginReason as R;
    let ruled_out = if !f.cache_enabled {
        Some(R::CacheDisabled)
    } else if f.round > MAX_PEER_ROUNDS {
        Some(R::RoundsExhausted)
    } else if !f.job_allows_peers {
        Some(R::JobDisallows)
    } else if f.origin_only {
        Some(R::OriginOnly)
    } else if f.ranged {
        Some(R::Ranged)
    } else if !f.http {
        Some(R::NotHttp)
    } else if !f.usable_peers {
        Some(R::NoUsablePeer)
    } else if f.known_size.is_some_and(|s| too_small(s, f.min_file_size)) {
        // A size learnt by an earlier attempt spares the probe for files peers never serve.
        Some(R::TooSmall)
    } else {
        None
    };
    if let Some(why) = ruled_out {
        return Source::Origin(why);
    }
    match probed {
        None => Source::Probe,
        Some(Probed::Failed) => Source::Origin(R::ProbeFailed),
        Some(Probed::Answered {
            validator: true,
            size: Some(size),
        }) => {
            if too_small(size, f.min_file_size) {
                Source::Origin(R::TooSmall)
            } else {
                Source::AskPeers { size }
            }
        }
        Some(Probed::Answered { .. }) => Source::Origin(R::Unversioned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OriginReason as R;
    use proptest::prelude::*;

    const OK: SourceFacts = SourceFacts {
        cache_enabled: true,
        round: 1,
        job_allows_peers: true,
        origin_only: false,
        ranged: false,
        http: true,
        usable_peers: true,
        known_size: None,
        min_file_size: 1024,
    };

    const ANSWER: Probed = Probed::Answered {
        validator: true,
        size: Some(4096),
    };

    #[test]
    fn a_shareable_file_is_probed_then_asked_of_peers() {
        assert_eq!(choose(&OK, None), Source::Probe);
        assert_eq!(choose(&OK, Some(ANSWER)), Source::AskPeers { size: 4096 });
    }

    #[test]
    fn each_fact_that_rules_peers_out_names_its_reason() {
        let cases = [
            (
                SourceFacts {
                    cache_enabled: false,
                    ..OK
                },
                R::CacheDisabled,
            ),
            (
                SourceFacts {
                    round: MAX_PEER_ROUNDS + 1,
                    ..OK
                },
                R::RoundsExhausted,
            ),
            (
                SourceFacts {
                    job_allows_peers: false,
                    ..OK
                },
                R::JobDisallows,
            ),
            (
                SourceFacts {
                    origin_only: true,
                    ..OK
                },
                R::OriginOnly,
            ),
            (SourceFacts { ranged: true, ..OK }, R::Ranged),
            (SourceFacts { http: false, ..OK }, R::NotHttp),
            (
                SourceFacts {
                    usable_peers: false,
                    ..OK
                },
                R::NoUsablePeer,
            ),
            (
                SourceFacts {
                    known_size: Some(1023),
                    ..OK
                },
                R::TooSmall,
            ),
            (
                SourceFacts {
                    known_size: Some(0),
                    min_file_size: 0,
                    ..OK
                },
                R::TooSmall,
            ),
        ];
        for (f, why) in cases {
            assert_eq!(choose(&f, None), Source::Origin(why), "{f:?}");
            assert_eq!(choose(&f, Some(ANSWER)), Source::Origin(why), "{f:?}");
        }
    }

    #[test]
    fn the_last_round_may_still_ask_peers() {
        let f = SourceFacts {
            round: MAX_PEER_ROUNDS,
            ..OK
        };
        assert_eq!(choose(&f, None), Source::Probe);
    }

    #[test]
    fn the_probe_answer_decides_after_the_facts() {
        assert_eq!(
            choose(&OK, Some(Probed::Failed)),
            Source::Origin(R::ProbeFailed)
        );
        let no_validator = Probed::Answered {
            validator: false,
            size: Some(4096),
        };
        let no_size = Probed::Answered {
            validator: true,
            size: None,
        };
        for p in [no_validator, no_size] {
            assert_eq!(choose(&OK, Some(p)), Source::Origin(R::Unversioned));
        }
        for size in [0, 1023] {
            let small = Probed::Answered {
                validator: true,
                size: Some(size),
            };
            assert_eq!(choose(&OK, Some(small)), Source::Origin(R::TooSmall));
        }
        assert_eq!(
            choose(
                &OK,
                Some(Probed::Answered {
                    validator: true,
                    size: Some(1024)
                })
            ),
            Source::AskPeers { size: 1024 }
        );
    }

    #[test]
    fn reason_names_are_distinct() {
        let all = [
            R::CacheDisabled,
            R::RoundsExhausted,
            R::JobDisallows,
            R::OriginOnly,
            R::Ranged,
            R::NotHttp,
            R::NoUsablePeer,
            R::TooSmall,
            R::ProbeFailed,
            R::Unversioned,
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), all.len());
    }

    proptest! {
        /// Peers are asked only when every fact allows them and the origin named a version and
        /// a shareable size; the probe is asked for only when nothing rules peers out.
        #[test]
        fn peers_only_when_everything_allows(
            flags in prop::array::uniform7(any::<bool>()),
            round in 0u32..6,
            known_size in prop::option::of(0u64..3000),
            min_file_size in 0u64..2000,
            probed in prop::option::of(prop_oneof![
                Just(Probed::Failed),
                (any::<bool>(), prop::option::of(0u64..3000))
                    .prop_map(|(validator, size)| Probed::Answered { validator, size }),
            ]),
        ) {
            let f = SourceFacts {
                cache_enabled: flags[0],
                round,
                job_allows_peers: flags[1],
                origin_only: flags[2],
                ranged: flags[3],
                http: flags[4],
                usable_peers: flags[5],
                known_size: if flags[6] { known_size } else { None },
                min_file_size,
            };
            let allowed = f.cache_enabled
                && f.round <= MAX_PEER_ROUNDS
                && f.job_allows_peers
                && !f.origin_only
                && !f.ranged
                && f.http
                && f.usable_peers
                && f.known_size.is_none_or(|s| s > 0 && s >= min_file_size);
            match choose(&f, probed) {
                Source::Probe => prop_assert!(allowed && probed.is_none()),
                Source::AskPeers { size } => {
                    prop_assert!(allowed);
                    prop_assert_eq!(probed, Some(Probed::Answered { validator: true, size: Some(size) }));
                    prop_assert!(size > 0 && size >= min_file_size);
                }
                Source::Origin(_) => prop_assert!(!allowed || probed.is_some()),
            }
        }
    }
}
