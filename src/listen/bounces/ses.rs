//! Amazon SES notifications delivered by e-mail through SNS: a JSON
//! document in the body ("notificationType": "Bounce", "Complaint" or
//! "Delivery") instead of a DSN.

use super::Kind;

pub struct Ses {
    pub kind: Kind,
    pub feedback_type: Option<String>,
    /// (address, status, the server's words, action)
    pub recipients: Vec<(String, Option<String>, String, Option<String>)>,
}

/// The notification in `text`, if it holds one.
pub fn read(text: &str) -> Option<Ses> {
    if !text.contains("\"notificationType\"") {
        return None;
    }
    // SNS wraps long lines with "!" and a line break plus a space.
    let joined = text.replace("!\r\n ", "").replace("!\n ", "");
    let start = joined.find('{')?;
    let end = joined.rfind('}')?;
    let v: serde_json::Value = serde_json::from_str(joined.get(start..=end)?).ok()?;
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let kind = v.get("notificationType")?.as_str()?.to_ascii_lowercase();
    let (kind, list, feedback_type) = match kind.as_str() {
        "bounce" => (Kind::Bounce, &v["bounce"]["bouncedRecipients"], None),
        "complaint" => (
            Kind::Complaint,
            &v["complaint"]["complainedRecipients"],
            s(&v["complaint"]["complaintFeedbackType"]).or(Some("abuse".into())),
        ),
        "delivery" => (Kind::NotABounce, &v["delivery"]["recipients"], None),
        _ => return None,
    };
    let smtp = s(&v["delivery"]["smtpResponse"]).unwrap_or_default();
    let recipients = list
        .as_array()?
        .iter()
        .take(1000)
        .filter_map(|r| {
            let address = r
                .get("emailAddress")
                .and_then(|a| a.as_str())
                .or(r.as_str())?;
            let address = super::text::addresses(address).into_iter().next()?;
            let words = s(&r["diagnosticCode"]).unwrap_or_else(|| smtp.clone());
            let action =
                s(&r["action"]).or_else(|| (kind == Kind::NotABounce).then(|| "delivered".into()));
            let status = s(&r["status"]).or_else(|| super::text::status_in(&words));
            Some((address, status, words, action))
        })
        .collect();
    Some(Ses {
        kind,
        feedback_type,
        recipients,
    })
}
