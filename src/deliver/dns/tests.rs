use std::net::IpAddr;

use super::records::{self, KeyMatch};
use super::spf::in_network;
use super::with_term;
use crate::config::DkimAlgorithm;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn networks_match_by_prefix_and_family() {
    assert!(in_network(ip("192.0.2.10"), ip("192.0.2.0"), Some(28)));
    assert!(!in_network(ip("192.0.2.20"), ip("192.0.2.0"), Some(28)));
    assert!(in_network(ip("192.0.2.10"), ip("192.0.2.10"), None));
    assert!(!in_network(ip("192.0.2.11"), ip("192.0.2.10"), None));
    assert!(in_network(ip("2001:db8::10"), ip("2001:db8::"), Some(32)));
    assert!(!in_network(ip("2001:db9::10"), ip("2001:db8::"), Some(32)));
    // An IPv4 network never holds an IPv6 address, whatever the prefix.
    assert!(!in_network(ip("::1"), ip("0.0.0.0"), Some(0)));
    assert!(in_network(ip("203.0.113.9"), ip("0.0.0.0"), Some(0)));
}

#[test]
fn a_new_term_goes_before_all_or_redirect() {
    assert_eq!(
        with_term("v=spf1 include:_spf.example.net ~all", "ip4:192.0.2.10"),
        "v=spf1 include:_spf.example.net ip4:192.0.2.10 ~all"
    );
    assert_eq!(
        with_term("v=spf1 mx redirect=_spf.example.org", "ip6:2001:db8::1"),
        "v=spf1 mx ip6:2001:db8::1 redirect=_spf.example.org"
    );
    assert_eq!(
        with_term("v=spf1 mx", "ip4:192.0.2.1"),
        "v=spf1 mx ip4:192.0.2.1"
    );
}

#[test]
fn dkim_records_compare_by_key_and_algorithm() {
    let ed = [7u8; 32];
    let record = records::dkim_record(DkimAlgorithm::Ed25519, &ed);
    assert_eq!(
        record,
        "v=DKIM1; k=ed25519; p=BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
    );
    assert_eq!(
        records::compare_dkim(&record, DkimAlgorithm::Ed25519, &ed),
        KeyMatch::Same
    );
    // Split into quoted parts and joined, a key can carry spaces.
    let spaced = "v=DKIM1; k=ed25519; p=BwcHBwcHBwcHBwcHBwcH BwcHBwcHBwcHBwcHBwcHBwc=";
    assert_eq!(
        records::compare_dkim(spaced, DkimAlgorithm::Ed25519, &ed),
        KeyMatch::Same
    );
    assert_eq!(
        records::compare_dkim(&record, DkimAlgorithm::Ed25519, &[8u8; 32]),
        KeyMatch::OtherKey
    );
    assert_eq!(
        records::compare_dkim(&record, DkimAlgorithm::Rsa, &ed),
        KeyMatch::OtherAlgorithm("ed25519".into())
    );
    assert_eq!(
        records::compare_dkim("v=DKIM1; k=ed25519; p=", DkimAlgorithm::Ed25519, &ed),
        KeyMatch::Revoked
    );
    assert!(records::dkim_testing("v=DKIM1; t=y; p=abc"));
    assert!(!records::dkim_testing("v=DKIM1; t=s; p=abc"));
}

#[test]
fn dmarc_records_give_policy_and_alignment() {
    let d = records::dmarc("v=DMARC1; p=Reject; adkim=s; rua=mailto:r@example.org").unwrap();
    assert_eq!(d.policy, "reject");
    assert!(d.strict_dkim && !d.strict_spf);
    assert!(records::dmarc("v=spf1 -all").is_none());
    assert_eq!(
        records::organisational("news.mail.example.org"),
        "example.org"
    );
    assert_eq!(records::organisational("example.org."), "example.org");
    // Below a public suffix of two labels, and in any case.
    assert_eq!(
        records::organisational("News.Example.CO.UK"),
        "example.co.uk"
    );
    assert_eq!(
        records::organisational("lists.example.com.au"),
        "example.com.au"
    );
    assert!(records::aligned(
        "news.example.co.uk",
        "example.co.uk",
        false
    ));
    assert!(!records::aligned("example.co.uk", "other.co.uk", false));
    assert!(records::aligned("mail.example.org", "example.org", false));
    assert!(!records::aligned("mail.example.org", "example.org", true));
    assert!(!records::aligned("example.net", "example.org", false));
}
