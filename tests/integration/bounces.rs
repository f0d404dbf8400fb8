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
    eprintln!("disagreements ({}):", problems.len());
    for p in &problems {
        eprintln!("  {p}");
    }
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
    // The goal of issue 13 is 95%, and it is met: 95.2% (314 of 330) when
    // this was written, with recipients found 98.8%, status 96.4% and hard
    // 96.4% (the misses left are listed above: mostly sisimai's per-server
    // templates calling a bare "user unknown" filtered, and recipients it
    // counts twice). This floor keeps it from slipping back. The address
    // found and the hard/soft call, which decide whom herald suppresses,
    // are held too.
    const FLOOR: u32 = 95;
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
    assert!(hard_ok * 100 >= total * 96, "hard equal: {hard_ok}/{total}");
}
