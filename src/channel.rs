//! Channel names and the rights table of the design: who may subscribe and who may publish.
//!
//! Pure functions over an [`Identity`] and a [`Directory`] (user → org, job → owner): no locks,
//! no I/O, so the whole rights matrix can be tested exhaustively. Anything not in the table is
//! refused: deny by default. The hub reads the facts a decision needs from the store first
//! (`hub::facts`); this module never reaches the store, the hub or a socket.

use std::sync::Arc;

use crate::auth::{Identity, Role};

/// Who belongs where: what the rights table needs to know beyond the token.
pub trait Directory {
    /// The org a user was last seen in, if ever.
    fn user_org(&self, user: &str) -> Option<Arc<str>>;
    /// The owner of a job, set by its first publish.
    fn job_owner(&self, job: &str) -> Option<Arc<str>>;
}

/// The channel kinds of the design's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// `/topic/location/{user}`
    Location,
    /// `/topic/video/{user}`
    Video,
    /// `/topic/emergency/{user}`
    Emergency,
    /// `/topic/org/{org}/alerts`
    OrgAlerts,
    /// `/topic/org/{org}/locations`
    OrgLocations,
    /// `/topic/org/{org}/tasks`
    OrgTasks,
    /// `/topic/org/{org}/presence`
    OrgPresence,
    /// `/topic/org/{org}/room/{room}`
    OrgRoom,
    /// `/topic/org/{org}/role/{role}`
    OrgRole,
    /// `/user/queue/{name}`
    UserQueue,
    /// `/topic/job/{jobId}`
    Job,
    /// `/topic/system`
    System,
}

impl ChannelKind {
    /// Whether messages go to the channel log (and get replay); otherwise live only.
    pub fn is_logged(self) -> bool {
        !matches!(
            self,
            ChannelKind::Video | ChannelKind::OrgLocations | ChannelKind::OrgPresence
        )
    }

    /// The kind's name, as retention rules and metrics name it.
    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::Location => "location",
            ChannelKind::Video => "video",
            ChannelKind::Emergency => "emergency",
            ChannelKind::OrgAlerts => "alerts",
            ChannelKind::OrgLocations => "locations",
            ChannelKind::OrgTasks => "tasks",
            ChannelKind::OrgPresence => "presence",
            ChannelKind::OrgRoom => "room",
            ChannelKind::OrgRole => "role",
            ChannelKind::UserQueue => "queue",
            ChannelKind::Job => "job",
            ChannelKind::System => "system",
        }
    }

    /// The kind of a stored channel name (user queues as `/user/{user}/queue/{name}`).
    pub fn of_stored(name: &str) -> Option<ChannelKind> {
        let parts: Vec<&str> = name.split('/').collect();
        if let ["", "user", _, "queue", _] = parts.as_slice() {
            return Some(ChannelKind::UserQueue);
        }
        Target::parse(name, None).ok().map(|t| t.kind())
    }

    /// The kind's place in [`ChannelKind::ALL`], for per-kind counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Every kind, for exhaustive tests and stats.
    pub const ALL: [ChannelKind; 12] = [
        ChannelKind::Location,
        ChannelKind::Video,
        ChannelKind::Emergency,
        ChannelKind::OrgAlerts,
        ChannelKind::OrgLocations,
        ChannelKind::OrgTasks,
        ChannelKind::OrgPresence,
        ChannelKind::OrgRoom,
        ChannelKind::OrgRole,
        ChannelKind::UserQueue,
        ChannelKind::Job,
        ChannelKind::System,
    ];
}

/// A parsed channel: its kind and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A user's channel (location, video, emergency).
    User {
        /// Which of the three.
        kind: ChannelKind,
        /// The user it belongs to.
        user: String,
    },
    /// An org channel without a further parameter (alerts, locations, tasks, presence).
    Org {
        /// Which one.
        kind: ChannelKind,
        /// The org.
        org: String,
    },
    /// `/topic/org/{org}/room/{room}`
    Room {
        /// The org.
        org: String,
        /// The room.
        room: String,
    },
    /// `/topic/org/{org}/role/{role}`
    RoleBroadcast {
        /// The org.
        org: String,
        /// The role addressed.
        role: Role,
    },
    /// A user's queue; stored as `/user/{user}/queue/{name}`.
    UserQueue {
        /// The recipient.
        user: String,
        /// The queue name.
        name: String,
    },
    /// `/topic/job/{job}`
    Job {
        /// The job id.
        job: String,
    },
    /// `/topic/system`
    System,
}

/// A channel name that is not in the table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Not a channel of the design.
    #[error("unknown channel `{0}`")]
    Unknown(String),
    /// A segment is empty, too long or has characters outside `[A-Za-z0-9_.@:-]`.
    #[error("invalid channel segment in `{0}`")]
    BadSegment(String),
    /// `/user/queue/*` published without naming the recipient.
    #[error("publishing to `{0}` needs the recipient (`to`)")]
    NoRecipient(String),
}

const MAX_SEGMENT: usize = 128;

/// Whether a channel name, as a client gives it, is a user's video channel: its frames have a
/// size limit and a rate budget of their own.
pub fn is_video(name: &str) -> bool {
    name.starts_with("/topic/video/")
}

fn segment(s: &str, whole: &str) -> Result<String, NameError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_SEGMENT
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b':'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(NameError::BadSegment(whole.to_string()))
    }
}

impl Target {
    /// Parses a channel name. `/user/queue/{name}` needs `addressee`: the subscriber itself, or
    /// the recipient a publisher names.
    pub fn parse(name: &str, addressee: Option<&str>) -> Result<Target, NameError> {
        let unknown = || NameError::Unknown(name.to_string());
        let parts: Vec<&str> = name
            .strip_prefix('/')
            .ok_or_else(unknown)?
            .split('/')
            .collect();
        let seg = |s: &str| segment(s, name);
        Ok(match parts.as_slice() {
            ["topic", "location", u] => Target::User {
                kind: ChannelKind::Location,
                user: seg(u)?,
            },
            ["topic", "video", u] => Target::User {
                kind: ChannelKind::Video,
                user: seg(u)?,
            },
            ["topic", "emergency", u] => Target::User {
                kind: ChannelKind::Emergency,
                user: seg(u)?,
            },
            ["topic", "org", o, rest @ ..] => {
                let org = seg(o)?;
                match rest {
                    ["alerts"] => Target::Org {
                        kind: ChannelKind::OrgAlerts,
                        org,
                    },
                    ["locations"] => Target::Org {
                        kind: ChannelKind::OrgLocations,
                        org,
                    },
                    ["tasks"] => Target::Org {
                        kind: ChannelKind::OrgTasks,
                        org,
                    },
                    ["presence"] => Target::Org {
                        kind: ChannelKind::OrgPresence,
                        org,
                    },
                    ["room", r] => Target::Room { org, room: seg(r)? },
                    ["role", r] => Target::RoleBroadcast {
                        org,
                        role: Role::parse(r).ok_or_else(unknown)?,
                    },
                    _ => return Err(unknown()),
                }
            }
            ["user", "queue", q] => Target::UserQueue {
                user: seg(addressee.ok_or_else(|| NameError::NoRecipient(name.to_string()))?)?,
                name: seg(q)?,
            },
            ["topic", "job", j] => Target::Job { job: seg(j)? },
            ["topic", "system"] => Target::System,
            _ => return Err(unknown()),
        })
    }

    /// The channel's kind.
    pub fn kind(&self) -> ChannelKind {
        match self {
            Target::User { kind, .. } | Target::Org { kind, .. } => *kind,
            Target::Room { .. } => ChannelKind::OrgRoom,
            Target::RoleBroadcast { .. } => ChannelKind::OrgRole,
            Target::UserQueue { .. } => ChannelKind::UserQueue,
            Target::Job { .. } => ChannelKind::Job,
            Target::System => ChannelKind::System,
        }
    }

    /// The name the channel is stored under; unique per channel (user queues carry the user).
    pub fn stored_name(&self) -> String {
        match self {
            Target::UserQueue { user, name } => format!("/user/{user}/queue/{name}"),
            other => other.public_name(),
        }
    }

    /// The name subscribers see: a user's queue never names its user.
    pub fn public_name(&self) -> String {
        match self {
            Target::User { kind, user } => {
                let k = match kind {
                    ChannelKind::Location => "location",
                    ChannelKind::Video => "video",
                    _ => "emergency",
                };
                format!("/topic/{k}/{user}")
            }
            Target::Org { kind, org } => {
                let k = match kind {
                    ChannelKind::OrgAlerts => "alerts",
                    ChannelKind::OrgLocations => "locations",
                    ChannelKind::OrgTasks => "tasks",
                    _ => "presence",
                };
                format!("/topic/org/{org}/{k}")
            }
            Target::Room { org, room } => format!("/topic/org/{org}/room/{room}"),
            Target::RoleBroadcast { org, role } => {
                format!("/topic/org/{org}/role/{}", role.as_str())
            }
            Target::UserQueue { name, .. } => format!("/user/queue/{name}"),
            Target::Job { job } => format!("/topic/job/{job}"),
            Target::System => "/topic/system".to_string(),
        }
    }

    /// The org whose members the channel's messages may reach, when it is an org's.
    pub fn org(&self, dir: &dyn Directory) -> Option<Arc<str>> {
        match self {
            Target::User { user, .. } | Target::UserQueue { user, .. } => dir.user_org(user),
            Target::Org { org, .. }
            | Target::Room { org, .. }
            | Target::RoleBroadcast { org, .. } => Some(Arc::from(org.as_str())),
            Target::Job { job } => dir.job_owner(job).and_then(|owner| dir.user_org(&owner)),
            Target::System => None,
        }
    }
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Not allowed by the rights table.
    #[error("{0}")]
    Forbidden(String),
    /// The request is incomplete (e.g. a job's first publish without an owner).
    #[error("{0}")]
    BadRequest(String),
    /// The request contradicts stored state (e.g. another job owner).
    #[error("{0}")]
    Conflict(String),
}

fn forbidden<T>(why: &str) -> Result<T, Denied> {
    Err(Denied::Forbidden(why.to_string()))
}

fn same_org(id: &Identity, org: Option<&Arc<str>>) -> bool {
    match (org, &id.org) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// May `id` subscribe to `target`? Admin is global and may watch every topic channel.
pub fn can_subscribe(id: &Identity, target: &Target, dir: &dyn Directory) -> Result<(), Denied> {
    let admin = id.is(Role::Admin);
    let allowed = match target {
        Target::User { user, .. } => {
            *user == *id.user
                || admin
                || (id.is(Role::Supervisor) && same_org(id, dir.user_org(user).as_ref()))
        }
        Target::Org { kind, org } => match kind {
            ChannelKind::OrgAlerts | ChannelKind::OrgLocations => {
                admin || (id.is(Role::Supervisor) && id.in_org(org))
            }
            _ => admin || id.in_org(org),
        },
        Target::Room { org, .. } => admin || id.in_org(org),
        Target::RoleBroadcast { org, role } => admin || (id.in_org(org) && id.is(*role)),
        Target::UserQueue { user, .. } => *user == *id.user,
        Target::Job { job } => admin || dir.job_owner(job).is_some_and(|o| *o == *id.user),
        Target::System => true,
    };
    if allowed {
        Ok(())
    } else {
        forbidden("not allowed to subscribe to this channel")
    }
}

/// What a publish to a job must do with its owner once allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOwner {
    /// Not a job channel, or the owner is already stored.
    Keep,
    /// First publish: store this owner.
    Set(String),
}

/// May `id` publish to `target`? `owner` is the job owner a publish names, if any.
pub fn can_publish(
    id: &Identity,
    target: &Target,
    owner: Option<&str>,
    dir: &dyn Directory,
) -> Result<JobOwner, Denied> {
    let admin = id.is(Role::Admin);
    let service = id.is(Role::Service);
    let allowed = match target {
        Target::User { user, .. } => {
            *user == *id.user || (service && same_org(id, dir.user_org(user).as_ref()))
        }
        Target::Org { kind, org } => match kind {
            ChannelKind::OrgTasks => admin || (service && id.in_org(org)),
            // alerts, locations, presence: written by Lookout itself only.
            _ => return forbidden("this channel is written by Lookout itself"),
        },
        Target::Room { org, .. } => id.in_org(org),
        Target::RoleBroadcast { org, .. } => {
            admin || (id.in_org(org) && (id.is(Role::Supervisor) || service))
        }
        Target::UserQueue { user, name } => {
            let recipient_org = dir.user_org(user);
            admin
                || (service && same_org(id, recipient_org.as_ref()))
                || (name == "messages" && same_org(id, recipient_org.as_ref()))
        }
        Target::Job { job } => {
            if !service {
                return forbidden("only a service publishes job status");
            }
            return match dir.job_owner(job) {
                Some(stored) => {
                    if owner.is_some_and(|o| o != &*stored) {
                        Err(Denied::Conflict(format!(
                            "job {job} already belongs to another owner"
                        )))
                    } else if same_org(id, dir.user_org(&stored).as_ref()) {
                        Ok(JobOwner::Keep)
                    } else {
                        forbidden("the job's owner is in another organization")
                    }
                }
                None => match owner {
                    None => Err(Denied::BadRequest(format!(
                        "the first publish to job {job} must name its `owner`"
                    ))),
                    Some(o) if same_org(id, dir.user_org(o).as_ref()) => {
                        Ok(JobOwner::Set(o.to_string()))
                    }
                    Some(_) => forbidden("the owner is not a known user of your organization"),
                },
            };
        }
        Target::System => admin || service,
    };
    if allowed {
        Ok(JobOwner::Keep)
    } else {
        forbidden("not allowed to publish to this channel")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kinds_index_is_its_place_in_all() {
        for (i, kind) in ChannelKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
    }

    #[test]
    fn names_round_trip_and_user_queues_hide_their_user() {
        for name in [
            "/topic/location/g1",
            "/topic/video/g1",
            "/topic/emergency/g1",
            "/topic/org/acme/alerts",
            "/topic/org/acme/locations",
            "/topic/org/acme/tasks",
            "/topic/org/acme/presence",
            "/topic/org/acme/room/lobby",
            "/topic/org/acme/role/supervisor",
            "/topic/job/j-1",
            "/topic/system",
        ] {
            let t = Target::parse(name, None).expect(name);
            assert_eq!(t.public_name(), name);
            assert_eq!(t.stored_name(), name);
        }
        let q = Target::parse("/user/queue/jobs", Some("alice")).expect("queue");
        assert_eq!(q.public_name(), "/user/queue/jobs");
        assert_eq!(q.stored_name(), "/user/alice/queue/jobs");
    }

    #[test]
    fn names_outside_the_table_are_refused() {
        for name in [
            "",
            "topic/system",
            "/topic/system/x",
            "/topic/org/acme/secret",
            "/topic/org/acme/role/king",
            "/topic/location/",
            "/topic/location/a b",
            "/queue/x",
        ] {
            assert!(Target::parse(name, Some("u")).is_err(), "{name}");
        }
        assert_eq!(
            Target::parse("/user/queue/jobs", None),
            Err(NameError::NoRecipient("/user/queue/jobs".into()))
        );
    }
}
