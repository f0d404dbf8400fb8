//! What herald must never do to files around it.

use crate::util::*;

fn dry_run(dir: &std::path::Path, outbox: &str) -> std::process::Output {
    herald_env(
        dir,
        &[
            "send",
            example_post().to_str().unwrap(),
            "--subscribers",
            repo().join("subscribers.example.csv").to_str().unwrap(),
            "--config",
            example_config().to_str().unwrap(),
            "--dry-run",
            "--outbox",
            outbox,
        ],
        &[("HERALD_UNSUBSCRIBE_SECRET", "boundaries")],
    )
}

#[test]
fn an_outbox_never_deletes_files_herald_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    // A folder holding someone's files is refused, and left as it was.
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("0000001-boss@example.org.eml"), "keep").unwrap();
    std::fs::write(theirs.join("notes.txt"), "keep").unwrap();
    let o = dry_run(tmp.path(), "theirs");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--outbox"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 2);
    assert_eq!(
        std::fs::read_to_string(theirs.join("notes.txt")).unwrap(),
        "keep"
    );

    // The outbox of an earlier dry run of the same issue is refreshed: its
    // messages are replaced, a file the user put there stays.
    let o = dry_run(tmp.path(), "mine");
    assert!(o.status.success(), "{}", stderr(&o));
    let mine = tmp.path().join("mine");
    std::fs::write(mine.join("my-notes.txt"), "keep").unwrap();
    let o = dry_run(tmp.path(), "mine");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(mine.join("my-notes.txt")).unwrap(),
        "keep"
    );
    assert_eq!(eml_files(&mine).len(), 6);

    // Another issue's outbox is not this issue's to empty.
    let other = another_issue(tmp.path(), "another-issue");
    let o = herald_env(
        tmp.path(),
        &[
            "send",
            other.to_str().unwrap(),
            "--to",
            "me@example.org",
            "--config",
            example_config().to_str().unwrap(),
            "--dry-run",
            "--outbox",
            "mine",
        ],
        &[("HERALD_UNSUBSCRIBE_SECRET", "boundaries")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(eml_files(&mine).len(), 6);
}
