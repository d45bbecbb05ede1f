//! Record encoding, byte-exact with `serde_json` for the same record, and fast.
//!
//! A record is `{"process":…,"time":…,"stream":…,"message":…}` and a `\n`. Strings are escaped
//! exactly as `serde_json` does (`\"`, `\\`, `\b \f \n \r \t`, other control characters as
//! `\u00xx`; DEL and non-ASCII stay as they are), and invalid UTF-8 becomes U+FFFD exactly as
//! `String::from_utf8_lossy` does, so one record is always one valid JSON line.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::config::LogFormat;

/// Appends one record and a `\n` to `out`. `process` is the job name (escaped here), `message`
/// raw line bytes without the line ending (invalid UTF-8 becomes U+FFFD). With
/// `LogFormat::Json`, a message that trimmed is a JSON object of at most 64 KiB is embedded as
/// the object.
pub fn record(
    out: &mut Vec<u8>,
    process: &str,
    time: u64,
    stream: u8,
    message: &[u8],
    format: LogFormat,
) {
    let prefix = RecordPrefix::new(process);
    prefix.record(out, time, stream, message, format);
}

/// The constant start of every record of one process (`{"process":"…","time":`), escaped once.
#[derive(Debug, Clone)]
pub struct RecordPrefix {
    bytes: Box<[u8]>,
}

impl RecordPrefix {
    pub fn new(process: &str) -> RecordPrefix {
        let mut bytes = Vec::with_capacity(process.len() + 24);
        bytes.extend_from_slice(b"{\"process\":");
        write_str(&mut bytes, process.as_bytes());
        bytes.extend_from_slice(b",\"time\":");
        RecordPrefix {
            bytes: bytes.into_boxed_slice(),
        }
    }

    /// Appends one record of this process; see [`record`].
    pub fn record(
        &self,
        out: &mut Vec<u8>,
        time: u64,
        stream: u8,
        message: &[u8],
        format: LogFormat,
    ) {
        out.reserve(self.bytes.len() + message.len() + 48);
        out.extend_from_slice(&self.bytes);
        out.extend_from_slice(itoa::Buffer::new().format(time).as_bytes());
        out.extend_from_slice(b",\"stream\":");
        out.extend_from_slice(itoa::Buffer::new().format(stream).as_bytes());
        out.extend_from_slice(b",\"message\":");
        if format == LogFormat::Json
            && let Some(object) = json_object(message)
        {
            write_compact_json(out, object);
        } else {
            write_str(out, message);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// Appends `bytes` as a JSON string, replacing invalid UTF-8 as `from_utf8_lossy` does.
pub fn write_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    if std::str::from_utf8(bytes).is_ok() {
        write_escaped(out, bytes);
    } else {
        for chunk in bytes.utf8_chunks() {
            write_escaped(out, chunk.valid().as_bytes());
            if !chunk.invalid().is_empty() {
                out.extend_from_slice("\u{FFFD}".as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// For each byte: 0 when it is copied as is, else the letter after `\` (`u` for `\u00xx`).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0A] = b'n';
    table[0x0C] = b'f';
    table[0x0D] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// True when one of the 8 bytes of `word` needs escaping (a control character, `"` or `\`).
/// Bytes of 0x80 and above are never flagged: `hasless(w, 0x20)` only looks at bytes whose
/// high bit is clear, and `"` / `\` are found as zero bytes of `w ^ pattern`.
#[inline(always)]
fn word_needs_escape(word: u64) -> bool {
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    (control
        | has_zero(word ^ (ONES * u64::from(b'"')))
        | has_zero(word ^ (ONES * u64::from(b'\\'))))
        != 0
}

/// Appends valid UTF-8 `bytes` with the JSON escapes, copying runs of safe bytes at once.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    let mut index = 0;
    while index < bytes.len() {
        // Skip 8 safe bytes at a time; the byte loop below finds the exact position.
        while let Some(word) = bytes.get(index..index + 8) {
            let word = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            if word_needs_escape(word) {
                break;
            }
            index += 8;
        }
        let end = (index + 8).min(bytes.len());
        while index < end {
            let byte = bytes[index];
            let escape = ESCAPE[usize::from(byte)];
            if escape != 0 {
                out.extend_from_slice(&bytes[start..index]);
                write_escape(out, byte, escape);
                start = index + 1;
            }
            index += 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

fn write_escape(out: &mut Vec<u8>, byte: u8, escape: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if escape == b'u' {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xF)],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', escape]);
    }
}

/// JSON's white space (RFC 8259), the only white space a JSON text may have around values.
pub(super) fn is_json_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// The message without surrounding white space, when that is one JSON object that
/// `serde_json` accepts (which also rejects lone surrogate escapes and numbers out of `f64`
/// range, so a consumer parsing our records with it never fails on an embedded object).
pub(super) fn json_object(message: &[u8]) -> Option<&[u8]> {
    let start = message.iter().position(|&b| !is_json_space(b))?;
    let end = message.iter().rposition(|&b| !is_json_space(b))? + 1;
    let trimmed = &message[start..end];
    if trimmed.len() > super::MAX_MESSAGE || trimmed.first() != Some(&b'{') {
        return None;
    }
    let text = std::str::from_utf8(trimmed).ok()?;
    serde_json::from_str::<Checked>(text).ok()?;
    Some(trimmed)
}

/// Appends a JSON text already checked by `json_object`, without the white space between its
/// tokens: strings (which cannot contain raw control characters) are copied byte for byte, so
/// key order and every escape stay as the job wrote them, and the record stays one line.
fn write_compact_json(out: &mut Vec<u8>, json: &[u8]) {
    let mut in_string = false;
    let mut escaped = false;
    let mut run_start = 0;
    for (index, &byte) in json.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if byte == b'"' {
            in_string = true;
        } else if is_json_space(byte) {
            out.extend_from_slice(&json[run_start..index]);
            run_start = index + 1;
        }
    }
    out.extend_from_slice(&json[run_start..]);
}

/// Deserializes any JSON value the way `serde_json::Value` would, but keeps nothing. Unlike
/// `IgnoredAny`, which skips strings without checking their escapes, it makes `serde_json`
/// decode every string, so lone surrogates are rejected.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Expected<'a> {
        process: &'a str,
        time: u64,
        stream: u8,
        message: &'a str,
    }

    /// What `serde_json` writes for the same record, with invalid UTF-8 replaced by std.
    fn expected(process: &str, time: u64, stream: u8, message: &[u8]) -> Vec<u8> {
        let message = String::from_utf8_lossy(message);
        let mut line = serde_json::to_vec(&Expected {
            process,
            time,
            stream,
            message: &message,
        })
        .unwrap();
        line.push(b'\n');
        line
    }

    fn encoded(process: &str, time: u64, stream: u8, message: &[u8], format: LogFormat) -> Vec<u8> {
        let mut out = Vec::new();
        record(&mut out, process, time, stream, message, format);
        out
    }

    fn assert_like_serde(process: &str, time: u64, stream: u8, message: &[u8]) {
        let ours = encoded(process, time, stream, message, LogFormat::Text);
        let theirs = expected(process, time, stream, message);
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "message {message:?}"
        );
        assert_eq!(ours, theirs);
    }

    #[test]
    fn record_has_the_keys_in_order() {
        let out = encoded("queue-worker", 1_670_346_907, 0, b"hello", LogFormat::Text);
        assert_eq!(
            out,
            b"{\"process\":\"queue-worker\",\"time\":1670346907,\"stream\":0,\"message\":\"hello\"}\n"
        );
    }

    #[test]
    fn every_single_byte_is_escaped_like_serde_json() {
        for byte in 0..=255u8 {
            for position in 0..20 {
                let mut message = vec![b'x'; 19];
                message.insert(position, byte);
                assert_like_serde("p", 1, 1, &message);
            }
        }
    }

    #[test]
    fn adversarial_messages_match_serde_json() {
        let cases: &[&[u8]] = &[
            b"",
            b"\"",
            b"\\",
            b"\\\"\\\"",
            b"\x00\x01\x1f\x7f",
            b"tab\there\r\x0b\x0c\x08",
            "é€😀\u{2028}\u{FEFF}".as_bytes(),
            b"\xff\xfe",
            b"\xc3",
            b"\xe2\x82",
            b"\xf0\x9f\x98",
            b"a\xf0\x9f\x98b",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
            b"\xf4\x90\x80\x80",
            b"</script>",
        ];
        for message in cases {
            assert_like_serde("job", 0, 0, message);
        }
        assert_like_serde("we\"ird\\name\n", u64::MAX, 1, b"x");
    }

    #[test]
    fn every_cut_of_a_multibyte_character_matches_serde_json() {
        let text = "aé€😀z".as_bytes();
        for start in 0..text.len() {
            for end in start..=text.len() {
                assert_like_serde("p", 7, 0, &text[start..end]);
                let mut doubled = text[start..end].to_vec();
                doubled.extend_from_slice(&text[start..end]);
                assert_like_serde("p", 7, 0, &doubled);
            }
        }
    }

    #[test]
    fn replacement_can_make_a_message_longer_than_its_bytes() {
        // Documented: the 64 KiB limit counts raw bytes; each invalid byte may become the three
        // bytes of U+FFFD.
        let out = encoded("p", 0, 0, &[0xFF; 4], LogFormat::Text);
        assert!(out.ends_with("\"\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\"}\n".as_bytes()));
    }

    #[test]
    fn json_objects_are_embedded_compactly_keeping_key_order() {
        let out = encoded(
            "api",
            5,
            0,
            b"  { \"z\" : 1, \"a\" :\t[true, null, \"x y\\n\\u0041\"],\r\"m\":{} } ",
            LogFormat::Json,
        );
        assert_eq!(
            out,
            b"{\"process\":\"api\",\"time\":5,\"stream\":0,\"message\":{\"z\":1,\"a\":[true,null,\"x y\\n\\u0041\"],\"m\":{}}}\n"
        );
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["message"]["a"][2], "x y\nA");
    }

    #[test]
    fn anything_but_a_valid_json_object_stays_a_string() {
        let cases: &[&[u8]] = &[
            b"[1,2]",
            b"\"text\"",
            b"42",
            b"{\"a\":1",
            b"{\"a\":1} trailing",
            b"{\"a\":1}{}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":1e999}",
            b"{\"a\":\"raw\ttab\"}",
            b"{'a':1}",
            b"\x0c{\"a\":1}",
            b"",
            b"   ",
        ];
        for message in cases {
            let ours = encoded("p", 1, 0, message, LogFormat::Json);
            assert_eq!(ours, expected("p", 1, 0, message), "{message:?}");
        }
        // Text jobs never embed.
        assert_eq!(
            encoded("p", 1, 0, b"{}", LogFormat::Text),
            expected("p", 1, 0, b"{}")
        );
    }

    #[test]
    fn deeply_nested_objects_stay_strings() {
        let mut message = Vec::new();
        for _ in 0..200 {
            message.extend_from_slice(b"{\"a\":");
        }
        message.push(b'1');
        message.extend(std::iter::repeat_n(b'}', 200));
        assert_eq!(
            encoded("p", 1, 0, &message, LogFormat::Json),
            expected("p", 1, 0, &message)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_match_serde_json(message in proptest::collection::vec(any::<u8>(), 0..300)) {
            let ours = encoded("job-1", 12, 1, &message, LogFormat::Text);
            prop_assert_eq!(ours, expected("job-1", 12, 1, &message));
        }

        #[test]
        fn random_text_matches_serde_json(message in "\\PC*|[\\x00-\\x7f]*|[\"\\\\\\x00-\\x1f a-z]*") {
            let ours = encoded("job-1", 12, 0, message.as_bytes(), LogFormat::Text);
            prop_assert_eq!(ours, expected("job-1", 12, 0, message.as_bytes()));
        }

        #[test]
        fn json_format_always_yields_one_valid_json_line(
            message in proptest::collection::vec(
                prop_oneof![
                    Just(b'{'), Just(b'}'), Just(b'"'), Just(b'\\'), Just(b':'), Just(b','),
                    Just(b' '), Just(b'\t'), Just(b'\r'), Just(b'1'), Just(b'a'), Just(b'u'),
                    Just(0xFF), Just(0x00), Just(b'['), Just(b']'),
                ],
                0..40,
            ),
            object in proptest::collection::hash_map("[a-z\"\\\\\n]{0,4}", "\\PC{0,8}", 0..5),
            pretty in any::<bool>(),
        ) {
            let object_text = if pretty {
                serde_json::to_vec_pretty(&object).unwrap()
            } else {
                serde_json::to_vec(&object).unwrap()
            };
            for input in [message, object_text.replace_newlines()] {
                let out = encoded("p", 3, 0, &input, LogFormat::Json);
                prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
                prop_assert!(!out.contains(&b'\r'));
                let record: serde_json::Value = serde_json::from_slice(&out).unwrap();
                match &record["message"] {
                    serde_json::Value::String(s) => {
                        prop_assert_eq!(s.as_str(), String::from_utf8_lossy(&input));
                    }
                    embedded => {
                        let original: serde_json::Value = serde_json::from_slice(&input).unwrap();
                        prop_assert_eq!(embedded, &original);
                    }
                }
            }
        }
    }

    trait ReplaceNewlines {
        fn replace_newlines(self) -> Vec<u8>;
    }

    impl ReplaceNewlines for Vec<u8> {
        /// A job's line cannot hold `\n`; pretty JSON gets `\r` there instead.
        fn replace_newlines(self) -> Vec<u8> {
            self.into_iter()
                .map(|b| if b == b'\n' { b'\r' } else { b })
                .collect()
        }
    }
}
