//! Listen options: the settings of the addresses people and mail servers
//! answer to (the unsubscribe page, the return path of bounces).

use lettre::message::Mailbox;
use url::Url;

use super::*;

/// The unsubscribe page: `https:` (Gmail and Yahoo ignore a one-click
/// link that is not), or `http:` on this machine for trials and tests.
pub(super) fn unsubscribe_web(v: &str) -> Result<Url, ValueError> {
    let u = web(v)?;
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if u.scheme() == "https" || loopback {
        Ok(u)
    } else {
        Err(format!(
            "`{}` is not https; mailbox providers ignore unsubscribe links that are not. \
             Put `herald serve` behind an HTTPS proxy (see the README's \"Unsubscribes\") and \
             write its https:// address here",
            v.trim()
        )
        .into())
    }
}

/// A bare address whose local part leaves room for `+<token>` (VERP).
pub(super) fn return_path(v: &str) -> Result<Mailbox, ValueError> {
    let m = mailbox(v)?;
    if m.email.user().contains('+') || m.email.user().len() > 40 {
        return Err(format!(
            "`{v}`: the return path's part before @ must be short (40 characters at most) and \
             have no +, because herald adds +<token> to it for each recipient"
        )
        .into());
    }
    Ok(m)
}
