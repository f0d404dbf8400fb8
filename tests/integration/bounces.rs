//! The bounce classifier against real bounces: sisimai's collection in
//! `../shared/bounces` (see its README), compared with what sisimai's own
//! test suite expects of each recipient. Not exact agreement: sisimai has
//! a template per mail server, herald general patterns, and other real
//! bounces judge it too. The goal is 95% of recipients agreeing on the
//! address being found, the status code and whether the address is bad;
//! the test holds it (see the floor below).

use std::path::PathBuf;

use herald::listen::bounces::{Kind, classify};

/// `../shared/bounces`, or `None` (with a message) when it is not there.
/// Under CI a missing folder fails the test, as for the post corpus.
fn bounces_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HERALD_BOUNCES")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::util::repo().join("../shared/bounces"));
    if !dir.join("expected.json").is_file() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "the bounce collection {} is missing, and CI=true: it must be there in CI",
                dir.display()
            );
        }
        eprintln!(
            "SKIPPED: bounce tests need {} (real bounces); it is not there",
            dir.display()
        );
        return None;
    }
    Some(dir)
}

#[test]
fn real_bounces_agree_with_sisimai() {
    let Some(dir) = bounces_dir() else {
        return;
    };
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let expected = expected.as_object().expect("expected.json is an object");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("mail"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    assert!(
        files.len() > 300,
        "only {} files in {}",
        files.len(),
        dir.display()
    );

    let (mut total, mut found, mut status_ok, mut hard_ok, mut all_ok) = (0, 0, 0, 0, 0);
    // Issue 24: the reason too, the false "hard" calls (a live address
    // suppressed for good: the costliest mistake), and the messages the
    // reference calls a filter, a block, an expiry or a full mailbox that
    // herald would suppress (none may be).
    let (mut reason_ok, mut false_hard, mut missed_hard) = (0, 0, 0);
    let mut wrongly_suppressed = Vec::new();
    let mut problems = Vec::new();
    let mut complaint_problems = Vec::new();
    let mut not_bounce_problems = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let raw = std::fs::read(path).unwrap();
        let report = classify(&raw);
        if name.ends_with("-not-a-bounce.eml") {
            if matches!(report.kind, Kind::Bounce | Kind::Complaint) {
                not_bounce_problems.push(format!("{name}: {:?}", report.kind));
            }
            continue;
        }
        let Some(list) = expected.get(&name).and_then(|v| v.as_array()) else {
            continue;
        };
        for (i, e) in list.iter().enumerate() {
            let want_status = e["status"].as_str().unwrap_or("");
            let want_hard = e["hard_bounce"].as_bool().unwrap_or(false);
            let want_feedback = e["feedback_type"].as_str().unwrap_or("");
            total += 1;
            if !want_feedback.is_empty()
                && (report.kind != Kind::Complaint
                    || report.feedback_type.as_deref() != Some(want_feedback))
            {
                complaint_problems.push(format!(
                    "{name}: want complaint {want_feedback}, got {:?} {:?}",
                    report.kind, report.feedback_type
                ));
            }
            let Some(r) = report.recipients.get(i) else {
                problems.push(format!(
                    "{name}#{}: no recipient (want {want_status} hard={want_hard} {}), kind {:?}",
                    i + 1,
                    e["reason"],
                    report.kind
                ));
                continue;
            };
            found += 1;
            let want_reason = e["reason"].as_str().unwrap_or("");
            reason_ok += usize::from(r.reason == want_reason);
            if r.hard && !want_hard {
                false_hard += 1;
            }
            if !r.hard && want_hard {
                missed_hard += 1;
            }
            if r.hard
                && matches!(
                    want_reason,
                    "filtered" | "blocked" | "expired" | "mailboxfull"
                )
            {
                wrongly_suppressed.push(format!(
                    "{name}#{}: {want_reason} taken as gone ({} {})",
                    i + 1,
                    r.status,
                    r.reason
                ));
            }
            let s = r.status == want_status;
            let h = r.hard == want_hard;
            status_ok += usize::from(s);
            hard_ok += usize::from(h);
            if s && h {
                all_ok += 1;
            } else {
                problems.push(format!(
                    "{name}#{}: {} got {} {} hard={} , want {} {} hard={} | {}",
                    i + 1,
                    r.address,
                    r.status,
                    r.reason,
                    r.hard,
                    want_status,
                    e["reason"].as_str().unwrap_or(""),
                    want_hard,
                    r.diagnostic.as_deref().unwrap_or("")
                ));
            }
        }
    }
    let pct = |n: usize| 100.0 * n as f64 / total.max(1) as f64;
    eprintln!(
        "bounces: {} files, {total} expected recipients",
        files.len()
    );
    eprintln!("  recipient found: {found}/{total} ({:.1}%)", pct(found));
    eprintln!(
        "  status equal:    {status_ok}/{total} ({:.1}%)",
        pct(status_ok)
    );
    eprintln!(
        "  hard equal:      {hard_ok}/{total} ({:.1}%)",
        pct(hard_ok)
    );
    eprintln!("  all three:       {all_ok}/{total} ({:.1}%)", pct(all_ok));
    eprintln!(
        "  reason equal:    {reason_ok}/{total} ({:.1}%)",
        pct(reason_ok)
    );
    eprintln!("  false hard:      {false_hard} (herald says gone, sisimai not)");
    eprintln!("  missed hard:     {missed_hard} (sisimai says gone, herald not)");
    eprintln!("disagreements ({}):", problems.len());
    for p in &problems {
        eprintln!("  {p}");
    }
    assert!(
        wrongly_suppressed.is_empty(),
        "would suppress a subscriber the reference calls filtered, blocked, expired or mailbox full:\n{}",
        wrongly_suppressed.join("\n")
    );
    assert!(
        complaint_problems.is_empty(),
        "complaints misread:\n{}",
        complaint_problems.join("\n")
    );
    assert!(
        not_bounce_problems.is_empty(),
        "ordinary mail taken for a bounce:\n{}",
        not_bounce_problems.join("\n")
    );
    // Issue 24 put a false "hard" (a live reader suppressed for good)
    // above agreement: "user unknown" counts as gone only under a code
    // that says so too, and a notice that contradicts its own report is
    // soft. Before that (issue 13's rules): found 98.8%, status 96.4%,
    // hard 96.4%, all three 95.2%, reason 78.5%, 7 false "hard" (6 of them
    // sisimai's "filtered", 1 "mailboxfull"). After (a specific 5.x.x code
    // or an answer to RCPT TO makes "user unknown" gone): hard 93.6%, all
    // three 91.2%, no false "hard", 17 missed ones (those count as soft bounces,
    // and `soft_bounce_limit` of them suppress the address). The floors
    // hold that: no false "hard" at all, and the rest where it is.
    assert_eq!(false_hard, 0, "false \"hard\" calls");
    const FLOOR: u32 = 90;
    assert!(
        all_ok * 100 >= total * FLOOR as usize,
        "only {all_ok} of {total} recipients agree with sisimai on address, status and hard ({:.1}%; the floor, the issue's goal, is {FLOOR}%)",
        pct(all_ok)
    );
    assert!(
        found * 100 >= total * 98,
        "recipients found: {found}/{total}"
    );
    assert!(
        status_ok * 100 >= total * 96,
        "status equal: {status_ok}/{total}"
    );
    assert!(hard_ok * 100 >= total * 93, "hard equal: {hard_ok}/{total}");
}

/// Issue 24: one rule for "the address is gone" (`herald::gone`). Each
/// case is run through both paths: a refusal during `herald send`
/// (`deliver::address_gone`, what the engine suppresses on) and the same
/// words and code in a bounce read by `herald bounces`. They used to
/// disagree on Gmail's disabled account (5.2.1), 5.1.4 and 5.4.4.
#[test]
fn send_and_bounce_paths_agree_on_address_gone() {
    // (the server's reply, gone?)
    let table: &[(&str, bool)] = &[
        (
            "550 5.1.1 <a@x.org>: Recipient address rejected: User unknown in local recipient table",
            true,
        ),
        (
            "550 5.1.1 The email account that you tried to reach does not exist.",
            true,
        ),
        (
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
            true,
        ),
        (
            "553 5.1.2 We weren't able to find the recipient domain.",
            true,
        ),
        // Words with no code that confirms them: when in doubt, soft
        // (hidden filters answer "user unknown" too).
        ("550 No such user here", false),
        ("550 5.1.1 No such user here", true),
        ("550 5.1.6 Recipient has moved", true),
        ("554 5.4.4 Unable to route: no such domain", true),
        // A disabled account may come back (sisimai: "suspend"): soft.
        (
            "550 5.2.1 The email account that you tried to reach is disabled.",
            false,
        ),
        ("550 5.1.4 Ambiguous destination mailbox address", false),
        ("500 5.5.1 command failed", false),
        ("550 5.7.1 Message rejected as spam", false),
        ("550 5.7.1 User unknown", false),
        (
            "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org",
            false,
        ),
        (
            "550 5.7.26 This mail is unauthenticated, which poses a security risk to the sender",
            false,
        ),
        (
            "552 5.3.4 Message size exceeds fixed maximum message size",
            false,
        ),
        ("552 5.2.2 Mailbox full", false),
        ("550 5.1.1 mailbox full", false),
        ("553 5.6.7 non-ASCII addresses are not permitted", false),
        ("550 5.1.7 bad sender mailbox address syntax", false),
        ("554 transaction failed", false),
        ("450 4.1.1 User unknown, try again later", false),
        ("421 4.4.2 Connection timed out", false),
    ];
    let mut wrong = Vec::new();
    for (reply, gone) in table {
        let send = herald::deliver::address_gone(reply);
        let status = reply
            .split_whitespace()
            .nth(1)
            .filter(|w| w.contains('.'))
            .unwrap_or("5.0.0");
        let bounce = format!(
            "From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.org\nSubject: Undelivered Mail\n\
             MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n\
             --B\nContent-Type: text/plain\n\nDelivery failed.\n\n\
             --B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n\
             Final-Recipient: rfc822; who@example.net\nAction: {}\nStatus: {status}\nDiagnostic-Code: smtp; {reply}\n\n--B--\n",
            if status.starts_with('4') {
                "delayed"
            } else {
                "failed"
            }
        );
        let r = classify(bounce.as_bytes());
        let hard = r.recipients.first().map(|x| x.hard);
        if send != *gone || hard != Some(*gone) {
            wrong.push(format!(
                "{reply}: want {gone}, send path {send}, bounce path {hard:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
