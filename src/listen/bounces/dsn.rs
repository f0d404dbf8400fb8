//! RFC 3464 delivery-status notifications (`message/delivery-status`,
//! `message/global-delivery-status`, and the same fields sent as
//! text/plain by servers that get the type wrong) and RFC 5965 feedback
//! reports (`message/feedback-report`): both are header-like fields in
//! groups separated by blank lines.

/// The fields of a report body, unfolded, with names lower-cased. A blank
/// line between groups comes out as `("", "")` so per-recipient groups can
/// be told apart.
pub fn fields(body: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in body.lines().take(5000) {
        if line.trim().is_empty() {
            if out.last().is_some_and(|(n, _)| !n.is_empty()) {
                out.push((String::new(), String::new()));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((n, v)) = out.last_mut()
                && !n.is_empty()
                && v.len() < 2000
            {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && name.len() < 64 && !name.contains(' ') {
                out.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
    out
}

/// One per-recipient group of a delivery-status notification.
#[derive(Debug, Default, Clone)]
pub struct Entry {
    pub final_recipient: Option<String>,
    pub original_recipient: Option<String>,
    pub action: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
}

/// The address of a `Final-Recipient: rfc822; a@b` value (the type may be
/// missing; `utf-8;` is RFC 6533's).
pub fn typed_address(value: &str) -> Option<String> {
    let v = value.split_once(';').map_or(value, |(_, a)| a);
    super::text::addresses(v).into_iter().next()
}

/// Whether a text looks like delivery-status fields, for the servers that
/// send them as text/plain.
pub fn looks_like_dsn(body: &str) -> bool {
    let lower: String = body
        .chars()
        .take(4000)
        .collect::<String>()
        .to_ascii_lowercase();
    (lower.contains("\nfinal-recipient:") || lower.starts_with("final-recipient:"))
        && lower.contains("\nstatus:")
}

/// The per-recipient entries of a delivery-status body.
pub fn entries(body: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut cur = Entry::default();
    let flush = |cur: &mut Entry, out: &mut Vec<Entry>| {
        if cur.final_recipient.is_some() || cur.original_recipient.is_some() {
            out.push(std::mem::take(cur));
        } else {
            *cur = Entry::default();
        }
    };
    for (name, value) in fields(body) {
        match name.as_str() {
            "" => flush(&mut cur, &mut out),
            "final-recipient" | "original-recipient" => {
                let addr = typed_address(&value);
                let is_final = name == "final-recipient";
                // A second Final-Recipient without a blank line in between
                // starts the next recipient.
                if is_final && cur.final_recipient.is_some() {
                    flush(&mut cur, &mut out);
                }
                if is_final {
                    cur.final_recipient = addr;
                } else {
                    cur.original_recipient = addr;
                }
            }
            "action" => cur.action = Some(value.to_ascii_lowercase()),
            "status" => cur.status = super::text::status_in(&value),
            "diagnostic-code" => {
                let v = value.split_once(';').map_or(value.as_str(), |(t, d)| {
                    if t.trim().eq_ignore_ascii_case("smtp")
                        || t.trim().contains('-')
                        || t.len() < 12
                    {
                        d
                    } else {
                        &value
                    }
                });
                cur.diagnostic = Some(v.trim().to_string());
            }
            _ => {}
        }
        if out.len() >= 1000 {
            break;
        }
    }
    flush(&mut cur, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_recipients() {
        let body = "Reporting-MTA: dns; mx.example.org\n\n\
                    Final-Recipient: rfc822; A@example.jp\nAction: failed\nStatus: 5.1.1\n\
                    Diagnostic-Code: smtp; 550 5.1.1 <a@example.jp>:\n  Recipient address rejected\n\n\
                    Final-Recipient: rfc822; b@example.jp\nAction: delayed\nStatus: 4.4.7\n";
        let e = entries(body);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].final_recipient.as_deref(), Some("a@example.jp"));
        assert_eq!(e[0].status.as_deref(), Some("5.1.1"));
        assert!(
            e[0].diagnostic
                .as_deref()
                .unwrap()
                .ends_with("Recipient address rejected")
        );
        assert_eq!(e[1].action.as_deref(), Some("delayed"));
    }
}
