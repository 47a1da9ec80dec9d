//! Everyday use of `ferry transfer` and the verbs around it, as curl, wget and bitsadmin users
//! expect: no silent overwrite, exit codes a script can branch on, names that do not trap,
//! the options people reach for, a closed terminal that does not lose the download.

use ferry_testkit::http::TestServer;

use crate::support::*;

#[tokio::test]
async fn issue_13_3_existing_destination_is_refused_unless_overwrite() {
    let env = Env::start();
    let srv = TestServer::start().await;
    srv.add_file("/pub/small.txt", b"new content".to_vec());
    let dest = env.dir("dest");
    let existing = dest.join("small.txt");
    std::fs::write(&existing, b"old content").unwrap();
    let url = srv.url("/pub/small.txt");
    // Into the directory, and to the file path itself: both refused, the file untouched.
    for target in [arg(&dest), arg(&existing)] {
        let out = env.run(&["transfer", &url, target]).await;
        out.expect_code(2);
        assert!(
            out.stderr
                .contains(&format!("{} already exists", existing.display())),
            "{out:?}"
        );
        assert!(out.stderr.contains("--overwrite"), "{out:?}");
        assert_eq!(std::fs::read(&existing).unwrap(), b"old content");
    }
    // A dangling symlink is a name in use too.
    let link = dest.join("link.txt");
    std::os::unix::fs::symlink(dest.join("nowhere"), &link).unwrap();
    env.run(&["transfer", &url, arg(&link)])
        .await
        .expect_code(2);
    assert!(env.list(&["--all"]).await.is_empty(), "no job was created");
    // `--overwrite` replaces it.
    let out = env.ok(&["transfer", "--overwrite", &url, arg(&dest)]).await;
    assert_eq!(out.lines(), [format!("saved {}", existing.display())]);
    assert_eq!(std::fs::read(&existing).unwrap(), b"new content");
}
