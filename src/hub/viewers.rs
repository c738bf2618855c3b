//! Who watches a guard's camera, told to the guard's own devices: a phone sends video frames
//! only while someone watches, so the hub sends a `viewers` frame (native protocol, JSON or
//! MessagePack) to every native connection of the user whenever the number of subscribers of
//! its `/topic/video/{user}` changes, and once when such a connection opens.
//!
//! Sent under the channel's lock, so the counts a device sees arrive in the order they
//! happened (a "0" never overtakes the "1" that followed it). Nothing here touches the store or
//! waits on a client.

use serde::Serialize;

use super::registry::{Channel, ChannelState};
use super::{ChannelKind, ConnHandle, Hub, Outbound};
use crate::protocol::Protocol;

/// `{"type":"viewers","channel":"/topic/video/{user}","viewers":N}`.
#[derive(Debug, Serialize)]
struct Viewers<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a str,
    viewers: usize,
}

/// Connections that speak the native protocol, the only one with a frame for this.
fn native(conn: &ConnHandle) -> bool {
    matches!(
        conn.protocol,
        Protocol::Json | Protocol::MsgPack | Protocol::SockJsJson | Protocol::SocketIo
    )
}

fn tell(conn: &ConnHandle, channel: &str, viewers: usize) {
    let frame = Viewers {
        kind: "viewers",
        channel,
        viewers,
    };
    if let Ok(bytes) = conn.encoding.encode(&frame) {
        // A full queue means the connection is being closed as slow; it hears on reconnect.
        let _ = conn.try_send(Outbound::frame(bytes));
    }
}

impl Hub {
    /// Tells the video channel's user its new viewer count; called with `st` locked.
    pub(super) fn viewers_changed(&self, channel: &Channel, st: &ChannelState) {
        if channel.kind != ChannelKind::Video {
            return;
        }
        // Stored as `/org/{org}/topic/video/{user}`: the user's devices are those of (org, user).
        let Some((org, user)) = crate::channel::names::stored_video(&channel.name) else {
            return;
        };
        let viewers = st.subscribers.len();
        let key = crate::auth::principal_key(Some(org), user);
        for conn in self.users.of(&key).iter().filter(|c| native(c)) {
            tell(conn, &channel.public, viewers);
        }
    }

    /// Tells a newly opened native connection how many watch its user's camera, if anyone does.
    pub fn tell_viewers(&self, conn: &ConnHandle) {
        if !native(conn) {
            return;
        }
        let Some(org) = &conn.identity.org else {
            return;
        };
        let target = crate::channel::Target::User {
            kind: ChannelKind::Video,
            org: org.to_string(),
            user: conn.identity.user.to_string(),
        };
        let public = target.public_name();
        // Nobody watching is what a device assumes when it connects: only news is sent.
        if let Some(channel) = self.registry.get(&target.stored_name()) {
            let st = channel.state.lock();
            if !st.subscribers.is_empty() {
                tell(conn, &public, st.subscribers.len());
            }
        }
    }
}
