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
    fn masks_keep_a_hint_of_the_address() {
        assert_eq!(mask("ana.lopez@example.org"), "a***z@e***.org");
        assert_eq!(mask("ab@x.io"), "a***@x***.io");
        assert_eq!(mask("weird"), "w***d");
    }
}
