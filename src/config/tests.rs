//! The configuration's unit tests: the help and the defaults agree with `Config`, the defaults
//! validate, and bad values are refused naming their key. No test of another module here.

use super::*;

#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let actual: Vec<String> = default_values().into_iter().map(|(k, _)| k).collect();
    let documented: Vec<String> = KEYS.iter().map(|(k, _)| k.to_string()).collect();
    for key in &actual {
        assert!(documented.contains(key), "undocumented config key {key}");
    }
    for key in &documented {
        assert!(
            actual.contains(key),
            "documented key {key} is not in Config"
        );
    }
}

#[test]
fn every_key_is_documented_once_with_a_line_of_help() {
    let mut seen = std::collections::BTreeSet::new();
    for (key, doc) in KEYS {
        assert!(seen.insert(*key), "{key} is declared twice");
        assert!(!doc.is_empty(), "{key} has no help line");
        assert_eq!(doc.trim(), *doc, "{key}: its help line is trimmed");
    }
}

#[test]
fn the_help_is_the_first_line_of_each_keys_doc_and_lists_its_default() {
    let (_, doc) = KEYS
        .iter()
        .find(|(key, _)| *key == "limits.max_message_size")
        .expect("limits.max_message_size");
    assert_eq!(
        *doc,
        "largest text/JSON message in bytes (larger: close 1009)"
    );
    let help = keys_help();
    assert!(
        help.contains(
            "  limits.max_message_size  (LOOKOUT_LIMITS__MAX_MESSAGE_SIZE, default 65536)\n      \
             largest text/JSON message in bytes (larger: close 1009)\n"
        ),
        "{help}"
    );
    assert!(
        help.contains("  retention.kinds  (LOOKOUT_RETENTION__KINDS, default {\"alerts\":"),
        "a table-valued key is one entry: {help}"
    );
}

#[test]
fn a_keys_own_check_and_a_check_between_keys_both_name_their_key() {
    let mut c = Config::default();
    c.limits.max_message_size = 255;
    let problems: Vec<String> = c.problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("limits.max_message_size: must be greater than zero"));
    let mut c = Config::default();
    c.limits.idle_notice = c.limits.idle_timeout;
    c.limits.outbound_queue_bytes = 1;
    let problems: Vec<String> = c.problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(
        problems,
        [
            "limits.outbound_queue_bytes: must be greater than zero (max_message_size: at least \
             256; max_response_bytes: at least 1 MiB; outbound_queue_bytes: at least \
             max_video_frame and max_message_size)",
            "limits.idle_notice: must be shorter than limits.idle_timeout",
        ]
    );
}

#[test]
fn defaults_are_the_designs_and_valid() {
    let c = Config::default();
    c.validate().expect("defaults validate");
    assert_eq!(c.limits.max_connections_per_user, 5);
    assert_eq!(c.limits.max_message_size, 64 * 1024);
    assert_eq!(c.listen.port(), 8443);
}

#[test]
fn a_half_given_certificate_is_refused_with_its_key() {
    let mut c = Config::default();
    c.tls.cert = Some("x.pem".into());
    let err = c.validate().expect_err("must fail");
    assert!(err.to_string().starts_with("tls.cert"), "{err}");
}

#[test]
fn a_store_cache_too_small_to_work_and_an_unbounded_pipeline_are_refused_with_their_keys() {
    let mut c = Config::default();
    c.store.cache_capacity = 4096;
    let err = c.validate().expect_err("must fail");
    assert!(err.to_string().starts_with("store.cache_capacity"), "{err}");
    let mut c = Config::default();
    c.limits.max_publishes_in_flight = 100_000;
    let err = c.validate().expect_err("must fail");
    assert!(
        err.to_string()
            .starts_with("limits.max_publishes_in_flight"),
        "{err}"
    );
    let mut c = Config::default();
    c.limits.socketio_handshakes = usize::MAX;
    let err = c.validate().expect_err("must fail");
    assert!(
        err.to_string().starts_with("limits.socketio_handshakes"),
        "{err}"
    );
}

/// A change made to the defaults.
type Adjust = Box<dyn FnOnce(&mut Config)>;

/// The first problem a configuration has, by its key.
fn first_problem(adjust: impl FnOnce(&mut Config)) -> String {
    let mut c = Config::default();
    adjust(&mut c);
    c.validate().expect_err("must fail").to_string()
}

#[test]
fn integrations_are_refused_with_their_keys_when_they_could_not_work() {
    let cases: [(&str, Adjust); 13] = [
        (
            "jwt.jwks_url",
            Box::new(|c| c.jwt.jwks_url = Some("http://idp/certs".into())),
        ),
        (
            "jwt.algorithms",
            Box::new(|c| {
                c.jwt.jwks_url = Some("https://idp/certs".into());
                c.jwt.algorithms = vec![JwtAlgorithm::HS256];
            }),
        ),
        (
            "jwt.claims.role_map",
            Box::new(|c| {
                c.jwt.claims.role_map.insert("boss".into(), "root".into());
            }),
        ),
        (
            "amqp.bindings",
            Box::new(|c| c.amqp.url = Some("amqp://mq".into())),
        ),
        (
            "notify.webhooks",
            Box::new(|c| {
                c.notify.webhooks.push(Webhook {
                    url: "https://pager/hook".into(),
                    events: vec!["alert.exploded".into()],
                    min_level: None,
                    secret: "long enough for a secret".into(),
                })
            }),
        ),
        (
            "notify.webhooks",
            Box::new(|c| {
                c.notify.webhooks.push(Webhook {
                    url: "https://pager/hook".into(),
                    events: vec!["alert.created".into()],
                    min_level: None,
                    secret: "short".into(),
                })
            }),
        ),
        (
            "arc.receivers",
            Box::new(|c| {
                c.arc
                    .receivers
                    .push(arc_receiver(|r| r.key = Some("00FF".into())))
            }),
        ),
        (
            "arc.receivers",
            Box::new(|c| {
                c.arc
                    .receivers
                    .push(arc_receiver(|r| r.account = Some("12".into())))
            }),
        ),
        (
            "arc.receivers",
            Box::new(|c| c.arc.receivers.push(arc_receiver(|r| r.account = None))),
        ),
        (
            "arc.receivers",
            Box::new(|c| {
                c.arc
                    .receivers
                    .push(arc_receiver(|r| r.backup = Some("no-port".into())))
            }),
        ),
        (
            "arc.receivers",
            Box::new(|c| {
                c.arc
                    .receivers
                    .push(arc_receiver(|r| r.types = vec!["PANICK".into()]))
            }),
        ),
        (
            "arc.receivers",
            Box::new(|c| {
                c.arc
                    .receivers
                    .push(arc_receiver(|r| r.line_number = "G".into()))
            }),
        ),
        (
            "arc.receivers",
            Box::new(|c| {
                c.arc.receivers.push(arc_receiver(|_| {}));
                c.arc.receivers.push(arc_receiver(|_| {}));
            }),
        ),
    ];
    for (key, adjust) in cases {
        let problem = first_problem(adjust);
        assert!(problem.starts_with(key), "{key}: {problem}");
    }
}

/// A receiver that passes the checks, changed by `adjust`.
fn arc_receiver(
    adjust: impl FnOnce(&mut crate::config::ArcReceiver),
) -> crate::config::ArcReceiver {
    let mut r = crate::config::ArcReceiver {
        name: "arc1".into(),
        host: "127.0.0.1".into(),
        port: 9000,
        transport: Default::default(),
        format: Default::default(),
        receiver_number: Some("1".into()),
        line_number: "2".into(),
        account: Some("12AB".into()),
        accounts: Default::default(),
        key: Some("000102030405060708090A0B0C0D0E0F".into()),
        backup: Some("127.0.0.1:9001".into()),
        types: vec!["PANIC".into()],
        min_priority: Some("CRITICAL".into()),
        min_level: Some(2),
        supervision: std::time::Duration::from_secs(60),
        ack_timeout: std::time::Duration::from_secs(5),
    };
    adjust(&mut r);
    r
}

#[test]
fn a_well_formed_arc_receiver_passes_the_checks() {
    let mut config = Config::default();
    config.arc.receivers.push(arc_receiver(|_| {}));
    assert!(config.validate().is_ok(), "{:?}", config.validate().err());
    // Its key never shows in a log line.
    let shown = format!("{:?}", arc_receiver(|_| {}));
    assert!(!shown.contains("000102"), "{shown}");
}
