// html-validate configuration for the preview page herald writes beside the
// email (index.html: the email in two iframes and the text version). It is an
// ordinary web page, so it gets html-validate's "recommended" preset with one
// rule off. Used by scripts/validate-html.sh.
"use strict";

module.exports = {
    root: true,
    extends: ["html-validate:recommended"],
    rules: {
        // The page's <title> is "Preview: " and the post's title, however long
        // the editor made it; the 70-character limit is about search results,
        // and nobody publishes a preview page.
        "long-title": "off",
    },
};
