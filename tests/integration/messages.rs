//! `herald send --dry-run`: one personalised, standards-complete message per
//! subscriber, checked with independent programs (Python's email parser,
//! dkimpy, SpamAssassin).

use std::path::{Path, PathBuf};

use crate::util::*;

const SECRET: &str = "test-unsubscribe-secret-3f9a1c";

fn dry_run(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let post = example_post();
    let config = example_config();
    let mut args = vec![
        "send",
        post.to_str().unwrap(),
        "--dry-run",
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut all_env = vec![("HERALD_UNSUBSCRIBE_SECRET", SECRET)];
    all_env.extend_from_slice(env);
    herald_env(dir, &args, &all_env)
}

fn example_list() -> PathBuf {
    repo().join("subscribers.example.csv")
}

/// The README's first command: the example post to the example list.
#[test]
fn readme_dry_run_writes_one_correct_message_per_subscriber() {
    let tmp = tempfile::tempdir().unwrap();
    let list = example_list();
    let o = dry_run(tmp.path(), &["--subscribers", list.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Subscribers read:   10"), "{out}");
    assert!(out.contains("Messages written:   6"), "{out}");
    assert!(
        out.contains("line 9: ana.silva@example.org - listed twice"),
        "{out}"
    );
    assert!(
        out.contains("line 10: not-an-address - invalid address"),
        "{out}"
    );
    assert!(
        out.contains("line 7: frank@example.com - unsubscribed"),
        "{out}"
    );
    assert!(out.contains("Largest message:"), "{out}");

    let outbox = tmp.path().join("outbox/herald-example-issue");
    let files = eml_files(&outbox);
    assert_eq!(files.len(), 6);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(outbox.join("manifest.json")).unwrap())
            .unwrap();
    let entries = manifest.as_array().unwrap();
    assert_eq!(entries.len(), 6);
    let ids: std::collections::HashSet<&str> = entries
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 6, "Message-IDs are unique");
    for e in entries {
        let f = outbox.join(e["file"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&f).unwrap().len(),
            e["size"].as_u64().unwrap()
        );
    }
    let skipped = std::fs::read_to_string(outbox.join("skipped.csv")).unwrap();
    assert_eq!(skipped.lines().count(), 1 + 4, "{skipped}");

    // What an independent parser sees.
    let Some(python) = python_with("email") else {
        return;
    };
    let parsed = python_json(
        &python,
        "check_eml.py",
        &files.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
    );
    let mut seen = Vec::new();
    for m in &parsed {
        assert_eq!(m["problems"], serde_json::json!([]), "{}", m["file"]);
        let to = m["to_address"].as_str().unwrap().to_string();
        let h = &m["headers"];
        assert_eq!(h["subject"][0], "Inside Open Infrastructure: Example Issue");
        assert_eq!(
            h["from"][0],
            "OpenInfra Foundation <newsletter@example.org>"
        );
        assert_eq!(h["list-unsubscribe-post"][0], "List-Unsubscribe=One-Click");
        // Out-of-office replies stay away from a newsletter.
        assert_eq!(h["precedence"], serde_json::json!(["bulk"]));
        let unsub = h["list-unsubscribe"][0].as_str().unwrap();
        use base64::Engine;
        let u = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(to.as_bytes());
        assert!(
            unsub.contains(&format!(
                "<https://openinfra.org/newsletter/unsubscribe?u={u}&k={}&token=",
                herald::unsubscribe::Key::new(SECRET.as_bytes().to_vec()).id()
            )),
            "{unsub}"
        );
        assert!(
            unsub.contains("<mailto:newsletter@example.org?subject=unsubscribe>"),
            "{unsub}"
        );
        let token = herald::deliver::message::unsubscribe_token(SECRET.as_bytes(), &to);
        assert!(unsub.contains(&format!("token={token}&c=")), "{unsub}");
        let html = m["html"].as_str().unwrap();
        let text = m["text"].as_str().unwrap();
        // The same signed link in the footer of both parts.
        assert!(
            html.contains(&format!("token={token}")),
            "footer link in HTML"
        );
        assert!(
            text.contains(&format!("token={token}")),
            "footer link in text"
        );
        assert!(
            h["message-id"][0]
                .as_str()
                .unwrap()
                .ends_with("@example.org>")
        );
        seen.push((
            to,
            m["to_name"].as_str().unwrap_or("").to_string(),
            html.to_string(),
            text.to_string(),
        ));
    }
    let (_, name, html, text) = seen
        .iter()
        .find(|s| s.0 == "ana.silva@example.org")
        .expect("Ana got mail");
    assert_eq!(name, "Ana Silva");
    assert!(html.contains("Hello Ana,") && text.contains("Hello Ana,"));
    let (_, _, _, text) = seen
        .iter()
        .find(|s| s.0 == "helene@example.fr")
        .expect("Hélène got mail");
    assert!(text.contains("Hello Hélène,"), "non-ASCII names survive");
    let (_, name, _, _) = seen
        .iter()
        .find(|s| s.0 == "Chen.Wei@example.net")
        .expect("address trimmed, domain lower-cased");
    assert_eq!(name, "Wei Chen");
    // Nobody twice, nobody skipped wrongly.
    let mut addrs: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    addrs.sort();
    assert_eq!(
        addrs,
        vec![
            "Chen.Wei@example.net",
            "ana.silva@example.org",
            "bob.o'neil@example.com",
            "dmitri@example.org",
            "eve@example.org",
            "helene@example.fr"
        ]
    );
}

/// A dry run reads its list as the run goes, without a throwaway journal,
/// unless an address is both on a row its status leaves out and on one to
/// mail: that list is imported as before (the import knows a person by
/// address, and the later status wins). Either way a dry run writes the
/// same: the same messages with the same recipients' numbers (in the
/// unsubscribe address a return path gives), the same skipped rows, in
/// the same order. The second list is the first with two such rows at its
/// end; the rest must come out the same.
#[test]
fn a_dry_run_read_as_it_goes_writes_what_an_imported_one_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let long = "N".repeat(1200);
    // Rows left out by their status, their header or as duplicates take a
    // number or not as the import gives them one; a quoted address herald
    // takes but the message format refuses is skipped after the run.
    let rows = format!(
        "email,first_name,status\n\
         ann@example.org,Ann,\n\
         bo@example.org,Bo,unsubscribed\n\
         not-an-address,X,\n\
         cy@example.org,{long},\n\
         ANN@example.org,Ann again,\n\
         dee@example.org,Dee,bounced\n\
         \"\"\"q@r\"\"@example.org\",Q,\n\
         eve@example.org,Eve,\n\
         fay@example.org,Fay,\n"
    );
    let streamed = tmp.path().join("streamed.csv");
    std::fs::write(&streamed, &rows).unwrap();
    let imported = tmp.path().join("imported.csv");
    std::fs::write(
        &imported,
        format!("{rows}zed@example.org,Zed,\nzed@example.org,Zed,unsubscribed\n"),
    )
    .unwrap();
    let run = |list: &Path, outbox: &str| {
        let o = dry_run(
            tmp.path(),
            &[
                "--subscribers",
                list.to_str().unwrap(),
                "--outbox",
                outbox,
                "--set",
                "return_path=bounces@example.org",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let dir = tmp.path().join(outbox);
        let messages: Vec<(String, String)> = eml_files(&dir)
            .iter()
            .map(|f| {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                (
                    name,
                    without_dates_and_ids(&std::fs::read_to_string(f).unwrap()),
                )
            })
            .collect();
        let skipped = std::fs::read_to_string(dir.join("skipped.csv")).unwrap();
        (messages, skipped)
    };
    let (a, a_skipped) = run(&streamed, "a");
    let (b, b_skipped) = run(&imported, "b");
    assert_eq!(a.len(), 3, "{a:?}");
    assert!(a.iter().any(|(_, m)| m.contains("unsubscribe+")), "{a:?}");
    // The later status wins: Zed is not mailed.
    assert_eq!(a, b);
    let zed = "12,\"zed@example.org\",unsubscribed,\"\"\n";
    assert!(b_skipped.contains(zed), "{b_skipped}");
    assert_eq!(a_skipped, b_skipped.replacen(zed, "", 1));
    assert!(
        a_skipped.ends_with("cannot be built (missing destination address, invalid envelope)\"\n"),
        "{a_skipped}"
    );
}

/// A message without what differs from run to run: its Date and
/// Message-ID, and its MIME boundary.
fn without_dates_and_ids(message: &str) -> String {
    let boundary = message
        .split("boundary=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("none")
        .to_string();
    message
        .lines()
        .filter(|l| !l.starts_with("Date:") && !l.starts_with("Message-ID:"))
        .map(|l| l.replace(&boundary, "BOUNDARY"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn merge_values_cannot_inject_markup_or_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("evil.csv");
    std::fs::write(
        &list,
        "email,first_name,last_name\nmallory@example.org,\"<script>alert(1)</script>\",\"X\r\nBcc: victim@example.org\"\n",
    )
    .unwrap();
    let o = dry_run(tmp.path(), &["--subscribers", list.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let files = eml_files(&tmp.path().join("outbox/herald-example-issue"));
    assert_eq!(files.len(), 1);
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    let headers = raw.split("\r\n\r\n").next().unwrap();
    assert!(
        !headers
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
        "{headers}"
    );
    let Some(python) = python_with("email") else {
        return;
    };
    let m = &python_json(&python, "check_eml.py", &[files[0].as_path()])[0];
    assert_eq!(m["problems"], serde_json::json!([]));
    assert!(m["headers"].get("bcc").is_none());
    let html = m["html"].as_str().unwrap();
    assert!(
        !html.contains("<script>"),
        "HTML part holds the markup as text"
    );
    assert!(html.contains("Hello &lt;script&gt;alert(1)&lt;/script&gt;,"));
    assert!(
        m["text"]
            .as_str()
            .unwrap()
            .contains("Hello <script>alert(1)</script>,"),
        "text part is raw"
    );
}

#[test]
fn test_send_goes_only_to_the_given_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let list = example_list();
    let o = dry_run(
        tmp.path(),
        &[
            "--subscribers",
            list.to_str().unwrap(),
            "--to",
            "me@example.org",
            "--to",
            "Me@Example.org",
            "--to",
            "boss@example.org",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let files = eml_files(&tmp.path().join("outbox/herald-example-issue-test"));
    assert_eq!(files.len(), 2, "the list is ignored and --to deduplicated");
    for f in &files {
        let raw = std::fs::read_to_string(f).unwrap();
        assert!(
            raw.contains("\r\nSubject: [TEST] Inside Open Infrastructure: Example Issue\r\n"),
            "{raw:.400}"
        );
    }
    assert!(!tmp.path().join("outbox/herald-example-issue").exists());
}

#[test]
fn broken_csv_rows_are_refused_with_lines_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("broken.csv");
    std::fs::write(&list, "email,first_name\r\nok@example.org,Ok\r\nbad@example.org,Austin, TX\r\nfine@example.org,Fine\r\nalso@example.org,A,B,C\r\n").unwrap();
    let o = dry_run(tmp.path(), &["--subscribers", list.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("2 broken row(s); nothing was written"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:3: this row has 3 fields but the header has 2",
            list.display()
        )),
        "{err}"
    );
    assert!(err.contains(&format!("{}:5:", list.display())), "{err}");
    assert!(err.contains("double quotes"), "{err}");
    assert!(!tmp.path().join("outbox").exists(), "nothing written");
}

#[test]
fn list_without_email_column_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("names.csv");
    std::fs::write(&list, "name,address\nAna,ana@example.org\n").unwrap();
    let o = dry_run(tmp.path(), &["--subscribers", list.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!(
            "{}:1: the first line must name the columns",
            list.display()
        )),
        "{}",
        stderr(&o)
    );
    assert!(!tmp.path().join("outbox").exists());
}

#[test]
fn missing_settings_are_listed_together_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let list = example_list();
    let post = example_post();
    let o = herald_env(
        tmp.path(),
        &[
            "send",
            post.to_str().unwrap(),
            "--dry-run",
            "--subscribers",
            list.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    for s in [
        "`from`",
        "`unsubscribe_url`",
        "`postal_address`",
        "HERALD_UNSUBSCRIBE_SECRET",
    ] {
        assert!(err.contains(s), "{s} not named: {err}");
    }
    assert!(!tmp.path().join("outbox").exists());
}

#[test]
fn suppression_list_and_status_column_keep_people_out() {
    let tmp = tempfile::tempdir().unwrap();
    let suppress = tmp.path().join("suppress.txt");
    std::fs::write(&suppress, "EVE@example.org\n").unwrap();
    let list = example_list();
    let o = dry_run(
        tmp.path(),
        &[
            "--subscribers",
            list.to_str().unwrap(),
            "--suppress",
            suppress.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["messages_written"], 5);
    assert_eq!(v["skipped"]["suppressed"], 1);
    assert_eq!(v["skipped"]["unsubscribed"], 1);
    assert_eq!(v["skipped"]["bounced"], 1);
}

#[test]
fn the_secret_never_reaches_files_or_output() {
    let tmp = tempfile::tempdir().unwrap();
    let list = example_list();
    let o = dry_run(tmp.path(), &["--subscribers", list.to_str().unwrap()], &[]);
    assert!(o.status.success());
    assert!(!stdout(&o).contains(SECRET) && !stderr(&o).contains(SECRET));
    for entry in std::fs::read_dir(tmp.path().join("outbox/herald-example-issue")).unwrap() {
        let content = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !content
                .windows(SECRET.len())
                .any(|w| w == SECRET.as_bytes())
        );
    }
}

pub(crate) fn dkim_key(dir: &Path, kind: &str) -> Option<(PathBuf, PathBuf)> {
    let openssl = tool("openssl")?;
    let key = dir.join(format!("{kind}.pem"));
    let gen_args: Vec<&str> = match kind {
        "rsa" => vec![
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ],
        _ => vec!["genpkey", "-algorithm", "ED25519", "-out"],
    };
    let ok = std::process::Command::new(&openssl)
        .args(&gen_args)
        .arg(&key)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
    let der = std::process::Command::new(&openssl)
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .unwrap()
        .stdout;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    // RSA keys are published as SubjectPublicKeyInfo, Ed25519 keys as the bare 32 bytes (RFC 8463).
    let (k, p) = match kind {
        "rsa" => ("rsa", b64.encode(&der)),
        _ => ("ed25519", b64.encode(&der[der.len() - 32..])),
    };
    let txt = dir.join(format!("{kind}.txt"));
    std::fs::write(&txt, format!("v=DKIM1; k={k}; p={p}")).unwrap();
    Some((key, txt))
}

#[test]
fn dkim_signatures_verify_with_dkimpy_for_rsa_and_ed25519() {
    let Some(python) = python_with("dkim, nacl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let list = example_list();
    for kind in ["rsa", "ed25519"] {
        let Some((key, txt)) = dkim_key(tmp.path(), kind) else {
            return;
        };
        let outbox = tmp.path().join(kind);
        let o = dry_run(
            tmp.path(),
            &[
                "--subscribers",
                list.to_str().unwrap(),
                "--outbox",
                outbox.to_str().unwrap(),
            ],
            &[
                ("HERALD_DKIM_DOMAIN", "example.org"),
                ("HERALD_DKIM_SELECTOR", "herald"),
                ("HERALD_DKIM_KEY_FILE", key.to_str().unwrap()),
            ],
        );
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        let files = eml_files(&outbox);
        assert_eq!(files.len(), 6);
        let mut args: Vec<&Path> = vec![txt.as_path()];
        args.extend(files.iter().map(PathBuf::as_path));
        for r in python_json(&python, "verify_dkim.py", &args) {
            assert_eq!(r["valid"], true, "{kind}: {r}");
            let signed: Vec<&str> = r["signed_headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap())
                .collect();
            for h in [
                "from",
                "to",
                "subject",
                "date",
                "message-id",
                "list-unsubscribe",
                "list-unsubscribe-post",
            ] {
                assert!(signed.contains(&h), "{kind}: {h} not signed: {signed:?}");
            }
        }
        // A changed message no longer verifies: the check can fail.
        let tampered = tmp.path().join("tampered.eml");
        let raw = std::fs::read_to_string(&files[0])
            .unwrap()
            .replace("Example Issue", "Exemple Issue");
        std::fs::write(&tampered, raw).unwrap();
        let r = &python_json(
            &python,
            "verify_dkim.py",
            &[txt.as_path(), tampered.as_path()],
        )[0];
        assert_eq!(r["valid"], false, "{kind}: tampered message verified");
    }
}

#[test]
fn bad_dkim_key_is_a_clear_error_without_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let list = example_list();
    let o = dry_run(
        tmp.path(),
        &["--subscribers", list.to_str().unwrap()],
        &[
            ("HERALD_DKIM_DOMAIN", "example.org"),
            ("HERALD_DKIM_SELECTOR", "s"),
            ("HERALD_DKIM_KEY_FILE", key.to_str().unwrap()),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{}: this is not a DKIM private key",
            key.display()
        )),
        "{err}"
    );
    assert!(!err.contains("bm90IGEga2V5"));
}

#[test]
fn spamassassin_scores_the_example_below_two() {
    let Some(sa) = tool("spamassassin") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let o = dry_run(tmp.path(), &["--to", "reader@example.com"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let file = &eml_files(&tmp.path().join("outbox/herald-example-issue-test"))[0];
    let out = std::process::Command::new(sa)
        .args(["-t", "-L"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap();
    let report = stdout(&out);
    let status = report
        .lines()
        .find(|l| l.starts_with("X-Spam-Status:"))
        .unwrap_or_else(|| panic!("no X-Spam-Status: {report:.2000}"));
    let score: f64 = status
        .split("score=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{status}"));
    eprintln!("SpamAssassin: {status}");
    assert!(
        score < 2.0,
        "score {score}; report:\n{}",
        report
            .split("Content analysis details")
            .nth(1)
            .unwrap_or(&report)
    );
}
