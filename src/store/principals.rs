//! The move to principals (org, user): before it, a user's channels, queues, jobs,
//! acknowledgements and records were stored under the user id alone, and the first org a user
//! id connected with owned it. Since, they are stored under the org (see
//! `channel::Target::stored_name` and `auth::principal_key`). These are the renaming rules an
//! engine applies to a store written before, as pure functions: no engine, no I/O.

/// The stored name, under principals, of a channel stored as `old` before them; `None` when
/// the name was not a user's or a job's (it stays), or when the org it belongs to is unknown
/// (`org_of_user` has no org for its user, `owner_of_job` no owner for its job).
pub fn channel(
    old: &str,
    org_of_user: impl Fn(&str) -> Option<String>,
    owner_of_job: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let parts: Vec<&str> = old.split('/').collect();
    match parts.as_slice() {
        ["", "topic", "location" | "video" | "emergency", user] => {
            Some(format!("/org/{}{old}", org_of_user(user)?))
        }
        ["", "user", user, "queue", name] => Some(format!(
            "/org/{}/user/{user}/queue/{name}",
            org_of_user(user)?
        )),
        ["", "topic", "job", job] => {
            let owner = owner_of_job(job)?;
            Some(format!("/org/{}{old}", org_of_user(&owner)?))
        }
        _ => None,
    }
}

/// Whether `name` is a channel stored before principals that [`channel`] would rename: a
/// store holding one has not been moved yet.
pub fn is_old_channel(name: &str) -> bool {
    channel(name, |_| Some(String::new()), |_| Some(String::new())).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orgs(user: &str) -> Option<String> {
        match user {
            "carol" | "owner" => Some("acme".into()),
            _ => None,
        }
    }

    fn owners(job: &str) -> Option<String> {
        (job == "j1").then(|| "owner".into())
    }

    #[test]
    fn a_users_channels_and_queues_and_a_jobs_move_under_their_org() {
        for (old, new) in [
            ("/topic/location/carol", "/org/acme/topic/location/carol"),
            ("/topic/video/carol", "/org/acme/topic/video/carol"),
            ("/topic/emergency/carol", "/org/acme/topic/emergency/carol"),
            (
                "/user/carol/queue/messages",
                "/org/acme/user/carol/queue/messages",
            ),
            ("/topic/job/j1", "/org/acme/topic/job/j1"),
        ] {
            assert_eq!(channel(old, orgs, owners).as_deref(), Some(new), "{old}");
            assert!(is_old_channel(old));
            // What it became is never renamed again.
            assert_eq!(channel(new, orgs, owners), None);
            assert!(!is_old_channel(new));
        }
    }

    #[test]
    fn org_channels_stay_and_unknown_users_or_jobs_are_left_where_they_are() {
        for name in [
            "/topic/org/acme/alerts",
            "/topic/org/acme/room/x",
            "/topic/system",
        ] {
            assert_eq!(channel(name, orgs, owners), None);
            assert!(!is_old_channel(name));
        }
        assert_eq!(channel("/topic/location/nobody", orgs, owners), None);
        assert_eq!(channel("/topic/job/j2", orgs, owners), None);
    }
}
