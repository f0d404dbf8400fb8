//! The unsubscribe link: made by `message` for each recipient, checked by
//! `herald serve` when the recipient (or their mailbox provider) uses it.
//!
//! A link is `unsubscribe_url?u=<address>&k=<key id>&token=<HMAC>[&c=<campaign>]`:
//! - `u` is the address, base64url: a recipient's own address written out in
//!   a URL counts against the message in spam filters (SpamAssassin's
//!   GB_CUSTOM_HTM_URI) and would sit in plain sight in web server logs.
//! - `token` is HMAC-SHA256 of the lower-cased address under the secret
//!   key: only herald can make one, and checking it needs no database.
//! - `k` names the key that made the token, so the key can be changed
//!   (`HERALD_UNSUBSCRIBE_SECRET` gets a new one) while the old ones
//!   (`HERALD_UNSUBSCRIBE_OLD_SECRETS`) still check links in mail already
//!   sent. Links from before key ids existed have no `k`: every key is
//!   tried for them.
//! - `c` is the campaign the email belonged to, recorded with the
//!   unsubscribe. It is not covered by the token (it proves nothing about
//!   the person), so the server records it only when the journal knows
//!   that campaign.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::InputError;

/// The environment variable holding the key that signs unsubscribe links.
pub const SECRET_VAR: &str = "HERALD_UNSUBSCRIBE_SECRET";
/// Keys that signed links in mail already sent, separated by spaces or
/// line breaks (or `HERALD_UNSUBSCRIBE_OLD_SECRETS_FILE`, one per line).
pub const OLD_SECRETS_VAR: &str = "HERALD_UNSUBSCRIBE_OLD_SECRETS";

/// The length of every token: base64url of a SHA-256.
pub const TOKEN_LEN: usize = 43;
/// The length of every key id.
pub const KEY_ID_LEN: usize = 8;
/// The longest address a link can carry (RFC 5321's 254, with room).
const MAX_ADDRESS: usize = 320;

/// What a campaign id keeps as it is in a link: its own characters
/// (`openinfra-newsletter-may-2025@2025-05-28`) are all safe in a query.
const CAMPAIGN: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// One key: its secret and the id that names it in links.
#[derive(Clone)]
pub struct Key {
    id: String,
    secret: Vec<u8>,
}

impl Key {
    pub fn new(secret: Vec<u8>) -> Key {
        // A hash of the secret: names the key without telling anything
        // about it, and needs no setting of its own.
        let mut h = Sha256::new();
        h.update(b"herald unsubscribe key id\0");
        h.update(&secret);
        let id = URL_SAFE_NO_PAD.encode(h.finalize())[..KEY_ID_LEN].to_string();
        Key { id, secret }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, email: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(email.to_lowercase().as_bytes());
        mac
    }

    pub fn token(&self, email: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(email).finalize().into_bytes())
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

/// The key that signs new links, and the old ones that still check links.
#[derive(Clone, Debug)]
pub struct Keys {
    current: Key,
    old: Vec<Key>,
}

/// What a link says, once its token is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The address, as it was in the list.
    pub email: String,
    /// The campaign the link came from, as the link says (unchecked).
    pub campaign: Option<String>,
}

impl Keys {
    pub fn new(current: Vec<u8>, old: Vec<Vec<u8>>) -> Keys {
        Keys {
            current: Key::new(current),
            old: old.into_iter().map(Key::new).collect(),
        }
    }

    /// The keys from the environment; `None` when no current key is set.
    pub fn from_env() -> Result<Option<Keys>, InputError> {
        let Some(current) = crate::config::secret(SECRET_VAR)? else {
            return Ok(None);
        };
        let old = match crate::config::secret(OLD_SECRETS_VAR)? {
            Some(list) => list
                .expose()
                .split(|b| b.is_ascii_whitespace())
                .filter(|s| !s.is_empty())
                .map(<[u8]>::to_vec)
                .collect(),
            None => Vec::new(),
        };
        Ok(Some(Keys::new(current.expose().to_vec(), old)))
    }

    pub fn current(&self) -> &Key {
        &self.current
    }

    /// How many keys check links (the current one and the old ones).
    pub fn len(&self) -> usize {
        1 + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The link for `email` with `token` (made by the current key), under
    /// `base` (the `unsubscribe_url`).
    pub fn link(&self, base: &str, email: &str, token: &str, campaign: Option<&str>) -> String {
        let sep = if base.contains('?') { '&' } else { '?' };
        let u = URL_SAFE_NO_PAD.encode(email.as_bytes());
        let mut link = format!("{base}{sep}u={u}&k={}&token={token}", self.current.id);
        if let Some(c) = campaign {
            link.push_str("&c=");
            link.extend(percent_encoding::utf8_percent_encode(c, CAMPAIGN));
        }
        link
    }

    /// Checks a link's query string. `None` for anything but a link herald
    /// made with one of these keys: a missing, repeated or malformed
    /// parameter, an unknown key id, a token that does not match. The
    /// token is compared in constant time (`Mac::verify_slice`).
    pub fn verify(&self, query: &str) -> Option<Verified> {
        let (mut u, mut k, mut token, mut c) = (None, None, None, None);
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "u" => &mut u,
                "k" => &mut k,
                "token" => &mut token,
                "c" => &mut c,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                // `?u=a&u=b`: which one did the token sign? Neither, here.
                return None;
            }
        }
        let (u, token) = (u?, token?);
        if u.len() > MAX_ADDRESS * 4 / 3 + 4 || token.len() != TOKEN_LEN {
            return None;
        }
        let email = String::from_utf8(URL_SAFE_NO_PAD.decode(u.as_bytes()).ok()?).ok()?;
        if email.is_empty() || email.len() > MAX_ADDRESS || email.chars().any(char::is_control) {
            return None;
        }
        let mac = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?;
        let keys = std::iter::once(&self.current).chain(&self.old);
        // Every candidate key is tried, with no early exit, so the time
        // taken does not tell which key matched.
        let mut ok = false;
        for key in keys {
            if k.as_deref().is_some_and(|k| k != key.id) {
                continue;
            }
            ok |= key.mac(&email).verify_slice(&mac).is_ok();
        }
        if !ok {
            return None;
        }
        let campaign = c
            .map(|c| c.into_owned())
            .filter(|c| !c.is_empty() && c.len() <= 200 && !c.chars().any(char::is_control));
        Some(Verified { email, campaign })
    }
}

// ---------------------------------------------------------------------------
// VERP: whose message came back
//
// With `return_path: bounces@example.org`, the envelope sender of the
// message for the campaign's recipient number SEQ is
// `bounces+<tag>-<seq>-<mac>@example.org`:
// - `tag`: 6 characters naming the campaign (a hash of its id);
// - `seq`: the recipient's number in the campaign, base 36;
// - `mac`: 8 characters of HMAC-SHA256 under the unsubscribe key, so
//   nobody can make a token that suppresses someone else.
// All lower-case letters and digits: some mail servers lower-case the
// local part, and the whole fits the 64 characters a local part may have.
// The same token after `unsubscribe+` is the List-Unsubscribe mailto:.

/// What a checked VERP token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verp {
    /// [`campaign_tag`] of the campaign.
    pub tag: String,
    pub seq: i64,
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32(bytes: &[u8], chars: usize) -> String {
    let mut out = String::with_capacity(chars);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 && out.len() < chars {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
        if out.len() == chars {
            break;
        }
    }
    out
}

/// 6 characters that name a campaign in VERP tokens.
pub fn campaign_tag(campaign: &str) -> String {
    base32(&Sha256::digest(campaign.as_bytes()), 6)
}

impl Key {
    fn message_tag(&self, email: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(b"herald message-id\0");
        mac.update(email.to_lowercase().as_bytes());
        base32(&mac.finalize().into_bytes(), 16)
    }

    fn verp_mac(&self, tag: &str, seq: i64) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(b"herald verp\0");
        mac.update(tag.as_bytes());
        mac.update(b"\0");
        mac.update(seq.to_string().as_bytes());
        mac
    }
}

impl Keys {
    /// The VERP token of recipient `seq` of `campaign` (current key).
    pub fn verp_token(&self, campaign: &str, seq: i64) -> String {
        let tag = campaign_tag(campaign);
        let mac = self.current.verp_mac(&tag, seq).finalize().into_bytes();
        format!("{tag}-{}-{}", base36(seq), base32(&mac, 8))
    }

    /// The part of a recipient's Message-ID that names them: 16 characters
    /// of an HMAC of the address made for this use only ("herald
    /// message-id"), so it is the same on every resend and tells nothing of
    /// the unsubscribe token or the VERP token (a Message-ID travels in
    /// every quoted or forwarded copy).
    pub fn message_tag(&self, email: &str) -> String {
        self.current.message_tag(email)
    }

    /// Whether `message_id` is one herald made for `email` (its part
    /// before `@` has the address's [`Keys::message_tag`] as one of its
    /// dot-separated parts, see `message::Composer::message_id`), with any
    /// key. Checked in constant time for each key.
    pub fn message_id_names(&self, message_id: &str, email: &str) -> bool {
        let id = message_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        let Some((local, _)) = id.rsplit_once('@') else {
            return false;
        };
        let parts: Vec<&str> = local.split('.').filter(|p| p.len() == 16).collect();
        let mut found = false;
        for key in std::iter::once(&self.current).chain(&self.old) {
            let want = key.message_tag(email);
            for part in &parts {
                found |= want
                    .bytes()
                    .zip(part.to_ascii_lowercase().bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            }
        }
        found
    }

    /// Checks a VERP token with every key (so tokens survive a key change).
    pub fn verp_check(&self, token: &str) -> Option<Verp> {
        let token = token.to_ascii_lowercase();
        let mut parts = token.split('-');
        let (tag, seq, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || tag.len() != 6 || mac.len() != 8 || seq.len() > 12 {
            return None;
        }
        let seq = i64::from_str_radix(seq, 36).ok()?;
        let mut ok = false;
        for key in std::iter::once(&self.current).chain(&self.old) {
            let want = base32(&key.verp_mac(tag, seq).finalize().into_bytes(), 8);
            // Constant time: every byte compared, whatever the first says.
            let same = want
                .bytes()
                .zip(mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
            ok |= same;
        }
        ok.then(|| Verp {
            tag: tag.to_string(),
            seq,
        })
    }
}

fn base36(mut n: i64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n <= 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII")
}

/// The token in `local+<token>@domain`, when the address has `prefix` as
/// its local part before the `+` (case-blind).
pub fn verp_token_in<'a>(address: &'a str, prefix: &str) -> Option<&'a str> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, _domain) = address.rsplit_once('@')?;
    let (p, token) = local.split_once('+')?;
    p.eq_ignore_ascii_case(prefix).then_some(token)
}

/// `ana.lopez@example.org` as `a***z@e***.org`: enough for the person to
/// recognise their address, not enough for a passer-by to read it off a
/// screen or a log.
pub fn mask(email: &str) -> String {
    let (local, domain) = email.rsplit_once('@').unwrap_or((email, ""));
    let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
    let last = |s: &str| s.chars().last().map(String::from).unwrap_or_default();
    let local = if local.chars().count() > 2 {
        format!("{}***{}", first(local), last(local))
    } else {
        format!("{}***", first(local))
    };
    if domain.is_empty() {
        return local;
    }
    let (name, tld) = domain.rsplit_once('.').unwrap_or((domain, ""));
    let tld = if tld.is_empty() {
        String::new()
    } else {
        format!(".{tld}")
    };
    format!("{local}@{}***{tld}", first(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(link: &str) -> &str {
        link.split_once('?').unwrap().1
    }

    #[test]
    fn a_link_checks_with_its_key_and_with_no_other() {
        let keys = Keys::new(b"new".to_vec(), vec![b"old".to_vec()]);
        let t = keys.current().token("Ana@Example.org");
        let link = keys.link(
            "https://x.org/u",
            "Ana@Example.org",
            &t,
            Some("may@2025-05-28"),
        );
        let v = keys.verify(query(&link)).unwrap();
        assert_eq!(v.email, "Ana@Example.org");
        assert_eq!(v.campaign.as_deref(), Some("may@2025-05-28"));
        // Another secret, the same link: refused.
        assert_eq!(
            Keys::new(b"other".to_vec(), vec![]).verify(query(&link)),
            None
        );
    }

    #[test]
    fn links_of_an_old_key_and_links_without_a_key_id_still_work() {
        let old = Keys::new(b"old".to_vec(), vec![]);
        let t = old.current().token("a@x.org");
        let old_link = old.link("https://x.org/u", "a@x.org", &t, None);
        let rotated = Keys::new(b"new".to_vec(), vec![b"old".to_vec()]);
        assert!(rotated.verify(query(&old_link)).is_some());
        // The first release's links: no `k`.
        let u = URL_SAFE_NO_PAD.encode("a@x.org");
        assert!(rotated.verify(&format!("u={u}&token={t}")).is_some());
        // Once the old key is dropped, its links stop working.
        assert!(
            Keys::new(b"new".to_vec(), vec![])
                .verify(query(&old_link))
                .is_none()
        );
    }

    #[test]
    fn tampered_links_are_refused() {
        let keys = Keys::new(b"k".to_vec(), vec![]);
        let t = keys.current().token("a@x.org");
        let good = query(&keys.link("https://x.org/u", "a@x.org", &t, None)).to_string();
        assert!(keys.verify(&good).is_some());
        let other = URL_SAFE_NO_PAD.encode("b@x.org");
        let u = URL_SAFE_NO_PAD.encode("a@x.org");
        for bad in [
            good.replace(&u, &other),
            good.replace(
                &t,
                &t.replace(&t[..1], if &t[..1] == "A" { "B" } else { "A" }),
            ),
            good.replace(&format!("k={}", keys.current().id()), "k=AAAAAAAA"),
            format!("{good}&u={other}"),
            format!("u={u}"),
            format!("token={t}"),
            String::new(),
            "u=%FF%FE&token=x".into(),
            format!("u={}&token={t}", "A".repeat(5000)),
        ] {
            assert_eq!(keys.verify(&bad), None, "{bad}");
        }
    }

    #[test]
    fn verp_tokens_are_short_lowercase_and_cannot_be_forged() {
        let keys = Keys::new(b"k".to_vec(), vec![]);
        let t = keys.verp_token("june@2025-06-03", 1234);
        let address = format!("bounces+{t}@example.org");
        assert!(address.len() < 64, "{address}");
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        let token = verp_token_in(&address, "bounces").unwrap();
        let v = keys.verp_check(token).unwrap();
        assert_eq!(
            (v.tag.as_str(), v.seq),
            (campaign_tag("june@2025-06-03").as_str(), 1234)
        );
        // Upper-cased in transit: still good.
        assert!(keys.verp_check(&t.to_uppercase()).is_some());
        // Another recipient's number with this MAC: refused.
        let forged = t.replace(
            &format!("-{}-", base36(1234)),
            &format!("-{}-", base36(1235)),
        );
        assert!(keys.verp_check(&forged).is_none());
        assert!(
            Keys::new(b"other".to_vec(), vec![])
                .verp_check(&t)
                .is_none()
        );
        // After a key change the old tokens still check.
        assert!(
            Keys::new(b"new".to_vec(), vec![b"k".to_vec()])
                .verp_check(&t)
                .is_some()
        );
        assert_eq!(verp_token_in("bounces@example.org", "bounces"), None);
        assert_eq!(verp_token_in("other+x@example.org", "bounces"), None);
    }

    #[test]
    fn masks_keep_a_hint_of_the_address() {
        assert_eq!(mask("ana.lopez@example.org"), "a***z@e***.org");
        assert_eq!(mask("ab@x.io"), "a***@x***.io");
        assert_eq!(mask("weird"), "w***d");
    }
}
