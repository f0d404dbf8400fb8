//! herald's DKIM signatures, judged by two independent verifiers: dkimpy
//! (tests/tools/verify_dkim.py) and OpenDKIM's library, the code behind
//! the opendkim milter and opendkim-testmsg (tests/tools/verify_opendkim.py;
//! opendkim-testmsg itself can only ask DNS). Both read the public keys from
//! one file, so no DNS is used. Every signature of a message is verified
//! on its own: with two keys, both must hold, and a tampered copy must
//! break both.

use std::path::{Path, PathBuf};

use crate::delivery::Server;
use crate::messages::dkim_key;
use crate::util::*;

const SECRET: &str = "dkim-test-secret";
const DOMAIN: &str = "example.org";

/// An RSA and an Ed25519 key and the DNS records of both, as the file
/// both verifiers read (`SELECTOR._domainkey.DOMAIN RECORD` lines).
struct Keys {
    rsa: PathBuf,
    ed25519: PathBuf,
    zone: PathBuf,
}

const RSA_SELECTOR: &str = "herald-rsa";
const ED_SELECTOR: &str = "herald-ed";

fn keys(dir: &Path) -> Option<Keys> {
    let (rsa, rsa_txt) = dkim_key(dir, "rsa")?;
    let (ed25519, ed_txt) = dkim_key(dir, "ed25519")?;
    let zone = dir.join("keys.zone");
    std::fs::write(
        &zone,
        format!(
            "{RSA_SELECTOR}._domainkey.{DOMAIN} {}\n{ED_SELECTOR}._domainkey.{DOMAIN} {}\n",
            std::fs::read_to_string(rsa_txt).unwrap(),
            std::fs::read_to_string(ed_txt).unwrap()
        ),
    )
    .unwrap();
    Some(Keys { rsa, ed25519, zone })
}

/// The settings for one of the three set-ups: an RSA key, an Ed25519
/// key, or both (RSA first, as the README suggests).
fn dkim_env(keys: &Keys, setup: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![("HERALD_DKIM_DOMAIN", DOMAIN.to_string())];
    let rsa = keys.rsa.display().to_string();
    let ed = keys.ed25519.display().to_string();
    match setup {
        "rsa" => env.extend([
            ("HERALD_DKIM_SELECTOR", RSA_SELECTOR.into()),
            ("HERALD_DKIM_KEY_FILE", rsa),
        ]),
        "ed25519" => env.extend([
            ("HERALD_DKIM_SELECTOR", ED_SELECTOR.into()),
            ("HERALD_DKIM_KEY_FILE", ed),
        ]),
        _ => env.extend([
            ("HERALD_DKIM_SELECTOR", RSA_SELECTOR.into()),
            ("HERALD_DKIM_KEY_FILE", rsa),
            ("HERALD_DKIM_ALGORITHM", "rsa".into()),
            ("HERALD_DKIM_SELECTOR_2", ED_SELECTOR.into()),
            ("HERALD_DKIM_KEY_FILE_2", ed),
            ("HERALD_DKIM_ALGORITHM_2", "ed25519".into()),
        ]),
    }
    env
}

/// The selectors a set-up signs with, in the order of the headers.
fn selectors(setup: &str) -> Vec<&'static str> {
    match setup {
        "rsa" => vec![RSA_SELECTOR],
        "ed25519" => vec![ED_SELECTOR],
        _ => vec![RSA_SELECTOR, ED_SELECTOR],
    }
}

fn run(dir: &Path, args: &[&str], env: &[(&'static str, String)]) -> std::process::Output {
    let mut all: Vec<(&str, &str)> = vec![("HERALD_UNSUBSCRIBE_SECRET", SECRET)];
    all.extend(env.iter().map(|(k, v)| (*k, v.as_str())));
    herald_env(dir, args, &all)
}

fn dry_run(dir: &Path, outbox: &Path, env: &[(&'static str, String)]) -> Vec<PathBuf> {
    let post = example_post();
    let config = example_config();
    let list = repo().join("subscribers.example.csv");
    let o = run(
        dir,
        &[
            "send",
            post.to_str().unwrap(),
            "--dry-run",
            "--config",
            config.to_str().unwrap(),
            "--subscribers",
            list.to_str().unwrap(),
            "--outbox",
            outbox.to_str().unwrap(),
        ],
        env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let files = eml_files(outbox);
    assert_eq!(files.len(), 6);
    files
}

/// Both verifiers, or `None` (SKIPPED; a failure under CI=true).
struct Verifiers {
    dkimpy: PathBuf,
    opendkim: PathBuf,
}

fn verifiers() -> Option<Verifiers> {
    let dkimpy = python_with("dkim, nacl")?;
    // The package that brings libopendkim (which verify_opendkim.py loads).
    tool("opendkim-testmsg")?;
    let opendkim = python_with("ctypes")?;
    Some(Verifiers { dkimpy, opendkim })
}

/// One verifier's verdict on one file: (verifier, file name, and for each
/// signature in header order, its selector and whether it verified).
type Verdict = (String, String, Vec<(String, bool)>);

/// Each file's verdict from each verifier.
fn verdicts(v: &Verifiers, zone: &Path, files: &[PathBuf]) -> Vec<Verdict> {
    let mut args: Vec<&Path> = vec![zone];
    args.extend(files.iter().map(PathBuf::as_path));
    let mut out = Vec::new();
    for (name, python, script) in [
        ("dkimpy", &v.dkimpy, "verify_dkim.py"),
        ("opendkim", &v.opendkim, "verify_opendkim.py"),
    ] {
        for r in python_json(python, script, &args) {
            let sigs = r["signatures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["selector"].as_str().unwrap_or("").to_string(),
                        s["valid"].as_bool().unwrap(),
                    )
                })
                .collect();
            let file = Path::new(r["file"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            eprintln!("{name}: {file}: {sigs:?}");
            out.push((name.to_string(), file, sigs));
        }
    }
    out
}

fn dkim_headers(raw: &str) -> Vec<String> {
    let head = raw.split("\r\n\r\n").next().unwrap();
    let mut out: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut()
                && last.starts_with("DKIM-Signature:")
            {
                last.push_str("\r\n");
                last.push_str(line);
            }
        } else {
            out.push(line.to_string());
        }
    }
    out.retain(|h| h.starts_with("DKIM-Signature:"));
    out
}

#[test]
fn untouched_messages_verify_in_dkimpy_and_opendkim_with_rsa_ed25519_and_both() {
    let Some(v) = verifiers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(keys) = keys(tmp.path()) else { return };
    for setup in ["rsa", "ed25519", "both"] {
        let files = dry_run(tmp.path(), &tmp.path().join(setup), &dkim_env(&keys, setup));
        let want: Vec<(String, bool)> = selectors(setup)
            .into_iter()
            .map(|s| (s.to_string(), true))
            .collect();
        let verdicts = verdicts(&v, &keys.zone, &files);
        assert_eq!(verdicts.len(), 2 * files.len());
        for (tool, file, sigs) in &verdicts {
            assert_eq!(sigs, &want, "{setup}: {tool} on {file}");
        }
        // What is signed, as dkimpy reads it: each header a copy of which
        // must not be added is listed once more than it occurs.
        let mut args: Vec<&Path> = vec![keys.zone.as_path()];
        args.extend(files.iter().map(PathBuf::as_path));
        for r in python_json(&v.dkimpy, "verify_dkim.py", &args) {
            for sig in r["signatures"].as_array().unwrap() {
                let signed: Vec<&str> = sig["signed_headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_str().unwrap())
                    .collect();
                let count = |h: &str| signed.iter().filter(|s| **s == h).count();
                for h in [
                    "from",
                    "to",
                    "subject",
                    "date",
                    "message-id",
                    "list-id",
                    "list-unsubscribe",
                    "list-unsubscribe-post",
                    "feedback-id",
                    "mime-version",
                    "content-type",
                ] {
                    assert_eq!(count(h), 2, "{setup}: {h} in {signed:?}");
                }
                assert_eq!(count("precedence"), 1, "{signed:?}");
                for h in ["received", "return-path", "dkim-signature"] {
                    assert_eq!(count(h), 0, "{setup}: {h} signed: {signed:?}");
                }
            }
        }
        // The signature headers are folded into lines under 78 characters.
        let raw = std::fs::read_to_string(&files[0]).unwrap();
        let headers = dkim_headers(&raw);
        assert_eq!(headers.len(), selectors(setup).len(), "{setup}");
        for h in &headers {
            for line in h.split("\r\n") {
                assert!(
                    line.len() < 78,
                    "{setup}: {} characters: {line}",
                    line.len()
                );
            }
        }
        let algorithms: Vec<bool> = headers
            .iter()
            .map(|h| h.contains("a=ed25519-sha256;"))
            .collect();
        let want_ed: Vec<bool> = selectors(setup).iter().map(|s| *s == ED_SELECTOR).collect();
        assert_eq!(algorithms, want_ed, "{setup}: a= of each signature");
    }
}

/// The copies an outside checker made: each must fail every signature in
/// both verifiers.
#[test]
fn tampered_copies_fail_in_dkimpy_and_opendkim() {
    let Some(v) = verifiers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(keys) = keys(tmp.path()) else { return };
    for setup in ["rsa", "ed25519", "both"] {
        let files = dry_run(tmp.path(), &tmp.path().join(setup), &dkim_env(&keys, setup));
        let original = std::fs::read_to_string(&files[0]).unwrap();
        let (head, body) = original.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains("\r\nContent-Type: multipart/alternative;"),
            "{head}"
        );
        let at = body.find("Hello").expect("the greeting");
        let copies = [
            (
                "content-type",
                original.replacen(
                    "\r\nContent-Type: multipart/alternative;",
                    "\r\nContent-Type: multipart/mixed;",
                    1,
                ),
            ),
            (
                "list-unsubscribe",
                format!("List-Unsubscribe: <https://unsubscribe.example.net/x>\r\n{original}"),
            ),
            (
                "from",
                format!("From: \"OpenInfra Foundation\" <billing@example.net>\r\n{original}"),
            ),
            (
                "subject",
                format!("Subject: Your account is locked\r\n{original}"),
            ),
            // Someone else's campaign in Postmaster Tools' spam figures.
            (
                "feedback-id",
                format!("Feedback-ID: x:y:newsletter:example.net\r\n{original}"),
            ),
            (
                "body",
                format!("{head}\r\n\r\n{}J{}", &body[..at], &body[at + 1..]),
            ),
        ];
        let dir = tmp.path().join(format!("{setup}-tampered"));
        std::fs::create_dir(&dir).unwrap();
        let mut paths = vec![files[0].clone()];
        for (name, text) in &copies {
            assert_ne!(text, &original, "{name}: the copy differs");
            let p = dir.join(format!("{name}.eml"));
            std::fs::write(&p, text).unwrap();
            paths.push(p);
        }
        let verdicts = verdicts(&v, &keys.zone, &paths);
        assert_eq!(verdicts.len(), 2 * paths.len());
        let n = selectors(setup).len();
        for (tool, file, sigs) in &verdicts {
            assert_eq!(sigs.len(), n, "{setup}: {tool} on {file}: {sigs:?}");
            let untouched = file == files[0].file_name().unwrap().to_str().unwrap();
            for (selector, valid) in sigs {
                assert_eq!(
                    *valid, untouched,
                    "{setup}: {tool} on {file}: signature {selector} valid={valid}"
                );
            }
        }
    }
}

/// What arrived at a real SMTP server (aiosmtpd, saving each message as
/// received) verifies, not only the outbox file.
#[test]
fn signatures_verify_after_a_real_smtp_hop() {
    let Some(v) = verifiers() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(keys) = keys(tmp.path()) else { return };
    let saved = tmp.path().join("received");
    std::fs::create_dir(&saved).unwrap();
    let Some(server) = Server::start(tmp.path(), &["--save", saved.to_str().unwrap()]) else {
        return;
    };
    let list = tmp.path().join("list.csv");
    std::fs::write(
        &list,
        "email,first_name\nana@example.org,Ana\nbo@example.net,Bo\nchen@example.com,Chen\n",
    )
    .unwrap();
    let post = example_post();
    let config = example_config();
    let o = run(
        tmp.path(),
        &[
            "send",
            post.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--subscribers",
            list.to_str().unwrap(),
            "--smtp",
            &server.url(),
            "--yes",
        ],
        &dkim_env(&keys, "both"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let files = eml_files(&saved);
    assert_eq!(files.len(), 3, "{files:?}");
    let want: Vec<(String, bool)> = selectors("both")
        .into_iter()
        .map(|s| (s.to_string(), true))
        .collect();
    for (tool, file, sigs) in verdicts(&v, &keys.zone, &files) {
        assert_eq!(sigs, want, "{tool} on {file}");
    }
    // Feedback-ID (signed, as the verdicts above show: dkimpy lists it in
    // h=) is campaign:list:kind:sender, the same for every reader and
    // naming none of them.
    let ids: Vec<String> = files
        .iter()
        .map(|f| {
            let raw = std::fs::read_to_string(f).unwrap();
            let head = raw.split("\r\n\r\n").next().unwrap().to_string();
            let ids: Vec<&str> = head
                .split("\r\n")
                .filter_map(|l| l.strip_prefix("Feedback-ID: "))
                .collect();
            assert_eq!(ids.len(), 1, "{head}");
            ids[0].to_string()
        })
        .collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    let parts: Vec<&str> = ids[0].split(':').collect();
    assert_eq!(parts.len(), 4, "{ids:?}");
    // The campaign: the post's slug and date, as `herald status` names it.
    let (slug, date) = parts[0].split_once('@').unwrap();
    assert!(!slug.is_empty() && date.starts_with("20"), "{ids:?}");
    assert_eq!(
        parts[1..],
        ["newsletter.example.org", "newsletter", "example.org"]
    );
    assert!(
        !ids[0].contains("ana") && !ids[0].contains("bo@"),
        "{ids:?}"
    );
}

fn check_json(dir: &Path, env: &[(&'static str, String)]) -> (Option<i32>, serde_json::Value) {
    let post = example_post();
    let config = example_config();
    let o = run(
        dir,
        &[
            "check",
            post.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--json",
        ],
        env,
    );
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("{}{}", stdout(&o), stderr(&o)));
    (o.status.code(), v)
}

fn dkim_findings(v: &serde_json::Value) -> Vec<(String, String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"].as_str().unwrap().starts_with("dkim"))
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
                format!("{} {}", f["message"], f["fix"]),
            )
        })
        .collect()
}

#[test]
fn check_finds_a_wrong_algorithm_a_missing_rsa_key_and_is_quiet_with_both() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(keys) = keys(tmp.path()) else { return };

    // Both keys: nothing to say about DKIM.
    let (code, v) = check_json(tmp.path(), &dkim_env(&keys, "both"));
    assert_eq!(dkim_findings(&v), vec![], "{v}");
    assert_eq!(code, Some(0), "{v}");

    // Ed25519 alone: receivers without Ed25519 see no signature.
    let (_, v) = check_json(tmp.path(), &dkim_env(&keys, "ed25519"));
    let f = dkim_findings(&v);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0].0.as_str(), f[0].1.as_str()),
        ("dkim-no-rsa", "warning")
    );

    // The second key's file holds the RSA key, not the Ed25519 one.
    let mut env = dkim_env(&keys, "both");
    for (k, val) in env.iter_mut() {
        if *k == "HERALD_DKIM_KEY_FILE_2" {
            *val = keys.rsa.display().to_string();
        }
    }
    let (code, v) = check_json(tmp.path(), &env);
    let f = dkim_findings(&v);
    assert_eq!(code, Some(1), "an error: {v}");
    let wrong = f
        .iter()
        .find(|f| f.0 == "dkim-algorithm")
        .unwrap_or_else(|| panic!("{f:?}"));
    assert_eq!(wrong.1, "error");
    for part in [
        keys.rsa.display().to_string().as_str(),
        "`dkim_algorithm_2` is ed25519",
        "holds an RSA key",
        "`dkim_key_file_2`",
    ] {
        assert!(wrong.2.contains(part), "{part} not in {}", wrong.2);
    }

    // The same mistake stops a send before anything is written, naming the
    // file and the fix, and never the key.
    let outbox = tmp.path().join("outbox");
    let post = example_post();
    let config = example_config();
    let o = run(
        tmp.path(),
        &[
            "send",
            post.to_str().unwrap(),
            "--dry-run",
            "--config",
            config.to_str().unwrap(),
            "--to",
            "me@example.org",
            "--outbox",
            outbox.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "{}: `dkim_algorithm_2` is ed25519, but this file holds an RSA key. Set `dkim_algorithm_2: rsa`",
            keys.rsa.display()
        )),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"), "{err}");
    assert!(eml_files(&outbox).is_empty());
}

/// The README's way of making an RSA key: `opendkim-genkey` writes the key
/// (PKCS #8 PEM) and the DNS record; herald signs with the one and both
/// verifiers accept the other.
#[test]
fn a_key_made_by_opendkim_genkey_as_the_readme_says_verifies() {
    let Some(v) = verifiers() else { return };
    let Some(genkey) = tool("opendkim-genkey") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(genkey)
        .args(["-b", "2048", "-d", DOMAIN, "-s", RSA_SELECTOR, "-D"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // The record is written as quoted strings across lines; DNS joins them.
    let txt = std::fs::read_to_string(tmp.path().join(format!("{RSA_SELECTOR}.txt"))).unwrap();
    let record: String = txt.split('"').skip(1).step_by(2).collect();
    assert!(record.starts_with("v=DKIM1;"), "{txt}");
    let zone = tmp.path().join("keys.zone");
    std::fs::write(
        &zone,
        format!("{RSA_SELECTOR}._domainkey.{DOMAIN} {record}\n"),
    )
    .unwrap();
    let key = tmp.path().join(format!("{RSA_SELECTOR}.private"));
    let files = dry_run(
        tmp.path(),
        &tmp.path().join("outbox"),
        &[
            ("HERALD_DKIM_DOMAIN", DOMAIN.into()),
            ("HERALD_DKIM_SELECTOR", RSA_SELECTOR.into()),
            ("HERALD_DKIM_KEY_FILE", key.display().to_string()),
            ("HERALD_DKIM_ALGORITHM", "rsa".into()),
        ],
    );
    for (tool, file, sigs) in verdicts(&v, &zone, &files) {
        assert_eq!(
            sigs,
            vec![(RSA_SELECTOR.to_string(), true)],
            "{tool} on {file}"
        );
    }
}

/// `openssl` with `args`, which must succeed; returns its stdout.
fn openssl(openssl: &Path, args: &[&str]) -> Vec<u8> {
    let o = std::process::Command::new(openssl)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
    o.stdout
}

/// A key in PKCS #1 PEM (`BEGIN RSA PRIVATE KEY`: what `openssl genrsa`
/// wrote before OpenSSL 3, and still writes with `-traditional`) signs as
/// a PKCS #8 one does, and both verifiers accept the signatures.
#[test]
fn a_pkcs1_rsa_key_verifies_in_dkimpy_and_opendkim() {
    let Some(v) = verifiers() else { return };
    let Some(ssl) = tool("openssl") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("pkcs1.pem");
    let key_s = key.to_str().unwrap();
    openssl(&ssl, &["genrsa", "-traditional", "-out", key_s, "2048"]);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{pem}");
    use base64::Engine;
    let public = openssl(&ssl, &["pkey", "-in", key_s, "-pubout", "-outform", "DER"]);
    let zone = tmp.path().join("keys.zone");
    std::fs::write(
        &zone,
        format!(
            "{RSA_SELECTOR}._domainkey.{DOMAIN} v=DKIM1; k=rsa; p={}\n",
            base64::engine::general_purpose::STANDARD.encode(public)
        ),
    )
    .unwrap();
    let files = dry_run(
        tmp.path(),
        &tmp.path().join("outbox"),
        &[
            ("HERALD_DKIM_DOMAIN", DOMAIN.into()),
            ("HERALD_DKIM_SELECTOR", RSA_SELECTOR.into()),
            ("HERALD_DKIM_KEY_FILE", key_s.into()),
        ],
    );
    for (tool, file, sigs) in verdicts(&v, &zone, &files) {
        assert_eq!(
            sigs,
            vec![(RSA_SELECTOR.to_string(), true)],
            "{tool} on {file}"
        );
    }
}

/// RSA keys herald does not sign with (it signs with two-prime keys of
/// 2048 to 4096 bits and the exponent 65537): each stops a send before
/// anything is written (exit 2), naming the file, the reason and how to
/// make a key that works, never the key; `herald check` reports the same as
/// a `dkim-key` error, and under 1024 bits its `dkim-weak-key` warning as
/// before. The `rsa` crate signed with every one of these keys (a 1024-bit
/// key without a word), so this failed before. A 3000-bit key, which ring
/// refused (its primes are not a multiple of 512 bits), signs since herald
/// signs through AWS-LC: receivers check any size up to 4096.
#[test]
fn rsa_keys_herald_cannot_sign_with_stop_a_send_naming_the_file_and_the_fix() {
    let Some(ssl) = tool("openssl") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let path = |name: &str| tmp.path().join(format!("{name}.pem"));
    let gen_rsa = |name: &str, args: &[&str]| {
        let p = path(name);
        let mut all = vec!["genrsa", "-out", p.to_str().unwrap()];
        all.extend(args);
        openssl(&ssl, &all);
    };
    gen_rsa("1024-bits", &["1024"]);
    gen_rsa("512-bits", &["512"]);
    gen_rsa("three-primes", &["-primes", "3", "2048"]);
    gen_rsa("3000-bits", &["3000"]);
    let e3 = path("exponent-3");
    openssl(
        &ssl,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-pkeyopt",
            "rsa_keygen_pubexp:3",
            "-out",
            e3.to_str().unwrap(),
        ],
    );
    // A 2048-bit PKCS #1 key whose last number (qInv) was changed: the
    // file reads, the numbers do not fit together.
    let good = path("good");
    openssl(
        &ssl,
        &[
            "genrsa",
            "-traditional",
            "-out",
            good.to_str().unwrap(),
            "2048",
        ],
    );
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let pem = std::fs::read_to_string(&good).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = b64.decode(body).unwrap();
    *der.last_mut().unwrap() ^= 0x55;
    std::fs::write(
        path("damaged"),
        format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            b64.encode(&der)
        ),
    )
    .unwrap();

    for (name, reason) in [
        (
            "1024-bits",
            "this RSA key has 1024 bits; herald signs only with RSA keys of 2048 to 4096 bits",
        ),
        ("512-bits", "this RSA key has 512 bits;"),
        (
            "exponent-3",
            "this RSA key's public exponent is 3; herald signs only with the exponent 65537",
        ),
        (
            "three-primes",
            "herald cannot sign with this RSA key: it has more than two primes",
        ),
        (
            "damaged",
            "herald cannot sign with this RSA key: its numbers do not fit together",
        ),
    ] {
        let key = path(name).display().to_string();
        let env = vec![
            ("HERALD_DKIM_DOMAIN", DOMAIN.to_string()),
            ("HERALD_DKIM_SELECTOR", RSA_SELECTOR.to_string()),
            ("HERALD_DKIM_KEY_FILE", key.clone()),
        ];
        let outbox = tmp.path().join(format!("outbox-{name}"));
        let post = example_post();
        let config = example_config();
        let o = run(
            tmp.path(),
            &[
                "send",
                post.to_str().unwrap(),
                "--dry-run",
                "--config",
                config.to_str().unwrap(),
                "--to",
                "me@example.org",
                "--outbox",
                outbox.to_str().unwrap(),
            ],
            &env,
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        for part in [
            format!("{key}: {reason}"),
            "Make a 2048-bit RSA key (`opendkim-genkey -b 2048".into(),
            "set `dkim_selector` and `dkim_key_file` to them".into(),
        ] {
            assert!(err.contains(&part), "{name}: {part:?} not in {err}");
        }
        assert!(
            !err.contains("PRIVATE KEY") && !err.contains("panicked"),
            "{name}: {err}"
        );
        assert!(eml_files(&outbox).is_empty(), "{name}");

        let (code, v) = check_json(tmp.path(), &env);
        assert_eq!(code, Some(1), "{name}: an error: {v}");
        let f = dkim_findings(&v);
        let error = f
            .iter()
            .find(|f| f.0 == "dkim-key")
            .unwrap_or_else(|| panic!("{name}: {f:?}"));
        assert_eq!(error.1, "error", "{name}");
        assert!(
            error.2.contains(&format!("{key}: {reason}")),
            "{name}: {}",
            error.2
        );
        assert!(
            error.2.contains("Make a 2048-bit RSA key"),
            "{name}: {}",
            error.2
        );
        let weak: Vec<_> = f.iter().filter(|f| f.0 == "dkim-weak-key").collect();
        if name == "512-bits" {
            assert_eq!(weak.len(), 1, "{f:?}");
            assert_eq!(weak[0].1, "warning");
            assert!(
                weak[0].2.contains(&format!(
                    "the DKIM key {key} (`dkim_key_file`) has 512 bits; receivers ignore RSA signatures under 1024 bits"
                )),
                "{}",
                weak[0].2
            );
        } else {
            assert!(weak.is_empty(), "{name}: {f:?}");
        }
    }

    let key = path("3000-bits").display().to_string();
    let outbox = tmp.path().join("outbox-3000-bits");
    let o = run(
        tmp.path(),
        &[
            "send",
            example_post().to_str().unwrap(),
            "--dry-run",
            "--config",
            example_config().to_str().unwrap(),
            "--to",
            "me@example.org",
            "--outbox",
            outbox.to_str().unwrap(),
        ],
        &[
            ("HERALD_DKIM_DOMAIN", DOMAIN.to_string()),
            ("HERALD_DKIM_SELECTOR", RSA_SELECTOR.to_string()),
            ("HERALD_DKIM_KEY_FILE", key),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "3000 bits: {}", stderr(&o));
    let eml = eml_files(&outbox);
    assert_eq!(eml.len(), 1, "3000 bits");
    let message = std::fs::read_to_string(&eml[0]).unwrap();
    assert!(
        message.contains("DKIM-Signature:") && message.contains("a=rsa-sha256;"),
        "3000 bits: {}",
        &message[..message.len().min(400)]
    );
}
