use super::super::{mjml_to_html, mrml_to_html};
use super::*;
use proptest::prelude::*;

fn document(bodies: &[&str]) -> String {
    let texts: String = bodies
        .iter()
        .map(|b| format!("\n        <mj-text color=\"#1f2933\" padding=\"0 28px\">{b}</mj-text>"))
        .collect();
    format!(
        "<mjml>\n  <mj-head>\n    <mj-attributes>\n      <mj-text font-size=\"16px\" />\n    \
         </mj-attributes>\n  </mj-head>\n  <mj-body>\n    <mj-section>\n      <mj-column>{texts}\n        \
         <mj-text height=\"20px\">tall</mj-text>\n      </mj-column>\n    </mj-section>\n  </mj-body>\n</mjml>\n"
    )
}

/// The HTML herald gets, and whether the bodies took the short way.
fn both_ways(bodies: &[&str]) -> (String, String, bool) {
    let doc = document(bodies);
    let reference = mrml_to_html(&doc).expect("mrml renders the test document");
    let short = split(&doc).is_some();
    (mjml_to_html(&doc).unwrap(), reference, short)
}

#[test]
fn the_html_herald_writes_comes_out_as_mrml_writes_it() {
    let bodies = [
        "<p style=\"margin:0 0 16px\">Hello &amp; welcome, caf\u{e9} &gt; bar</p>",
        "\n<h2 style=\"margin:0\"><a href=\"https://example.org/?a=1&amp;b=2\" style=\"color:#c5283d\">Title</a></h2>\n",
        "<p>one<br />\ntwo<br>\n</p>\n<ul style=\"padding:0\">\n<li>a</li>\n<li>b</li>\n</ul>",
        "<img src=\"cid:a.png\" alt=\"caf\u{e9} \\ back\u{200b}slash\" width=\"300\" style=\"display:block\" />",
        "<hr style=\"border:none\" /><p></p><p />   <em>x</em> \n <code>&lt;mj-text&gt;</code>",
        "",
        "\n   \n",
        "plain text",
    ];
    let (html, reference, short) = both_ways(&bodies);
    assert!(short, "herald's form should not need mrml's reader");
    assert_eq!(html, reference);
    assert!(html.contains("alt=\"caf\u{e9} \\\\ back\\u{200b}slash\""));
}

#[test]
fn anything_else_is_left_to_mrml() {
    for body in [
        "<p>a<!-- a comment --></p>",
        "<p class='single'>quotes</p>",
        "<p class=\"a\"id=\"b\">no space</p>",
        "<p hidden>bare attribute</p>",
        "<p class=\"a\" class=\"b\">twice</p>",
        "<o:p>prefixed</o:p>",
        "<p>unclosed",
        "<p>a</b>",
    ] {
        let doc = document(&[body]);
        assert!(split(&doc).is_none(), "{body}");
        // Same result (or the same refusal) as mrml on its own.
        let reference = mrml_to_html(&doc).map_err(|e| e.to_string());
        assert_eq!(
            mjml_to_html(&doc).map_err(|e| e.to_string()),
            reference,
            "{body}"
        );
    }
}

#[test]
fn a_marker_character_in_the_post_takes_mrml_s_way() {
    let doc = document(&["<p>private \u{e000}0\u{e000} use</p>"]);
    assert!(split(&doc).is_none());
    assert!(
        mjml_to_html(&doc)
            .unwrap()
            .contains("private \u{e000}0\u{e000} use")
    );
}

/// Text and attribute values of the kinds posts hold, escaped as herald
/// writes them (`&gt;`: mrml's reader panics on a raw `>` that follows a
/// three-byte character, such as `\u{2019}>`, and herald never writes one).
fn piece() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "word",
        " ",
        "\n",
        "\n  ",
        "&amp;",
        "&#8217;",
        "&gt;",
        "caf\u{e9}",
        "\u{2019}",
        "\\",
        "\u{200b}",
        "\u{301}",
        "\t",
        "'",
        "=",
        "/",
    ])
    .prop_map(str::to_string)
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..6).prop_map(|p| p.concat())
}

fn body() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        text(),
        text().prop_map(|v| format!("<img src=\"a.png\" alt=\"{}\" />", v.replace('\n', " "))),
        Just("<br />\n".to_string()),
        Just("<br>".to_string()),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        (
            prop::sample::select(vec!["p", "a", "li", "ul", "strong", "h2", "code"]),
            text(),
            prop::collection::vec(inner, 0..4),
            any::<bool>(),
        )
            .prop_map(|(tag, value, children, attr)| {
                let attr = if attr {
                    format!(" style=\"{}\"", value.replace('\n', " "))
                } else {
                    String::new()
                };
                format!("<{tag}{attr}>{}</{tag}>", children.concat())
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn any_body_of_herald_s_form_comes_out_as_mrml_writes_it(a in body(), b in body()) {
        let (html, reference, short) = both_ways(&[&a, &b]);
        prop_assert!(short);
        prop_assert_eq!(html, reference);
    }
}
