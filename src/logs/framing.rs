//! Line framing: `\n` ends a line, a `\r` before it is dropped, a line over 64 KiB is cut into
//! chunks of at most 64 KiB never inside a UTF-8 character, and a last line without `\n` is
//! still a line at end of stream.
//!
//! The output depends only on the bytes of the stream, never on how `read(2)` happened to cut
//! them: a long line is cut as soon as more than [`MAX_MESSAGE`] bytes of it are known, and
//! where it is cut depends only on its first `MAX_MESSAGE + 1` bytes. A `\r` that is the last
//! byte known is not counted yet, because a `\n` may follow and drop it. As `bufio.Scanner`
//! does, a `\r` ending the last line at end of stream is dropped too.
//!
//! A framer for a `log-format: "json"` stream keeps a longer line whole when, without the
//! white space around it, it is a JSON object of at most `MAX_MESSAGE` bytes (the object is measured,
//! not the line). To keep memory bounded, such a line may be at most
//! [`MAX_JSON_LINE`] bytes with its white space; a line that cannot be such an object is cut
//! exactly as in a text stream, as soon as that is known.

use memchr::memchr;

use super::MAX_MESSAGE;
use super::encode::{is_json_space, json_object};

/// The longest line (without its line ending) kept whole because it holds a JSON object of at
/// most `MAX_MESSAGE` bytes: the object plus up to 64 KiB of white space around it.
pub const MAX_JSON_LINE: usize = 2 * MAX_MESSAGE;

/// A pending partial line larger than this is freed once the line is complete, so that one
/// long line does not keep a 64–128 KiB buffer alive for the life of an idle job.
const KEEP_CAPACITY: usize = 4096;

/// The framing state of one stream: the bytes of the line not yet ended by `\n`.
#[derive(Default)]
pub struct Framer {
    pending: Vec<u8>,
    /// Leading chunks of the pending line were already emitted.
    pending_is_cut: bool,
    /// Lines that are JSON objects without their surrounding white space are kept whole.
    json: bool,
    /// With `json`: the index of the first byte of `pending` that is not JSON white space
    /// (`pending.len()` while there is none).
    lead: usize,
    /// With `json`: the index after the last byte of `pending` that is not white space.
    content_end: usize,
}

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// A framer for a `log-format: "json"` stream (see the module documentation).
    pub fn json() -> Framer {
        Framer {
            json: true,
            ..Framer::default()
        }
    }

    /// No line is pending: the next byte pushed starts a line.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && !self.pending_is_cut
    }

    /// Feeds the next bytes of the stream. `emit(message, whole_line)` is called for every
    /// record, in order: `whole_line` is false for the chunks of a line that was cut.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        while let Some(end) = memchr(b'\n', data) {
            let line = &data[..end];
            if self.pending.is_empty() {
                // The common case: the whole line is in `data`, so it is never copied.
                emit_line(line, false, self.json, &mut emit);
            } else {
                self.pending.extend_from_slice(line);
                emit_line(&self.pending, self.pending_is_cut, self.json, &mut emit);
                self.clear_pending();
            }
            data = &data[end + 1..];
        }
        if !data.is_empty() {
            self.extend_pending(data);
            self.cut_overlong(&mut emit);
        }
    }

    /// Ends the stream: the last line, if it had no `\n`, is emitted.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.pending.is_empty() {
            emit_line(&self.pending, self.pending_is_cut, self.json, &mut emit);
            self.clear_pending();
        }
    }

    fn extend_pending(&mut self, data: &[u8]) {
        let old = self.pending.len();
        self.pending.extend_from_slice(data);
        if self.json {
            // Only the new bytes are looked at, so that a line arriving in many small reads
            // is not scanned again and again.
            if self.lead == old {
                self.lead = old
                    + data
                        .iter()
                        .position(|&b| !is_json_space(b))
                        .unwrap_or(data.len());
            }
            if let Some(last) = data.iter().rposition(|&b| !is_json_space(b)) {
                self.content_end = old + last + 1;
            }
        }
    }

    /// With `json`: the pending line can still turn out to be an object of at most
    /// `MAX_MESSAGE` bytes within a line of at most `MAX_JSON_LINE` bytes.
    fn may_be_whole_object(&self) -> bool {
        self.json
            && !self.pending_is_cut
            && counted_len(&self.pending) <= MAX_JSON_LINE
            && self.pending.get(self.lead).is_none_or(|&b| b == b'{')
            && self.content_end.saturating_sub(self.lead) <= MAX_MESSAGE
    }

    /// Emits the leading chunks of a pending line known to be longer than `MAX_MESSAGE`.
    fn cut_overlong(&mut self, emit: &mut impl FnMut(&[u8], bool)) {
        if self.may_be_whole_object() {
            return;
        }
        let mut start = 0;
        while counted_len(&self.pending[start..]) > MAX_MESSAGE {
            let cut = cut_point(&self.pending[start..]);
            emit(&self.pending[start..start + cut], false);
            start += cut;
        }
        if start > 0 {
            self.pending.drain(..start);
            self.pending_is_cut = true;
        }
    }

    fn clear_pending(&mut self) {
        self.pending_is_cut = false;
        self.lead = 0;
        self.content_end = 0;
        if self.pending.capacity() > KEEP_CAPACITY {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
    }
}

/// Emits the end of a line (without its `\n`), cut into chunks if it is too long.
/// `already_cut`: the line's first chunks were emitted before. `json`: a line that is a JSON
/// object of at most `MAX_MESSAGE` bytes without its surrounding white space is not cut.
fn emit_line(line: &[u8], already_cut: bool, json: bool, emit: &mut impl FnMut(&[u8], bool)) {
    let mut rest = line.strip_suffix(b"\r").unwrap_or(line);
    if rest.len() <= MAX_MESSAGE {
        emit(rest, !already_cut);
        return;
    }
    if json && !already_cut && rest.len() <= MAX_JSON_LINE && json_object(rest).is_some() {
        emit(rest, true);
        return;
    }
    while rest.len() > MAX_MESSAGE {
        let cut = cut_point(rest);
        emit(&rest[..cut], false);
        rest = &rest[cut..];
    }
    emit(rest, false);
}

/// The length of a partial line as far as cutting is concerned: a final `\r` may still be
/// dropped by a `\n`, so it does not count yet.
fn counted_len(partial: &[u8]) -> usize {
    partial.len() - usize::from(partial.last() == Some(&b'\r'))
}

/// Where to cut a line with more than `MAX_MESSAGE` bytes: at `MAX_MESSAGE`, or before the
/// UTF-8 character that would straddle it. Only bytes up to and including index `MAX_MESSAGE`
/// are looked at; a sequence that is valid as far as those bytes go counts as a character.
/// Invalid bytes become U+FFFD later and may be cut anywhere.
pub fn cut_point(line: &[u8]) -> usize {
    debug_assert!(line.len() > MAX_MESSAGE);
    let limit = MAX_MESSAGE;
    if !is_continuation(line[limit]) {
        return limit;
    }
    // A character straddling `limit` starts at most 3 bytes before it.
    for start in (limit.saturating_sub(3)..limit).rev() {
        let byte = line[start];
        if is_continuation(byte) {
            continue;
        }
        let width = utf8_width(byte);
        if start + width > limit && is_valid_prefix(&line[start..=limit.min(start + width - 1)]) {
            return start;
        }
        // A non-continuation byte ends the search: nothing before it can reach `limit`.
        return limit;
    }
    limit
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// The length of the sequence a lead byte announces (0 for bytes that cannot start one).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

/// True when `bytes` is one complete UTF-8 character or the valid beginning of one.
fn is_valid_prefix(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(error) => error.valid_up_to() == 0 && error.error_len().is_none(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Frames `stream` fed in pieces cut at `cuts`, then ended.
    fn frame_in_pieces(stream: &[u8], cuts: &[usize]) -> Vec<(Vec<u8>, bool)> {
        frame_in_pieces_as(Framer::new(), stream, cuts)
    }

    fn frame_in_pieces_as(
        mut framer: Framer,
        stream: &[u8],
        cuts: &[usize],
    ) -> Vec<(Vec<u8>, bool)> {
        let mut records = Vec::new();
        let mut start = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
        cuts.sort_unstable();
        for cut in cuts {
            framer.push(&stream[start..cut], |m, w| records.push((m.to_vec(), w)));
            start = cut;
        }
        framer.push(&stream[start..], |m, w| records.push((m.to_vec(), w)));
        framer.finish(|m, w| records.push((m.to_vec(), w)));
        records
    }

    fn frame(stream: &[u8]) -> Vec<(Vec<u8>, bool)> {
        frame_in_pieces(stream, &[])
    }

    fn messages(records: &[(Vec<u8>, bool)]) -> Vec<&[u8]> {
        records.iter().map(|(m, _)| m.as_slice()).collect()
    }

    #[test]
    fn lines_end_at_newline_and_drop_carriage_return_before_it() {
        let records = frame(b"one\ntwo\r\n\nthree\rfour\n");
        assert_eq!(
            messages(&records),
            [&b"one"[..], b"two", b"", b"three\rfour"]
        );
        assert!(records.iter().all(|(_, whole)| *whole));
    }

    #[test]
    fn last_line_without_newline_is_emitted_at_end_of_stream() {
        assert_eq!(messages(&frame(b"a\nlast")), [&b"a"[..], b"last"]);
        assert_eq!(messages(&frame(b"a\nlast\r")), [&b"a"[..], b"last"]);
        assert!(frame(b"a\n").len() == 1);
        assert!(frame(b"").is_empty());
    }

    #[test]
    fn partial_lines_are_joined_across_reads() {
        let records = frame_in_pieces(b"hel", &[]);
        assert_eq!(messages(&records), [b"hel"]);
        let mut framer = Framer::new();
        let mut seen = Vec::new();
        framer.push(b"hel", |m, _| seen.push(m.to_vec()));
        assert!(seen.is_empty());
        framer.push(b"lo\r", |m, _| seen.push(m.to_vec()));
        assert!(seen.is_empty());
        framer.push(b"\nx", |m, _| seen.push(m.to_vec()));
        assert_eq!(seen, [b"hello".to_vec()]);
    }

    #[test]
    fn exactly_64_kib_is_one_record() {
        let mut line = vec![b'a'; MAX_MESSAGE];
        line.extend_from_slice(b"\r\n");
        for cuts in [
            vec![],
            vec![MAX_MESSAGE],
            vec![MAX_MESSAGE + 1],
            vec![100, 70_000],
        ] {
            let records = frame_in_pieces(&line, &cuts);
            assert_eq!(records.len(), 1, "cuts {cuts:?}");
            assert_eq!(records[0].0.len(), MAX_MESSAGE);
            assert!(records[0].1);
        }
        // Also at end of stream without `\n`.
        let records = frame(&line[..MAX_MESSAGE + 1]);
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn one_byte_over_64_kib_is_two_records() {
        let line = vec![b'a'; MAX_MESSAGE + 1];
        let records = frame(&line);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0.len(), MAX_MESSAGE);
        assert_eq!(records[1].0, b"a");
        assert!(!records[0].1 && !records[1].1);
    }

    #[test]
    fn a_long_line_is_cut_while_it_is_still_being_read() {
        let mut framer = Framer::new();
        let mut seen = Vec::new();
        for _ in 0..5 {
            framer.push(&[b'x'; 40_000], |m, _| seen.push(m.len()));
        }
        assert_eq!(seen, [MAX_MESSAGE, MAX_MESSAGE, MAX_MESSAGE]);
        assert!(framer.pending.len() <= MAX_MESSAGE);
    }

    #[test]
    fn cuts_never_split_a_valid_character() {
        for width in 2..=4 {
            let character = ["", "", "é", "€", "😀"][width];
            for offset in 0..width {
                let mut line = vec![b'a'; MAX_MESSAGE - offset];
                while line.len() < MAX_MESSAGE + 10 {
                    line.extend_from_slice(character.as_bytes());
                }
                let records = frame(&line);
                let first = &records[0].0;
                assert!(
                    std::str::from_utf8(first).is_ok(),
                    "width {width} offset {offset}"
                );
                assert!(first.len() > MAX_MESSAGE - width);
                let joined: Vec<u8> = records.iter().flat_map(|(m, _)| m.clone()).collect();
                assert_eq!(joined, line);
            }
        }
    }

    #[test]
    fn invalid_bytes_may_be_cut_anywhere() {
        let mut line = vec![b'a'; MAX_MESSAGE - 1];
        line.extend_from_slice(&[0xE2, 0x28, 0xA1, b'z']);
        let records = frame(&line);
        assert_eq!(records[0].0.len(), MAX_MESSAGE);
        let continuation_only = vec![0x80; MAX_MESSAGE + 5];
        assert_eq!(frame(&continuation_only)[0].0.len(), MAX_MESSAGE);
    }

    /// The whole-stream definition the streaming framer must agree with.
    fn reference(stream: &[u8]) -> Vec<(Vec<u8>, bool)> {
        reference_as(stream, false)
    }

    fn reference_as(stream: &[u8], json: bool) -> Vec<(Vec<u8>, bool)> {
        let mut records = Vec::new();
        let mut lines: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        for line in lines {
            let mut rest = line.strip_suffix(b"\r").unwrap_or(line);
            if json && rest.len() <= MAX_JSON_LINE && json_object(rest).is_some() {
                records.push((rest.to_vec(), true));
                continue;
            }
            let whole = rest.len() <= MAX_MESSAGE;
            while rest.len() > MAX_MESSAGE {
                let cut = cut_point(rest);
                records.push((rest[..cut].to_vec(), false));
                rest = &rest[cut..];
            }
            records.push((rest.to_vec(), whole));
        }
        records
    }

    /// Byte soup biased towards line ends, `\r`, multi-byte characters and their pieces.
    fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just("é".as_bytes().to_vec()),
            Just("€".as_bytes().to_vec()),
            Just("😀".as_bytes().to_vec()),
            Just(vec![0xF0, 0x9F]),
            Just(vec![0xE2, 0x82]),
            Just(vec![0x80]),
            (1usize..70_000).prop_map(|n| vec![b'a'; n]),
            (0usize..3, MAX_MESSAGE - 12..MAX_MESSAGE - 4, 0usize..3)
                .prop_map(|(lead, n, trail)| spaced_object(lead, n, trail)),
            Just(b" \t ".to_vec()),
            (1usize..200).prop_map(|n| vec![b'b'; n]),
            any::<u8>().prop_map(|b| vec![b]),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    /// `lead` spaces, a JSON object of `n + 8` bytes, `trail` spaces and tabs.
    fn spaced_object(lead: usize, n: usize, trail: usize) -> Vec<u8> {
        let mut line = vec![b' '; lead];
        line.extend_from_slice(b"{\"a\":\"");
        line.extend(std::iter::repeat_n(b'x', n));
        line.extend_from_slice(b"\"}");
        line.extend(std::iter::repeat_n(b'\t', trail));
        line
    }

    #[test]
    fn a_json_object_of_64_kib_with_white_space_around_it_is_one_record() {
        let object = spaced_object(0, MAX_MESSAGE - 8, 0);
        assert_eq!(object.len(), MAX_MESSAGE);
        let mut line = b"  ".to_vec();
        line.extend_from_slice(&object);
        line.extend_from_slice(b"  \r\n");
        for cuts in [
            vec![],
            vec![1],
            vec![3, MAX_MESSAGE],
            vec![MAX_MESSAGE + 2],
            vec![100, 70_000],
        ] {
            let records = frame_in_pieces_as(Framer::json(), &line, &cuts);
            assert_eq!(records.len(), 1, "cuts {cuts:?}");
            assert_eq!(records[0].0, &line[..line.len() - 2]);
            assert!(records[0].1);
            // A text stream cuts the same line.
            assert_eq!(frame_in_pieces(&line, &cuts).len(), 2);
        }
        // Also as the last line without `\n`.
        let records = frame_in_pieces_as(Framer::json(), &line[..line.len() - 1], &[9]);
        assert_eq!(records.len(), 1);
    }

    #[test]
    fn a_json_line_that_is_no_object_is_cut_as_text() {
        let object = spaced_object(2, MAX_MESSAGE - 8, 2);
        let cases = [
            // One byte too long as an object.
            spaced_object(2, MAX_MESSAGE - 7, 2),
            // Not closed, or something after it.
            object[..object.len() - 3].to_vec(),
            [&object[..], b"x"].concat(),
            // Not an object.
            [&b"  ["[..], &vec![b'1'; MAX_MESSAGE][..], b"]"].concat(),
            // Too much white space around it.
            [&vec![b' '; MAX_JSON_LINE - 1][..], b"{}"].concat(),
        ];
        for line in cases {
            for cuts in [vec![], vec![10], vec![MAX_MESSAGE + 1, MAX_MESSAGE + 5]] {
                let json = frame_in_pieces_as(Framer::json(), &line, &cuts);
                assert_eq!(json, frame_in_pieces(&line, &cuts));
                assert!(json.len() > 1);
            }
        }
        // The longest line kept whole: 64 KiB of white space around the object.
        let whole = [&vec![b' '; MAX_JSON_LINE - 2][..], b"{}"].concat();
        assert_eq!(
            frame_in_pieces_as(Framer::json(), &whole, &[5]),
            [(whole, true)]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn framing_does_not_depend_on_how_reads_cut_the_stream(
            stream in stream_strategy(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            let expected = reference(&stream);
            prop_assert_eq!(frame_in_pieces(&stream, &cuts), expected.clone());
            for (message, _) in &expected {
                prop_assert!(message.len() <= MAX_MESSAGE);
            }
        }

        #[test]
        fn json_framing_does_not_depend_on_how_reads_cut_the_stream(
            stream in stream_strategy(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            let expected = reference_as(&stream, true);
            prop_assert_eq!(frame_in_pieces_as(Framer::json(), &stream, &cuts), expected.clone());
            for (message, whole) in &expected {
                prop_assert!(message.len() <= MAX_MESSAGE || (*whole && json_object(message).is_some()));
            }
        }
    }
}
