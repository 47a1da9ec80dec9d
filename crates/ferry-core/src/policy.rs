//! Whether the host's network and power let a job run now (BITS cost policy, plus power).
//!
//! The daemon reads NetworkManager, UPower, power-profiles-daemon and logind and keeps what it
//! saw in [`Conditions`]; [`decide`] turns that and a job's settings into run or wait, with the
//! `waiting.reason` to show. Anything unknown or absent counts as unrestricted: a host without
//! those services, or one sending values this code does not know, behaves as if there were no
//! policy at all, so a job never waits by mistake.

use ferry_proto::{CostPolicy, PowerPolicy, Priority};

/// NetworkManager's `Metered` (`NMMetered`).
pub mod metered {
    /// Unknown.
    pub const UNKNOWN: u32 = 0;
    /// Metered (set by the profile).
    pub const YES: u32 = 1;
    /// Not metered (set by the profile).
    pub const NO: u32 = 2;
    /// NetworkManager guesses metered (e.g. a mobile modem, an Android hotspot).
    pub const GUESS_YES: u32 = 3;
    /// NetworkManager guesses not metered.
    pub const GUESS_NO: u32 = 4;
}

/// What NetworkManager reports, as raw numbers (unknown values are kept and ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NetworkManager {
    /// `Metered` (see [`metered`]).
    pub metered: u32,
    /// `State` (`NMState`: 10 asleep, 20 disconnected, 30 disconnecting, 40 connecting,
    /// 50 connected-local, 60 connected-site, 70 connected-global; 0 unknown).
    pub state: u32,
    /// `Connectivity` (`NMConnectivityState`: 1 none, 2 portal, 3 limited, 4 full; 0 unknown).
    pub connectivity: u32,
}

/// Everything the daemon knows about the host; the default is "nothing known", which restricts
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Conditions {
    /// NetworkManager's view, while it is on the bus.
    pub network: Option<NetworkManager>,
    /// The default route goes out through an interface the configuration lists as metered.
    pub metered_interface: bool,
    /// UPower's `OnBattery`, while UPower is on the bus.
    pub on_battery: Option<bool>,
    /// Whether the active power profile is `power-saver`, while power-profiles-daemon is on the bus.
    pub power_saver: Option<bool>,
    /// The host is about to suspend (logind `PrepareForSleep(true)`) and has not resumed yet.
    pub sleeping: bool,
}

/// How the network can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// Up, or nothing says otherwise.
    Up,
    /// NetworkManager has no connection with a default route, or says there is no connectivity.
    Offline,
    /// NetworkManager found a captive portal (a hotspot's login page answers every request).
    CaptivePortal,
}

impl Conditions {
    /// The network's BITS cost bit: metered (NetworkManager says yes or guess-yes, or the default
    /// route uses a listed interface) is `USAGE_BASED`; anything else, unknown included, is
    /// `UNRESTRICTED`. Roaming is not detected, so `ROAMING` is never reported.
    pub fn cost(&self) -> u32 {
        let nm_metered = self
            .network
            .is_some_and(|n| matches!(n.metered, metered::YES | metered::GUESS_YES));
        if nm_metered || self.metered_interface {
            CostPolicy::USAGE_BASED
        } else {
            CostPolicy::UNRESTRICTED
        }
    }

    /// Whether the network is up. Only the states and connectivity NetworkManager documents as
    /// "no usable network" count as offline; unknown values (and `connected-site`, which a failed
    /// connectivity check also produces) do not.
    pub fn link(&self) -> Link {
        let Some(n) = self.network else {
            return Link::Up;
        };
        match (n.state, n.connectivity) {
            (_, 2) => Link::CaptivePortal,
            (_, 1) | (10..=50, _) => Link::Offline,
            _ => Link::Up,
        }
    }
}

/// Why a job waits instead of running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wait {
    /// The host is suspending; transfers are checkpointed and resume after wake-up.
    SystemSleep,
    /// No network.
    Offline,
    /// Behind a captive portal.
    CaptivePortal,
    /// The network is metered and the job's cost policy excludes it.
    MeteredNetwork,
    /// The connection is roaming and the job's cost policy excludes it.
    Roaming,
    /// On battery and the job opted in to waiting for mains power.
    OnBattery,
    /// In power-saver mode and the job opted in to waiting for it to end.
    PowerSaver,
}

impl Wait {
    /// The `waiting.reason` shown to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            Wait::SystemSleep => "system_sleep",
            Wait::Offline => "offline",
            Wait::CaptivePortal => "captive_portal",
            Wait::MeteredNetwork => "metered_network",
            Wait::Roaming => "roaming",
            Wait::OnBattery => "on_battery",
            Wait::PowerSaver => "power_saver",
        }
    }
}

impl Wait {
    /// Every reason, for recognising one by its wire name.
    pub const ALL: [Wait; 7] = [
        Wait::SystemSleep,
        Wait::Offline,
        Wait::CaptivePortal,
        Wait::MeteredNetwork,
        Wait::Roaming,
        Wait::OnBattery,
        Wait::PowerSaver,
    ];

    /// The reason with this wire name, if it is one of the policy's.
    pub fn parse(reason: &str) -> Option<Wait> {
        Wait::ALL.into_iter().find(|w| w.as_str() == reason)
    }
}

/// How long the conditions must stay unchanged before a job they held starts again. Holding
/// takes effect at once (no metered byte is spent waiting); releasing waits this long, so a
/// network that flaps does not start and stop transfers on every change.
pub const SETTLE_MS: u64 = 500;

/// When a job the policy no longer holds may start: at once if it was not held by the policy
/// (`held_for` is its current waiting reason), else once the conditions, last changed at
/// `changed_at`, have settled. `None`: now.
pub fn release_at(now: u64, changed_at: u64, held_for: Option<&str>) -> Option<u64> {
    let settled = changed_at.saturating_add(SETTLE_MS);
    (held_for.and_then(Wait::parse).is_some() && now < settled).then_some(settled)
}

/// The administrator's defaults for jobs that set no policy of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Defaults {
    /// Cost policy of background (high, normal, low) jobs.
    pub background_cost: CostPolicy,
    /// Cost policy of foreground jobs.
    pub foreground_cost: CostPolicy,
    /// Power policy of every job.
    pub power: PowerPolicy,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            background_cost: CostPolicy::NOT_METERED,
            foreground_cost: CostPolicy::ANY,
            power: PowerPolicy::Any,
        }
    }
}

/// A job's settings as far as the policy is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobPolicy {
    /// Its priority.
    pub priority: Priority,
    /// Its own cost policy, if it set one.
    pub cost: Option<CostPolicy>,
    /// Its own power policy, if it set one.
    pub power: Option<PowerPolicy>,
}

impl JobPolicy {
    /// The cost policy that applies: the job's own, else the default for its priority.
    pub fn cost_policy(&self, d: &Defaults) -> CostPolicy {
        self.cost
            .unwrap_or(if self.priority == Priority::Foreground {
                d.foreground_cost
            } else {
                d.background_cost
            })
    }

    /// The power policy that applies: the job's own, else the default.
    pub fn power_policy(&self, d: &Defaults) -> PowerPolicy {
        self.power.unwrap_or(d.power)
    }
}

/// Whether a job may run now, and if not why (the first reason that holds, most fundamental
/// first).
///
/// - Everything waits while the host suspends.
/// - Background jobs wait while offline or behind a captive portal (a foreground job is tried
///   anyway: someone waits for it and gets the error at once).
/// - A job waits while the network's cost bit is outside its cost policy.
/// - A job that opted in waits on battery (`not_on_battery`) or in power-saver mode
///   (`not_on_battery`, `not_power_saver`). Unknown power state never blocks.
pub fn decide(c: &Conditions, job: &JobPolicy, d: &Defaults) -> Option<Wait> {
    if c.sleeping {
        return Some(Wait::SystemSleep);
    }
    if job.priority != Priority::Foreground {
        match c.link() {
            Link::Offline => return Some(Wait::Offline),
            Link::CaptivePortal => return Some(Wait::CaptivePortal),
            Link::Up => {}
        }
    }
    let cost = c.cost();
    if !job.cost_policy(d).allows(cost) {
        return Some(if cost == CostPolicy::ROAMING {
            Wait::Roaming
        } else {
            Wait::MeteredNetwork
        });
    }
    let power = job.power_policy(d);
    if power == PowerPolicy::NotOnBattery && c.on_battery == Some(true) {
        return Some(Wait::OnBattery);
    }
    if power != PowerPolicy::Any && c.power_saver == Some(true) {
        return Some(Wait::PowerSaver);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: Defaults = Defaults {
        background_cost: CostPolicy::NOT_METERED,
        foreground_cost: CostPolicy::ANY,
        power: PowerPolicy::Any,
    };

    fn job(priority: Priority) -> JobPolicy {
        JobPolicy {
            priority,
            cost: None,
            power: None,
        }
    }

    fn nm(metered: u32, state: u32, connectivity: u32) -> Conditions {
        Conditions {
            network: Some(NetworkManager {
                metered,
                state,
                connectivity,
            }),
            ..Conditions::default()
        }
    }

    #[test]
    fn nothing_known_restricts_nothing() {
        for p in [Priority::Foreground, Priority::High, Priority::Low] {
            let strict = JobPolicy {
                priority: p,
                cost: Some(CostPolicy(0x8000_0021)),
                power: Some(PowerPolicy::NotOnBattery),
            };
            assert_eq!(decide(&Conditions::default(), &strict, &D), None);
        }
    }

    #[test]
    fn metered_blocks_background_by_default_and_not_foreground() {
        for m in [metered::YES, metered::GUESS_YES] {
            let c = nm(m, 70, 4);
            assert_eq!(
                decide(&c, &job(Priority::Normal), &D),
                Some(Wait::MeteredNetwork)
            );
            assert_eq!(decide(&c, &job(Priority::Foreground), &D), None);
            let any = JobPolicy {
                cost: Some(CostPolicy::ANY),
                ..job(Priority::Low)
            };
            assert_eq!(decide(&c, &any, &D), None);
            let not_roaming = JobPolicy {
                cost: Some(CostPolicy::NOT_ROAMING),
                ..job(Priority::Low)
            };
            assert_eq!(decide(&c, &not_roaming, &D), None);
        }
        for m in [
            metered::UNKNOWN,
            metered::NO,
            metered::GUESS_NO,
            5,
            u32::MAX,
        ] {
            assert_eq!(decide(&nm(m, 70, 4), &job(Priority::Normal), &D), None);
        }
    }

    #[test]
    fn a_foreground_job_that_asks_waits_too() {
        let fg = JobPolicy {
            cost: Some(CostPolicy::NOT_METERED),
            ..job(Priority::Foreground)
        };
        assert_eq!(
            decide(&nm(metered::YES, 70, 4), &fg, &D),
            Some(Wait::MeteredNetwork)
        );
    }

    #[test]
    fn admin_defaults_apply_to_jobs_without_their_own() {
        let lax = Defaults {
            background_cost: CostPolicy::ANY,
            ..D
        };
        assert_eq!(
            decide(&nm(metered::YES, 70, 4), &job(Priority::Normal), &lax),
            None
        );
        let strict_fg = Defaults {
            foreground_cost: CostPolicy::NOT_METERED,
            ..D
        };
        assert_eq!(
            decide(
                &nm(metered::YES, 70, 4),
                &job(Priority::Foreground),
                &strict_fg
            ),
            Some(Wait::MeteredNetwork)
        );
    }

    #[test]
    fn a_listed_metered_interface_is_metered() {
        let c = Conditions {
            metered_interface: true,
            ..Conditions::default()
        };
        assert_eq!(
            decide(&c, &job(Priority::High), &D),
            Some(Wait::MeteredNetwork)
        );
    }

    #[test]
    fn offline_and_portal_hold_background_jobs_only() {
        let bg = job(Priority::Normal);
        let any = JobPolicy {
            cost: Some(CostPolicy::ANY),
            ..bg
        };
        for (state, conn, want) in [
            (20, 0, Some(Wait::Offline)),
            (40, 1, Some(Wait::Offline)),
            (70, 1, Some(Wait::Offline)),
            (70, 2, Some(Wait::CaptivePortal)),
            (60, 2, Some(Wait::CaptivePortal)),
            (60, 3, None),
            (70, 3, None),
            (0, 0, None),
            (999, 999, None),
        ] {
            let c = nm(metered::NO, state, conn);
            assert_eq!(decide(&c, &any, &D), want, "state {state} conn {conn}");
            assert_eq!(decide(&c, &job(Priority::Foreground), &D), None);
        }
    }

    #[test]
    fn power_waits_only_for_jobs_that_opt_in() {
        let battery = Conditions {
            on_battery: Some(true),
            ..Conditions::default()
        };
        let saver = Conditions {
            power_saver: Some(true),
            ..Conditions::default()
        };
        let with = |p| JobPolicy {
            power: Some(p),
            ..job(Priority::Normal)
        };
        assert_eq!(decide(&battery, &job(Priority::Normal), &D), None);
        assert_eq!(
            decide(&battery, &with(PowerPolicy::NotOnBattery), &D),
            Some(Wait::OnBattery)
        );
        assert_eq!(
            decide(&battery, &with(PowerPolicy::NotPowerSaver), &D),
            None
        );
        assert_eq!(
            decide(&saver, &with(PowerPolicy::NotPowerSaver), &D),
            Some(Wait::PowerSaver)
        );
        assert_eq!(
            decide(&saver, &with(PowerPolicy::NotOnBattery), &D),
            Some(Wait::PowerSaver)
        );
        let opted_in_by_admin = Defaults {
            power: PowerPolicy::NotOnBattery,
            ..D
        };
        assert_eq!(
            decide(&battery, &job(Priority::Normal), &opted_in_by_admin),
            Some(Wait::OnBattery)
        );
    }

    #[test]
    fn sleep_holds_everything() {
        let c = Conditions {
            sleeping: true,
            ..Conditions::default()
        };
        assert_eq!(
            decide(&c, &job(Priority::Foreground), &D),
            Some(Wait::SystemSleep)
        );
    }

    #[test]
    fn a_held_job_starts_again_once_the_conditions_settle() {
        assert_eq!(release_at(1_000, 900, Some("metered_network")), Some(1_400));
        assert_eq!(release_at(1_400, 900, Some("metered_network")), None);
        assert_eq!(release_at(1_000, 900, Some("slots_busy")), None);
        assert_eq!(release_at(1_000, 900, None), None);
        for w in Wait::ALL {
            assert_eq!(Wait::parse(w.as_str()), Some(w));
        }
    }

    proptest! {
        /// Without any service on the bus nothing ever waits but for sleep, and any NM values
        /// other than the documented blocking ones never make a job wait.
        #[test]
        fn unknown_values_never_block(metered in 5u32.., state in 71u32.., conn in 5u32..) {
            let c = nm(metered, state, conn);
            for p in [Priority::Foreground, Priority::High, Priority::Normal, Priority::Low] {
                prop_assert_eq!(decide(&c, &job(p), &D), None);
            }
        }
    }
}
