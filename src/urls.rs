//! Making every link and image of a post absolute, as an email needs.
//!
//! The CMS stores root-relative paths (`/img/x.png`), links with no scheme
//! (`openinfra.org`), bare e-mail addresses and the odd stray bracket or
//! trailing dot. In an inbox none of those work, so each becomes an absolute
//! `https:` or `mailto:` URL, and anything herald had to repair is reported
//! so the editor can fix the post too.

use url::Url;

/// Why a URL cannot be used in an email; the words end a finding
/// ("the link `x` ...: <this>").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the link has no address")]
    Empty,
    /// A scheme herald makes no links of (see [`LINK_SCHEMES`]), lower-cased.
    #[error("`{0}:` links do not work in email")]
    Scheme(String),
    #[error("`{0}` is not an e-mail address")]
    NotAnEmail(String),
    #[error("the image is embedded in the post (a `data:` URL)")]
    Embedded,
    /// An address that cannot be read, in the url crate's words.
    #[error(transparent)]
    Parse(#[from] url::ParseError),
}

/// The default website, used when neither the config nor the post says.
pub const DEFAULT_SITE: &str = "https://openinfra.org";

#[derive(Debug, Clone)]
pub struct Base {
    /// Origin for root-relative paths such as `/img/x.png`.
    pub site: Url,
    /// The web version of this post, for `#anchors` and page-relative paths.
    pub page: Option<Url>,
}

impl Base {
    /// `site_url` from the config wins; else the origin of the post's
    /// `seo.url`; else [`DEFAULT_SITE`]. A bare slug in `seo.url` is taken as
    /// a blog post on the site (`/blog/<slug>`), which is where the CMS puts them.
    pub fn new(site_url: Option<&str>, seo_url: Option<&str>, is_blog_post: bool) -> Base {
        let seo_abs = seo_url.and_then(|u| Url::parse(u.trim()).ok());
        let site = site_url
            .and_then(|s| Url::parse(s.trim()).ok())
            .or_else(|| {
                seo_abs
                    .as_ref()
                    .and_then(|u| Url::parse(&u.origin().ascii_serialization()).ok())
            })
            .unwrap_or_else(|| Url::parse(DEFAULT_SITE).expect("constant URL"));
        let page = match (seo_abs, seo_url.map(str::trim)) {
            (Some(u), _) => Some(u),
            (None, Some(s)) if !s.is_empty() => {
                let path = if s.starts_with('/') || !is_blog_post {
                    s.to_string()
                } else {
                    format!("/blog/{s}")
                };
                site.join(&path).ok()
            }
            _ => None,
        };
        Base { site, page }
    }

    pub fn page_url(&self) -> Option<&str> {
        self.page.as_ref().map(Url::as_str)
    }

    /// `http://` on one of the newsletter's own hosts (`site_url`'s, the
    /// post's `seo.url`'s, with or without `www.`) as `https://`: those
    /// sites serve HTTPS, and a plain link is flagged by mail filters and
    /// browsers. `None` for any other URL.
    pub fn upgrade_own(&self, url: &str) -> Option<String> {
        let u = Url::parse(url).ok()?;
        if u.scheme() != "http" {
            return None;
        }
        let bare = |h: &str| h.trim_start_matches("www.").to_ascii_lowercase();
        let host = bare(u.host_str()?);
        let own = std::iter::once(&self.site)
            .chain(self.page.as_ref())
            .filter_map(Url::host_str)
            .any(|h| bare(h) == host);
        let colon = url.find(':')?;
        own.then(|| format!("https{}", &url[colon..]))
    }
}

/// What kind of editable document `url` opens, when it is a link to a
/// document in a drafting tool (a Google document or Drive file, a Dropbox
/// preview, a OneDrive or SharePoint edit link, a Notion page): subscribers
/// usually get "request access", and editors sometimes share edit rights.
pub fn editable_document(url: &str) -> Option<&'static str> {
    if !may_name(url, &EDITABLE_HOSTS) {
        return None;
    }
    let u = Url::parse(url).ok()?;
    let host = u.host_str()?.to_ascii_lowercase();
    let path = u.path();
    let query = u.query().unwrap_or("");
    let is = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    if host == "docs.google.com" {
        let forms = path.starts_with("/forms/");
        return (!forms).then_some("a Google document");
    }
    if host == "drive.google.com" {
        return Some("a Google Drive file");
    }
    if is("dropbox.com") && query.split('&').any(|p| p == "dl=0") {
        return Some("a Dropbox preview");
    }
    if is("onedrive.live.com") || host == "1drv.ms" {
        return Some("a OneDrive document");
    }
    if is("sharepoint.com")
        && (["/:w:/", "/:x:/", "/:p:/", "/:b:/", "/:f:/", "/_layouts/"]
            .iter()
            .any(|p| path.contains(p))
            || query.contains("action=edit"))
    {
        return Some("a SharePoint document");
    }
    if host == "notion.so" || host == "www.notion.so" {
        return Some("a Notion page");
    }
    None
}

/// The hosts [`editable_document`] knows, as they end (a host added there
/// must be added here: [`may_name`] lets no other URL through).
const EDITABLE_HOSTS: [&str; 6] = [
    "google.com",
    "dropbox.com",
    "onedrive.live.com",
    "1drv.ms",
    "sharepoint.com",
    "notion.so",
];

/// Whether `url` may name one of `hosts` (lower-case); `false` only when it
/// surely does not, so most links are not parsed for it (parsing every
/// link was half of checking a post). In printable ASCII with no `%`, a
/// URL's host is written in it as it is, but for case; any other URL
/// (percent-encoded, IDNA dots, whitespace) is parsed.
fn may_name(url: &str, hosts: &[&str]) -> bool {
    if !url.bytes().all(|b| b.is_ascii_graphic() && b != b'%') {
        return true;
    }
    let lower = url.to_ascii_lowercase();
    hosts.iter().any(|h| lower.contains(h))
}

/// The outcome of fixing one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixed {
    pub url: String,
    /// What herald repaired, for a `check` notice; `None` when the URL was
    /// fine or only needed the site in front of it.
    pub repaired: Option<String>,
}

/// Makes `raw` absolute. `Err` says why the URL cannot be used in an email.
/// Whatever the repairs did, only [`LINK_SCHEMES`] come out: WHATWG URL
/// parsing drops tabs and line breaks, so `java\tscript:` became
/// `javascript:` when joined to the page.
pub fn absolutize(raw: &str, base: &Base) -> Result<Fixed, UrlError> {
    let fixed = absolutize_any(raw, base)?;
    match scheme_of(&fixed.url) {
        Some(s) if !LINK_SCHEMES.contains(&s.as_str()) => Err(UrlError::Scheme(s)),
        _ => Ok(fixed),
    }
}

fn absolutize_any(raw: &str, base: &Base) -> Result<Fixed, UrlError> {
    let mut repairs: Vec<&str> = Vec::new();
    let mut s = raw.trim();
    if let Some(inner) = s.strip_prefix('<').and_then(|x| x.strip_suffix('>')) {
        s = inner.trim();
    }
    let unbracketed = s.trim_start_matches(['(', '[']);
    if unbracketed.len() != s.len() {
        repairs.push("removed a stray bracket");
        s = unbracketed.trim_end_matches([')', ']']);
    }
    if s.is_empty() {
        return Err(UrlError::Empty);
    }
    let done = |url: String, repairs: Vec<&str>| Fixed {
        url,
        repaired: (!repairs.is_empty()).then(|| repairs.join(", ")),
    };
    if let Some(rest) = s.strip_prefix("//") {
        repairs.push("added https:");
        return Ok(done(format!("https://{rest}"), repairs));
    }
    if let Some(scheme) = scheme_of(s) {
        return match scheme.as_str() {
            "http" | "https" => {
                let url = if s.contains(char::is_whitespace) {
                    Url::parse(s).map(String::from)?
                } else {
                    s.to_string()
                };
                // Only an http: link is upgraded: an https: one is not
                // parsed for it (two parses a link were most of making
                // the post's links absolute).
                let own = if scheme == "http" {
                    base.upgrade_own(&url)
                } else {
                    None
                };
                let url = match own {
                    Some(secure) => {
                        repairs.push("https: for the site's own address");
                        secure
                    }
                    None => url,
                };
                Ok(done(unshorten(url), repairs))
            }
            "mailto" => {
                let addr = &s[7..];
                let trimmed = addr.trim_end_matches(['.', ',', ';', ')']);
                if trimmed.len() != addr.len() {
                    repairs.push("removed punctuation after the e-mail address");
                }
                if !trimmed.contains('@') {
                    return Err(UrlError::NotAnEmail(s.to_string()));
                }
                Ok(done(format!("mailto:{trimmed}"), repairs))
            }
            "tel" | "sms" => Ok(done(s.to_string(), repairs)),
            "data" => Err(UrlError::Embedded),
            other => Err(UrlError::Scheme(other.to_string())),
        };
    }
    if looks_like_email(s) {
        let trimmed = s.trim_end_matches(['.', ',', ';']);
        repairs.push("added mailto:");
        return Ok(done(format!("mailto:{trimmed}"), repairs));
    }
    if s.starts_with('/') {
        return base
            .site
            .join(s)
            .map(|u| done(u.into(), repairs))
            .map_err(UrlError::from);
    }
    if looks_like_host(s) {
        repairs.push("added https://");
        return Ok(done(unshorten(format!("https://{s}")), repairs));
    }
    let against = base.page.as_ref().unwrap_or(&base.site);
    against
        .join(s)
        .map(|u| done(u.into(), repairs))
        .map_err(UrlError::from)
}

/// Schemes that become links. `mailto:`, `tel:` and `sms:` hand an
/// address or a number to the reader's own mail program or phone and run
/// nothing; every other scheme (`javascript:`, `data:`, `file:`, `vbscript:`
/// and whatever a browser may add) is refused.
pub const LINK_SCHEMES: &[&str] = &["http", "https", "mailto", "tel", "sms"];

/// The scheme of `raw`, lower-cased, when it has one herald does not make
/// links of (see [`LINK_SCHEMES`]). Leading spaces and brackets are
/// skipped as `absolutize` skips them.
pub fn refused_scheme(raw: &str) -> Option<String> {
    // As a browser reads it: tabs and line breaks inside do not count.
    let s: String = raw
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let s = s.trim().trim_start_matches(['<', '(', '[']).trim_start();
    scheme_of(s).filter(|scheme| !LINK_SCHEMES.contains(&scheme.as_str()))
}

/// Only an `http:` or `https:` address may be the "view in browser" link
/// (`seo.url`) or a site: `Err` names the scheme.
pub fn check_web(raw: &str) -> Result<(), NotWeb> {
    match scheme_of(raw.trim()) {
        None => Ok(()),
        Some(s) if s == "http" || s == "https" => Ok(()),
        Some(s) => Err(NotWeb { scheme: s }),
    }
}

/// An address whose scheme is not `http:` or `https:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{scheme}:` is not a web address")]
pub struct NotWeb {
    /// Lower-cased, without the `:`.
    pub scheme: String,
}

/// `https://youtu.be/ID?x=y` written out as the page it stands for,
/// `https://www.youtube.com/watch?v=ID&x=y`. SpamAssassin lists youtu.be
/// among URL shorteners, and a shortener in a message whose subject has
/// `...re:` in it ("Inside Open Infrastructure: May") scores
/// GB_FAKE_RF_SHORT (1.0). Any other URL is returned as it is.
fn unshorten(url: String) -> String {
    if !may_name(&url, &["youtu.be"]) {
        return url;
    }
    let Ok(u) = Url::parse(&url) else { return url };
    if u.host_str() != Some("youtu.be") {
        return url;
    }
    let id = u.path().trim_matches('/');
    if id.is_empty() || id.contains('/') {
        return url;
    }
    let mut long = Url::parse("https://www.youtube.com/watch").expect("constant URL");
    long.query_pairs_mut().append_pair("v", id);
    if let Some(q) = u.query().filter(|q| !q.is_empty()) {
        long.set_query(Some(&format!("v={id}&{q}")));
    }
    long.set_fragment(u.fragment());
    long.into()
}

/// The lower-cased scheme, when `s` starts with one (`https:`, `mailto:`).
fn scheme_of(s: &str) -> Option<String> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let valid = scheme.len() > 1
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-'));
    valid.then(|| scheme.to_ascii_lowercase())
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !s.contains(['/', ' ', ':'])
                && domain.contains('.')
                && !domain.starts_with('.')
        }
        None => false,
    }
}

/// `openinfra.org`, `www.openstack.org/software`, `zuul-ci.org:443/x`.
fn looks_like_host(s: &str) -> bool {
    let host = s.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.split(':').next().unwrap_or("");
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Base {
        Base::new(
            None,
            Some("https://openinfra.dev/blog/newsletter-may"),
            true,
        )
    }

    fn abs(s: &str) -> String {
        absolutize(s, &base()).unwrap().url
    }

    #[test]
    fn root_relative_against_the_origin_of_seo_url() {
        assert_eq!(abs("/img/logo.png"), "https://openinfra.dev/img/logo.png");
        let b = Base::new(
            Some("https://openinfra.org"),
            Some("https://openinfra.dev/blog/x"),
            true,
        );
        assert_eq!(
            absolutize("/img/a b.png", &b).unwrap().url,
            "https://openinfra.org/img/a%20b.png"
        );
    }

    #[test]
    fn schemeless_hosts_get_https() {
        let f = absolutize("openinfra.org", &base()).unwrap();
        assert_eq!(f.url, "https://openinfra.org");
        assert_eq!(f.repaired.as_deref(), Some("added https://"));
        assert_eq!(
            abs("www.openstack.org/software"),
            "https://www.openstack.org/software"
        );
        assert_eq!(
            abs("//cdn.example.org/x.png"),
            "https://cdn.example.org/x.png"
        );
    }

    #[test]
    fn email_addresses_become_mailto() {
        assert_eq!(
            abs("(service-discuss@lists.opendev.org"),
            "mailto:service-discuss@lists.opendev.org"
        );
        assert_eq!(
            abs("mailto:events@openinfra.dev."),
            "mailto:events@openinfra.dev"
        );
        assert_eq!(abs("[https://nerc.mghpcc.org/"), "https://nerc.mghpcc.org/");
    }

    #[test]
    fn anchors_and_relative_paths_use_the_page() {
        assert_eq!(
            abs("#events"),
            "https://openinfra.dev/blog/newsletter-may#events"
        );
        assert_eq!(abs("other-post"), "https://openinfra.dev/blog/other-post");
    }

    #[test]
    fn absolute_urls_are_kept_as_written() {
        assert_eq!(
            abs("https://katacontainers.io"),
            "https://katacontainers.io"
        );
        assert_eq!(abs(" https://x.org/a?b=1 "), "https://x.org/a?b=1");
    }

    #[test]
    fn youtu_be_links_are_written_out() {
        assert_eq!(
            abs("https://youtu.be/iFPwK-6tydc?si=7jxf"),
            "https://www.youtube.com/watch?v=iFPwK-6tydc&si=7jxf"
        );
        assert_eq!(
            abs("http://youtu.be/abc#t=1"),
            "https://www.youtube.com/watch?v=abc#t=1"
        );
        assert_eq!(abs("https://youtu.be/"), "https://youtu.be/");
        // Written other ways, the host is still youtu.be to the parser, so
        // the filter before it (`may_name`) must let them through.
        for other in ["https://YouTu.Be/abc", "https://you%74u.be/abc"] {
            assert_eq!(abs(other), "https://www.youtube.com/watch?v=abc", "{other}");
        }
    }

    #[test]
    fn http_on_the_sites_own_hosts_becomes_https() {
        let b = Base::new(
            Some("https://openinfra.org"),
            Some("https://www.openstack.org/blog/x"),
            false,
        );
        let fix = |s: &str| absolutize(s, &b).unwrap();
        let own = fix("http://openinfra.org/a?b=1");
        assert_eq!(own.url, "https://openinfra.org/a?b=1");
        assert!(own.repaired.is_some());
        assert_eq!(
            fix("http://www.openinfra.org/").url,
            "https://www.openinfra.org/"
        );
        assert_eq!(fix("http://openstack.org/").url, "https://openstack.org/");
        let other = fix("http://example.com/");
        assert_eq!(other.url, "http://example.com/");
        assert_eq!(other.repaired, None);
    }

    #[test]
    fn editable_documents_are_recognised() {
        for (url, yes) in [
            ("https://docs.google.com/document/d/abc/edit", true),
            (
                "https://docs.google.com/spreadsheets/d/abc/edit#gid=0",
                true,
            ),
            ("https://docs.google.com/forms/d/e/abc/viewform", false),
            ("https://drive.google.com/file/d/abc/view", true),
            ("https://www.dropbox.com/s/abc/report.pdf?dl=0", true),
            ("https://www.dropbox.com/s/abc/report.pdf?dl=1", false),
            ("https://onedrive.live.com/edit.aspx?resid=1", true),
            ("https://1drv.ms/w/s!abc", true),
            (
                "https://contoso.sharepoint.com/:w:/r/sites/x/Doc.docx",
                true,
            ),
            (
                "https://contoso.sharepoint.com/sites/x/Shared/report.pdf",
                false,
            ),
            ("https://www.notion.so/team/Plan-abc", true),
            ("https://openinfra.org/blog/x", false),
            ("https://www.youtube.com/watch?v=x", false),
            // Hosts written other ways still reach the parse
            // (`may_name` only skips plain ASCII).
            ("https://DOCS.Google.com/document/d/x/edit", true),
            ("https://docs%2Egoogle.com/document/d/x", true),
            ("https://docs.goo\tgle.com/document/d/x", true),
            ("https://docs\u{3002}google.com/document/d/x", true),
        ] {
            assert_eq!(editable_document(url).is_some(), yes, "{url}");
        }
        // Every host `editable_document` knows gets past the filter.
        for host in EDITABLE_HOSTS {
            assert!(may_name(&format!("https://x.{host}/"), &EDITABLE_HOSTS));
        }
    }

    #[test]
    fn unusable_links_are_refused() {
        assert!(absolutize("javascript:alert(1)", &base()).is_err());
        assert!(absolutize("java\tscript:alert(1)", &base()).is_err());
        assert!(absolutize("java\nscript:alert(1)", &base()).is_err());
        assert_eq!(
            refused_scheme("java\tscript:x").as_deref(),
            Some("javascript")
        );
        assert_eq!(
            refused_scheme(" FILE:///etc/passwd").as_deref(),
            Some("file")
        );
        assert_eq!(refused_scheme("mailto:a@b.org"), None);
        assert_eq!(refused_scheme("/img/x.png"), None);
        assert!(check_web("javascript:alert(1)").is_err());
        assert!(check_web("https://openinfra.org/blog/x").is_ok());
        assert!(check_web("my-slug").is_ok());
        assert!(absolutize("", &base()).is_err());
        assert!(absolutize("data:image/png;base64,AAAA", &base()).is_err());
    }

    #[test]
    fn bare_slug_in_seo_url() {
        let b = Base::new(None, Some("remembering-someone"), true);
        assert_eq!(
            b.page_url(),
            Some("https://openinfra.org/blog/remembering-someone")
        );
    }

    #[test]
    fn why_a_link_cannot_be_used_is_said_in_the_words_it_always_had() {
        let why = |raw: &str| absolutize(raw, &base()).unwrap_err().to_string();
        assert_eq!(why("  "), "the link has no address");
        assert_eq!(
            why("JavaScript:alert(1)"),
            "`javascript:` links do not work in email"
        );
        assert_eq!(
            why("mailto:nobody"),
            "`mailto:nobody` is not an e-mail address"
        );
        assert_eq!(
            why("data:image/png;base64,AAAA"),
            "the image is embedded in the post (a `data:` URL)"
        );
        // The old binary's `herald check` words for this address.
        assert_eq!(
            why("https://ex ample.org/a.png"),
            "invalid international domain name"
        );
    }
}
