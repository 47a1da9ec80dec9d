//! Connection slots per origin host, across all jobs: however many jobs and files want one
//! host, at most `cap` transfers talk to it at once (ferryd.toml `[daemon]
//! connections_per_host`). A transfer takes a slot before it connects and gives it back when
//! it ends; one that finds none free waits, and the job shows why.
//!
//! The accounting is here; ferryd holds it under a lock and wakes the waiters.

use std::collections::BTreeMap;

/// The `waiting.reason` of a job whose transfer waits for a slot of its host.
pub const WAIT_REASON: &str = "host_busy";

/// What [`HostSlots::take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// The slot is the caller's until it calls [`HostSlots::give`].
    Granted,
    /// Every slot of the host is in use (`in_use` of them): wait until one is given back.
    Wait {
        /// Slots of the host in use.
        in_use: usize,
    },
}

/// Slots in use per host (`host:port`), never more than the cap for any host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSlots {
    cap: usize,
    in_use: BTreeMap<String, usize>,
}

impl HostSlots {
    /// Slots for `cap` transfers per host (at least 1: a cap of 0 would stall every transfer).
    pub fn new(cap: usize) -> HostSlots {
        HostSlots {
            cap: cap.max(1),
            in_use: BTreeMap::new(),
        }
    }

    /// The cap per host.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Slots of `host` in use now.
    pub fn in_use(&self, host: &str) -> usize {
        self.in_use.get(host).copied().unwrap_or(0)
    }

    /// Takes a slot of `host` if one is free.
    pub fn take(&mut self, host: &str) -> Take {
        let n = self.in_use(host);
        if n >= self.cap {
            return Take::Wait { in_use: n };
        }
        self.in_use.insert(host.to_owned(), n + 1);
        Take::Granted
    }

    /// Gives back a slot of `host` taken earlier; returns whether one became free for a waiter.
    /// Giving back a slot that was not taken changes nothing.
    pub fn give(&mut self, host: &str) -> bool {
        match self.in_use.get_mut(host) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                // The last one: forget the host, so the map holds only hosts in use.
                self.in_use.remove(host);
                true
            }
            None => false,
        }
    }

    /// Hosts with at least one slot in use.
    pub fn hosts_in_use(&self) -> usize {
        self.in_use.len()
    }
}

/// The key a URL's slots are counted under: its host, lowercased, and port (the scheme's
/// default when the URL names none), so `http://Example.com/` and `http://example.com:80/`
/// share slots. `None` without a host or port (`file://`: no connection to count).
pub fn host_key(host: Option<&str>, port: Option<u16>) -> Option<String> {
    let host = host.filter(|h| !h.is_empty())?;
    Some(format!("{}:{}", host.to_ascii_lowercase(), port?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_host_gets_at_most_cap_slots_and_others_are_separate() {
        let mut s = HostSlots::new(2);
        assert_eq!(s.take("a:80"), Take::Granted);
        assert_eq!(s.take("a:80"), Take::Granted);
        assert_eq!(s.take("a:80"), Take::Wait { in_use: 2 });
        assert_eq!(
            s.take("b:80"),
            Take::Granted,
            "another host has slots of its own"
        );
        assert!(s.give("a:80"));
        assert_eq!(s.take("a:80"), Take::Granted);
        assert!(!s.give("never-taken:1"));
        assert_eq!(s.in_use("a:80"), 2);
    }

    #[test]
    fn a_zero_cap_is_one() {
        let mut s = HostSlots::new(0);
        assert_eq!(s.cap(), 1);
        assert_eq!(s.take("h:1"), Take::Granted);
        assert_eq!(s.take("h:1"), Take::Wait { in_use: 1 });
    }

    #[test]
    fn host_keys_fold_case_and_need_a_port() {
        assert_eq!(
            host_key(Some("Example.COM"), Some(80)).as_deref(),
            Some("example.com:80")
        );
        assert_eq!(host_key(Some("h"), None), None);
        assert_eq!(host_key(None, Some(80)), None);
        assert_eq!(host_key(Some(""), Some(80)), None);
    }

    proptest! {
        /// Whatever the order of takes and gives, no host is ever over the cap, the counts are
        /// exactly the slots granted and not given back, and a freed host is forgotten.
        #[test]
        fn never_over_the_cap(cap in 1usize..5, ops in proptest::collection::vec((0u8..3, any::<bool>()), 0..200)) {
            let mut s = HostSlots::new(cap);
            let mut held = [0usize; 3];
            for (h, take) in ops {
                let host = format!("h{h}:80");
                let i = usize::from(h);
                if take {
                    match s.take(&host) {
                        Take::Granted => held[i] += 1,
                        Take::Wait { in_use } => {
                            prop_assert_eq!(in_use, cap);
                            prop_assert_eq!(held[i], cap);
                        }
                    }
                } else {
                    let freed = s.give(&host);
                    prop_assert_eq!(freed, held[i] > 0);
                    held[i] = held[i].saturating_sub(1);
                }
                prop_assert!(s.in_use(&host) <= cap);
                prop_assert_eq!(s.in_use(&host), held[i]);
            }
            prop_assert_eq!(s.hosts_in_use(), held.iter().filter(|n| **n > 0).count());
        }
    }
}
