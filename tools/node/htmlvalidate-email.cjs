// html-validate configuration for the email HTML herald writes (email.html).
// Used by scripts/validate-html.sh:
//     html-validate --config tools/node/htmlvalidate-email.cjs email.html
//
// It is html-validate's "recommended" preset with only the rules (or parts of
// rules) turned off that conflict with how HTML email has to be written, each
// with its reason. Everything else stays an error: duplicate ids, invalid
// nesting, missing alt text, raw characters, bad attribute values, empty
// headings and the rest are defects in herald's output and are fixed there.
// "(mrml)" marks what only mrml's own output needs (its head boilerplate and
// the Outlook table scaffolding around every section); herald's own fragments
// (src/render/mjml.rs, templates/*.mjml) need only the inline styles, the
// void-element style and the relaxed id rule.
"use strict";

module.exports = {
    root: true,
    extends: ["html-validate:recommended"],

    // Element metadata: HTML5, plus the presentational attributes that
    // Outlook for Windows (Word's renderer, which ignores much CSS) needs and
    // that mrml writes on its layout tables, no longer counted as deprecated.
    // Any other deprecated attribute is still an error (no-deprecated-attr).
    elements: [
        "html5",
        {
            // (mrml) Outlook lays out with these: spacing, alignment, width.
            table: {
                attributes: {
                    align: { deprecated: false },
                    bgcolor: { deprecated: false },
                    cellpadding: { deprecated: false },
                    cellspacing: { deprecated: false },
                    width: { deprecated: false },
                },
            },
            // (mrml) Cell alignment, background and width for Outlook (buttons, columns).
            td: {
                attributes: {
                    align: { deprecated: false },
                    bgcolor: { deprecated: false },
                    height: { deprecated: false },
                    valign: { deprecated: false },
                    width: { deprecated: false },
                },
            },
            // (mrml) mj-image writes height="auto" on every <img> (as the official
            // MJML does), so Outlook keeps the aspect ratio; numbers stay valid too.
            img: {
                attributes: {
                    height: { enum: ["/\\d+/", "auto"] },
                },
            },
        },
    ],

    rules: {
        // Gmail, Outlook and others drop or ignore <style>: inline style="" is
        // the only styling every client keeps (herald and mrml both write it).
        "no-inline-style": "off",

        // (mrml) <!--[if mso | IE]> ... <![endif]--> carries the fixed-width
        // "ghost" tables Outlook for Windows needs; it is not for old IE.
        "no-conditional-comment": "off",

        // (mrml) mrml writes a lowercase <!doctype html>; case means nothing to HTML.
        "doctype-style": "off",

        // mrml writes <img ... /> but <meta ...>, herald <br />: both forms are valid HTML5.
        "void-style": "off",

        // (mrml) The wrapper is <div role="article" aria-roledescription="email">,
        // the accessible-email pattern: several clients drop or restyle <article>.
        // Other roles with a native element are still reported.
        "prefer-native-element": ["error", { exclude: ["article"] }],

        // The <title> is the post's own title; the 70-character limit is about
        // search-result snippets, which an email never appears in.
        "long-title": "off",

        // Section headings carry the website's anchor (GitHub-style slug, e.g.
        // "2024--a-very-good-year") so links into the web version work; HTML5
        // allows ids starting with a digit. Empty ids and spaces still fail.
        "valid-id": ["error", { relaxed: true }],
    },
};
