//! Checks the native-protocol targets share: what a decoded request leads the server to parse.

use lookout::channel::Target;
use lookout::protocol::ClientMsg;

/// Follows a decoded request the way a session would: its channel name is parsed, and its
/// application data survives a MessagePack round trip unchanged (video bytes must).
pub fn follow(msg: &ClientMsg) {
    if let ClientMsg::Publish {
        channel, data, to, ..
    } = msg
    {
        let _ = Target::parse(channel, Some("fuzzorg"), to.as_deref());
        // Compared as bytes: a NaN is not equal to itself, but it must come back as the same
        // bits (the fuzzer's first finding was this assertion comparing values).
        let mut wire = Vec::new();
        rmpv::encode::write_value(&mut wire, data).expect("encoding a value into a Vec");
        let back = rmpv::decode::read_value(&mut wire.as_slice()).expect("what we just wrote");
        let mut again = Vec::new();
        rmpv::encode::write_value(&mut again, &back).expect("encoding a value into a Vec");
        assert_eq!(
            again, wire,
            "application data changed in a MessagePack round trip"
        );
        // Data that passes the publish check renders for JSON subscribers too (the fuzzer
        // found a NaN map key that did not, and was then skipped for them).
        if lookout::protocol::check_portable(data).is_ok() {
            if let Err(e) = lookout::protocol::Encoding::Json.encode(data) {
                panic!("portable data that JSON cannot carry: {e}");
            }
        }
        let _ = lookout::hub::publish::is_keyframe(data);
        let _ = lookout::field::Location::parse(data, std::time::Duration::from_secs(60));
    }
    if let ClientMsg::Subscribe { channel, .. } | ClientMsg::Unsubscribe { channel, .. } = msg {
        let _ = Target::parse(channel, Some("fuzzorg"), Some("fuzzer"));
    }
}
