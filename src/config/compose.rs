//! Compose options: what the compose stages read from the settings, and
//! the values only they use (the campaign tags [`Utm`], [`HostList`]).
//!
//! [`Config::compose`] builds a [`ComposeOptions`] once; each stage of
//! `crate::compose` receives only its own part (`content::build` a
//! [`ContentOptions`], `render::render` a [`RenderOptions`]...), so what a
//! stage can depend on is written in its signature.

use std::fmt;

use super::*;

/// Everything the compose half reads from the settings, one part per stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeOptions {
    /// `site_url`: the base of the post's relative links (default: the
    /// origin of the post's `seo.url`).
    pub site_url: Option<Url>,
    pub content: ContentOptions,
    pub images: ImageOptions,
    pub render: RenderOptions,
    /// `fit`: when the email would be too long for Gmail, a digest instead.
    pub fit: bool,
    pub check: CheckOptions,
    pub links: LinkOptions,
    pub preview: PreviewOptions,
}

/// What `content::build` reads: the language and the words of the email,
/// the kicker, the campaign tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentOptions {
    /// `lang` and `dir`; a post's own front matter wins.
    pub lang: Option<String>,
    pub dir: Option<String>,
    /// The `words_*` settings, each `None` for herald's English default.
    pub words_subscribed: Option<String>,
    pub words_view_online: Option<String>,
    pub words_view_in_browser: Option<String>,
    pub words_unsubscribe: Option<String>,
    pub words_continue_reading: Option<String>,
    /// `newsletter_name`, shown above the title.
    pub newsletter_name: Option<String>,
    pub utm: Option<Utm>,
    pub utm_domains: Option<HostList>,
    /// `unsubscribe_url`: never given campaign tags.
    pub unsubscribe_url: Option<Url>,
}

/// What `images::rasterise` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOptions {
    pub assets_dir: Option<PathBuf>,
    pub assets_url: Option<Url>,
    pub inline_image_limit: usize,
}

/// What `render::render` (MJML and text) reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    pub accent_color: Option<String>,
    pub postal_address: Option<String>,
}

/// What `check::check` reads: whether the footer is complete, and the DKIM
/// keys it reads the way a send does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    pub has_postal_address: bool,
    pub has_unsubscribe_url: bool,
    pub from: Option<Mailbox>,
    pub dkim_domain: Option<String>,
    /// [`Config::dkim_keys`].
    pub dkim_keys: Vec<DkimKey>,
}

/// What `linkcheck::links` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkOptions {
    /// The unsubscribe page is not checked (it is herald's own).
    pub unsubscribe_url: Option<Url>,
}

/// What the preview (`Issue::personalised_preview`, `preview_subject`) reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewOptions {
    pub subject: Option<String>,
    pub unsubscribe_url: Option<Url>,
}

impl Config {
    /// The options of every compose stage, from these settings.
    pub fn compose(&self) -> ComposeOptions {
        ComposeOptions {
            site_url: self.site_url.clone(),
            content: ContentOptions {
                lang: self.lang.clone(),
                dir: self.dir.clone(),
                words_subscribed: self.words_subscribed.clone(),
                words_view_online: self.words_view_online.clone(),
                words_view_in_browser: self.words_view_in_browser.clone(),
                words_unsubscribe: self.words_unsubscribe.clone(),
                words_continue_reading: self.words_continue_reading.clone(),
                newsletter_name: self.newsletter_name.clone(),
                utm: self.utm.clone(),
                utm_domains: self.utm_domains.clone(),
                unsubscribe_url: self.unsubscribe_url.clone(),
            },
            images: ImageOptions {
                assets_dir: self.assets_dir.clone(),
                assets_url: self.assets_url.clone(),
                inline_image_limit: self.inline_image_limit,
            },
            render: RenderOptions {
                accent_color: self.accent_color.clone(),
                postal_address: self.postal_address.clone(),
            },
            fit: self.fit,
            check: CheckOptions {
                has_postal_address: self.postal_address.is_some(),
                has_unsubscribe_url: self.unsubscribe_url.is_some(),
                from: self.from.clone(),
                dkim_domain: self.dkim_domain.clone(),
                dkim_keys: self.dkim_keys(),
            },
            links: LinkOptions {
                unsubscribe_url: self.unsubscribe_url.clone(),
            },
            preview: PreviewOptions {
                subject: self.subject.clone(),
                unsubscribe_url: self.unsubscribe_url.clone(),
            },
        }
    }
}

/// Campaign tags for links to the newsletter's own sites (`utm_source`,
/// `utm_medium`, `utm_campaign`), so the site's analytics can tell visits
/// from the newsletter. `campaign` may hold `{{ slug }}`, the post's slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utm {
    /// (name without `utm_`, value), in the order written.
    pub tags: Vec<(String, String)>,
}

impl Utm {
    /// `source=newsletter&medium=email&campaign={{ slug }}`.
    pub fn parse(v: &str) -> Result<Utm, ValueError> {
        let how = "write it as a map in herald.yaml (utm: then source:, medium:, campaign: indented \
                   below) or as source=newsletter&medium=email&campaign={{ slug }} in HERALD_UTM";
        let mut tags = Vec::new();
        for pair in v.split('&').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, val) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` has no value; {how}"))?;
            let k = k.trim().trim_start_matches("utm_").to_ascii_lowercase();
            if !matches!(
                k.as_str(),
                "source" | "medium" | "campaign" | "term" | "content"
            ) {
                return Err(format!(
                    "`{k}` is not a campaign tag; use source, medium, campaign (also term, content); {how}"
                ).into());
            }
            let val = one_line(val)?;
            if val.is_empty() {
                return Err(format!("`{k}` is empty; {how}").into());
            }
            let rest = val.replace("{{ slug }}", "").replace("{{slug}}", "");
            if rest.contains("{{") {
                return Err(format!(
                    "`{val}`: only {{{{ slug }}}} can be filled in a campaign tag (every reader's link is the same); {how}"
                ).into());
            }
            tags.push((k, val));
        }
        if tags.is_empty() {
            return Err(format!("no tags given; {how}").into());
        }
        Ok(Utm { tags })
    }
}

impl fmt::Display for Utm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join("&"))
    }
}

/// Host names, like `openinfra.org, superuser.openinfra.org`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostList(pub Vec<String>);

impl HostList {
    pub fn parse(v: &str) -> Result<HostList, ValueError> {
        let mut hosts = Vec::new();
        for h in v.split([',', ' ']).map(str::trim).filter(|h| !h.is_empty()) {
            let h = h.to_ascii_lowercase();
            if !h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
                || !h.contains('.')
            {
                return Err(format!(
                    "`{h}` is not a host name; list hosts like openinfra.org, superuser.openinfra.org \
                     (no https://, no path)"
                ).into());
            }
            hosts.push(h);
        }
        Ok(HostList(hosts))
    }
}

impl fmt::Display for HostList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}
