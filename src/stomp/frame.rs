//! STOMP 1.2 frames: a bounded, incremental parser and the serializer.
//!
//! The parser takes bytes as they come (a WebSocket message may hold several frames, or part of
//! one) and yields frames and heart-beats. It never buffers more than `max_frame` bytes: a frame
//! that would exceed it is an error before it is read whole. Header escaping follows 1.2 (`\r`,
//! `\n`, `\c`, `\\`; anything else after a backslash is an error), except in CONNECT and
//! CONNECTED frames. A `content-length` body may contain NUL bytes.

use bytes::{Buf, Bytes, BytesMut};

/// A malformed or oversized frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is larger than allowed.
    #[error("frame larger than {0} bytes")]
    TooLarge(usize),
    /// More headers than allowed.
    #[error("more than {0} headers")]
    TooManyHeaders(usize),
    /// A header line without a colon.
    #[error("header line without ':'")]
    BadHeader,
    /// An escape sequence that STOMP 1.2 does not define.
    #[error("undefined escape sequence in a header")]
    BadEscape,
    /// Not UTF-8 where text is required.
    #[error("command or header is not UTF-8")]
    NotUtf8,
    /// `content-length` is not a number.
    #[error("content-length is not a number")]
    BadLength,
    /// The body did not end with NUL where `content-length` said.
    #[error("body not terminated by NUL after content-length bytes")]
    MissingNul,
    /// The command is empty or not an upper-case word.
    #[error("missing or malformed command")]
    BadCommand,
}

/// One STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// Command, e.g. `SEND`.
    pub command: String,
    /// Headers in order (repeated names allowed; the first one counts).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(command: &str) -> Self {
        Frame {
            command: command.to_string(),
            ..Frame::default()
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The bytes this frame holds: command, headers and body.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 2)
            .sum();
        self.command.len() + headers + self.body.len()
    }

    /// The first value of header `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn escapes(&self) -> bool {
        !matches!(self.command.as_str(), "CONNECT" | "CONNECTED")
    }

    /// Serializes the frame (with `content-length` when it has a body).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.body.len());
        out.extend_from_slice(self.command.as_bytes());
        out.push(b'\n');
        let escape = self.escapes();
        for (name, value) in &self.headers {
            push_escaped(&mut out, name, escape);
            out.push(b':');
            push_escaped(&mut out, value, escape);
            out.push(b'\n');
        }
        if !self.body.is_empty() && self.get("content-length").is_none() {
            out.extend_from_slice(format!("content-length:{}\n", self.body.len()).as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out.push(0);
        out
    }
}

fn push_escaped(out: &mut Vec<u8>, s: &str, escape: bool) {
    if !escape {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for b in s.bytes() {
        match b {
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b':' => out.extend_from_slice(b"\\c"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            other => out.push(other),
        }
    }
}

fn unescape(raw: &[u8], escape: bool) -> Result<String, FrameError> {
    if !escape {
        return String::from_utf8(raw.to_vec()).map_err(|_| FrameError::NotUtf8);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match bytes.next() {
            Some(b'r') => b'\r',
            Some(b'n') => b'\n',
            Some(b'c') => b':',
            Some(b'\\') => b'\\',
            _ => return Err(FrameError::BadEscape),
        });
    }
    String::from_utf8(out).map_err(|_| FrameError::NotUtf8)
}

/// What the parser yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A frame.
    Frame(Frame),
    /// An end-of-line between frames: a heart-beat.
    Heartbeat,
}

/// The incremental parser.
#[derive(Debug)]
pub struct Parser {
    buf: BytesMut,
    max_frame: usize,
    max_headers: usize,
    // How far the current frame was already searched for the end of its head and for its
    // terminating NUL: a frame trickled in byte by byte costs linear, not quadratic, time.
    head_scanned: usize,
    body_scanned: usize,
}

impl Parser {
    /// A parser refusing frames over `max_frame` bytes or with more than `max_headers` headers.
    pub fn new(max_frame: usize, max_headers: usize) -> Self {
        Parser {
            buf: BytesMut::new(),
            max_frame,
            max_headers,
            head_scanned: 0,
            body_scanned: 0,
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes waiting for the rest of a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame or heart-beat, if the buffer holds one.
    pub fn next_event(&mut self) -> Result<Option<Event>, FrameError> {
        // Heart-beats: end-of-lines between frames.
        match self.buf.first() {
            None => return Ok(None),
            Some(b'\n') => {
                self.buf.advance(1);
                return Ok(Some(Event::Heartbeat));
            }
            Some(b'\r') => {
                if self.buf.len() < 2 {
                    return Ok(None);
                }
                if self.buf[1] == b'\n' {
                    self.buf.advance(2);
                    return Ok(Some(Event::Heartbeat));
                }
            }
            Some(_) => {}
        }
        // Command and headers end at the first empty line.
        let Some(head_end) = find_blank_line(&self.buf, self.head_scanned) else {
            if self.buf.len() > self.max_frame {
                return Err(FrameError::TooLarge(self.max_frame));
            }
            self.head_scanned = self.buf.len();
            return Ok(None);
        };
        let (head_len, sep_len) = head_end;
        let head = &self.buf[..head_len];
        let mut lines = head
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let command = std::str::from_utf8(lines.next().unwrap_or_default())
            .map_err(|_| FrameError::NotUtf8)?
            .to_string();
        // Commands are upper-case words (SEND, SUBSCRIBE, …); anything else, a stray CR
        // included, would not survive a round trip.
        if command.is_empty() || !command.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(FrameError::BadCommand);
        }
        let escape = !matches!(command.as_str(), "CONNECT" | "CONNECTED");
        let mut headers = Vec::new();
        for line in lines {
            if headers.len() == self.max_headers {
                return Err(FrameError::TooManyHeaders(self.max_headers));
            }
            let colon = line
                .iter()
                .position(|b| *b == b':')
                .ok_or(FrameError::BadHeader)?;
            headers.push((
                unescape(&line[..colon], escape)?,
                unescape(&line[colon + 1..], escape)?,
            ));
        }
        let body_start = head_len + sep_len;
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.trim().parse::<usize>().map_err(|_| FrameError::BadLength))
            .transpose()?;
        let (body_len, frame_len) = match length {
            Some(len) => {
                // A peer's content-length can be anything: no overflow, just too large.
                let total = body_start
                    .checked_add(len)
                    .and_then(|t| t.checked_add(1))
                    .ok_or(FrameError::TooLarge(self.max_frame))?;
                if total > self.max_frame {
                    return Err(FrameError::TooLarge(self.max_frame));
                }
                if self.buf.len() < total {
                    return Ok(None);
                }
                if self.buf[body_start + len] != 0 {
                    return Err(FrameError::MissingNul);
                }
                (len, total)
            }
            None => {
                let from = body_start.max(self.body_scanned);
                match self.buf[from..].iter().position(|b| *b == 0) {
                    Some(nul) => (from + nul - body_start, from + nul + 1),
                    None if self.buf.len() > self.max_frame => {
                        return Err(FrameError::TooLarge(self.max_frame))
                    }
                    None => {
                        self.body_scanned = self.buf.len();
                        return Ok(None);
                    }
                }
            }
        };
        if frame_len > self.max_frame {
            return Err(FrameError::TooLarge(self.max_frame));
        }
        self.head_scanned = 0;
        self.body_scanned = 0;
        let mut frame_bytes = self.buf.split_to(frame_len);
        if self.buf.is_empty() {
            // Let go of the allocation the frame came in: the next push would take all of it
            // back once the frame is dropped, and a connection that sent one 128 KiB frame
            // would hold 128 KiB for the rest of its life.
            self.buf = BytesMut::new();
        }
        frame_bytes.advance(body_start);
        frame_bytes.truncate(body_len);
        Ok(Some(Event::Frame(Frame {
            command,
            headers,
            body: frame_bytes.freeze(),
        })))
    }
}

/// Where the head ends: (length of command + headers, length of the blank-line separator).
/// `from`: bytes already searched; the search backs up a little so a separator split across
/// two pushes is still found.
fn find_blank_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from.saturating_sub(3);
    while i < buf.len() {
        if buf[i] == b'\n' {
            // "\n\n" or "\n\r\n"
            if buf.get(i + 1) == Some(&b'\n') {
                let end = if i > 0 && buf[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                return Some((end, i + 2 - end));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                let end = if i > 0 && buf[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                return Some((end, i + 3 - end));
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffer capacity a parser may keep between frames.
    const KEEP_CAPACITY: usize = 4096;

    #[test]
    fn a_large_frame_does_not_leave_its_buffer_behind() {
        let mut parser = Parser::new(1 << 20, 16);
        let body = vec![b'x'; 128 * 1024];
        let mut wire = b"SEND\ndestination:/topic/system\n\n".to_vec();
        wire.extend_from_slice(&body);
        wire.push(0);
        parser.push(&wire);
        assert!(matches!(parser.next_event(), Ok(Some(Event::Frame(_)))));
        parser.push(b"\n");
        assert!(
            parser.buf.capacity() <= KEEP_CAPACITY,
            "kept {} bytes after the frame",
            parser.buf.capacity()
        );
        assert!(matches!(parser.next_event(), Ok(Some(Event::Heartbeat))));
    }

    fn parse_all(parser: &mut Parser) -> Result<Vec<Event>, FrameError> {
        let mut out = Vec::new();
        while let Some(e) = parser.next_event()? {
            out.push(e);
        }
        Ok(out)
    }

    fn sample() -> Vec<Frame> {
        vec![
            Frame::new("CONNECT")
                .header("accept-version", "1.2")
                .header("host", "site:7")
                .header("passcode", "a:b"),
            Frame::new("SEND")
                .header("destination", "/topic/org/acme/room/ops")
                .header("note", "colon: back\\slash\nnewline\rcr")
                .body(Bytes::from_static(b"{\"a\":1}\0with\0nuls")),
            Frame::new("SUBSCRIBE")
                .header("id", "sub-0")
                .header("destination", "/topic/system"),
            Frame::new("DISCONNECT").header("receipt", "77"),
        ]
    }

    #[test]
    fn frames_round_trip_whatever_the_split() {
        let frames = sample();
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend_from_slice(&f.to_bytes());
            wire.extend_from_slice(b"\n\r\n");
        }
        // Every split point, fed in two pieces.
        for split in 0..=wire.len() {
            let mut parser = Parser::new(1 << 16, 64);
            let mut events = Vec::new();
            parser.push(&wire[..split]);
            events.extend(parse_all(&mut parser).expect("first half"));
            parser.push(&wire[split..]);
            events.extend(parse_all(&mut parser).expect("second half"));
            let got: Vec<Frame> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Frame(f) => Some(f.clone()),
                    Event::Heartbeat => None,
                })
                .collect();
            let mut expected = frames.clone();
            // The serializer adds content-length to frames with a body.
            expected[1]
                .headers
                .push(("content-length".into(), "17".into()));
            assert_eq!(got, expected, "split at {split}");
            let beats = events.iter().filter(|e| **e == Event::Heartbeat).count();
            assert_eq!(beats, 2 * frames.len(), "split at {split}");
            assert_eq!(parser.pending(), 0);
        }
        // And byte by byte.
        let mut parser = Parser::new(1 << 16, 64);
        let mut count = 0;
        for b in &wire {
            parser.push(std::slice::from_ref(b));
            count += parse_all(&mut parser)
                .expect("byte")
                .iter()
                .filter(|e| matches!(e, Event::Frame(_)))
                .count();
        }
        assert_eq!(count, frames.len());
    }

    #[test]
    fn connect_headers_are_not_unescaped_but_others_are() {
        let mut parser = Parser::new(4096, 16);
        parser.push(b"CONNECT\nlogin:a\\cb\n\n\0SEND\ndestination:/x\nk:a\\cb\\\\\n\n\0");
        let events = parse_all(&mut parser).expect("parse");
        match (&events[0], &events[1]) {
            (Event::Frame(c), Event::Frame(s)) => {
                assert_eq!(c.get("login"), Some("a\\cb"));
                assert_eq!(s.get("k"), Some("a:b\\"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_and_oversized_frames_are_refused() {
        let cases: Vec<(&[u8], FrameError)> = vec![
            (b"SEND\nnocolon\n\n\0", FrameError::BadHeader),
            (b"SEND\nk:\\t\n\n\0", FrameError::BadEscape),
            (b"SEND\ncontent-length:x\n\n\0", FrameError::BadLength),
            (b"SEND\ncontent-length:2\n\nabc\0", FrameError::MissingNul),
            (b"SEND\ncontent-length:5000\n\n", FrameError::TooLarge(1024)),
        ];
        for (wire, expected) in cases {
            let mut parser = Parser::new(1024, 4);
            parser.push(wire);
            assert_eq!(
                parse_all(&mut parser),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        // Found by the fuzzer: a content-length that overflows.
        let mut parser = Parser::new(1024, 4);
        parser.push(b"SEND\ncontent-length:18446744073709551615\n\n\0");
        assert_eq!(parse_all(&mut parser), Err(FrameError::TooLarge(1024)));
        // Found by the fuzzer: a command made of a stray CR.
        let mut parser = Parser::new(1024, 4);
        parser.push(b"\r\r\r\n\n\x0b\0");
        assert_eq!(parse_all(&mut parser), Err(FrameError::BadCommand));
        let mut parser = Parser::new(1024, 2);
        parser.push(b"SEND\na:1\nb:2\nc:3\n\n\0");
        assert_eq!(parse_all(&mut parser), Err(FrameError::TooManyHeaders(2)));
        // A frame that never ends is refused once it passes the limit, not buffered forever.
        let mut parser = Parser::new(1024, 4);
        parser.push(b"SEND\n\n");
        parser.push(&[b'x'; 2000]);
        assert_eq!(parse_all(&mut parser), Err(FrameError::TooLarge(1024)));
    }

    #[test]
    fn the_first_of_repeated_headers_counts() {
        let mut parser = Parser::new(1024, 8);
        parser.push(b"MESSAGE\nfoo:first\nfoo:second\n\n\0");
        match parse_all(&mut parser).expect("parse").remove(0) {
            Event::Frame(f) => assert_eq!(f.get("foo"), Some("first")),
            other => panic!("{other:?}"),
        }
    }
}
