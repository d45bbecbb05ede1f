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
    RecordHead::new(process, stream).record(out, time, message, format);
}

/// The start of every record of one stream of one process, up to the message and the quote
/// that opens it as a string: `{"process":"…","time":…,"stream":…,"message":"`. It is escaped
/// once and rebuilt only when the time (whole seconds) changes, so that the record of a plain
/// line costs one scan and two copies.
#[derive(Debug, Clone)]
pub struct RecordHead {
    bytes: Vec<u8>,
    /// `bytes[..time_at]` is `{"process":"…","time":`.
    time_at: usize,
    time: u64,
    stream: u8,
}

impl RecordHead {
    /// `stream`: 0 for stdout, 1 for stderr.
    pub fn new(process: &str, stream: u8) -> RecordHead {
        let mut bytes = Vec::with_capacity(process.len() + 64);
        bytes.extend_from_slice(b"{\"process\":");
        write_str(&mut bytes, process.as_bytes());
        bytes.extend_from_slice(b",\"time\":");
        let time_at = bytes.len();
        let mut head = RecordHead {
            bytes,
            time_at,
            time: 0,
            stream,
        };
        head.set_time(0);
        head
    }

    fn set_time(&mut self, time: u64) {
        self.bytes.truncate(self.time_at);
        self.bytes
            .extend_from_slice(itoa::Buffer::new().format(time).as_bytes());
        self.bytes.extend_from_slice(b",\"stream\":");
        self.bytes
            .extend_from_slice(itoa::Buffer::new().format(self.stream).as_bytes());
        self.bytes.extend_from_slice(b",\"message\":\"");
        self.time = time;
    }

    /// The head without the quote, for a message that is an object.
    fn object_head(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - 1]
    }

    /// Appends a record whose message is known to be plain: [`find_special`] finds nothing
    /// in it, so it is copied as it is.
    pub fn record_plain(&mut self, out: &mut Vec<u8>, time: u64, message: &[u8]) {
        debug_assert_eq!(find_special(message), message.len());
        if time != self.time {
            self.set_time(time);
        }
        const TAIL: &[u8; 3] = b"\"}\n";
        let head = self.bytes.as_slice();
        out.reserve(head.len() + message.len() + TAIL.len());
        let len = out.len();
        // SAFETY: `reserve` made room for the three parts after `len`; none of them can
        // overlap `out`'s buffer, which is borrowed mutably here. Two copies of run-time
        // length and one of three bytes, because `extend_from_slice` is not inlined at
        // `opt-level = "s"` and its calls cost more than the scan of a line.
        unsafe {
            let mut at = out.as_mut_ptr().add(len);
            std::ptr::copy_nonoverlapping(head.as_ptr(), at, head.len());
            at = at.add(head.len());
            std::ptr::copy_nonoverlapping(message.as_ptr(), at, message.len());
            at = at.add(message.len());
            std::ptr::copy_nonoverlapping(TAIL.as_ptr(), at, TAIL.len());
            out.set_len(len + head.len() + message.len() + TAIL.len());
        }
    }

    /// Appends one record of this stream; see [`record`].
    pub fn record(&mut self, out: &mut Vec<u8>, time: u64, message: &[u8], format: LogFormat) {
        if time != self.time {
            self.set_time(time);
        }
        if format == LogFormat::Json
            && let Some(object) = json_object(message)
        {
            out.reserve(self.bytes.len() + object.len() + 2);
            out.extend_from_slice(self.object_head());
            write_compact_json(out, object);
            out.extend_from_slice(b"}\n");
            return;
        }
        let plain = find_special(message);
        if plain == message.len() {
            // Printable ASCII without `"` or `\`, copied as it is.
            return self.record_plain(out, time, message);
        }
        out.reserve(self.bytes.len() + message.len() + 48);
        out.extend_from_slice(&self.bytes);
        out.extend_from_slice(&message[..plain]);
        write_str_tail(out, &message[plain..]);
        out.extend_from_slice(b"\"}\n");
    }
}

/// Appends `bytes` as a JSON string, replacing invalid UTF-8 as `from_utf8_lossy` does.
pub fn write_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let plain = find_special(bytes);
    out.extend_from_slice(&bytes[..plain]);
    write_str_tail(out, &bytes[plain..]);
    out.push(b'"');
}

/// Appends the rest of a string from its first byte that is not plain ASCII. What came before
/// was ASCII, so the rest starts at a character boundary and is replaced exactly as the whole
/// would be.
fn write_str_tail(out: &mut Vec<u8>, bytes: &[u8]) {
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

/// Appends valid UTF-8 `bytes` with the JSON escapes, copying runs of safe bytes at once.
fn write_escaped(out: &mut Vec<u8>, mut bytes: &[u8]) {
    loop {
        let safe = find_escape(bytes);
        out.extend_from_slice(&bytes[..safe]);
        let Some(&byte) = bytes.get(safe) else {
            return;
        };
        write_escape(out, byte, ESCAPE[usize::from(byte)]);
        bytes = &bytes[safe + 1..];
    }
}

/// The index of the first byte that is a control character, `"`, `\` or not ASCII (the
/// length when there is none): everything before it is copied into a JSON string as it is.
pub fn find_special(bytes: &[u8]) -> usize {
    scan::find::<true>(bytes)
}

/// The index of the first byte that must be escaped in a JSON string (a control character,
/// `"` or `\`); the length when there is none.
fn find_escape(bytes: &[u8]) -> usize {
    scan::find::<false>(bytes)
}

/// Byte scans 32 bytes at a time with AVX2 where the processor has it (checked at run time, as
/// `memchr` does), else 16 at a time with SSE2, which every x86_64 processor has.
#[cfg(target_arch = "x86_64")]
mod scan {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_min_epu8,
        _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8,
        _mm256_loadu_si256, _mm256_min_epu8, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8,
    };

    /// See `find_special` (`NON_ASCII`) and `find_escape`.
    #[inline(always)]
    pub fn find<const NON_ASCII: bool>(bytes: &[u8]) -> usize {
        if bytes.len() >= 32 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2 (checked just above).
            return unsafe { find_avx2::<NON_ASCII>(bytes) };
        }
        find_sse2::<NON_ASCII>(bytes)
    }

    /// `find` for at least 32 bytes.
    ///
    /// # Safety
    /// The processor must have AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn find_avx2<const NON_ASCII: bool>(bytes: &[u8]) -> usize {
        let len = bytes.len();
        debug_assert!(len >= 32);
        let mut index = 0;
        while index + 32 <= len {
            // SAFETY: 32 bytes from `index` are within `bytes`.
            let mask = unsafe { flags_avx2::<NON_ASCII>(bytes.as_ptr().add(index)) };
            if mask != 0 {
                return index + mask.trailing_zeros() as usize;
            }
            index += 32;
        }
        if index < len {
            // The last 32 bytes, overlapping what was already scanned.
            let start = len - 32;
            // SAFETY: `len >= 32`, so the 32 bytes from `start` are within `bytes`.
            let mask =
                unsafe { flags_avx2::<NON_ASCII>(bytes.as_ptr().add(start)) } >> (index - start);
            if mask != 0 {
                return index + mask.trailing_zeros() as usize;
            }
        }
        len
    }

    /// One bit per byte of the 32 at `at` that `find` looks for.
    ///
    /// # Safety
    /// The processor must have AVX2, and `at` must be valid for reading 32 bytes.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn flags_avx2<const NON_ASCII: bool>(at: *const u8) -> u32 {
        // SAFETY: the caller vouches for the load.
        let x = unsafe { _mm256_loadu_si256(at.cast::<__m256i>()) };
        let special = if NON_ASCII {
            // Signed: bytes of 0x80 and above are negative, so they are flagged too.
            _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), x)
        } else {
            // Unsigned `x <= 0x1F`.
            _mm256_cmpeq_epi8(_mm256_min_epu8(x, _mm256_set1_epi8(0x1F)), x)
        };
        let quote = _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b'"' as i8));
        let backslash = _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b'\\' as i8));
        let found = _mm256_or_si256(special, _mm256_or_si256(quote, backslash));
        _mm256_movemask_epi8(found).cast_unsigned()
    }

    /// `find` with SSE2.
    #[inline(always)]
    pub fn find_sse2<const NON_ASCII: bool>(bytes: &[u8]) -> usize {
        let len = bytes.len();
        if len < 16 {
            return super::portable::find::<NON_ASCII>(bytes);
        }
        let mut index = 0;
        while index + 16 <= len {
            // SAFETY: 16 bytes from `index` are within `bytes`.
            let mask = unsafe { flags::<NON_ASCII>(bytes.as_ptr().add(index)) };
            if mask != 0 {
                return index + mask.trailing_zeros() as usize;
            }
            index += 16;
        }
        if index < len {
            // The last 16 bytes, overlapping what was already scanned.
            let start = len - 16;
            // SAFETY: `len >= 16`, so the 16 bytes from `start` are within `bytes`.
            let mask = unsafe { flags::<NON_ASCII>(bytes.as_ptr().add(start)) } >> (index - start);
            if mask != 0 {
                return index + mask.trailing_zeros() as usize;
            }
        }
        len
    }

    /// One bit per byte of the 16 at `at` that `find` looks for.
    ///
    /// # Safety
    /// `at` must be valid for reading 16 bytes.
    #[inline(always)]
    unsafe fn flags<const NON_ASCII: bool>(at: *const u8) -> u32 {
        // SAFETY: SSE2 is part of the x86_64 baseline; the caller vouches for the load.
        unsafe {
            let x = _mm_loadu_si128(at.cast::<__m128i>());
            let special = if NON_ASCII {
                // A signed comparison: bytes of 0x80 and above are negative, so this flags
                // them together with the control characters.
                _mm_cmplt_epi8(x, _mm_set1_epi8(0x20))
            } else {
                // Unsigned `x <= 0x1F`.
                _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1F)), x)
            };
            let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
            let found = _mm_or_si128(special, _mm_or_si128(quote, backslash));
            _mm_movemask_epi8(found).cast_unsigned() & 0xFFFF
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod scan {
    pub use super::portable::find;
}

/// The scans 8 bytes at a time in a `u64`: for other targets, and for short strings.
mod portable {
    use super::ESCAPE;

    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;

    /// True when one of the 8 bytes of `word` needs escaping (a control character, `"` or
    /// `\`), or with `NON_ASCII` is 0x80 or above. `hasless(w, 0x20)` only looks at bytes
    /// whose high bit is clear, and `"` / `\` are found as zero bytes of `w ^ pattern`.
    #[inline(always)]
    fn word_is_flagged<const NON_ASCII: bool>(word: u64) -> bool {
        let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        let high = if NON_ASCII { word & HIGHS } else { 0 };
        (control
            | high
            | has_zero(word ^ (ONES * u64::from(b'"')))
            | has_zero(word ^ (ONES * u64::from(b'\\'))))
            != 0
    }

    #[inline(always)]
    fn is_flagged<const NON_ASCII: bool>(byte: u8) -> bool {
        ESCAPE[usize::from(byte)] != 0 || (NON_ASCII && byte >= 0x80)
    }

    /// See `find_special` (`NON_ASCII`) and `find_escape`.
    pub fn find<const NON_ASCII: bool>(bytes: &[u8]) -> usize {
        let mut index = 0;
        while let Some(word) = bytes.get(index..index + 8) {
            let word = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            if word_is_flagged::<NON_ASCII>(word) {
                break;
            }
            index += 8;
        }
        bytes[index..]
            .iter()
            .position(|&b| is_flagged::<NON_ASCII>(b))
            .map_or(bytes.len(), |found| index + found)
    }
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

    /// The vector scan works on 16 bytes at a time with an overlapping last block: every
    /// byte at every position of strings around those sizes.
    #[test]
    fn every_single_byte_in_longer_messages_is_escaped_like_serde_json() {
        for len in [15, 16, 17, 31, 32, 33, 47, 70, 100] {
            for byte in 0..=255u8 {
                for position in 0..len {
                    let mut message = vec![b'x'; len - 1];
                    message.insert(position, byte);
                    assert_like_serde("p", 1, 0, &message);
                }
            }
        }
    }

    #[test]
    fn a_stream_head_follows_the_time() {
        let mut head = RecordHead::new("web", 1);
        let mut out = Vec::new();
        for time in [0, 0, 5, 1_670_346_907, 5] {
            head.record(&mut out, time, b"a", LogFormat::Text);
        }
        let mut expected_out = Vec::new();
        for time in [0, 0, 5, 1_670_346_907, 5] {
            expected_out.extend(expected("web", time, 1, b"a"));
        }
        assert_eq!(out, expected_out);
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
        fn the_scans_agree_with_the_portable_ones(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'x'), Just(b'"'), Just(b'\\'), Just(0x1F), Just(0x20), Just(0x7F), Just(0x80), Just(0xFF), any::<u8>()],
                0..200,
            ),
            skip in 0usize..200,
        ) {
            // Mostly plain, so that the flagged byte lands at every offset of a block.
            let mut bytes = bytes;
            for byte in bytes.iter_mut().take(skip) {
                *byte = b'x';
            }
            prop_assert_eq!(find_special(&bytes), portable::find::<true>(&bytes));
            prop_assert_eq!(find_escape(&bytes), portable::find::<false>(&bytes));
            #[cfg(target_arch = "x86_64")]
            {
                prop_assert_eq!(scan::find_sse2::<true>(&bytes), portable::find::<true>(&bytes));
                prop_assert_eq!(scan::find_sse2::<false>(&bytes), portable::find::<false>(&bytes));
            }
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
