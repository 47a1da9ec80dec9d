//! What the host's network and power look like, read from the D-Bus system bus: NetworkManager
//! (`Metered`, `State`, `Connectivity`), UPower (`OnBattery`), power-profiles-daemon
//! (`ActiveProfile`), logind (`PrepareForSleep`, a delay inhibitor) and, for hosts that use
//! systemd-networkd, the default route's interface against `[network] metered_interfaces`.
//!
//! The result is published on a watch channel (`Daemon::conditions`); the scheduler asks
//! `ferry_core::policy` what it means for each job. Everything is driven by signals (`PropertiesChanged`, `NameOwnerChanged`,
//! `PrepareForSleep`), never by polling. A service that is absent, leaves the bus or sends values
//! of the wrong type counts as "nothing known", which restricts nothing; so does a host without a
//! system bus, which is retried with a backoff up to a minute.
//!
//! Signals are read by one task that never waits on the bus (a flood cannot make it stall its
//! own method calls); the calls (`GetAll`, `GetNameOwner`, `Inhibit`) are made by a second task
//! it wakes. A `PropertiesChanged` is believed only from the current owner of the service's
//! well-known name: any client of the system bus may emit signals with any path.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferry_core::policy::{Conditions, Defaults, NetworkManager};
use ferry_proto::{CostPolicy, PowerPolicy};
use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use zbus::message::Type as MsgType;
use zbus::{Connection, MatchRule, Message, MessageStream, OwnedVariant};

use crate::clock::Mono;

/// `[network]` of ferryd.toml as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    system_bus: Option<String>,
    #[serde(default)]
    metered_interfaces: Vec<String>,
    background_cost_policy: Option<CostPolicy>,
    foreground_cost_policy: Option<CostPolicy>,
}

/// `[power]` of ferryd.toml as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerSection {
    power_policy: Option<PowerPolicy>,
}

/// What the daemon sees, and since when (monotonic ms; the scheduler lets the conditions settle
/// before it restarts a job they held).
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// What the network and power look like.
    pub now: Conditions,
    /// When they last changed.
    pub since: u64,
}

/// The network and power policy settings the daemon uses.
#[derive(Debug, Clone, Default)]
pub struct PolicySettings {
    /// The bus address from the file (`none`: no bus); the command line wins over it.
    pub system_bus: Option<String>,
    /// Interfaces whose traffic is metered (for hosts without NetworkManager).
    pub metered_interfaces: Vec<String>,
    /// Policies of jobs that set none.
    pub defaults: Defaults,
}

impl PolicySettings {
    /// Settings from the file's sections over the built-in defaults.
    pub fn from_sections(network: NetworkSection, power: PowerSection) -> PolicySettings {
        let base = Defaults::default();
        PolicySettings {
            system_bus: network.system_bus,
            metered_interfaces: network.metered_interfaces,
            defaults: Defaults {
                background_cost: network
                    .background_cost_policy
                    .unwrap_or(base.background_cost),
                foreground_cost: network
                    .foreground_cost_policy
                    .unwrap_or(base.foreground_cost),
                power: power.power_policy.unwrap_or(base.power),
            },
        }
    }
}

/// A service the daemon watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    NetworkManager,
    UPower,
    Profiles,
    Networkd,
    Logind,
}

struct Source {
    kind: Kind,
    name: &'static str,
    path: &'static str,
    iface: &'static str,
}

const SOURCES: [Source; 5] = [
    Source {
        kind: Kind::NetworkManager,
        name: "org.freedesktop.NetworkManager",
        path: "/org/freedesktop/NetworkManager",
        iface: "org.freedesktop.NetworkManager",
    },
    Source {
        kind: Kind::UPower,
        name: "org.freedesktop.UPower",
        path: "/org/freedesktop/UPower",
        iface: "org.freedesktop.UPower",
    },
    Source {
        kind: Kind::Profiles,
        name: "net.hadess.PowerProfiles",
        path: "/net/hadess/PowerProfiles",
        iface: "net.hadess.PowerProfiles",
    },
    Source {
        kind: Kind::Networkd,
        name: "org.freedesktop.network1",
        path: "/org/freedesktop/network1",
        iface: "org.freedesktop.network1.Manager",
    },
    Source {
        kind: Kind::Logind,
        name: "org.freedesktop.login1",
        path: "/org/freedesktop/login1",
        iface: "org.freedesktop.login1.Manager",
    },
];

const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// How long a suspend may wait for transfers to checkpoint (logind's default
/// `InhibitDelayMaxSec` is 5 s).
const SLEEP_CHECKPOINT: Duration = Duration::from_secs(4);

/// What the signal reader and the caller share.
#[derive(Default)]
struct State {
    /// Unique name of each service's current owner.
    owners: HashMap<Kind, String>,
    nm: Option<NetworkManager>,
    on_battery: Option<bool>,
    power_saver: Option<bool>,
    metered_interface: bool,
    sleeping: bool,
    /// Services whose properties must be read again.
    pending: HashSet<Kind>,
    /// `PrepareForSleep` arguments not handled yet, in order.
    sleep_events: VecDeque<bool>,
}

impl State {
    fn conditions(&self) -> Conditions {
        Conditions {
            network: self.nm,
            metered_interface: self.metered_interface,
            on_battery: self.on_battery,
            power_saver: self.power_saver,
            sleeping: self.sleeping,
        }
    }

    /// Forgets what a service said (it left the bus, or the bus went away).
    fn forget(&mut self, kind: Kind) {
        match kind {
            Kind::NetworkManager => self.nm = None,
            Kind::UPower => self.on_battery = None,
            Kind::Profiles => self.power_saver = None,
            // A logind that leaves cannot wake us up: do not stay asleep.
            Kind::Logind => self.sleeping = false,
            Kind::Networkd => {}
        }
    }

    /// Applies changed properties of a service (unknown names and wrong types are ignored,
    /// which leaves a value unknown rather than restricting anything).
    fn apply(&mut self, kind: Kind, props: &HashMap<String, OwnedVariant>) {
        let num = |k: &str| props.get(k).map(|v| u32::try_from(&**v).unwrap_or(0));
        match kind {
            Kind::NetworkManager => {
                let mut nm = self.nm.unwrap_or_default();
                if let Some(m) = num("Metered") {
                    nm.metered = m;
                }
                if let Some(s) = num("State") {
                    nm.state = s;
                }
                if let Some(c) = num("Connectivity") {
                    nm.connectivity = c;
                }
                self.nm = Some(nm);
            }
            Kind::UPower => {
                if let Some(v) = props.get("OnBattery") {
                    self.on_battery = bool::try_from(&**v).ok();
                }
            }
            Kind::Profiles => {
                if let Some(v) = props.get("ActiveProfile") {
                    self.power_saver = String::try_from(&**v).ok().map(|p| p == "power-saver");
                }
            }
            Kind::Networkd | Kind::Logind => {}
        }
    }
}

/// Stops every running transfer before the host sleeps; returns what resolves when each has
/// checkpointed and ended.
pub type StopForSleep = Box<dyn Fn() -> Vec<watch::Receiver<bool>> + Send + Sync>;

/// What the conditions watcher is given, and nothing else of the daemon: where it publishes,
/// whom it wakes, what it reads of the settings, and how it stops transfers before sleep.
pub struct Watcher {
    /// The daemon's clock (when the conditions changed).
    pub mono: Mono,
    /// Where the conditions are published (the scheduler reads them).
    pub seen: Arc<watch::Sender<Seen>>,
    /// The scheduler's wake-up, notified when they change.
    pub wake: Arc<Notify>,
    /// `--system-bus` or `[network] system_bus`: the bus address, `none`, or the system bus.
    pub system_bus: Option<String>,
    /// `[network] metered_interfaces`.
    pub metered_interfaces: Vec<String>,
    /// Fires at shutdown.
    pub shutdown: CancellationToken,
    /// Stops the transfers before the host sleeps.
    pub stop_for_sleep: StopForSleep,
}

struct Watch {
    handles: Watcher,
    state: Mutex<State>,
    /// Wakes the caller task.
    work: Notify,
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a few assignments; a poisoned state is still a valid one.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands the current conditions to the scheduler, waking it if they changed.
    fn publish(&self) {
        let c = self.lock().conditions();
        let at = self.handles.mono.now();
        let changed = self.handles.seen.send_if_modified(|old| {
            let changed = old.now != c;
            if changed {
                *old = Seen { now: c, since: at };
            }
            changed
        });
        if changed {
            tracing::info!(conditions = ?c, "network or power conditions changed");
            self.handles.wake.notify_one();
        }
    }

    fn refresh_routes(&self) {
        let metered = route_is_metered(&self.handles.metered_interfaces);
        self.lock().metered_interface = metered;
    }

    /// Handles one signal without waiting on the bus.
    fn on_signal(&self, msg: &Message) {
        let header = msg.header();
        let member = header.member().map(|m| m.as_str()).unwrap_or_default();
        let sender = header.sender().map(|s| s.as_str().to_owned());
        let mut st = self.lock();
        match member {
            "NameOwnerChanged" => {
                let Ok((name, _old, new)) = msg.body().deserialize::<(String, String, String)>()
                else {
                    return;
                };
                let Some(src) = SOURCES.iter().find(|s| s.name == name) else {
                    return;
                };
                if new.is_empty() {
                    st.owners.remove(&src.kind);
                    st.forget(src.kind);
                    // The caller drops a departed logind's inhibitor.
                    self.work.notify_one();
                } else {
                    st.owners.insert(src.kind, new);
                    st.pending.insert(src.kind);
                    self.work.notify_one();
                }
            }
            "PropertiesChanged" => {
                let path = header.path().map(|p| p.as_str()).unwrap_or_default();
                let Some(src) = SOURCES.iter().find(|s| s.path == path) else {
                    return;
                };
                if sender.as_ref() != st.owners.get(&src.kind) {
                    return;
                }
                type Changed = (String, HashMap<String, OwnedVariant>, Vec<String>);
                let Ok((iface, changed, invalidated)) = msg.body().deserialize::<Changed>() else {
                    return;
                };
                if iface != src.iface {
                    return;
                }
                st.apply(src.kind, &changed);
                if src.kind == Kind::Networkd || !invalidated.is_empty() {
                    st.pending.insert(src.kind);
                    self.work.notify_one();
                }
            }
            "PrepareForSleep" => {
                if sender.as_ref() != st.owners.get(&Kind::Logind) {
                    return;
                }
                if let Ok(start) = msg.body().deserialize::<bool>() {
                    st.sleep_events.push_back(start);
                    self.work.notify_one();
                }
            }
            _ => return,
        }
        drop(st);
        self.publish();
    }
}

impl Watcher {
    /// Runs until shutdown; never ends earlier (a host without a bus simply has no conditions).
    pub async fn run(self) {
        run(self).await
    }
}

async fn run(handles: Watcher) {
    let address = handles.system_bus.clone();
    let shutdown = handles.shutdown.clone();
    let watch = Arc::new(Watch {
        handles,
        state: Mutex::new(State::default()),
        work: Notify::new(),
    });
    watch.refresh_routes();
    watch.publish();
    if address.as_deref() == Some("none") {
        tracing::info!("network and power policy: no system bus (--system-bus none)");
        shutdown.cancelled().await;
        return;
    }
    let mut backoff = Duration::from_secs(1);
    let mut told = false;
    loop {
        let ended = tokio::select! {
            r = session(&watch, address.as_deref()) => r,
            _ = shutdown.cancelled() => return,
        };
        match ended {
            Ok(()) => {
                tracing::warn!(
                    "the system bus connection ended: network and power policy are off until it is back"
                );
                backoff = Duration::from_secs(1);
            }
            Err(e) if !told => {
                tracing::info!(error = %e, "no system bus: network and power policy are off \
                    (jobs run as if the network were unrestricted) until one appears");
                told = true;
            }
            Err(e) => tracing::debug!(error = %e, "the system bus is still unavailable"),
        }
        {
            let mut st = watch.lock();
            let metered = st.metered_interface;
            *st = State {
                metered_interface: metered,
                ..State::default()
            };
        }
        watch.refresh_routes();
        watch.publish();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

fn rule(r: zbus::match_rule::Builder<'static>) -> zbus::Result<MatchRule<'static>> {
    r.build()
}

/// One connection's life: subscribes, reads the current values, then follows the signals.
/// Returns when the connection ends.
async fn session(w: &Arc<Watch>, address: Option<&str>) -> zbus::Result<()> {
    let builder = match address {
        Some(a) => zbus::connection::Builder::address(a),
        None => zbus::connection::Builder::system(),
    };
    let conn = builder.build().await?;
    // Subscribe first, then read: a change between the two is not lost.
    let mut streams = Vec::new();
    let queue = std::num::NonZeroUsize::new(256);
    for s in &SOURCES {
        let owner = rule(
            MatchRule::builder()
                .msg_type(MsgType::Signal)
                .sender("org.freedesktop.DBus")
                .interface("org.freedesktop.DBus")
                .member("NameOwnerChanged")
                .arg(0, s.name),
        )?;
        streams.push(MessageStream::for_match_rule(owner, &conn, queue).await?);
        let changes = if s.kind == Kind::Logind {
            rule(
                MatchRule::builder()
                    .msg_type(MsgType::Signal)
                    .interface(s.iface)
                    .member("PrepareForSleep")
                    .path(s.path),
            )?
        } else {
            rule(
                MatchRule::builder()
                    .msg_type(MsgType::Signal)
                    .interface(PROPERTIES)
                    .member("PropertiesChanged")
                    .path(s.path)
                    .arg(0, s.iface),
            )?
        };
        streams.push(MessageStream::for_match_rule(changes, &conn, queue).await?);
    }
    let caller = tokio::spawn(calls(w.clone(), conn.clone()));
    let mut signals = futures_util::stream::select_all(streams);
    while let Some(msg) = signals.next().await {
        if let Ok(msg) = msg {
            w.on_signal(&msg);
        }
    }
    caller.abort();
    Ok(())
}

/// The task that talks to the services: reads properties when asked to, and handles sleep.
async fn calls(w: Arc<Watch>, conn: Connection) {
    let dbus = match zbus::fdo::DBusProxy::new(&conn).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot talk to the system bus daemon");
            return;
        }
    };
    for s in &SOURCES {
        let Ok(name) = zbus::names::BusName::try_from(s.name) else {
            continue;
        };
        if let Ok(owner) = dbus.get_name_owner(name).await {
            let mut st = w.lock();
            st.owners.insert(s.kind, owner.to_string());
            st.pending.insert(s.kind);
        }
    }
    let mut inhibitor: Option<zbus::OwnedFd> = None;
    loop {
        let (pending, sleep, has_logind) = {
            let mut st = w.lock();
            let pending: Vec<Kind> = st.pending.drain().collect();
            (
                pending,
                st.sleep_events.pop_front(),
                st.owners.contains_key(&Kind::Logind),
            )
        };
        if !has_logind {
            inhibitor = None;
        }
        if pending.is_empty() && sleep.is_none() {
            w.work.notified().await;
            continue;
        }
        for kind in pending {
            let Some(src) = SOURCES.iter().find(|s| s.kind == kind) else {
                continue;
            };
            match kind {
                Kind::Logind => {
                    if inhibitor.is_none() {
                        inhibitor = inhibit(&conn).await;
                    }
                }
                Kind::Networkd => w.refresh_routes(),
                _ => {
                    let props = get_all(&conn, src).await;
                    let mut st = w.lock();
                    match props {
                        Some(p) => st.apply(kind, &p),
                        None => st.forget(kind),
                    }
                }
            }
        }
        match sleep {
            Some(true) => {
                w.lock().sleeping = true;
                w.publish();
                let done = (w.handles.stop_for_sleep)();
                let all =
                    futures_util::future::join_all(done.into_iter().map(|mut rx| async move {
                        let _ = rx.wait_for(|d| *d).await;
                    }));
                if tokio::time::timeout(SLEEP_CHECKPOINT, all).await.is_err() {
                    tracing::warn!("some transfers did not checkpoint before sleep");
                }
                // Lets the suspend go ahead.
                inhibitor = None;
                tracing::info!("transfers checkpointed for sleep");
            }
            Some(false) => {
                tracing::info!("resumed from sleep: checking the network again");
                if inhibitor.is_none() {
                    inhibitor = inhibit(&conn).await;
                }
                let mut st = w.lock();
                st.sleeping = false;
                st.pending.insert(Kind::NetworkManager);
                st.pending.insert(Kind::Networkd);
            }
            None => {}
        }
        w.publish();
    }
}

async fn get_all(conn: &Connection, s: &Source) -> Option<HashMap<String, OwnedVariant>> {
    let reply = conn
        .call_method(
            Some(s.name),
            s.path,
            Some(PROPERTIES),
            "GetAll",
            &(s.iface,),
        )
        .await
        .ok()?;
    reply.body().deserialize().ok()
}

/// Takes a logind delay lock on sleep: suspend waits (up to logind's limit) until it is closed.
async fn inhibit(conn: &Connection) -> Option<zbus::OwnedFd> {
    let reply = conn
        .call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            "Inhibit",
            &(
                "sleep",
                "ferryd",
                "checkpoint transfers before sleep",
                "delay",
            ),
        )
        .await;
    match reply.and_then(|r| r.body().deserialize::<zbus::OwnedFd>()) {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::info!(error = %e, "no logind sleep inhibitor: transfers are not checkpointed before sleep");
            None
        }
    }
}

/// Whether the preferred default route (IPv4, else IPv6) goes out through a listed interface.
fn route_is_metered(metered: &[String]) -> bool {
    if metered.is_empty() {
        return false;
    }
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    default_route_interface(&v4, &v6).is_some_and(|i| metered.contains(&i))
}

/// The interface of the default route with the lowest metric, from `/proc/net/route` (IPv4),
/// else from `/proc/net/ipv6_route`.
fn default_route_interface(v4: &str, v6: &str) -> Option<String> {
    let best = |routes: Vec<(u64, &str)>| routes.into_iter().min().map(|(_, i)| i.to_owned());
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
    let four = v4
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let up = u32::from_str_radix(f.get(3)?, 16).ok()? & 1 == 1;
            (up && *f.get(1)? == "00000000" && *f.get(7)? == "00000000")
                .then(|| Some((f.get(6)?.parse().ok()?, *f.first()?)))
                .flatten()
        })
        .collect();
    // dest plen src splen next-hop metric refcnt use flags iface
    let six = || {
        v6.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let default = f.first()?.bytes().all(|b| b == b'0') && *f.get(1)? == "00";
                let iface = *f.get(9)?;
                (default && iface != "lo")
                    .then(|| Some((u64::from_str_radix(f.get(5)?, 16).ok()?, iface)))
                    .flatten()
            })
            .collect()
    };
    best(four).or_else(|| best(six()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_default_route_names_the_interface() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  wwan0\t00000000\t0101A8C0\t0003\t0\t0\t700\t00000000\t0\t0\t0\n\
                  eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                  eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_route_interface(v4, ""), Some("eth0".into()));
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wwan0\n\
                  fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n";
        assert_eq!(default_route_interface("", v6), Some("wwan0".into()));
        assert_eq!(default_route_interface("", ""), None);
        assert_eq!(default_route_interface("garbage\n1 2\n", "x y"), None);
    }

    #[test]
    fn wrong_types_and_unknown_names_restrict_nothing() {
        let mut st = State::default();
        let mut props = HashMap::new();
        props.insert(
            "Metered".to_owned(),
            OwnedVariant::try_from(zbus::Variant::from("yes")).unwrap(),
        );
        props.insert(
            "Bogus".to_owned(),
            OwnedVariant::try_from(zbus::Variant::from(7u32)).unwrap(),
        );
        st.apply(Kind::NetworkManager, &props);
        assert_eq!(st.nm.map(|n| n.metered), Some(0));
        let mut up = HashMap::new();
        up.insert(
            "OnBattery".to_owned(),
            OwnedVariant::try_from(zbus::Variant::from(3u32)).unwrap(),
        );
        st.apply(Kind::UPower, &up);
        assert_eq!(st.on_battery, None);
    }

    #[test]
    fn the_file_sections_override_the_defaults() {
        let n: NetworkSection = toml::from_str(
            "metered_interfaces = [\"wwan0\"]\nbackground_cost_policy = \"any\"\n\
             foreground_cost_policy = \"0x80000021\"\n",
        )
        .unwrap();
        let p: PowerSection = toml::from_str("power_policy = \"not_on_battery\"\n").unwrap();
        let s = PolicySettings::from_sections(n, p);
        assert_eq!(s.metered_interfaces, vec!["wwan0".to_owned()]);
        assert_eq!(s.defaults.background_cost, CostPolicy::ANY);
        assert_eq!(s.defaults.foreground_cost, CostPolicy(0x8000_0021));
        assert_eq!(s.defaults.power, PowerPolicy::NotOnBattery);
        let d = PolicySettings::from_sections(NetworkSection::default(), PowerSection::default());
        assert_eq!(d.defaults, Defaults::default());
        assert!(toml::from_str::<NetworkSection>("metered = true\n").is_err());
    }

    #[test]
    fn the_example_configuration_parses_to_the_defaults() {
        let text = include_str!("../../../dist/ferryd.toml.example");
        let s =
            crate::peer_cache::config::parse_policy(text, std::path::Path::new("example")).unwrap();
        assert_eq!(s.defaults, Defaults::default());
        assert!(s.metered_interfaces.is_empty());
        assert_eq!(s.system_bus, None);
    }
}
