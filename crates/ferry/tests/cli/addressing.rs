//! Naming a job on the command line: a full id, a unique id prefix, or a unique display name;
//! an ambiguous prefix or name lists the candidates; an unknown one says nothing matches.

use std::collections::HashMap;

use crate::support::*;

#[tokio::test]
async fn unique_prefix_and_display_name_address_a_job() {
    let env = Env::start();
    let id = env.create("solo").await;
    // The only job, so its short id is unique.
    assert_eq!(env.info(&id[..8]).await["job_id"], id.as_str());
    assert_eq!(env.info(&id[..3]).await["job_id"], id.as_str());
    assert_eq!(env.info("solo").await["job_id"], id.as_str());
    assert_eq!(env.info(&id.to_uppercase()).await["job_id"], id.as_str());
    // `--json` may come after the verb too (it is a global flag).
    let out = env.ok(&["info", "solo", "--json"]).await;
    assert_eq!(out.json()["display_name"], "solo");
    // The human form names the job.
    let out = env.ok(&["info", "solo"]).await;
    assert!(out.stdout.contains(&id), "{out:?}");
    assert!(out.stdout.contains("suspended"), "{out:?}");
    // A final job can still be inspected by name.
    let out = env.ok(&["cancel", "solo"]).await;
    assert_eq!(out.stdout.trim(), "cancelled");
    assert_eq!(env.info("solo").await["state"], "cancelled");
}

#[tokio::test]
async fn ambiguous_and_unknown_names_fail_with_candidates() {
    let env = Env::start();
    let a = env.create("twin").await;
    let b = env
        .json(&["create", "twin", "--allow-duplicate-name"])
        .await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = env.run(&["info", "twin"]).await;
    // An ambiguous name is a usage error (exit 2).
    out.expect_code(2);
    assert!(out.stderr.contains("ambiguous"), "{out:?}");
    for id in [&a, &b] {
        assert!(
            out.stderr.contains(&format!("{} (twin)", &id[..8])),
            "{out:?}"
        );
    }
    assert!(out.stdout.is_empty(), "{out:?}");

    // Two jobs whose ids start alike: at most 17 ids are needed for two to share a first
    // hex digit.
    let mut by_first: HashMap<char, Vec<(String, String)>> = HashMap::new();
    for (id, name) in [
        (a.clone(), "twin".to_owned()),
        (b.clone(), "twin".to_owned()),
    ] {
        by_first
            .entry(id.chars().next().unwrap())
            .or_default()
            .push((id, name));
    }
    let mut n = 0;
    let (digit, pair) = loop {
        if let Some((c, jobs)) = by_first.iter().find(|(_, v)| v.len() >= 2) {
            break (*c, jobs.clone());
        }
        let name = format!("job{n}");
        n += 1;
        let id = env.create(&name).await;
        by_first
            .entry(id.chars().next().unwrap())
            .or_default()
            .push((id, name));
    };
    let out = env.run(&["info", &digit.to_string()]).await;
    out.expect_code(2);
    assert!(out.stderr.contains("ambiguous"), "{out:?}");
    for (id, name) in &pair {
        assert!(
            out.stderr.contains(&format!("{} ({name})", &id[..8])),
            "{out:?}"
        );
    }
    // A longer prefix that only one of them has resolves.
    let (id, _) = &pair[0];
    assert_eq!(env.info(&id[..8]).await["job_id"], id.as_str());

    // Unknown names, for every verb that takes a job.
    for verb in ["info", "files", "resume", "suspend", "cancel", "complete"] {
        let out = env.run(&[verb, "no-such-job"]).await;
        // No such job: exit 5.
        out.expect_code(5);
        assert!(out.stderr.contains("no job matches no-such-job"), "{out:?}");
    }
    // An unknown full id is the daemon's not_found.
    let out = env
        .run(&["info", "00000000-0000-4000-8000-000000000000"])
        .await;
    out.expect_code(5);
    assert!(!out.stderr.is_empty(), "{out:?}");
}
