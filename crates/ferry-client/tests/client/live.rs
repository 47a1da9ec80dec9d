//! Against a real `ferryd` (the workspace's `target/<profile>/ferryd`, see
//! `ferry_testkit::daemon::ferryd_bin`) and the testkit's HTTP server on 127.0.0.1: the opt-in
//! autostart of `Client::connect_with`, and `Client::wait_for`, which must be driven by the
//! job's events (a counting proxy in front of the daemon shows what the wait sends).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_client::proto::params::{CreateParams, SetParams};
use ferry_client::proto::{FileSpec, JobState};
use ferry_client::wait::WAIT_FOR;
use ferry_client::{Client, ClientError, ConnectOptions, Until};
use ferry_testkit::daemon::{TestDaemon, ferryd_bin};
use ferry_testkit::http::TestServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

/// Bound for anything that should happen promptly; a hang fails instead of blocking.
const WAIT: Duration = Duration::from_secs(60);

fn spec(url: &str, path: &Path) -> FileSpec {
    FileSpec {
        remote_url: url.into(),
        local_path: path.to_string_lossy().into_owned(),
        sha256: None,
        ranges: None,
    }
}

async fn job_with(c: &Client, files: Vec<FileSpec>) -> String {
    c.create(CreateParams {
        display_name: "client test".into(),
        files: (!files.is_empty()).then_some(files),
        ..CreateParams::default()
    })
    .await
    .expect("job.create")
}

/// Stops a daemon the library started (it runs in its own process group and outlives the
/// client on purpose), so a failing test leaves nothing behind.
struct Started(Option<i32>);

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

#[tokio::test]
async fn issue_13_connect_autostarts_a_daemon_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ferryd.sock");
    let state = dir.path().join("state");
    // Without the opt-in nothing is started: the caller gets the connect error.
    let plain = Client::connect_with(&ConnectOptions::new().socket(&socket)).await;
    assert!(
        matches!(plain, Err(ClientError::Connect { .. })),
        "no daemon must be started unless asked: {plain:?}"
    );
    assert!(!state.exists(), "nothing may have run");

    let options = ConnectOptions::new()
        .socket(&socket)
        .autostart(true)
        .daemon(ferryd_bin())
        .daemon_args([
            "--state-dir".into(),
            state.clone().into_os_string(),
            "--config".into(),
            "/dev/null".into(),
            "--system-bus".into(),
            "none".into(),
        ]);
    let client = Client::connect_with(&options)
        .await
        .expect("connect_with starts a daemon");
    let hello = client.hello().await.expect("ferry.hello");
    let _stop = Started(hello.pid.and_then(|p| i32::try_from(p).ok()));
    assert_eq!(hello.socket.as_deref(), Some(socket.to_str().unwrap()));
    assert_eq!(hello.state_dir.as_deref(), Some(state.to_str().unwrap()));
    assert_ne!(hello.pid, Some(std::process::id()), "a daemon of its own");
    // It logs to its state dir (the same start as the CLI's), and keeps serving a second
    // client: the next connect_with finds it instead of starting another.
    assert!(state.join("ferryd.log").is_file(), "{:?}", hello.log);
    let again = Client::connect_with(&options).await.expect("connect again");
    assert_eq!(again.hello().await.unwrap().pid, hello.pid);
    // A job on it works end to end.
    let id = job_with(&client, vec![]).await;
    let job = client
        .wait_for(&id, Until::state(JobState::Suspended), WAIT)
        .await
        .unwrap();
    assert_eq!(job.job_id, id);
}

#[tokio::test]
async fn issue_13_autostart_failure_names_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ferryd");
    let options = ConnectOptions::new()
        .socket(dir.path().join("ferryd.sock"))
        .autostart(true)
        .daemon(&missing);
    let err = Client::connect_with(&options).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ClientError::Autostart(_)), "{err:?}");
    assert!(
        msg.contains(missing.to_str().unwrap()) && msg.contains("FERRY_DAEMON"),
        "{msg}"
    );
}

/// A Unix-socket proxy in front of the daemon that records, per connection, the method of every
/// request the client sends.
struct CountingProxy {
    socket: PathBuf,
    calls: Arc<Mutex<Vec<Vec<String>>>>,
    changed: Arc<Notify>,
}

impl CountingProxy {
    fn start(daemon: &Path, dir: &Path) -> CountingProxy {
        let socket = dir.join("proxy.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let calls: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let changed = Arc::new(Notify::new());
        let (daemon, log, notify) = (daemon.to_path_buf(), calls.clone(), changed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = UnixStream::connect(&daemon).await.unwrap();
                let conn = {
                    let mut log = log.lock().unwrap();
                    log.push(Vec::new());
                    log.len() - 1
                };
                let (cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut ur, &mut cw).await;
                });
                let (log, notify) = (log.clone(), notify.clone());
                tokio::spawn(async move {
                    let mut lines = BufReader::new(cr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                        if let Some(m) = v.get("method").and_then(|m| m.as_str()) {
                            log.lock().unwrap()[conn].push(m.to_owned());
                            notify.notify_waiters();
                        }
                        if uw.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        CountingProxy {
            socket,
            calls,
            changed,
        }
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits (on the proxy's own notifications, bounded) until `cond` holds for the calls.
    async fn wait_until(&self, what: &str, cond: impl Fn(&[Vec<String>]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            if cond(&self.calls()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out waiting for {what}; calls were {:?}",
                    self.calls()
                );
            }
        }
    }
}

#[tokio::test]
async fn issue_13_wait_for_returns_on_the_event_not_a_poll() {
    let d = TestDaemon::start();
    let proxy = CountingProxy::start(&d.socket, d.dir.path());
    let direct = d.client().await;
    let id = job_with(&direct, vec![]).await;

    let client = Client::connect_to(&proxy.socket).await.unwrap();
    let waiter = {
        let (client, id) = (client.clone(), id.clone());
        tokio::spawn(async move {
            client
                .wait_for(&id, Until::state(JobState::Cancelled), WAIT)
                .await
        })
    };
    // The wait has its own connection (index 1): it follows, then reads the job once.
    proxy
        .wait_until("the wait to read the job", |calls| {
            calls
                .get(1)
                .is_some_and(|c| c.iter().any(|m| m == "job.get"))
        })
        .await;
    // Events that change no state (20 property changes) must not make it read the job again;
    // they reach its connection before the cancel's state event does.
    for i in 0..20 {
        direct
            .set(SetParams {
                job_id: id.clone(),
                description: Some(format!("change {i}")),
                ..SetParams::default()
            })
            .await
            .unwrap();
    }
    direct.cancel(&id).await.unwrap();
    let job = tokio::time::timeout(WAIT, waiter)
        .await
        .expect("wait_for returns once the job is cancelled")
        .unwrap()
        .expect("wait_for");
    assert_eq!(job.state, JobState::Cancelled);
    let calls = proxy.calls();
    assert_eq!(
        calls[0],
        Vec::<String>::new(),
        "the caller's connection is left alone"
    );
    assert_eq!(
        calls[1],
        ["events.follow", "job.get", "job.get"],
        "one read before waiting, one after the state event, nothing in between"
    );
}

#[tokio::test]
async fn issue_13_wait_for_sees_a_state_the_job_only_passes_through() {
    // An auto_complete job is `transferred` only until the daemon completes it: a poll would
    // most likely see `acknowledged` and never return; the state event is not missed.
    let d = TestDaemon::start();
    let server = TestServer::start().await;
    server.add_file("/a.bin", vec![7u8; 4096]);
    let c = d.client().await;
    let dest = d.files_dir().join("a.bin");
    let id = job_with(&c, vec![spec(&server.url("/a.bin"), &dest)]).await;
    c.set(SetParams {
        job_id: id.clone(),
        auto_complete: Some(true),
        ..SetParams::default()
    })
    .await
    .unwrap();
    let waiting = {
        let (c, id) = (c.clone(), id.clone());
        tokio::spawn(async move {
            c.wait_for(&id, Until::state(JobState::Transferred), WAIT)
                .await
        })
    };
    c.resume(&id).await.unwrap();
    let job = waiting
        .await
        .unwrap()
        .expect("the transferred state was seen");
    assert!(
        matches!(job.state, JobState::Transferred | JobState::Acknowledged),
        "{:?}",
        job.state
    );
    let done = c
        .wait_for(&id, Until::state(JobState::Acknowledged), WAIT)
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Acknowledged);
    assert_eq!(std::fs::read(&dest).unwrap(), vec![7u8; 4096]);
}

#[tokio::test]
async fn issue_13_quickstart_create_add_resume_wait_complete() {
    let d = TestDaemon::start();
    let server = TestServer::start().await;
    server.add_file("/one.txt", "first file\n");
    server.add_file("/two.txt", "second file\n");
    let c = d.client().await;
    let (one, two) = (d.files_dir().join("one.txt"), d.files_dir().join("two.txt"));
    let id = job_with(&c, vec![spec(&server.url("/one.txt"), &one)]).await;
    c.add_files(&id, vec![spec(&server.url("/two.txt"), &two)])
        .await
        .unwrap();
    // Already there: a new job is suspended, and the wait returns at once.
    let job = c
        .wait_for(&id, Until::state(JobState::Suspended), WAIT)
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Suspended);
    c.resume(&id).await.unwrap();
    let job = c.wait_for(&id, Until::Settled, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Transferred, "{:?}", job.error);
    c.complete(&id).await.unwrap();
    assert_eq!(std::fs::read_to_string(&one).unwrap(), "first file\n");
    assert_eq!(std::fs::read_to_string(&two).unwrap(), "second file\n");
}

#[tokio::test]
async fn issue_13_wait_for_settled_stops_at_a_fatal_error() {
    let d = TestDaemon::start();
    let server = TestServer::start().await;
    let c = d.client().await;
    let id = job_with(
        &c,
        vec![spec(&server.url("/missing"), &d.files_dir().join("m"))],
    )
    .await;
    c.resume(&id).await.unwrap();
    let job = c.wait_for(&id, Until::Settled, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Error);
    assert_eq!(job.error.map(|e| e.code).as_deref(), Some("HTTP_404"));
}

#[tokio::test]
async fn issue_13_wait_for_times_out_as_client_error_timeout() {
    let d = TestDaemon::start();
    let c = d.client().await;
    let id = job_with(&c, vec![]).await;
    // Never resumed: it stays suspended, which is not settled.
    let after = Duration::from_millis(300);
    let err = tokio::time::timeout(WAIT, c.wait_for(&id, Until::Settled, after))
        .await
        .expect("wait_for keeps its own deadline")
        .unwrap_err();
    match &err {
        ClientError::Timeout { method, after: a } => {
            assert_eq!(method, WAIT_FOR);
            assert_eq!(*a, after);
        }
        other => panic!("expected ClientError::Timeout, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("did not reach") && msg.contains("suspended"),
        "{msg}"
    );
    // The connection is still usable, and a missing job is the daemon's not_found.
    let missing = c
        .wait_for("00000000-0000-4000-8000-000000000000", Until::Settled, WAIT)
        .await
        .unwrap_err();
    assert!(missing.daemon_error().is_some(), "{missing:?}");
}
