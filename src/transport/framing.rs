//! SockJS framing, as bytes: the frames the server sends (`a[…]`, `c[code,"reason"]`), the
//! JSON arrays of strings a client sends, and what a session speaks over SockJS. Pure
//! functions, shared by the WebSocket adapter and the HTTP transports.

use hyper::Request;

/// What the session speaks: `?protocol=lookout.json` for native, STOMP otherwise.
pub fn speaks<B>(req: &Request<B>) -> Result<bool, String> {
    let protocol = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "protocol")
            .map(|(_, v)| v.into_owned())
    });
    match protocol.as_deref() {
        None | Some("stomp" | "v12.stomp" | "v11.stomp" | "v10.stomp") => Ok(true),
        Some("lookout.json") => Ok(false),
        Some(other) => Err(format!(
            "unsupported protocol `{other}` over SockJS; use stomp or lookout.json"
        )),
    }
}

/// `a["…"]`: one server message as a SockJS message frame.
pub fn message_frame(message: &[u8]) -> std::io::Result<Vec<u8>> {
    Ok(format!("a[{}]", literal(message)?).into_bytes())
}

/// One server message as the JSON string SockJS frames carry. SockJS carries text only.
pub fn literal(message: &[u8]) -> std::io::Result<String> {
    let text = std::str::from_utf8(message).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a binary message cannot travel over SockJS",
        )
    })?;
    serde_json::to_string(text).map_err(std::io::Error::other)
}

/// `c[code,"reason"]`.
pub fn close_frame(code: u16, reason: &str) -> String {
    let reason = serde_json::to_string(reason).unwrap_or_else(|_| "\"\"".into());
    format!("c[{code},{reason}]")
}

/// What a client sent: a JSON array of strings (or, as some clients do, one string).
pub fn client_messages(body: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("Payload expected.");
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(s) => Ok(s.into_bytes()),
                _ => Err("Broken JSON encoding."),
            })
            .collect(),
        Ok(serde_json::Value::String(s)) => Ok(vec![s.into_bytes()]),
        _ => Err("Broken JSON encoding."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_text() {
        assert_eq!(
            message_frame(b"SEND\n\n\"x\"\0").ok(),
            Some(br#"a["SEND\n\n\"x\"\u0000"]"#.to_vec())
        );
        assert!(message_frame(&[0xff]).is_err());
        assert_eq!(close_frame(3000, "Go away!"), r#"c[3000,"Go away!"]"#);
        assert_eq!(
            client_messages(br#"["a","b"]"#),
            Ok(vec![b"a".to_vec(), b"b".to_vec()])
        );
        assert!(client_messages(b"").is_err());
        assert!(client_messages(b"[1]").is_err());
    }
}
