//! Quoting user input in messages, bounded: a leaf every module that reports bad input uses
//! (the config, `run-as`, control requests), so that none of them depends on another for it.

/// How many characters of a key or value an error message quotes: a 10 MB key must not make a
/// 10 MB message.
const QUOTE_LIMIT: usize = 100;

/// `text` in double quotes for an error message, control characters escaped, cut after
/// [`QUOTE_LIMIT`] characters with a note of its full length.
pub fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = text.chars();
    for c in chars.by_ref().take(QUOTE_LIMIT) {
        out.extend(c.escape_debug());
    }
    out.push('"');
    if chars.next().is_some() {
        out.push_str(&format!("... ({} bytes in all)", text.len()));
    }
    out
}
