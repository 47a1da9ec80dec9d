//! Network cost and power policy against a private system bus: each test starts its own
//! `dbus-daemon` (system-bus type, allow-all policy) in a temp dir, serves fake NetworkManager,
//! UPower, power-profiles-daemon and logind objects on it with zbus, and points a real ferryd at
//! it with `--system-bus`. The fakes flip properties and emit `PropertiesChanged` the way the
//! real services do; transfers come from a real HTTP server on 127.0.0.1.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_client::Client;
use ferry_proto::params::{CreateParams, SetParams};
use ferry_proto::{CostPolicy, Job, JobState, PowerPolicy, Priority};
use ferry_testkit::content::TestContent;
use ferry_testkit::http::TestServer;
use zbus::object_server::SignalEmitter;

use crate::support::{daemon_with, sha256_file, spec, wait_log, wait_state};

const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const NM_NAME: &str = "org.freedesktop.NetworkManager";

/// A private system bus; killed on drop.
struct Bus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bus {
    /// Starts one, or prints why not and returns `None`.
    fn start(test: &str) -> Option<Bus> {
        if Command::new("dbus-daemon")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            println!("SKIPPED {test}: dbus-daemon is not installed (apt-get install dbus-daemon)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
"#,
                dir.path().display()
            ),
        )
        .unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon said {line:?}");
        Some(Bus {
            child,
            address,
            _dir: dir,
        })
    }

    async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .build()
            .await
            .unwrap()
    }
}

struct Nm {
    metered: u32,
    state: u32,
    connectivity: u32,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl Nm {
    #[zbus(property)]
    fn metered(&self) -> u32 {
        self.metered
    }
    #[zbus(property)]
    fn state(&self) -> u32 {
        self.state
    }
    #[zbus(property)]
    fn connectivity(&self) -> u32 {
        self.connectivity
    }
}

/// A NetworkManager whose `Metered` is a string: a type the daemon does not expect.
struct OddNm;

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl OddNm {
    #[zbus(property)]
    fn metered(&self) -> String {
        "yes".into()
    }
}

struct UPower {
    on_battery: bool,
}

#[zbus::interface(name = "org.freedesktop.UPower")]
impl UPower {
    #[zbus(property)]
    fn on_battery(&self) -> bool {
        self.on_battery
    }
}

struct Profiles {
    active_profile: String,
}

#[zbus::interface(name = "net.hadess.PowerProfiles")]
impl Profiles {
    #[zbus(property)]
    fn active_profile(&self) -> String {
        self.active_profile.clone()
    }
}

/// logind: hands out delay locks (pipes whose read ends the test keeps) and emits
/// `PrepareForSleep`.
struct Logind {
    locks: Arc<Mutex<Vec<OwnedFd>>>,
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl Logind {
    fn inhibit(
        &self,
        what: String,
        _who: String,
        _why: String,
        mode: String,
    ) -> zbus::fdo::Result<zbus::OwnedFd> {
        assert_eq!((what.as_str(), mode.as_str()), ("sleep", "delay"));
        let (r, w) = nix::unistd::pipe().map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
        self.locks.lock().unwrap().push(r);
        Ok(w.into())
    }

    #[zbus(signal)]
    async fn prepare_for_sleep(emitter: &SignalEmitter<'_>, start: bool) -> zbus::Result<()>;
}

/// A fake NetworkManager on the bus.
struct FakeNm {
    conn: zbus::Connection,
}

impl FakeNm {
    async fn start(bus: &Bus, metered: u32) -> FakeNm {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .name(NM_NAME)
            .serve_at(
                NM_PATH,
                Nm {
                    metered,
                    state: 70,
                    connectivity: 4,
                },
            )
            .build()
            .await
            .unwrap();
        FakeNm { conn }
    }

    async fn set(&self, change: impl FnOnce(&mut Nm)) {
        let iface = self
            .conn
            .object_server()
            .interface::<_, Nm>(NM_PATH)
            .await
            .unwrap();
        let mut nm = iface.get_mut().await;
        change(&mut nm);
        let e = iface.signal_emitter();
        nm.metered_changed(e).await.unwrap();
        nm.state_changed(e).await.unwrap();
        nm.connectivity_changed(e).await.unwrap();
    }

    async fn metered(&self, v: u32) {
        self.set(|nm| nm.metered = v).await;
    }
}

/// A ferryd on the private bus, once it has read the fakes' first values: the log line
/// naming the conditions must contain `seen`.
fn ferryd_on(bus: &Bus, seen: &str, extra: &[&str]) -> ferry_testkit::daemon::TestDaemon {
    let mut args = vec!["--system-bus", bus.address.as_str()];
    args.extend_from_slice(extra);
    let d = daemon_with(&args);
    wait_log(&d, seen, 1, "ferryd read the fake services");
    d
}

/// A private bus with a fake NetworkManager, a ferryd that has read it, a client of that
/// daemon and an HTTP server.
struct World {
    bus: Bus,
    nm: FakeNm,
    d: ferry_testkit::daemon::TestDaemon,
    c: Client,
    srv: TestServer,
}

impl World {
    /// With NetworkManager's `Metered` at `metered`; `None` (after saying why) without dbus-daemon.
    async fn start(test: &str, metered: u32) -> Option<World> {
        let bus = Bus::start(test)?;
        let nm = FakeNm::start(&bus, metered).await;
        let d = ferryd_on(&bus, &format!("metered: {metered}"), &[]);
        let c = d.client().await;
        let srv = TestServer::start().await;
        Some(World { bus, nm, d, c, srv })
    }
}

/// Params of a foreground job.
fn foreground() -> CreateParams {
    CreateParams {
        priority: Some(Priority::Foreground),
        ..CreateParams::default()
    }
}

/// Waits (at most 1 s) until the job is queued with `reason`.
async fn held(c: &Client, id: &str, reason: &str) -> Job {
    job_within(c, id, Duration::from_secs(1), reason, |j| {
        waits_for(j, reason)
    })
    .await
}

/// Waits (at most 1 s) until the job connects, transfers or is done.
async fn runs(c: &Client, id: &str, what: &str) -> Job {
    job_within(c, id, Duration::from_secs(1), what, moving).await
}

/// Polls `job.get` (there is no event for `waiting`) until `pred` holds or `within` passes.
async fn job_within(
    c: &Client,
    id: &str,
    within: Duration,
    what: &str,
    pred: impl Fn(&Job) -> bool,
) -> Job {
    let start = Instant::now();
    loop {
        let j = c.get(id).await.unwrap();
        if pred(&j) {
            return j;
        }
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}; the job is {} waiting {:?}",
            j.state,
            j.waiting
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn waits_for(j: &Job, reason: &str) -> bool {
    j.state == JobState::Queued && j.waiting.as_ref().is_some_and(|w| w.reason == reason)
}

fn moving(j: &Job) -> bool {
    matches!(
        j.state,
        JobState::Connecting | JobState::Transferring | JobState::Transferred
    )
}

async fn create(c: &Client, url: &str, path: &std::path::Path, p: CreateParams) -> String {
    let id = c
        .create(CreateParams {
            display_name: "policy".into(),
            files: Some(vec![spec(url, path)]),
            ..p
        })
        .await
        .unwrap();
    c.resume(&id).await.unwrap();
    id
}

/// Waits until the job has received more than `bytes`.
async fn got_going(c: &Client, id: &str, bytes: u64) {
    job_within(
        c,
        id,
        Duration::from_secs(10),
        "the transfer got going",
        |j| j.progress.bytes_transferred > bytes,
    )
    .await;
}

/// How many requests the server has seen and how many it is still answering.
fn serving(log: &[ferry_testkit::http::RequestLog]) -> (usize, usize) {
    (log.len(), log.iter().filter(|r| !r.finished).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_metered_on_stops_the_transfer_and_metered_off_resumes_it_byte_identical() {
    let Some(w) = World::start("issue_15_metered_on_stops_the_transfer", 2).await else {
        return;
    };
    let World { nm, d, c, srv, .. } = &w;
    let content = TestContent::new(15, 600 * 1024);
    srv.add_dripped_file("/m", content.bytes.clone(), 100 * 1024);
    let dir = d.files_dir();
    let id = create(c, &srv.url("/m"), &dir.join("m"), CreateParams::default()).await;
    got_going(c, &id, 50 * 1024).await;

    nm.metered(1).await;
    held(c, &id, "metered_network").await;
    // The transfer was stopped: its connection is gone, so the origin sends nothing more.
    srv.wait_until(Duration::from_secs(5), |log| serving(log).1 == 0)
        .await
        .expect("the stopped transfer closed its connection");
    let held = c.get(&id).await.unwrap().progress.bytes_transferred;
    assert!(held < content.len() as u64, "stopped mid-way: {held}");
    let requests = srv.requests().len();
    let quiet = srv
        .wait_until(Duration::from_secs(10), |log| serving(log) != (requests, 0))
        .await;
    assert!(
        quiet.is_none(),
        "the origin served a request on a metered network"
    );
    let j = c.get(&id).await.unwrap();
    assert!(waits_for(&j, "metered_network"), "still waiting: {j:?}");
    assert_eq!(
        j.progress.bytes_transferred, held,
        "no byte arrived meanwhile"
    );

    nm.metered(2).await;
    runs(c, &id, "metered off → moving").await;
    wait_state(c, &id, JobState::Transferred).await;
    let reqs = srv.requests_for("/m");
    assert!(
        reqs.iter().skip(1).any(|r| r.range.is_some()),
        "resumed where it stopped"
    );
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("m")), content.sha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_guess_yes_blocks_and_unknown_does_not() {
    let Some(w) = World::start("issue_15_guess_yes_blocks_and_unknown_does_not", 3).await else {
        return;
    };
    let World { nm, d, c, srv, .. } = &w;
    srv.add_file("/g", vec![7u8; 4096]);
    let dir = d.files_dir();
    let id = create(c, &srv.url("/g"), &dir.join("g"), CreateParams::default()).await;
    held(c, &id, "metered_network").await;
    assert!(srv.requests_for("/g").is_empty());
    let seen = c.conditions().await.unwrap();
    assert_eq!((seen.cost.as_str(), seen.link.as_str()), ("metered", "up"));
    assert_eq!(seen.network_manager.map(|n| n.metered), Some(3));
    assert_eq!(seen.background_cost_policy, CostPolicy::NOT_METERED);
    nm.metered(0).await;
    runs(c, &id, "unknown lets it go").await;
    wait_state(c, &id, JobState::Transferred).await;
    // Values NetworkManager does not define do not hold anything either.
    nm.set(|n| {
        n.metered = 77;
        n.state = 12345;
        n.connectivity = 99;
    })
    .await;
    wait_log(d, "metered: 77", 1, "the odd values arrived");
    let id2 = create(c, &srv.url("/g"), &dir.join("g2"), CreateParams::default()).await;
    wait_state(c, &id2, JobState::Transferred).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_foreground_and_cost_policy_any_jobs_never_pause() {
    let test = "issue_15_foreground_and_cost_policy_any_jobs_never_pause";
    let Some(w) = World::start(test, 1).await else {
        return;
    };
    let World { nm, d, c, srv, .. } = &w;
    let content = TestContent::new(16, 300 * 1024);
    srv.add_dripped_file("/f", content.bytes.clone(), 200 * 1024);
    srv.add_dripped_file("/a", content.bytes.clone(), 200 * 1024);
    srv.add_file("/n", vec![1u8; 1024]);
    let dir = d.files_dir();
    let fg = create(c, &srv.url("/f"), &dir.join("f"), foreground()).await;
    let any = create(
        c,
        &srv.url("/a"),
        &dir.join("a"),
        CreateParams {
            cost_policy: Some(CostPolicy::ANY),
            ..CreateParams::default()
        },
    )
    .await;
    let normal = create(c, &srv.url("/n"), &dir.join("n"), CreateParams::default()).await;
    // Flip metered off and on while they run: neither may pause.
    for v in [2, 1, 3, 1] {
        nm.metered(v).await;
        for id in [&fg, &any] {
            let j = c.get(id).await.unwrap();
            assert!(moving(&j), "{id} paused: {j:?}");
        }
    }
    wait_state(c, &fg, JobState::Transferred).await;
    wait_state(c, &any, JobState::Transferred).await;
    let j = c.get(&normal).await.unwrap();
    assert!(waits_for(&j, "metered_network"), "{j:?}");
    assert_eq!(j.settings.cost_policy, None, "the default is not stored");
    assert_eq!(
        c.get(&any).await.unwrap().settings.cost_policy,
        Some(CostPolicy::ANY)
    );
    for (id, name) in [(&fg, "f"), (&any, "a")] {
        c.complete(id).await.unwrap();
        assert_eq!(sha256_file(&dir.join(name)), content.sha256);
    }
}

/// /proc/PID/stat utime + stime, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_flapping_100_times_in_10_s_stays_cheap_and_ends_in_the_last_state() {
    let Some(w) = World::start("issue_15_flapping_100_times_in_10_s", 2).await else {
        return;
    };
    let World { nm, d, c, srv, .. } = &w;
    let content = TestContent::new(17, 200 * 1024);
    srv.add_dripped_file("/p", content.bytes.clone(), 40 * 1024);
    let dir = d.files_dir();
    let id = create(c, &srv.url("/p"), &dir.join("p"), CreateParams::default()).await;
    job_within(c, &id, Duration::from_secs(5), "started", moving).await;
    let ticks = cpu_ticks(d.pid());
    let start = Instant::now();
    for i in 0..100u32 {
        // Ends on metered (the 100th value is 1).
        nm.metered(if i % 2 == 0 { 2 } else { 1 }).await;
        let next = start + Duration::from_millis(100 * u64::from(i + 1));
        tokio::time::sleep_until(next.into()).await;
    }
    let used = cpu_ticks(d.pid()) - ticks;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    let secs = start.elapsed().as_secs_f64();
    let share = used as f64 / hz as f64 / secs;
    println!(
        "ferryd used {used} ticks in {secs:.1} s ({:.2} %)",
        share * 100.0
    );
    assert!(
        share < 0.01,
        "ferryd used {:.2} % CPU while the network flapped",
        share * 100.0
    );
    held(c, &id, "metered_network").await;
    nm.metered(2).await;
    wait_state(c, &id, JobState::Transferred).await;
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("p")), content.sha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_networkmanager_or_the_bus_going_away_releases_waiting_jobs() {
    let Some(World { bus, nm, d, c, srv }) =
        World::start("issue_15_networkmanager_or_the_bus_going_away", 1).await
    else {
        return;
    };
    srv.add_file("/x", vec![3u8; 2048]);
    let dir = d.files_dir();
    let id = create(&c, &srv.url("/x"), &dir.join("x"), CreateParams::default()).await;
    held(&c, &id, "metered_network").await;
    // NetworkManager quits: nothing is known, so nothing is held.
    drop(nm);
    runs(&c, &id, "NM gone → runs").await;
    wait_state(&c, &id, JobState::Transferred).await;

    // It comes back metered, then the whole bus dies.
    let nm = FakeNm::start(&bus, 1).await;
    wait_log(&d, "metered: 1", 1, "NetworkManager is back");
    let id2 = create(&c, &srv.url("/x"), &dir.join("x2"), CreateParams::default()).await;
    held(&c, &id2, "metered_network").await;
    drop(bus);
    job_within(&c, &id2, Duration::from_secs(2), "bus gone → runs", moving).await;
    wait_state(&c, &id2, JobState::Transferred).await;
    drop(nm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_spoofed_properties_changed_from_another_client_is_ignored() {
    let Some(bus) = Bus::start("issue_15_spoofed_properties_changed") else {
        return;
    };
    let nm = FakeNm::start(&bus, 2).await;
    let d = ferryd_on(&bus, "metered: 2", &[]);
    let c = d.client().await;
    // Any client of the system bus may emit a signal with NetworkManager's path and interface.
    let spoofer = bus.connect().await;
    let mut changed: HashMap<&str, zbus::Variant<'_>> = HashMap::new();
    changed.insert("Metered", zbus::Variant::from(1u32));
    changed.insert("State", zbus::Variant::from(20u32));
    spoofer
        .emit_signal(
            None::<&str>,
            NM_PATH,
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
            &(NM_NAME, changed, Vec::<&str>::new()),
        )
        .await
        .unwrap();
    // A later change from the real owner arrives after the spoof: once it is seen, so was the
    // spoof.
    nm.set(|n| n.connectivity = 3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let line = d
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the real change after the spoof was logged");
        assert!(
            !line.contains("metered: 1"),
            "the daemon believed the spoof: {line}"
        );
        if line.contains("connectivity: 3") {
            break;
        }
    }
    let srv = TestServer::start().await;
    srv.add_file("/s", vec![5u8; 2048]);
    let dir = d.files_dir();
    let id = create(&c, &srv.url("/s"), &dir.join("s"), CreateParams::default()).await;
    let j = wait_state(&c, &id, JobState::Transferred).await;
    assert!(j.waiting.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_offline_and_captive_portal_hold_background_jobs() {
    let Some(bus) = Bus::start("issue_15_offline_and_captive_portal") else {
        return;
    };
    let nm = FakeNm::start(&bus, 2).await;
    nm.set(|n| n.state = 20).await;
    let d = ferryd_on(&bus, "state: 20", &[]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/o", vec![9u8; 2048]);
    let dir = d.files_dir();
    let any = CreateParams {
        cost_policy: Some(CostPolicy::ANY),
        ..CreateParams::default()
    };
    let id = create(&c, &srv.url("/o"), &dir.join("o"), any).await;
    held(&c, &id, "offline").await;
    nm.set(|n| {
        n.state = 70;
        n.connectivity = 2;
    })
    .await;
    held(&c, &id, "captive_portal").await;
    assert!(srv.requests_for("/o").is_empty());
    nm.set(|n| n.connectivity = 4).await;
    runs(&c, &id, "online").await;
    wait_state(&c, &id, JobState::Transferred).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_on_battery_and_power_saver_hold_only_jobs_that_opt_in() {
    let Some(bus) = Bus::start("issue_15_on_battery_and_power_saver") else {
        return;
    };
    let upower = zbus::connection::Builder::address(bus.address.as_str())
        .name("org.freedesktop.UPower")
        .serve_at("/org/freedesktop/UPower", UPower { on_battery: true })
        .build()
        .await
        .unwrap();
    let ppd = zbus::connection::Builder::address(bus.address.as_str())
        .name("net.hadess.PowerProfiles")
        .serve_at(
            "/net/hadess/PowerProfiles",
            Profiles {
                active_profile: "balanced".into(),
            },
        )
        .build()
        .await
        .unwrap();
    let d = ferryd_on(&bus, "power_saver: Some(false)", &[]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/b", vec![4u8; 2048]);
    let dir = d.files_dir();
    let plain = create(
        &c,
        &srv.url("/b"),
        &dir.join("plain"),
        CreateParams::default(),
    )
    .await;
    let opted = create(
        &c,
        &srv.url("/b"),
        &dir.join("opted"),
        CreateParams {
            power_policy: Some(PowerPolicy::NotOnBattery),
            ..CreateParams::default()
        },
    )
    .await;
    wait_state(&c, &plain, JobState::Transferred).await;
    held(&c, &opted, "on_battery").await;

    let up = upower
        .object_server()
        .interface::<_, UPower>("/org/freedesktop/UPower")
        .await
        .unwrap();
    up.get_mut().await.on_battery = false;
    let saver = ppd
        .object_server()
        .interface::<_, Profiles>("/net/hadess/PowerProfiles")
        .await
        .unwrap();
    saver.get_mut().await.active_profile = "power-saver".into();
    // Power-saver first, then mains: the job must never run in between.
    saver
        .get()
        .await
        .active_profile_changed(saver.signal_emitter())
        .await
        .unwrap();
    up.get()
        .await
        .on_battery_changed(up.signal_emitter())
        .await
        .unwrap();
    held(&c, &opted, "power_saver").await;
    assert_eq!(
        srv.requests_for("/b").len(),
        1,
        "only the plain job fetched"
    );
    saver.get_mut().await.active_profile = "balanced".into();
    saver
        .get()
        .await
        .active_profile_changed(saver.signal_emitter())
        .await
        .unwrap();
    runs(&c, &opted, "mains").await;
    wait_state(&c, &opted, JobState::Transferred).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_prepare_for_sleep_checkpoints_transfers_then_releases_the_delay_lock() {
    let Some(bus) = Bus::start("issue_15_prepare_for_sleep") else {
        return;
    };
    let locks = Arc::new(Mutex::new(Vec::new()));
    let logind = zbus::connection::Builder::address(bus.address.as_str())
        .name("org.freedesktop.login1")
        .serve_at(
            "/org/freedesktop/login1",
            Logind {
                locks: locks.clone(),
            },
        )
        .build()
        .await
        .unwrap();
    let nm = FakeNm::start(&bus, 2).await;
    let d = ferryd_on(&bus, "metered: 2", &[]);
    let c = d.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while locks.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "ferryd took no sleep inhibitor");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lock = locks.lock().unwrap().remove(0);
    let srv = TestServer::start().await;
    let content = TestContent::new(18, 400 * 1024);
    srv.add_dripped_file("/z", content.bytes.clone(), 100 * 1024);
    let dir = d.files_dir();
    let id = create(&c, &srv.url("/z"), &dir.join("z"), CreateParams::default()).await;
    got_going(&c, &id, 50 * 1024).await;

    let sleeper = logind
        .object_server()
        .interface::<_, Logind>("/org/freedesktop/login1")
        .await
        .unwrap();
    Logind::prepare_for_sleep(sleeper.signal_emitter(), true)
        .await
        .unwrap();
    // The delay lock is released (its pipe reaches end of file) once the transfer has stopped.
    let released = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 1];
        nix::unistd::read(&lock, &mut buf)
    });
    let n = tokio::time::timeout(Duration::from_secs(5), released)
        .await
        .expect("ferryd released its delay lock within 5 s")
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "end of file: ferryd closed the lock");
    let j = c.get(&id).await.unwrap();
    assert!(waits_for(&j, "system_sleep"), "{j:?}");
    let files = c.files(&id).await.unwrap();
    assert!(
        files[0].bytes_transferred > 0,
        "the transfer was checkpointed: {files:?}"
    );

    // Resume: a new lock is taken, the network read again, and the job goes on.
    nm.metered(1).await;
    Logind::prepare_for_sleep(sleeper.signal_emitter(), false)
        .await
        .unwrap();
    held(&c, &id, "metered_network").await;
    nm.metered(2).await;
    wait_state(&c, &id, JobState::Transferred).await;
    c.complete(&id).await.unwrap();
    assert_eq!(sha256_file(&dir.join("z")), content.sha256);
    let deadline = Instant::now() + Duration::from_secs(5);
    while locks.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "ferryd took no new lock after resume"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_no_networkmanager_and_odd_types_behave_as_without_policy() {
    let Some(bus) = Bus::start("issue_15_no_networkmanager") else {
        return;
    };
    let d = ferryd_on(&bus, "ferryd is ready", &[]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/q", vec![6u8; 2048]);
    let dir = d.files_dir();
    let id = create(&c, &srv.url("/q"), &dir.join("q"), CreateParams::default()).await;
    let j = wait_state(&c, &id, JobState::Transferred).await;
    assert!(j.waiting.is_none());
    // A NetworkManager whose Metered is a string ("yes") is not understood, so not believed.
    let _odd = zbus::connection::Builder::address(bus.address.as_str())
        .name(NM_NAME)
        .serve_at(NM_PATH, OddNm)
        .build()
        .await
        .unwrap();
    wait_log(&d, "metered: 0", 1, "the odd NetworkManager was read");
    let id = create(&c, &srv.url("/q"), &dir.join("q2"), CreateParams::default()).await;
    wait_state(&c, &id, JobState::Transferred).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_admin_defaults_and_job_set_cost_policy() {
    let Some(bus) = Bus::start("issue_15_admin_defaults_and_job_set_cost_policy") else {
        return;
    };
    let _nm = FakeNm::start(&bus, 1).await;
    let conf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        conf.path(),
        "[network]\nbackground_cost_policy = \"any\"\nforeground_cost_policy = \"not_metered\"\n",
    )
    .unwrap();
    let conf_path = conf.path().to_str().unwrap().to_owned();
    let d = ferryd_on(&bus, "metered: 1", &["--config", &conf_path]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/c", vec![8u8; 2048]);
    let dir = d.files_dir();
    // The admin lets background jobs use metered networks and keeps foreground ones off them.
    let bg = create(&c, &srv.url("/c"), &dir.join("bg"), CreateParams::default()).await;
    wait_state(&c, &bg, JobState::Transferred).await;
    let fg = create(&c, &srv.url("/c"), &dir.join("fg"), foreground()).await;
    held(&c, &fg, "metered_network").await;
    // The job's own setting wins, and takes effect at once.
    let j = c
        .set(SetParams {
            job_id: fg.clone(),
            cost_policy: Some(Some(CostPolicy::ANY)),
            ..SetParams::default()
        })
        .await
        .unwrap();
    assert_eq!(j.settings.cost_policy, Some(CostPolicy::ANY));
    wait_state(&c, &fg, JobState::Transferred).await;
    // A mask that allows no unrestricted network is refused, naming the field.
    let raw: Result<serde_json::Value, _> = c
        .call_raw(
            ferry_proto::method::JOB_SET,
            serde_json::json!({"job_id": bg, "cost_policy": 64}),
        )
        .await;
    let e = raw.unwrap_err().to_string();
    assert!(
        e.contains("cost_policy") && e.contains("unrestricted"),
        "{e}"
    );
    // A preset name and null (back to the default) are accepted.
    let raw: serde_json::Value = c
        .call_raw(
            ferry_proto::method::JOB_SET,
            serde_json::json!({"job_id": bg, "cost_policy": "standard"}),
        )
        .await
        .unwrap();
    assert_eq!(raw["cost_policy"], serde_json::json!(0x8000_0067u32));
    let raw: serde_json::Value = c
        .call_raw(
            ferry_proto::method::JOB_SET,
            serde_json::json!({"job_id": bg, "cost_policy": null}),
        )
        .await
        .unwrap();
    assert!(raw["cost_policy"].is_null());
}

/// The interface of this host's IPv4 default route, if it has one.
fn default_route_interface() -> Option<String> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"00000000") && f.get(7) == Some(&"00000000")).then(|| f[0].to_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_a_listed_metered_interface_holds_background_jobs_without_networkmanager() {
    let Some(iface) = default_route_interface() else {
        println!("SKIPPED issue_15_a_listed_metered_interface: this host has no default route");
        return;
    };
    let srv = TestServer::start().await;
    srv.add_file("/i", vec![2u8; 2048]);
    // No system bus at all: only the configuration says the route is metered.
    let conf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        conf.path(),
        format!("[network]\nmetered_interfaces = [\"ferry-none0\", \"{iface}\"]\n"),
    )
    .unwrap();
    let conf_path = conf.path().to_str().unwrap().to_owned();
    let d = daemon_with(&["--config", &conf_path]);
    wait_log(&d, "metered_interface: true", 1, "the route was read");
    let c = d.client().await;
    let dir = d.files_dir();
    let bg = create(&c, &srv.url("/i"), &dir.join("bg"), CreateParams::default()).await;
    held(&c, &bg, "metered_network").await;
    let fg = create(&c, &srv.url("/i"), &dir.join("fg"), foreground()).await;
    wait_state(&c, &fg, JobState::Transferred).await;
    assert_eq!(
        srv.requests_for("/i").len(),
        1,
        "only the foreground job fetched"
    );

    // Another interface listed: not metered.
    std::fs::write(
        conf.path(),
        "[network]\nmetered_interfaces = [\"ferry-none0\"]\n",
    )
    .unwrap();
    let d = daemon_with(&["--config", &conf_path]);
    let c = d.client().await;
    let id = create(
        &c,
        &srv.url("/i"),
        &dir.join("other"),
        CreateParams::default(),
    )
    .await;
    wait_state(&c, &id, JobState::Transferred).await;
}
