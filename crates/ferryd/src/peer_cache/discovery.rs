//! mDNS discovery of other Ferry peer caches on the local network.
//!
//! With `discovery = "mdns"`, a `ferryd` whose peer cache is enabled advertises its peer-cache
//! HTTP endpoint as a [`SERVICE_TYPE`] service and browses for the other daemons advertising
//! the same type. [`MdnsDiscovery`] keeps the set of peers currently known; the daemon asks it
//! for [`MdnsDiscovery::peers`] whenever it wants candidates.
//!
//! What this module is not:
//! - not the cache protocol: it only says *where* peers might be; what is asked of them and how
//!   their answers are checked lives elsewhere in the peer cache;
//! - not authentication: anybody on the LAN can advertise the service type, so a discovered
//!   peer is a mere candidate. Every request to it is still authenticated by the fleet secret,
//!   and everything it serves is still validated.
//!
//! The mDNS work runs on `mdns-sd`'s own thread; the peer map is kept up to date by one plain
//! std thread reading the browse channel, so the module needs no async runtime.
//!
//! Interfaces: `mdns-sd` (0.21) uses every interface, loopback included, unless told otherwise,
//! so nothing special is configured here. A daemon therefore also finds the peers running on
//! the same host (over `lo`), and the tests can run two daemons inside a private network
//! namespace that has only `lo`.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mdns_sd::{ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent, ServiceInfo};

/// Service type Ferry peers advertise.
pub const SERVICE_TYPE: &str = "_ferry-peer._tcp.local.";

/// TXT property carrying the advertising daemon's instance id.
const TXT_ID: &str = "id";
/// TXT property carrying the version of this advertisement's format.
const TXT_VERSION: &str = "v";
/// The advertisement format version written in [`TXT_VERSION`].
const FORMAT_VERSION: &str = "1";
/// Prefix of the advertised instance name and host name.
const NAME_PREFIX: &str = "ferry-";
/// The longest instance id accepted: the instance name `ferry-<id>` must fit one DNS label.
const MAX_INSTANCE_LEN: usize = 63 - NAME_PREFIX.len();
/// How long [`MdnsDiscovery::shutdown`] waits for the goodbyes to be sent and the threads to end.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Why discovery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The instance id cannot be advertised.
    #[error("invalid peer-cache instance id {instance:?}: {reason}")]
    InvalidInstance {
        /// The instance id given.
        instance: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The mDNS daemon (its thread and sockets) could not be created.
    #[error("cannot start the mDNS daemon: {0}")]
    Daemon(String),
    /// The service description was refused by `mdns-sd`.
    #[error("cannot describe the peer-cache service {fullname:?} for mDNS: {message}")]
    ServiceInfo {
        /// The service instance name that was being described.
        fullname: String,
        /// The `mdns-sd` error text.
        message: String,
    },
    /// Advertising the service failed.
    #[error("cannot advertise the peer-cache service {fullname:?} over mDNS: {message}")]
    Register {
        /// The service instance name that was being advertised.
        fullname: String,
        /// The `mdns-sd` error text.
        message: String,
    },
    /// Browsing for the other peers failed.
    #[error("cannot browse mDNS for {service_type}: {message}")]
    Browse {
        /// The service type browsed for.
        service_type: &'static str,
        /// The `mdns-sd` error text.
        message: String,
    },
    /// The thread that keeps the peer map could not be spawned.
    #[error("cannot spawn the mDNS browse thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Peers known so far: service instance fullname → its socket addresses.
type PeerMap = HashMap<String, BTreeSet<SocketAddr>>;

/// A running mDNS advertiser + browser. Dropping it (or `shutdown`) stops both.
pub struct MdnsDiscovery {
    /// The mDNS daemon; `None` once stopped.
    daemon: Option<ServiceDaemon>,
    /// Peers currently known, kept by the browse thread.
    peers: Arc<Mutex<PeerMap>>,
    /// The browse thread; `None` once stopped.
    browser: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MdnsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsDiscovery")
            .field("running", &self.daemon.is_some())
            .field("peers", &self.peers())
            .finish()
    }
}

impl MdnsDiscovery {
    /// Advertises this host's peer cache (`instance` is a unique id of this daemon, e.g. a uuid
    /// string; `port` is the peer-cache port; `addrs` are the IPs to advertise — if empty, let
    /// mdns-sd pick the interface addresses (enable_addr_auto)) and starts browsing for others.
    ///
    /// An address in `addrs` is announced only on the interface it belongs to (`mdns-sd`
    /// matches it against the interfaces' subnets), so it must be one of this host's addresses.
    /// The advertisement is named `ferry-<instance>` and carries the TXT properties
    /// `id=<instance>` and `v=1`; its host name is `ferry-<instance>.local.` so that it clashes
    /// neither with the host's own mDNS name nor with another daemon on the same host.
    pub fn start(
        instance: &str,
        port: u16,
        addrs: &[IpAddr],
    ) -> Result<MdnsDiscovery, DiscoveryError> {
        check_instance(instance)?;
        let name = format!("{NAME_PREFIX}{instance}");
        let host = format!("{}.local.", host_label(&name));
        let properties = [(TXT_ID, instance), (TXT_VERSION, FORMAT_VERSION)];
        let info = ServiceInfo::new(SERVICE_TYPE, &name, &host, addrs, port, &properties[..])
            .map_err(|e| DiscoveryError::ServiceInfo {
                fullname: format!("{name}.{SERVICE_TYPE}"),
                message: e.to_string(),
            })?;
        let info = if addrs.is_empty() {
            info.enable_addr_auto()
        } else {
            info
        };
        let own_fullname = info.get_fullname().to_owned();

        let daemon = ServiceDaemon::new().map_err(|e| DiscoveryError::Daemon(e.to_string()))?;
        // From here on, every error path must stop the daemon thread again.
        let started = (|| {
            // Browse first, so that our own announcement is seen (and skipped) like any other.
            let events = daemon
                .browse(SERVICE_TYPE)
                .map_err(|e| DiscoveryError::Browse {
                    service_type: SERVICE_TYPE,
                    message: e.to_string(),
                })?;
            daemon
                .register(info)
                .map_err(|e| DiscoveryError::Register {
                    fullname: own_fullname.clone(),
                    message: e.to_string(),
                })?;
            let peers = Arc::new(Mutex::new(PeerMap::new()));
            let map = Arc::clone(&peers);
            let own_instance = instance.to_owned();
            let own = own_fullname.clone();
            let browser = std::thread::Builder::new()
                .name("ferry-mdns-browse".to_owned())
                .spawn(move || {
                    // `recv` fails once the daemon has shut down and dropped the sender.
                    while let Ok(event) = events.recv() {
                        if !apply_event(&map, event, &own, &own_instance) {
                            break;
                        }
                    }
                })
                .map_err(DiscoveryError::Thread)?;
            Ok((peers, browser))
        })();
        match started {
            Ok((peers, browser)) => {
                tracing::info!(
                    service = %own_fullname,
                    port,
                    "advertising the peer cache and browsing for peers over mDNS"
                );
                Ok(MdnsDiscovery {
                    daemon: Some(daemon),
                    peers,
                    browser: Some(browser),
                })
            }
            Err(e) => {
                // Best effort: the error being reported is the one above.
                let _ = daemon.shutdown();
                Err(e)
            }
        }
    }

    /// The peers currently known (resolved, not removed), excluding this daemon's own instance,
    /// as socket addresses (IPv4 preferred; one entry per resolved address+port), sorted and deduplicated.
    ///
    /// "IPv4 preferred": a peer that resolved to at least one IPv4 address is listed by its IPv4
    /// addresses only; a peer with IPv6 addresses only is listed by those (link-local ones with
    /// their interface as scope id).
    pub fn peers(&self) -> Vec<SocketAddr> {
        let map = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let all: BTreeSet<SocketAddr> = map.values().flatten().copied().collect();
        all.into_iter().collect()
    }

    /// Stops advertising (sends goodbye) and browsing.
    ///
    /// Waits a short while (at most about two seconds) for `mdns-sd` to send the goodbyes.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Stops the daemon and the browse thread; idempotent.
    fn stop(&mut self) {
        let Some(daemon) = self.daemon.take() else {
            return;
        };
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        // The daemon unregisters every service (sending goodbyes) and stops browsing on exit.
        match daemon.shutdown() {
            Ok(status) => {
                if let Err(e) = status.recv_timeout(SHUTDOWN_WAIT) {
                    tracing::warn!(error = %e, "mDNS daemon did not confirm its shutdown");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot shut the mDNS daemon down"),
        }
        if let Some(browser) = self.browser.take() {
            // The browse channel closes when the daemon thread ends; do not hang if it doesn't.
            while !browser.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if browser.is_finished() {
                let _ = browser.join();
            }
        }
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl Drop for MdnsDiscovery {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Refuses instance ids that cannot be advertised as one DNS label.
fn check_instance(instance: &str) -> Result<(), DiscoveryError> {
    let reason = if instance.is_empty() {
        "it is empty"
    } else if instance.len() > MAX_INSTANCE_LEN {
        "it is longer than 57 bytes"
    } else if instance.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(DiscoveryError::InvalidInstance {
        instance: instance.to_owned(),
        reason,
    })
}

/// A valid host-name label made of `name`: letters, digits and `-` kept, anything else `-`.
fn host_label(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Applies one browse event to `map`; returns false when browsing has stopped.
fn apply_event(
    map: &Mutex<PeerMap>,
    event: ServiceEvent,
    own_fullname: &str,
    own_id: &str,
) -> bool {
    match event {
        ServiceEvent::ServiceResolved(service) => {
            if is_own(&service, own_fullname, own_id) {
                return true;
            }
            let addrs = socket_addrs(&service);
            let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
            if addrs.is_empty() {
                map.remove(&service.fullname);
            } else {
                tracing::debug!(peer = %service.fullname, ?addrs, "peer cache found over mDNS");
                map.insert(service.fullname, addrs);
            }
            true
        }
        ServiceEvent::ServiceRemoved(_, fullname) => {
            let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
            if map.remove(&fullname).is_some() {
                tracing::debug!(peer = %fullname, "peer cache gone from mDNS");
            }
            true
        }
        ServiceEvent::SearchStopped(_) => false,
        _ => true,
    }
}

/// Whether `service` is this daemon's own advertisement.
fn is_own(service: &ResolvedService, own_fullname: &str, own_id: &str) -> bool {
    service.fullname.eq_ignore_ascii_case(own_fullname)
        || service.get_property_val_str(TXT_ID) == Some(own_id)
}

/// The socket addresses of `service`: its IPv4 ones if it has any, else its IPv6 ones.
fn socket_addrs(service: &ResolvedService) -> BTreeSet<SocketAddr> {
    let port = service.port;
    let v4: BTreeSet<SocketAddr> = service
        .addresses
        .iter()
        .filter(|ip| ip.is_ipv4())
        .map(|ip| SocketAddr::new(ip.to_ip_addr(), port))
        .collect();
    if !v4.is_empty() {
        return v4;
    }
    service
        .addresses
        .iter()
        .filter_map(|ip| match ip {
            ScopedIp::V6(v6) => {
                let addr = *v6.addr();
                // Link-local addresses are unusable without their interface.
                let scope = if addr.is_unicast_link_local() {
                    v6.scope_id().index
                } else {
                    0
                };
                Some(SocketAddr::V6(SocketAddrV6::new(addr, port, 0, scope)))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::process::Command;

    /// The inner test's name, as libtest knows it (module path without the crate name).
    fn inner_test_name() -> String {
        let module = module_path!();
        let module = module.split_once("::").map_or(module, |(_, rest)| rest);
        format!("{module}::mdns_inner_two_daemons_find_each_other")
    }

    const IN_NETNS: &str = "FERRY_IN_NETNS";

    #[test]
    fn mdns_peers_find_each_other_in_a_private_netns() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: mdns discovery test needs root to create a network namespace");
            return;
        }
        // Probe first: a root that may not create namespaces (some containers) cannot run this.
        let probe = Command::new("unshare").args(["-n", "true"]).output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!(
                    "SKIPPED: mdns discovery test cannot create a network namespace: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return;
            }
            Err(e) => {
                eprintln!("SKIPPED: mdns discovery test cannot run `unshare`: {e}");
                return;
            }
        }
        let exe = std::env::current_exe().expect("current test binary");
        let name = inner_test_name();
        let out = Command::new("unshare")
            .args([
                "-n",
                "sh",
                "-c",
                "ip link set lo up && ip link set lo multicast on \
                 && ip route add 224.0.0.0/4 dev lo && exec \"$0\" \"$@\"",
            ])
            .arg(&exe)
            .args(["--exact", &name, "--include-ignored", "--nocapture"])
            .env(IN_NETNS, "1")
            .output()
            .expect("run unshare");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("--- inner run stdout ---\n{stdout}\n--- inner run stderr ---\n{stderr}");
        assert!(out.status.success(), "inner run failed: {}", out.status);
        assert!(
            stdout.contains("1 passed"),
            "inner run did not run exactly the inner test {name}"
        );
    }

    /// Polls `cond` every 50 ms for up to 20 s.
    fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if cond() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ports(d: &MdnsDiscovery) -> BTreeSet<u16> {
        d.peers().iter().map(SocketAddr::port).collect()
    }

    /// Run only by `mdns_peers_find_each_other_in_a_private_netns`, inside the namespace it made.
    #[test]
    #[ignore = "multicasts: run only inside a private network namespace by the test above"]
    fn mdns_inner_two_daemons_find_each_other() {
        if std::env::var(IN_NETNS).as_deref() != Ok("1") {
            eprintln!("SKIPPED: refusing to multicast outside a private network namespace");
            return;
        }
        // Second guard: the namespace made by the outer test has nothing but `lo`. (Read
        // /proc/self/net/dev, which shows this process's namespace; /sys/class/net shows the one
        // sysfs was mounted in.)
        let dev = std::fs::read_to_string("/proc/self/net/dev").expect("list network interfaces");
        let interfaces: Vec<&str> = dev
            .lines()
            .skip(2)
            .filter_map(|line| line.split_once(':').map(|(name, _)| name.trim()))
            .collect();
        assert_eq!(
            interfaces,
            vec!["lo"],
            "{IN_NETNS}=1 but this is not a private network namespace: refusing to multicast"
        );

        // One advertises an explicit address, the other lets mdns-sd pick the addresses.
        let a = MdnsDiscovery::start("test-instance-a", 41001, &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .expect("start a");
        let b = MdnsDiscovery::start("test-instance-b", 41002, &[]).expect("start b");

        let started = Instant::now();
        let found = wait_until(|| ports(&a).contains(&41002) && ports(&b).contains(&41001));
        eprintln!(
            "after {:?}: a sees {:?}, b sees {:?}",
            started.elapsed(),
            a.peers(),
            b.peers()
        );
        assert!(
            found,
            "after 20 s the two daemons had not found each other: a sees {:?}, b sees {:?}",
            a.peers(),
            b.peers()
        );
        assert!(
            !ports(&a).contains(&41001),
            "a lists itself: {:?}",
            a.peers()
        );
        assert!(
            !ports(&b).contains(&41002),
            "b lists itself: {:?}",
            b.peers()
        );
        assert!(
            a.peers()
                .contains(&SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 41002)),
            "a should see b at 127.0.0.1 (IPv4 preferred): {:?}",
            a.peers()
        );
        let sorted = {
            let mut p = a.peers();
            p.sort();
            p.dedup();
            p
        };
        assert_eq!(a.peers(), sorted, "peers() is sorted and deduplicated");

        // b says goodbye on shutdown; a forgets it.
        b.shutdown();
        let stopped = Instant::now();
        let forgotten = wait_until(|| !ports(&a).contains(&41002));
        eprintln!("a forgot b {:?} after b's shutdown", stopped.elapsed());
        assert!(
            forgotten,
            "a still lists b 20 s after b's shutdown: {:?}",
            a.peers()
        );
        a.shutdown();
    }

    #[test]
    fn invalid_instances_are_refused_before_any_multicast() {
        for bad in ["", &"x".repeat(MAX_INSTANCE_LEN + 1), "a\nb"] {
            let err = MdnsDiscovery::start(bad, 1, &[]).expect_err("must refuse");
            assert!(
                matches!(err, DiscoveryError::InvalidInstance { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn host_labels_are_valid_dns_labels() {
        assert_eq!(
            host_label("ferry-1b4e28ba-2fa1.x_y"),
            "ferry-1b4e28ba-2fa1-x-y"
        );
    }
}
