//! Fuzz video frames as guards send them: a MessagePack publish to `/topic/video/{me}`. The
//! envelope decodes or is refused, the keyframe test never panics, and the frame's bytes are
//! relayed unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout::protocol::{ClientMsg, Encoding};

fuzz_target!(|data: &[u8]| {
    // The frame as the app's payload, wrapped in the envelope a guard's phone sends.
    let Ok(payload) = rmpv::decode::read_value(&mut &data[..]) else { return };
    let envelope = rmpv::Value::Map(vec![
        ("type".into(), "publish".into()),
        ("channel".into(), "/topic/video/g1".into()),
        ("data".into(), payload.clone()),
    ]);
    let mut wire = Vec::new();
    rmpv::encode::write_value(&mut wire, &envelope).expect("encoding into a Vec");
    match Encoding::MsgPack.decode::<ClientMsg>(&wire) {
        Ok(ClientMsg::Publish { data, channel, .. }) => {
            assert!(lookout::channel::is_video(&channel));
            let bytes = |v: &rmpv::Value| {
                let mut out = Vec::new();
                rmpv::encode::write_value(&mut out, v).expect("encoding into a Vec");
                out
            };
            // As bytes: values with a NaN are not equal to themselves.
            assert_eq!(bytes(&data), bytes(&payload), "a video frame changed in the envelope");
            let _ = lookout::hub::publish::is_keyframe(&data);
        }
        other => panic!("a well-formed video publish did not decode: {other:?}"),
    }
});
