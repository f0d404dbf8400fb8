//! The pages the server answers with: one layout, in the newsletter's
//! accent colour, with only its own style allowed to run; and every
//! header that keeps them out of search engines, frames and caches.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::App;
use crate::unsubscribe::{Verified, mask};

/// The pages' style; `ACCENT` becomes the newsletter's colour, and the
/// result's hash goes into the Content-Security-Policy.
pub(super) const CSS: &str = "body{margin:0;background:#f4f5f7;color:#1f2933;\
font:17px/1.5 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}\
main{max-width:32rem;margin:3rem auto;padding:2rem;background:#fff;border-top:6px solid ACCENT;\
border-radius:6px}\
.name{margin:0 0 .5rem;color:ACCENT;font-weight:700;letter-spacing:.04em;text-transform:uppercase;font-size:.85rem}\
h1{margin:0 0 1rem;font-size:1.5rem;color:#1b2a4a}\
button{font:inherit;font-weight:700;color:#fff;background:ACCENT;border:0;border-radius:4px;\
padding:.7rem 1.4rem;cursor:pointer}\
button.quiet{background:#fff;color:ACCENT;border:2px solid ACCENT}\
form{margin:1.5rem 0 .5rem}.small{color:#5b6675;font-size:.9rem}\
@media (prefers-color-scheme:dark){body{background:#111418;color:#e4e7eb}main{background:#1c2128}\
h1{color:#f1f3f5}.small{color:#aab2bd}button.quiet{background:#1c2128}}";

impl App {
    pub(super) fn page(&self, status: StatusCode, title: &str, body: &str) -> Response {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <meta name=\"robots\" content=\"noindex\">\
             <title>{title} · {name}</title><style>{css}</style></head>\n\
             <body><main><p class=\"name\">{name}</p><h1>{title}</h1>\n{body}\n</main></body></html>\n",
            title = escape(title),
            name = escape(&self.name),
            css = self.css,
        );
        self.respond(status, "text/html; charset=utf-8", html)
    }

    pub(super) fn respond(&self, status: StatusCode, kind: &'static str, body: String) -> Response {
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            "x-robots-tag",
            HeaderValue::from_static("noindex, nofollow"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        r
    }

    /// The one answer to every link that is not a good one: it does not
    /// say whether the address exists, is subscribed, or what was wrong.
    pub(super) fn bad_link(&self) -> Response {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        self.page(
            StatusCode::BAD_REQUEST,
            "This link does not work",
            "<p>The unsubscribe link is incomplete or was changed. Some mail programs cut long \
             links in two.</p><p>Use the unsubscribe link at the bottom of the newest email, \
             or reply to that email with the word <b>unsubscribe</b>.</p>",
        )
    }

    pub(super) fn trouble(&self) -> Response {
        self.page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again in a few minutes",
            "<p>Something went wrong on our side and nothing was changed. \
             Please try again in a few minutes.</p>",
        )
    }
}

pub(super) fn method_not_allowed(app: &App, allow: &'static str) -> Response {
    let mut r = app.page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Not allowed",
        "<p>This page cannot be used this way.</p>",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

pub(super) fn too_large(app: &App) -> Response {
    app.page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Too large",
        "<p>This request is larger than an unsubscribe can be.</p>",
    )
}

/// The form's `action`: the link's own query, relative, so it works under
/// whatever path the proxy gives the server.
pub(super) fn action(query: &str) -> String {
    escape(&format!("?{query}"))
}

pub(super) fn confirm_page(app: &App, query: &str, link: &Verified) -> Response {
    app.page(
        StatusCode::OK,
        "Unsubscribe?",
        &format!(
            "<p>Stop emails from {name} to <b>{addr}</b>?</p>\
             <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"action\" value=\"unsubscribe\">\
             <button type=\"submit\">Unsubscribe</button></form>\
             <p class=\"small\">Nothing changes until you press the button.</p>",
            name = escape(&app.name),
            addr = escape(&mask(&link.email)),
            action = action(query),
        ),
    )
}

pub(super) fn unsubscribed_page(app: &App, query: &str, masked: &str) -> Response {
    app.page(
        StatusCode::OK,
        "You are unsubscribed",
        &format!(
            "<p><b>{addr}</b> will get no more emails from {name}.</p>\
             <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"action\" value=\"resubscribe\">\
             <button type=\"submit\" class=\"quiet\">Undo</button></form>\
             <p class=\"small\">Unsubscribed by mistake? Undo puts you back on the list.</p>",
            name = escape(&app.name),
            addr = escape(masked),
            action = action(query),
        ),
    )
}

pub(super) fn resubscribed_page(app: &App, query: &str, masked: &str) -> Response {
    app.page(
        StatusCode::OK,
        "You are subscribed again",
        &format!(
            "<p><b>{addr}</b> will get emails from {name} again.</p>\
             <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"action\" value=\"unsubscribe\">\
             <button type=\"submit\" class=\"quiet\">Unsubscribe after all</button></form>",
            name = escape(&app.name),
            addr = escape(masked),
            action = action(query),
        ),
    )
}

/// Undo when the address is suppressed for another reason too: it says
/// so without saying which (the link may be in someone else's hands).
pub(super) fn still_off_page(app: &App, masked: &str) -> Response {
    app.page(
        StatusCode::OK,
        "Still not subscribed",
        &format!(
            "<p>Your unsubscribe is taken back, but <b>{addr}</b> stays off the list of {name} \
             for another reason (for example, emails to it came back).</p>\
             <p class=\"small\">To get emails again, write to us from this address.</p>",
            name = escape(&app.name),
            addr = escape(masked),
        ),
    )
}

/// Text and double-quoted attributes alike (every attribute here is
/// double-quoted).
fn escape(s: &str) -> String {
    crate::html::attr(s)
}
