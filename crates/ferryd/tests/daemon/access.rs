//! Other users: a second uid can neither see nor change the first user's job, and root-only
//! operations are refused to everyone else. The daemon runs in system mode; the second user is
//! `nobody`, reached by running a small client as that uid, so it needs root. Without root the
//! test reports itself skipped (by name, on stderr) and checks what a single uid can.

use std::os::unix::process::CommandExt;
use std::process::Command;

use serde_json::{Value, json};

use crate::protocol::Raw;
use crate::support::*;

const NOBODY: u32 = 65534;

/// Runs JSON-RPC calls as `nobody` through python3 and returns the answers.
pub fn calls_as_nobody(socket: &std::path::Path, calls: &[Value]) -> Vec<Value> {
    let out = rpc_command(socket, calls)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("python3 runs as nobody");
    answers(&out)
}

/// A python3 command that sends `calls` as JSON-RPC on one connection to `socket` and prints
/// each answer on a line (the caller picks the uid it runs as).
pub fn rpc_command(socket: &std::path::Path, calls: &[Value]) -> Command {
    let script = r#"
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rwb")
for i, line in enumerate(sys.argv[2:]):
    msg = json.loads(line); msg.update({"jsonrpc": "2.0", "id": i})
    f.write(json.dumps(msg).encode() + b"\n"); f.flush()
    print(f.readline().decode().strip(), flush=True)
"#;
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).arg(socket);
    for c in calls {
        cmd.arg(c.to_string());
    }
    cmd
}

/// The answers an [`rpc_command`] printed.
pub fn answers(out: &std::process::Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs `script` with python3 as `nobody` and returns each line it printed, parsed as JSON.
pub fn python_as_nobody(script: &str, args: &[String]) -> Vec<Value> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("python3 runs as nobody");
    answers(&out)
}

#[tokio::test]
async fn another_user_can_neither_see_nor_change_a_job() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "SKIPPED another_user_can_neither_see_nor_change_a_job: needs root to act as a second uid"
        );
        return;
    }
    let d = daemon_with(&["--system"]);
    let mut root = Raw::connect(&d.socket).await;
    let r = root
        .call("job.create", json!({"display_name": "root's job"}))
        .await;
    let id = r["result"]["job_id"].as_str().unwrap().to_string();
    let answers = calls_as_nobody(
        &d.socket,
        &[
            json!({"method": "ferry.hello", "params": {}}),
            json!({"method": "job.get", "params": {"job_id": id}}),
            json!({"method": "job.cancel", "params": {"job_id": id}}),
            json!({"method": "job.set", "params": {"job_id": id, "display_name": "mine"}}),
            json!({"method": "job.list", "params": {}}),
            json!({"method": "job.list", "params": {"all_users": true}}),
            json!({"method": "job.take_ownership", "params": {"job_id": id}}),
            json!({"method": "events.read", "params": {}}),
            json!({"method": "job.create", "params": {"display_name": "x", "files": [{"remote_url": "http://h/x", "local_path": "/root/x"}]}}),
        ],
    );
    assert_eq!(answers[0]["result"]["uid"], NOBODY);
    assert_eq!(answers[0]["result"]["mode"], "system");
    for a in &answers[1..4] {
        assert_eq!(a["error"]["code"], -32000, "{a}");
    }
    assert_eq!(answers[4]["result"]["jobs"], json!([]));
    assert_eq!(answers[5]["error"]["code"], -32002);
    assert_eq!(answers[6]["error"]["code"], -32002);
    assert_eq!(answers[7]["result"]["events"], json!([]));
    assert_eq!(
        answers[8]["error"]["code"], -32002,
        "nobody may not write to /root"
    );
    // Root's job is untouched, and root sees every user's jobs.
    let r = root.call("job.get", json!({"job_id": id})).await;
    assert_eq!(r["result"]["display_name"], "root's job");
    assert_eq!(r["result"]["state"], "suspended");
    let r = root.call("job.list", json!({"all_users": true})).await;
    assert_eq!(r["result"]["jobs"].as_array().unwrap().len(), 1);
}
