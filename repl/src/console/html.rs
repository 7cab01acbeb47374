//! HTML for the console's pages: escaping, the page frame (navigation, the signed-in user, a
//! logout button) and tables. Everything is rendered on the server; the only script is none.

use std::fmt::Write;

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as a URL query value.
pub fn query_value(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The stylesheet every page links (served at `/console.css`, behind the login like the rest).
pub const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 8px 16px; display: flex; gap: 16px; align-items: center; }
header a { color: #cfd6e4; text-decoration: none; } header a.here { color: #fff; font-weight: 600; }
header form { margin-left: auto; } header button { background: none; border: 1px solid #8a94a8; color: #fff; border-radius: 4px; cursor: pointer; }
main { padding: 16px; } h1 { font-size: 20px; margin: 0 0 12px; } h2 { font-size: 16px; margin: 20px 0 8px; }
table { border-collapse: collapse; background: #fff; } td, th { border: 1px solid #dde1e8; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid td.cell { width: 9px; height: 14px; padding: 0; border: 1px solid #fff; }
.fresh { background: #2f9e5b; } .stale { background: #e0a526; } .missing { background: #b8bec9; }
.quarantined { background: #d6453d; } .settled { background: #4d6a9a; }
.legend span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; }
details.sql pre { background: #fff; border: 1px solid #dde1e8; padding: 8px; white-space: pre-wrap; }
.note { color: #5b6475; } .bad { color: #b3261e; } code { background: #eef1f5; padding: 0 3px; }
form.login { background: #fff; padding: 24px; width: 280px; margin: 80px auto; border: 1px solid #dde1e8; }
form.login input { width: 100%; margin: 4px 0 12px; padding: 4px; box-sizing: border-box; }
svg text { font: 11px system-ui, sans-serif; fill: #3a4253; }
"#;

/// The pages, as the navigation lists them.
pub const PAGES: [(&str, &str); 5] = [
    ("/", "Overview"),
    ("/day", "A day"),
    ("/maturity", "Maturity"),
    ("/marts", "Marts"),
    ("/runs", "Runs"),
];

/// A whole page: the frame around `body`, `here` marking the current page.
pub fn page(title: &str, here: &str, user: &str, body: &str) -> String {
    let mut nav = String::new();
    for (path, name) in PAGES {
        let class = if path == here { " class=\"here\"" } else { "" };
        let _ = write!(nav, "<a href=\"{path}\"{class}>{name}</a>");
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title} · tidemark</title><link rel=\"stylesheet\" href=\"/console.css\"></head>\
         <body><header><strong>tidemark</strong>{nav}\
         <form method=\"post\" action=\"/logout\"><span>{user}</span> \
         <button type=\"submit\">Log out</button></form></header>\
         <main><h1>{title}</h1>{body}</main></body></html>",
        title = escape(title),
        user = escape(user),
    )
}

/// The SQL a page ran, for pasting into `tidemark sql`.
pub fn sql_block(sql: &str) -> String {
    format!(
        "<details class=\"sql\"><summary>SQL behind this (paste into <code>tidemark sql</code>)</summary><pre>{}</pre></details>",
        escape(sql)
    )
}

/// A table of already-escaped cells.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(cell);
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

/// A text cell.
pub fn cell(text: &str) -> String {
    format!("<td>{}</td>", escape(text))
}

/// A text cell whose `backticked` spans are shown as code (commands to run).
pub fn code_cell(text: &str) -> String {
    let mut out = String::from("<td>");
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{}</code>", escape(part)));
        } else {
            out.push_str(&escape(part));
        }
    }
    out.push_str("</td>");
    out
}

/// A number cell.
pub fn num(text: &str) -> String {
    format!("<td class=\"num\">{}</td>", escape(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_data_is_text() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(query_value("a b&c"), "a+b%26c");
    }
}
