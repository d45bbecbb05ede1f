//! Go `text/template` rendering of `vault-template` variables, via `gotmpl` with missing keys
//! as errors. The context holds only the resolved `vault-replace` variables, by name.
//!
//! gotmpl is lenient where Go is strict (architecture trap 8): it accepts a stray `{{ end }}` and an
//! unclosed `{{ if }}`. [`render`] therefore checks the block structure itself first, so that a
//! template Go would reject is rejected here too.

use std::collections::BTreeMap;

use gotmpl::{MissingKey, Template, Value};

/// Renders `source` with `.NAME` bound to each entry of `context`. A parse error, a reference to
/// a name not in `context`, or an undefined function is an error. Error messages come from the
/// template's text and names, never from a context value.
pub fn render(source: &str, context: &BTreeMap<String, String>) -> Result<String, String> {
    check_blocks(source)?;
    let template = Template::new("template")
        .missing_key(MissingKey::Error)
        .parse(source)
        .map_err(|e| e.to_string())?;
    let data: BTreeMap<String, Value> = context
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    template
        .execute_to_string(&Value::from(data))
        .map_err(|e| without_values(e.to_string(), context))
}

/// An execution error may print a value: `{{ printf $ }}` reports the whole context ("first arg
/// must be string, got map[…]"). Such a message is replaced, so that no error quotes a secret.
fn without_values(message: String, context: &BTreeMap<String, String>) -> String {
    if context
        .values()
        .any(|value| !value.is_empty() && message.contains(value.as_str()))
    {
        "execution error; its message would quote a variable's value, so it is not shown (is a \
         function given `.` or `$` rather than a variable?)"
            .into()
    } else {
        message
    }
}

/// Checks that every `if`/`range`/`with`/`define`/`block` has its `end` and that `else` and
/// `end` appear only inside one, as Go's parser does.
fn check_blocks(source: &str) -> Result<(), String> {
    let mut open: Vec<&str> = Vec::new();
    for action in actions(source) {
        let word = action.split_whitespace().next().unwrap_or("");
        match word {
            "if" | "range" | "with" | "define" | "block" => open.push(word),
            "else" => match open.last() {
                Some(&("if" | "range" | "with")) => {}
                _ => {
                    return Err(
                        "unexpected {{else}}: no {{if}}, {{range}} or {{with}} is open".into(),
                    );
                }
            },
            "end" if open.pop().is_none() => {
                return Err("unexpected {{end}}: no block is open".into());
            }
            _ => {}
        }
    }
    match open.last() {
        Some(word) => Err(format!(
            "unexpected end of template: {{{{{word}}}}} has no {{{{end}}}}"
        )),
        None => Ok(()),
    }
}

/// The text inside each `{{ … }}`, trim markers and comments removed, skipping over string
/// literals so a `}}` inside quotes does not end the action.
fn actions(source: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        let inner = &rest[start + 2..];
        let bytes = inner.as_bytes();
        let mut i = 0;
        let mut quote: Option<u8> = None;
        let mut end = None;
        while i < bytes.len() {
            let b = bytes[i];
            match quote {
                Some(q) => {
                    if b == b'\\' && q != b'`' {
                        i += 1;
                    } else if b == q {
                        quote = None;
                    }
                }
                None => {
                    if b == b'"' || b == b'`' || b == b'\'' {
                        quote = Some(b);
                    } else if bytes[i..].starts_with(b"}}") {
                        end = Some(i);
                        break;
                    }
                }
            }
            i += 1;
        }
        let Some(end) = end else { break };
        let text = inner[..end]
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        if !text.starts_with("/*") {
            out.push(text);
        }
        rest = &inner[end + 2..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> BTreeMap<String, String> {
        [("USER", "app"), ("PASS", "p@ss word")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_like_go() {
        let r = |s: &str| render(s, &ctx()).unwrap();
        assert_eq!(
            r("mongodb://{{ .USER }}:{{ .PASS }}@db/app"),
            "mongodb://app:p@ss word@db/app"
        );
        assert_eq!(r("{{ .PASS | urlquery }}"), "p%40ss+word");
        assert_eq!(r("{{ printf \"%s/%s\" .USER .PASS }}"), "app/p@ss word");
        assert_eq!(r("{{ if .USER }}yes{{ else }}no{{ end }}"), "yes");
        assert_eq!(r("{{- .USER -}} {{/* a comment */}}"), "app");
        assert_eq!(r("no actions at all"), "no actions at all");
        assert_eq!(r("{{ \"}}\" }}"), "}}");
        assert_eq!(r("{{/* Größe: café */}}{{ .USER }}"), "app");
    }

    #[test]
    fn unknown_names_and_functions_are_errors_without_values() {
        let err = render("{{ .OTHER }}", &ctx()).unwrap_err();
        assert!(err.contains("OTHER"), "{err}");
        let err = render("{{ .PASS | nosuch }}", &ctx()).unwrap_err();
        assert!(err.contains("nosuch") && !err.contains("p@ss"), "{err}");
        // Found by fuzzing: gotmpl prints the whole context when `printf` is given it.
        for template in [
            "{{ printf $ }}",
            "{{ printf . }}",
            "{{ printf$\"%s\" .USER }}",
        ] {
            let err = render(template, &ctx()).unwrap_err();
            assert!(!err.contains("p@ss") && !err.contains("app"), "{err}");
        }
    }

    #[test]
    fn what_go_rejects_is_rejected() {
        for bad in [
            "a {{ end }} b",
            "{{ if .USER }}x",
            "{{ else }}",
            "{{ range .USER }}{{ end }}{{ end }}",
            "{{ .USER ",
            // Found by fuzzing: a character of more than one byte inside an action made the
            // block check slice a string inside that character, and panic.
            "{{é",
            "{{ é }}",
        ] {
            assert!(render(bad, &ctx()).is_err(), "{bad}");
        }
    }
}
