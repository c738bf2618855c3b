//! Fuzz SockJS framing: a client's POST body (a JSON array of strings) is split into messages
//! or refused; each message the server sends back as an `a[...]` frame decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout::transport::framing::{client_messages, message_frame};

fuzz_target!(|data: &[u8]| {
    let Ok(messages) = client_messages(data) else { return };
    for message in messages {
        match message_frame(&message) {
            Ok(frame) => {
                let body = frame.strip_prefix(b"a").expect("an a-frame");
                let back = client_messages(body).expect("our own frame parses");
                assert_eq!(back, vec![message]);
            }
            // A message that is not UTF-8 cannot travel over SockJS, and is refused.
            Err(_) => assert!(std::str::from_utf8(&message).is_err()),
        }
    }
});
