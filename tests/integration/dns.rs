//! `herald check --dns` against a real DNS server: knotd on 127.0.0.1,
//! serving zones each test writes, asked through `dns_resolver`. The DKIM
//! records are made by openssl from the key files (not by herald), so a
//! match means herald's public key is the one verifiers will compute.

use std::path::{Path, PathBuf};

use crate::messages::dkim_key;
use crate::util::*;

const SELECTOR: &str = "herald-rsa";
/// The relay's addresses: both in the zone, both covered by the good SPF.
const RELAY_V4: &str = "192.0.2.10";
const RELAY_V6: &str = "2001:db8::10";

/// What a zone holds; each test changes one part of the good one.
struct Zone {
    spf: String,
    dmarc: Option<String>,
    dkim: String,
    /// The name 192.0.2.10's PTR record gives (`None`: no PTR record).
    ptr_v4: Option<&'static str>,
    /// More lines for the example.org zone.
    extra: String,
}

impl Zone {
    fn good(dkim: String) -> Zone {
        Zone {
            // The relay is covered through include, CIDR and both families,
            // the MX only through `mx`: herald must follow all of them.
            spf: "v=spf1 mx include:_spf.example.org -all".into(),
            dmarc: Some("v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org".into()),
            dkim,
            ptr_v4: Some("relay.example.org."),
            extra: String::new(),
        }
    }

    /// The zone files: example.org and the reverse zones of the relay.
    fn files(&self) -> Vec<(&'static str, String)> {
        let mut org = String::from(
            "$TTL 60\n@ SOA ns.example.org. admin.example.org. 1 60 60 60 60\n@ NS ns\n\
             ns A 127.0.0.1\n@ MX 10 mail\nmail A 192.0.2.20\n",
        );
        org.push_str(&format!("relay A {RELAY_V4}\nrelay AAAA {RELAY_V6}\n"));
        org.push_str(&format!("@ TXT {}\n", quoted(&self.spf)));
        org.push_str("_spf TXT \"v=spf1 ip4:192.0.2.0/28 ip6:2001:db8::/32 -all\"\n");
        if let Some(dmarc) = &self.dmarc {
            org.push_str(&format!("_dmarc TXT {}\n", quoted(dmarc)));
        }
        org.push_str(&format!(
            "{SELECTOR}._domainkey TXT {}\n",
            quoted(&self.dkim)
        ));
        org.push_str(&self.extra);
        let soa = "$TTL 60\n@ SOA ns.example.org. admin.example.org. 1 60 60 60 60\n@ NS ns.example.org.\n";
        let v4 = match self.ptr_v4 {
            Some(name) => format!("{soa}10 PTR {name}\n"),
            None => soa.to_string(),
        };
        // 2001:db8::10 in nibbles, below 8.b.d.0.1.0.0.2.ip6.arpa.
        let v6 = format!("{soa}0.1.{} PTR relay.example.org.\n", ["0"; 22].join("."));
        vec![
            ("example.org", org),
            ("2.0.192.in-addr.arpa", v4),
            ("8.b.d.0.1.0.0.2.ip6.arpa", v6),
        ]
    }
}

/// A TXT value as a zone file writes it: quoted parts of at most 200
/// characters (one DNS string holds 255), as DNS hosts split long keys.
fn quoted(text: &str) -> String {
    text.as_bytes()
        .chunks(200)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A DKIM key and its record as openssl makes it; `None` when skipped.
fn key(dir: &Path, name: &str) -> Option<(PathBuf, String)> {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let (pem, txt) = dkim_key(&sub, "rsa")?;
    Some((pem, std::fs::read_to_string(txt).unwrap()))
}

/// `herald check --dns --json` with the example post and settings, the
/// key and relay above and `resolver`: (exit code, the DNS findings).
fn check(dir: &Path, key: &Path, resolver: &str) -> (i32, Vec<serde_json::Value>, String) {
    let post = example_post();
    let config = example_config();
    let key = key.display().to_string();
    let env = [
        ("HERALD_DKIM_DOMAIN", "example.org"),
        ("HERALD_DKIM_SELECTOR", SELECTOR),
        ("HERALD_DKIM_KEY_FILE", key.as_str()),
        ("HERALD_SMTP_URL", "smtp://relay.example.org:587"),
        ("HERALD_DNS_RESOLVER", resolver),
    ];
    let args = [
        "--config",
        config.to_str().unwrap(),
        "check",
        post.to_str().unwrap(),
        "--dns",
    ];
    let text = herald_env(dir, &args, &env);
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let o = herald_env(dir, &json_args, &env);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&o), stderr(&o)));
    let dns: Vec<serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            let code = f["code"].as_str().unwrap();
            ["dkim-", "spf-", "dmarc-", "ptr-", "dns-", "relay-"]
                .iter()
                .any(|p| code.starts_with(p))
        })
        .cloned()
        .collect();
    assert_eq!(text.status.code(), o.status.code(), "{}", stderr(&text));
    (o.status.code().unwrap(), dns, stdout(&text))
}

fn codes(findings: &[serde_json::Value]) -> Vec<&str> {
    findings
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect()
}

fn field<'a>(findings: &'a [serde_json::Value], code: &str, name: &str) -> &'a str {
    findings
        .iter()
        .find(|f| f["code"] == code)
        .unwrap_or_else(|| panic!("no {code} in {findings:#?}"))[name]
        .as_str()
        .unwrap()
}

#[test]
fn a_correct_zone_gives_no_dns_finding() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pem, record)) = key(tmp.path(), "ours") else {
        return;
    };
    let Some(knot) = Knot::start(tmp.path(), &Zone::good(record).files()) else {
        return;
    };
    let (code, dns, text) = check(tmp.path(), &pem, &knot.address());
    assert!(dns.is_empty(), "{dns:#?}");
    assert_eq!(code, 0, "{text}");
}

#[test]
fn a_dkim_record_of_another_key_is_an_error_with_the_record_to_publish() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pem, ours)) = key(tmp.path(), "ours") else {
        return;
    };
    let Some((_, other)) = key(tmp.path(), "old") else {
        return;
    };
    let Some(knot) = Knot::start(tmp.path(), &Zone::good(other).files()) else {
        return;
    };
    let (code, dns, text) = check(tmp.path(), &pem, &knot.address());
    assert_eq!(codes(&dns), ["dkim-key-mismatch"], "{dns:#?}");
    assert_eq!(code, 1, "{text}");
    // The fix is the record openssl made from our key file, ready to paste.
    let fix = field(&dns, "dkim-key-mismatch", "fix");
    assert!(
        fix.contains(&format!("{SELECTOR}._domainkey.example.org TXT \"{ours}\"")),
        "{fix}"
    );
    assert!(text.contains("DNS: error [dkim-key-mismatch]"), "{text}");
}

#[test]
fn a_missing_dmarc_record_is_an_error_naming_the_record() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pem, record)) = key(tmp.path(), "ours") else {
        return;
    };
    let zone = Zone {
        dmarc: None,
        ..Zone::good(record)
    };
    let Some(knot) = Knot::start(tmp.path(), &zone.files()) else {
        return;
    };
    let (code, dns, _) = check(tmp.path(), &pem, &knot.address());
    assert_eq!(codes(&dns), ["dmarc-missing"], "{dns:#?}");
    assert_eq!(code, 1);
    let fix = field(&dns, "dmarc-missing", "fix");
    assert!(
        fix.contains("_dmarc.example.org TXT \"v=DMARC1; p=none;"),
        "{fix}"
    );
}

#[test]
fn an_spf_record_without_the_relay_names_the_address_to_add() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pem, record)) = key(tmp.path(), "ours") else {
        return;
    };
    // Covers the MX and the relay's IPv6 address, not its IPv4 one.
    let zone = Zone {
        spf: "v=spf1 mx ip6:2001:db8::/32 ~all".into(),
        ..Zone::good(record)
    };
    let Some(knot) = Knot::start(tmp.path(), &zone.files()) else {
        return;
    };
    let (code, dns, _) = check(tmp.path(), &pem, &knot.address());
    assert_eq!(codes(&dns), ["spf-relay-missing"], "{dns:#?}");
    assert_eq!(code, 1);
    let message = field(&dns, "spf-relay-missing", "message");
    assert!(
        message.contains(RELAY_V4) && !message.contains(RELAY_V6),
        "{message}"
    );
    let fix = field(&dns, "spf-relay-missing", "fix");
    assert!(
        fix.contains("example.org TXT \"v=spf1 mx ip6:2001:db8::/32 ip4:192.0.2.10 ~all\""),
        "{fix}"
    );
}

#[test]
fn an_unreachable_resolver_is_one_clear_warning_not_an_error_about_the_post() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pem, _)) = key(tmp.path(), "ours") else {
        return;
    };
    // Nothing listens there: no answer ever comes.
    let resolver = format!("127.0.0.1:{}", free_port());
    let (code, dns, text) = check(tmp.path(), &pem, &resolver);
    assert_eq!(codes(&dns), ["dns-unreachable"], "{dns:#?}");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "DNS: warning [dns-unreachable]: could not reach the DNS resolver at {resolver}; check dns_resolver in herald.yaml or the network"
        )),
        "{text}"
    );
}

/// `check --dns` on the good zone with `n` stacked includes (each one
/// lookup, as ESPs' records stack up) before the terms that name the
/// relay; `None` when skipped.
fn with_includes(n: usize) -> Option<(i32, Vec<serde_json::Value>)> {
    let tmp = tempfile::tempdir().unwrap();
    let (pem, record) = key(tmp.path(), "ours")?;
    let includes: String = (1..=n)
        .map(|i| format!("include:esp{i}.example.org "))
        .collect();
    let extra: String = (1..=n)
        .map(|i| format!("esp{i} TXT \"v=spf1 ip4:198.51.100.{i} -all\"\n"))
        .collect();
    let zone = Zone {
        spf: format!("v=spf1 {includes}ip4:{RELAY_V4} ip6:2001:db8::/32 -all"),
        extra,
        ..Zone::good(record)
    };
    let knot = Knot::start(tmp.path(), &zone.files())?;
    let (code, dns, _) = check(tmp.path(), &pem, &knot.address());
    Some((code, dns))
}

#[test]
fn an_spf_record_past_ten_lookups_is_broken_even_though_it_names_the_relay() {
    // Receivers give up at the eleventh include, so the relay's own ip4
    // term is never reached.
    let Some((code, dns)) = with_includes(11) else {
        return;
    };
    assert_eq!(codes(&dns), ["spf-broken"], "{dns:#?}");
    assert_eq!(code, 1);
    let message = field(&dns, "spf-broken", "message");
    assert!(message.contains("more than 10 DNS lookups"), "{message}");
    // With nine the record is within the limit and passes.
    let Some((code, dns)) = with_includes(9) else {
        return;
    };
    assert!(dns.is_empty(), "{dns:#?}");
    assert_eq!(code, 0);
}

#[test]
fn a_relay_without_reverse_dns_or_with_one_that_does_not_point_back_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pem, record)) = key(tmp.path(), "ours") else {
        return;
    };
    let zone = Zone {
        ptr_v4: None,
        ..Zone::good(record.clone())
    };
    let Some(knot) = Knot::start(tmp.path(), &zone.files()) else {
        return;
    };
    let (code, dns, _) = check(tmp.path(), &pem, &knot.address());
    assert_eq!(codes(&dns), ["ptr-missing"], "{dns:#?}");
    // A warning: the mail may still go out, so `check` passes.
    assert_eq!(code, 0);
    assert!(field(&dns, "ptr-missing", "message").contains(RELAY_V4));
    drop(knot);
    // A PTR name whose own address is another one.
    let zone = Zone {
        ptr_v4: Some("mx.example.org."),
        extra: "mx A 192.0.2.99\n".into(),
        ..Zone::good(record)
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(knot) = Knot::start(tmp.path(), &zone.files()) else {
        return;
    };
    let (code, dns, _) = check(tmp.path(), &pem, &knot.address());
    assert_eq!(codes(&dns), ["ptr-mismatch"], "{dns:#?}");
    assert_eq!(code, 0);
    let message = field(&dns, "ptr-mismatch", "message");
    assert!(
        message.contains(RELAY_V4) && message.contains("mx.example.org"),
        "{message}"
    );
}
