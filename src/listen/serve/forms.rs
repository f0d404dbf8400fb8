//! What a POST to the unsubscribe address asks for, from its body:
//! form-urlencoded or multipart/form-data (RFC 7578), as Gmail and Yahoo
//! send RFC 8058's one-click body, and as the page's buttons post.

/// What a POST asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Intent {
    /// RFC 8058's `List-Unsubscribe=One-Click`.
    OneClick,
    /// The page's button.
    Page,
    /// The confirmation page's "Undo".
    Undo,
}

/// The intent of a POST body: form-urlencoded or multipart/form-data.
/// Anything else (no body, another type) counts as one-click.
pub(super) fn intent(content_type: &str, body: &[u8]) -> Intent {
    let fields = if content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        multipart_fields(content_type, body)
    } else {
        url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    };
    match field("action") {
        Some(a) if a.eq_ignore_ascii_case("resubscribe") => Intent::Undo,
        Some(a) if a.eq_ignore_ascii_case("unsubscribe") => Intent::Page,
        _ => Intent::OneClick,
    }
}

/// The text fields of a multipart/form-data body (RFC 7578), enough for
/// the one field RFC 8058 posts and the page's own.
fn multipart_fields(content_type: &str, body: &[u8]) -> Vec<(String, String)> {
    let Some(boundary) = content_type.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    }) else {
        return Vec::new();
    };
    if boundary.is_empty() || boundary.len() > 70 {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let Some((head, value)) = part
            .split_once("\r\n\r\n")
            .or_else(|| part.split_once("\n\n"))
        else {
            continue;
        };
        let name = head.lines().find_map(|l| {
            let (h, v) = l.split_once(':')?;
            if !h.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            v.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
            })
        });
        if let Some(name) = name {
            let value = value
                .strip_suffix("\r\n")
                .or_else(|| value.strip_suffix('\n'))
                .unwrap_or(value);
            fields.push((name, value.to_string()));
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_click_bodies_as_providers_send_them() {
        assert_eq!(
            intent(
                "application/x-www-form-urlencoded",
                b"List-Unsubscribe=One-Click"
            ),
            Intent::OneClick
        );
        let multipart = b"--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n";
        assert_eq!(
            intent("multipart/form-data; boundary=XyZ", multipart),
            Intent::OneClick
        );
        assert_eq!(
            intent("application/x-www-form-urlencoded", b"action=unsubscribe"),
            Intent::Page
        );
        assert_eq!(
            intent("application/x-www-form-urlencoded", b"action=resubscribe"),
            Intent::Undo
        );
        let undo =
            b"--b\r\nContent-Disposition: form-data; name=\"action\"\r\n\r\nresubscribe\r\n--b--";
        assert_eq!(
            intent("multipart/form-data; boundary=\"b\"", undo),
            Intent::Undo
        );
        assert_eq!(intent("", b""), Intent::OneClick);
    }
}
