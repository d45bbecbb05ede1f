//! Line framing: `\n` ends a line, a `\r` before it is dropped, a line over 64 KiB is cut into
//! chunks of at most 64 KiB never inside a UTF-8 character, and a last line without `\n` is
//! still a line at end of stream.
