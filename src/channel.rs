//! Channel names and the rights table of the design: who may subscribe and who may publish.
//!
//! Pure functions over an [`Identity`] and a [`Directory`] (job → owner): no locks, no I/O, so
//! the whole rights matrix can be tested exhaustively. Anything not in the table is refused:
//! deny by default. The hub reads the facts a decision needs from the store first
//! (`hub::facts`); this module never reaches the store, the hub or a socket.
//!
//! A principal is (org, user): a user's channels, queues and jobs are an org's. Their wire
//! names (`/topic/location/{user}`, `/user/queue/{name}`, `/topic/job/{job}`) are resolved
//! within the caller's org, so the same user id in two orgs names two channels, stored apart
//! (`/org/{org}/…`). Nobody can name another org's user.

use std::sync::Arc;

use crate::auth::{Identity, Role};

/// Who belongs where: what the rights table needs to know beyond the token.
pub trait Directory {
    /// The owner of a job (a user of the job's org), set by its first publish.
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

    /// The kind of a stored channel name ([`Target::stored_name`]).
    pub fn of_stored(name: &str) -> Option<ChannelKind> {
        let (org, rest) = match name.strip_prefix("/org/").and_then(|r| r.split_once('/')) {
            Some((org, rest)) => (Some(org), rest),
            None => (None, name.strip_prefix('/')?),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if let ["user", _, "queue", _] = parts.as_slice() {
            return org.map(|_| ChannelKind::UserQueue);
        }
        Target::parse(&format!("/{rest}"), org, None)
            .ok()
            .map(|t| t.kind())
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
        /// The user's org.
        org: String,
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
    /// A user's queue; stored as `/org/{org}/user/{user}/queue/{name}`.
    UserQueue {
        /// The recipient's org.
        org: String,
        /// The recipient.
        user: String,
        /// The queue name.
        name: String,
    },
    /// `/topic/job/{job}`: an org's job.
    Job {
        /// The org whose services publish it.
        org: String,
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
    /// A user's channel, queue or job named by an identity of no org (an admin whose token
    /// names none): there is no org to resolve it in.
    #[error("`{0}` is an org's channel: an admin reaches it with a token that names the org")]
    NoOrg(String),
}

const MAX_SEGMENT: usize = 128;

/// The wire names other modules build or recognise, spelled once: the rest of the crate asks
/// here instead of writing `/topic/…` itself. Names as a client gives them (within its org),
/// except [`names::stored_video`].
pub mod names {
    const LOCATION: &str = "/topic/location/";
    const VIDEO: &str = "/topic/video/";
    const EMERGENCY: &str = "/topic/emergency/";
    const JOB: &str = "/topic/job/";
    const USER_QUEUE: &str = "/user/queue/";

    /// The channel services post system notices on.
    pub const SYSTEM: &str = "/topic/system";

    /// `/topic/location/{user}`.
    pub fn location(user: &str) -> String {
        format!("{LOCATION}{user}")
    }

    /// `/topic/emergency/{user}`.
    pub fn emergency(user: &str) -> String {
        format!("{EMERGENCY}{user}")
    }

    /// `/topic/job/{job}`.
    pub fn job(job: &str) -> String {
        format!("{JOB}{job}")
    }

    /// What every room channel of `org` starts with: `/topic/org/{org}/room/`.
    pub fn org_rooms(org: &str) -> String {
        format!("/topic/org/{org}/room/")
    }

    /// The user of a location channel's name.
    pub fn location_user(name: &str) -> Option<&str> {
        name.strip_prefix(LOCATION)
    }

    /// The user of an emergency channel's name.
    pub fn emergency_user(name: &str) -> Option<&str> {
        name.strip_prefix(EMERGENCY)
    }

    /// The job of a job channel's name.
    pub fn job_of(name: &str) -> Option<&str> {
        name.strip_prefix(JOB)
    }

    /// Whether a name is one of a user's queues (`/user/queue/{name}`).
    pub fn is_user_queue(name: &str) -> bool {
        name.starts_with(USER_QUEUE)
    }

    /// Whether a channel name is a user's video channel: its frames have a size limit and a
    /// rate budget of their own.
    pub fn is_video(name: &str) -> bool {
        name.starts_with(VIDEO)
    }

    /// The (org, user) of a video channel's stored name, `/org/{org}/topic/video/{user}`.
    pub fn stored_video(name: &str) -> Option<(&str, &str)> {
        name.strip_prefix("/org/")?.split_once(VIDEO)
    }
}

pub use self::names::is_video;

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
    /// Parses a channel name as a member of `org` names it: a user's channels, queues and jobs
    /// are `org`'s. `/user/queue/{name}` needs `addressee`: the subscriber itself, or the
    /// recipient a publisher names.
    pub fn parse(
        name: &str,
        org: Option<&str>,
        addressee: Option<&str>,
    ) -> Result<Target, NameError> {
        let unknown = || NameError::Unknown(name.to_string());
        let within = || {
            org.map(|o| segment(o, name))
                .unwrap_or_else(|| Err(NameError::NoOrg(name.to_string())))
        };
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
                org: within()?,
            },
            ["topic", "video", u] => Target::User {
                kind: ChannelKind::Video,
                user: seg(u)?,
                org: within()?,
            },
            ["topic", "emergency", u] => Target::User {
                kind: ChannelKind::Emergency,
                user: seg(u)?,
                org: within()?,
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
                org: within()?,
            },
            ["topic", "job", j] => Target::Job {
                job: seg(j)?,
                org: within()?,
            },
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

    /// The name the channel is stored under; unique per channel: an org's user channels and
    /// jobs carry the org, user queues the org and the user.
    pub fn stored_name(&self) -> String {
        match self {
            Target::UserQueue { org, user, name } => format!("/org/{org}/user/{user}/queue/{name}"),
            Target::User { org, .. } | Target::Job { org, .. } => {
                format!("/org/{org}{}", self.public_name())
            }
            other => other.public_name(),
        }
    }

    /// The name subscribers see: a user's queue never names its user.
    pub fn public_name(&self) -> String {
        match self {
            Target::User { kind, user, .. } => {
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
            Target::Job { job, .. } => format!("/topic/job/{job}"),
            Target::System => "/topic/system".to_string(),
        }
    }

    /// The org whose members the channel's messages may reach; none for `/topic/system`.
    pub fn org(&self) -> Option<&str> {
        match self {
            Target::User { org, .. }
            | Target::UserQueue { org, .. }
            | Target::Job { org, .. }
            | Target::Org { org, .. }
            | Target::Room { org, .. }
            | Target::RoleBroadcast { org, .. } => Some(org),
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

/// May `id` subscribe to `target`? Admin is global and may watch every topic channel.
pub fn can_subscribe(id: &Identity, target: &Target, dir: &dyn Directory) -> Result<(), Denied> {
    let admin = id.is(Role::Admin);
    let allowed = match target {
        Target::User { org, user, .. } => {
            (id.in_org(org) && (*user == *id.user || id.is(Role::Supervisor))) || admin
        }
        Target::Org { kind, org } => match kind {
            ChannelKind::OrgAlerts | ChannelKind::OrgLocations => {
                admin || (id.is(Role::Supervisor) && id.in_org(org))
            }
            _ => admin || id.in_org(org),
        },
        Target::Room { org, .. } => admin || id.in_org(org),
        Target::RoleBroadcast { org, role } => admin || (id.in_org(org) && id.is(*role)),
        Target::UserQueue { org, user, .. } => id.in_org(org) && *user == *id.user,
        Target::Job { org, job } => {
            admin || (id.in_org(org) && dir.job_owner(job).is_some_and(|o| *o == *id.user))
        }
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
        Target::User { org, user, .. } => id.in_org(org) && (*user == *id.user || service),
        Target::Org { kind, org } => match kind {
            ChannelKind::OrgTasks => admin || (service && id.in_org(org)),
            // alerts, locations, presence: written by Lookout itself only.
            _ => return forbidden("this channel is written by Lookout itself"),
        },
        Target::Room { org, .. } => id.in_org(org),
        Target::RoleBroadcast { org, .. } => {
            admin || (id.in_org(org) && (id.is(Role::Supervisor) || service))
        }
        Target::UserQueue { org, name, .. } => {
            admin || (id.in_org(org) && (service || name == "messages"))
        }
        Target::Job { org, job } => {
            if !(service && id.in_org(org)) {
                return forbidden("only a service of the job's org publishes job status");
            }
            return match dir.job_owner(job) {
                Some(stored) if owner.is_some_and(|o| o != &*stored) => Err(Denied::Conflict(
                    format!("job {job} already belongs to another owner"),
                )),
                Some(_) => Ok(JobOwner::Keep),
                None => match owner {
                    None => Err(Denied::BadRequest(format!(
                        "the first publish to job {job} must name its `owner`"
                    ))),
                    Some(o) if segment(o, o).is_ok() => Ok(JobOwner::Set(o.to_string())),
                    Some(_) => Err(Denied::BadRequest(
                        "a job's `owner` must be 1–128 letters, digits or _ - . @ :".into(),
                    )),
                },
            };
        }
        // Every org receives it: only an admin speaks to all of them.
        Target::System => admin,
    };
    if allowed {
        Ok(JobOwner::Keep)
    } else {
        forbidden("not allowed to publish to this channel")
    }
}

#[cfg(test)]
mod tests {
    /// `retention.kinds` (config, which sits below this module) spells the kinds itself: its
    /// list must be exactly the logged kinds' names.
    #[test]
    fn the_retention_kinds_config_knows_are_the_logged_kinds() {
        let logged: Vec<&str> = ChannelKind::ALL
            .iter()
            .filter(|k| k.is_logged())
            .map(|k| k.name())
            .collect();
        assert_eq!(crate::config::RETENTION_KINDS.to_vec(), logged);
    }

    #[test]
    fn the_names_other_modules_build_parse_as_their_kind() {
        let org = Some("acme");
        let kind = |name: &str| Target::parse(name, org, None).map(|t| t.kind());
        assert_eq!(kind(&names::location("g1")), Ok(ChannelKind::Location));
        assert_eq!(kind(&names::emergency("g1")), Ok(ChannelKind::Emergency));
        assert_eq!(kind(&names::job("j1")), Ok(ChannelKind::Job));
        assert_eq!(kind(names::SYSTEM), Ok(ChannelKind::System));
        assert_eq!(
            kind(&format!("{}ops", names::org_rooms("acme"))),
            Ok(ChannelKind::OrgRoom)
        );
        assert_eq!(names::location_user(&names::location("g1")), Some("g1"));
        assert_eq!(names::emergency_user(&names::emergency("g1")), Some("g1"));
        assert_eq!(names::job_of(&names::job("j1")), Some("j1"));
        let video = Target::parse("/topic/video/g1", org, None).expect("video");
        assert!(names::is_video("/topic/video/g1"));
        assert_eq!(
            names::stored_video(&video.stored_name()),
            Some(("acme", "g1"))
        );
        assert!(names::is_user_queue("/user/queue/messages"));
    }

    use super::*;

    #[test]
    fn a_kinds_index_is_its_place_in_all() {
        for (i, kind) in ChannelKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
    }

    #[test]
    fn names_round_trip_and_an_orgs_users_and_jobs_are_stored_under_the_org() {
        for name in [
            "/topic/org/acme/alerts",
            "/topic/org/acme/locations",
            "/topic/org/acme/tasks",
            "/topic/org/acme/presence",
            "/topic/org/acme/room/lobby",
            "/topic/org/acme/role/supervisor",
            "/topic/system",
        ] {
            let t = Target::parse(name, Some("globex"), None).expect(name);
            assert_eq!(t.public_name(), name);
            assert_eq!(t.stored_name(), name);
            assert_eq!(ChannelKind::of_stored(name), Some(t.kind()), "{name}");
        }
        for name in [
            "/topic/location/g1",
            "/topic/video/g1",
            "/topic/emergency/g1",
            "/topic/job/j-1",
        ] {
            let t = Target::parse(name, Some("acme"), None).expect(name);
            assert_eq!(t.public_name(), name);
            assert_eq!(t.stored_name(), format!("/org/acme{name}"));
            let other = Target::parse(name, Some("globex"), None).expect(name);
            assert_ne!(t.stored_name(), other.stored_name(), "{name}");
            assert_eq!(ChannelKind::of_stored(&t.stored_name()), Some(t.kind()));
        }
        let q = Target::parse("/user/queue/jobs", Some("acme"), Some("alice")).expect("queue");
        assert_eq!(q.public_name(), "/user/queue/jobs");
        assert_eq!(q.stored_name(), "/org/acme/user/alice/queue/jobs");
        assert_eq!(
            ChannelKind::of_stored(&q.stored_name()),
            Some(ChannelKind::UserQueue)
        );
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
            assert!(
                Target::parse(name, Some("acme"), Some("u")).is_err(),
                "{name}"
            );
        }
        assert_eq!(
            Target::parse("/user/queue/jobs", Some("acme"), None),
            Err(NameError::NoRecipient("/user/queue/jobs".into()))
        );
    }

    #[test]
    fn an_identity_of_no_org_cannot_name_a_users_channel_or_a_job() {
        for name in ["/topic/location/g1", "/topic/job/j", "/user/queue/messages"] {
            assert_eq!(
                Target::parse(name, None, Some("g1")),
                Err(NameError::NoOrg(name.into()))
            );
        }
    }

    fn who(user: &str, org: &str, role: Role) -> Identity {
        Identity {
            key: Arc::from(crate::auth::principal_key(Some(org), user)),
            user: Arc::from(user),
            org: Some(Arc::from(org)),
            roles: [role].into_iter().collect(),
            name: None,
            exp: u64::MAX,
            device: None,
        }
    }

    struct NoJobs;
    impl Directory for NoJobs {
        fn job_owner(&self, _: &str) -> Option<Arc<str>> {
            None
        }
    }

    #[test]
    fn a_user_id_of_another_org_names_a_channel_of_the_callers_org() {
        // globex's supervisor names acme's `carol`: the name resolves in globex.
        let spy = who("s2", "globex", Role::Supervisor);
        for name in ["/topic/location/carol", "/topic/emergency/carol"] {
            let t = Target::parse(name, spy.org.as_deref(), None).expect(name);
            assert_eq!(t.org(), Some("globex"));
            let acme = Target::parse(name, Some("acme"), None).expect(name);
            // Even a target resolved in acme (as no caller of globex can make) is refused.
            assert!(can_subscribe(&spy, &acme, &NoJobs).is_err(), "{name}");
            assert!(can_publish(&spy, &acme, None, &NoJobs).is_err(), "{name}");
        }
        // globex's `carol` reads globex's queue, never acme's.
        let carol = who("carol", "globex", Role::Guard);
        let acme_queue =
            Target::parse("/user/queue/messages", Some("acme"), Some("carol")).expect("queue");
        assert!(can_subscribe(&carol, &acme_queue, &NoJobs).is_err());
    }

    #[test]
    fn only_an_admin_speaks_to_every_org_on_the_system_channel() {
        let svc = who("svc", "acme", Role::Service);
        assert!(can_publish(&svc, &Target::System, None, &NoJobs).is_err());
        let mut admin = who("root", "acme", Role::Admin);
        admin.org = None;
        assert!(can_publish(&admin, &Target::System, None, &NoJobs).is_ok());
    }
}
