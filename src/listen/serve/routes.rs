//! What each address does: `/healthz`, the unsubscribe link (a page view,
//! a one-click or button POST, an Undo), and everything else (404).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Extension, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;

use super::forms::{Intent, intent};
use super::pages::{
    confirm_page, method_not_allowed, resubscribed_page, still_off_page, too_large,
    unsubscribed_page,
};
use super::{App, Client};
use crate::clock;
use crate::store::{Source, Suppressed};
use crate::unsubscribe::{Verified, mask};

pub(super) async fn healthz(State(app): State<Arc<App>>, req: Request) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return method_not_allowed(&app, "GET, HEAD");
    }
    match app.with_store(|s| s.is_suppressed("healthz@invalid")).await {
        Some(_) => app.respond(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        None => app.respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "the journal cannot be read\n".into(),
        ),
    }
}

pub(super) async fn not_found(
    State(app): State<Arc<App>>,
    Extension(Client(client)): Extension<Client>,
) -> Response {
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(r) = app.over_budget(client) {
        return r;
    }
    app.page(
        StatusCode::NOT_FOUND,
        "Nothing here",
        "<p>This address has no page.</p>",
    )
}

/// The unsubscribe link, whatever the method: a POST with a good token is
/// acted on ([`opt_out`] or [`undo`]); anything else is a page view
/// ([`view`]).
pub(super) async fn unsubscribe(
    State(app): State<Arc<App>>,
    Extension(Client(client)): Extension<Client>,
    req: Request,
) -> Response {
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("");
    // The token is checked first, before any budget and before the body is
    // read: a POST with a good one is honoured whoever sends it (a mailbox
    // provider sends many people's), a bad link costs the server no more
    // than its headers. `Keys::verify` compares in constant time.
    let link = if query.len() > 2048 {
        None
    } else {
        app.keys.verify(query)
    };
    let query = query.to_string();
    let link = match link {
        Some(link) if method == Method::POST => link,
        link => return view(&app, client, &method, &query, link.as_ref()),
    };
    let (kind, body) = match form(&app, req).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    match intent(&kind, &body) {
        Intent::Undo => undo(&app, &query, link.email).await,
        intent => opt_out(&app, &query, link, intent).await,
    }
}

/// A GET (or HEAD) of the link, another method, or a bad link: these
/// spend the client's budget. A good link shows the page with the button;
/// it changes nothing.
fn view(
    app: &App,
    client: IpAddr,
    method: &Method,
    query: &str,
    link: Option<&Verified>,
) -> Response {
    if let Some(r) = app.over_budget(client) {
        return r;
    }
    if !matches!(*method, Method::GET | Method::HEAD | Method::POST) {
        return method_not_allowed(app, "GET, HEAD, POST");
    }
    match link {
        Some(link) => confirm_page(app, query, link),
        None => app.bad_link(),
    }
}

/// A POST's content type and body, read within the size and time bounds;
/// the answer to send instead when it is too large or too slow.
async fn form(app: &App, req: Request) -> Result<(String, Bytes), Response> {
    let kind = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let limits = app.limits;
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        return Err(too_large(app));
    }
    match tokio::time::timeout(
        limits.body_timeout,
        axum::body::to_bytes(req.into_body(), limits.max_body),
    )
    .await
    {
        Ok(Ok(b)) => Ok((kind, b)),
        Ok(Err(_)) => Err(too_large(app)),
        Err(_) => Err(app.page(
            StatusCode::REQUEST_TIMEOUT,
            "Too slow",
            "<p>The request took too long to arrive. Please try again.</p>",
        )),
    }
}

/// "Undo": only the person's own unsubscribe is taken back; a complaint,
/// a bounce or an addition by hand stands (the link may have been
/// forwarded, and a complaint is the person's last word).
async fn undo(app: &Arc<App>, query: &str, email: String) -> Response {
    let masked = mask(&email);
    let Some((undone, still)) = app
        .with_store(move |s| {
            let undone = s.unsuppress(&email, &[Source::OneClick, Source::Page])?;
            Ok((undone, s.is_suppressed(&email)?))
        })
        .await
    else {
        return app.trouble();
    };
    if undone {
        app.counters.undone.fetch_add(1, Ordering::Relaxed);
        tracing::info!("{masked} took their unsubscribe back");
    }
    if still {
        return still_off_page(app, &masked);
    }
    resubscribed_page(app, query, &masked)
}

/// RFC 8058's one-click POST, or the page's button: the address is
/// suppressed (once; a repeat changes nothing).
async fn opt_out(app: &Arc<App>, query: &str, link: Verified, intent: Intent) -> Response {
    let source = if intent == Intent::Page {
        Source::Page
    } else {
        Source::OneClick
    };
    let Verified { email, campaign } = link;
    let masked = mask(&email);
    let Some(added) = app
        .with_store(move |s| {
            // The campaign is recorded only if the journal knows it: it is
            // not covered by the token.
            let campaign = match campaign {
                Some(c) if s.campaign_hash(&c)?.is_some() => Some(c),
                _ => None,
            };
            s.suppress(&[Suppressed {
                email: email.to_lowercase(),
                reason: "unsubscribed".into(),
                source,
                campaign,
                added_at: clock::now().to_string(),
            }])
        })
        .await
    else {
        return app.trouble();
    };
    if added > 0 {
        app.counters.unsubscribed.fetch_add(1, Ordering::Relaxed);
        tracing::info!("{masked} unsubscribed ({})", source.as_str());
    }
    unsubscribed_page(app, query, &masked)
}
