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
        let _ = Target::parse(channel, to.as_deref());
        let mut wire = Vec::new();
        rmpv::encode::write_value(&mut wire, data).expect("encoding a value into a Vec");
        let back = rmpv::decode::read_value(&mut wire.as_slice()).expect("what we just wrote");
        assert_eq!(&back, data, "application data changed in a MessagePack round trip");
        let _ = lookout::hub::publish::is_keyframe(data);
        let _ = lookout::field::Location::parse(data, std::time::Duration::from_secs(60));
    }
    if let ClientMsg::Subscribe { channel, .. } | ClientMsg::Unsubscribe { channel, .. } = msg {
        let _ = Target::parse(channel, Some("fuzzer"));
    }
}
