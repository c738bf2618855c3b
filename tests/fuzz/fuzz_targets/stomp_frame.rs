//! Fuzz the STOMP frame parser: arbitrary bytes, fed in arbitrary pieces, must never panic,
//! never buffer past the limit, and every frame it accepts must survive a serialize/parse
//! round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout::stomp::frame::{Event, Parser};

const MAX_FRAME: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let cut = (split as usize).min(rest.len());
    let mut parser = Parser::new(MAX_FRAME, 32);
    for piece in [&rest[..cut], &rest[cut..]] {
        parser.push(piece);
        loop {
            match parser.next_event() {
                Ok(Some(Event::Frame(frame))) => {
                    let wire = frame.to_bytes();
                    let mut again = Parser::new(usize::MAX, usize::MAX);
                    again.push(&wire);
                    match again.next_event() {
                        Ok(Some(Event::Frame(back))) => {
                            assert_eq!(back.command, frame.command);
                            assert_eq!(back.body, frame.body);
                        }
                        other => panic!("accepted frame does not round-trip: {other:?}"),
                    }
                }
                Ok(Some(Event::Heartbeat)) => {}
                Ok(None) => {
                    assert!(parser.pending() <= MAX_FRAME + 2, "buffered past the limit");
                    break;
                }
                Err(_) => return,
            }
        }
    }
});
