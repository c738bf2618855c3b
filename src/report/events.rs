//! A shift's events in one time-ordered list: the guard's fixes (the track), scans with their
//! flags, the rounds of the guard's tours that ended, alerts with each step of their audit
//! trail, and the last check-in; and how each checkpoint fared, for the map.
//!
//! Reads through the services' own access rules (the caller's identity, acting in the shift's
//! org), so a report shows a guard nothing its own listings would not. Bounded by
//! `patrol.max_report_events`: the few, important events first, the fixes fill what is left.

use std::collections::{BTreeSet, HashMap};

use super::error::ReportError;
use crate::alerts::{Alert, AlertQuery};
use crate::auth::Identity;
use crate::field::{Field, Shift};
use crate::patrol::{Checkpoint, PatrolHistory, Patrols, RoundOutcome, Scan};

/// What a report reads, and its bound.
pub struct Sources<'a> {
    /// Shifts, the track, check-ins and (through it) alerts.
    pub field: &'a Field,
    /// Scans and rounds.
    pub patrols: &'a Patrols,
    /// `patrol.max_report_events`.
    pub max_events: usize,
    /// `patrol.max_report_photo_bytes`.
    pub max_photo_bytes: usize,
}

/// An incident photo the PDF shows.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentPhoto {
    /// The incident.
    pub incident: String,
    /// Its category.
    pub category: String,
    /// The photo's number.
    pub n: u32,
    /// The JPEG.
    pub jpeg: Vec<u8>,
}

/// How a scan went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanFlags {
    /// It counted for a round of a tour.
    pub in_round: bool,
    /// Read after the window of a round that missed its checkpoint, before the next round.
    pub late: bool,
    /// Further from the checkpoint than its radius plus the fix's accuracy.
    pub far: bool,
    /// Out of an ordered tour's order.
    pub out_of_order: bool,
}

impl ScanFlags {
    /// The flags as words (`late far`), empty when the scan was on time and in place.
    pub fn words(self) -> Vec<&'static str> {
        [
            (self.late, "late"),
            (self.far, "far"),
            (self.out_of_order, "out_of_order"),
        ]
        .into_iter()
        .filter_map(|(set, word)| set.then_some(word))
        .collect()
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// A position fix from the guard's phone.
    Fix {
        /// Accuracy, m.
        accuracy: f64,
    },
    /// A checkpoint scanned.
    Scan {
        /// Checkpoint id.
        checkpoint: String,
        /// Its name.
        name: String,
        /// The tour whose round it counted for.
        tour: Option<String>,
        /// How it went.
        flags: ScanFlags,
        /// Distance from the checkpoint, m.
        distance_m: Option<f64>,
        /// `qr` or `nfc`.
        via: String,
    },
    /// A round of one of the guard's tours ended (at its window's end).
    Round {
        /// Tour id.
        tour: String,
        /// Tour name.
        tour_name: String,
        /// The round's start, ms.
        start: u64,
        /// Names of the checkpoints scanned in it.
        scanned: Vec<String>,
        /// Names of those missed.
        missed: Vec<String>,
        /// Its `TOUR_MISSED` alert's id, when it missed any.
        alert: Option<String>,
    },
    /// An alert raised.
    Alert {
        /// Id.
        id: String,
        /// Type, as on the wire (`PANIC`).
        kind: &'static str,
        /// `HIGH` or `CRITICAL`.
        priority: &'static str,
        /// Its state now.
        state: &'static str,
        /// Its text.
        message: Option<String>,
    },
    /// A later step of an alert's audit trail (escalated, acknowledged, resolved).
    AlertStep {
        /// The alert's id.
        id: String,
        /// Its type.
        kind: &'static str,
        /// The step.
        action: String,
        /// Who took it (`lookout` for the server).
        by: String,
        /// The note given.
        note: Option<String>,
    },
    /// The guard checked in (lone-worker "I'm OK" or counted activity). Only the last one is
    /// kept by the server.
    CheckIn,
    /// An incident report the guard filed, with its photos.
    Incident {
        /// Id.
        id: String,
        /// Category.
        category: String,
        /// The guard's text.
        text: String,
        /// Photo numbers.
        photos: Vec<u32>,
    },
}

/// One event of a shift.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftEvent {
    /// When, ms (a fix's and a scan's phone time; the server's for the rest).
    pub at: u64,
    /// Where, (lat, lon), when known.
    pub position: Option<(f64, f64)>,
    /// What.
    pub what: What,
}

impl ShiftEvent {
    /// The event's kind, one word as the CSV writes it (`alert_acknowledged`).
    pub fn kind(&self) -> String {
        match &self.what {
            What::Fix { .. } => "fix".into(),
            What::Scan { .. } => "scan".into(),
            What::Round { missed, .. } if missed.is_empty() => "round_done".into(),
            What::Round { .. } => "round_missed".into(),
            What::Alert { .. } => "alert".into(),
            What::AlertStep { action, .. } => format!("alert_{action}"),
            What::CheckIn => "check_in".into(),
            What::Incident { .. } => "incident".into(),
        }
    }

    /// The event for people, one line.
    pub fn detail(&self) -> String {
        match &self.what {
            What::Fix { accuracy } => format!("fix, accuracy {accuracy:.0} m"),
            What::Scan {
                name,
                tour,
                flags,
                distance_m,
                via,
                ..
            } => {
                let mut text = format!("{name} scanned ({via})");
                if let Some(d) = distance_m {
                    text.push_str(&format!(", {d:.0} m away"));
                }
                text.push_str(if tour.is_some() {
                    ", in round"
                } else {
                    ", in no round"
                });
                for word in flags.words() {
                    text.push_str(", ");
                    text.push_str(word);
                }
                text
            }
            What::Round {
                tour_name,
                scanned,
                missed,
                alert,
                ..
            } => {
                let total = scanned.len() + missed.len();
                let mut text = format!("{tour_name}: {} of {total} scanned", scanned.len());
                if !missed.is_empty() {
                    text.push_str(&format!("; missed {}", missed.join(", ")));
                }
                if let Some(id) = alert {
                    text.push_str(&format!(" (TOUR_MISSED {id})"));
                }
                text
            }
            What::Alert {
                id,
                kind,
                priority,
                state,
                message,
            } => {
                let mut text = format!("{kind} {id} {priority}, now {state}");
                if let Some(m) = message {
                    text.push_str(": ");
                    text.push_str(m);
                }
                text
            }
            What::AlertStep {
                id,
                kind,
                action,
                by,
                note,
            } => {
                let mut text = format!("{kind} {id} {action} by {by}");
                if let Some(n) = note {
                    text.push_str(": ");
                    text.push_str(n);
                }
                text
            }
            What::CheckIn => "checked in (the last check-in; earlier ones are not kept)".into(),
            What::Incident {
                id,
                category,
                text,
                photos,
            } => format!("{category} {id}: {text} ({} photos)", photos.len()),
        }
    }
}

/// How a checkpoint fared in the shift, as the map colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    /// Scanned on time and in place.
    Scanned,
    /// Scanned, but late, far or out of order.
    Flagged,
    /// Missed in a round.
    Missed,
}

/// A checkpoint of the shift (scanned, or on a round of the guard's tours).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointMark {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// How it fared (the worst of the shift).
    pub mark: Mark,
}

/// Everything a shift report says.
#[derive(Debug, Clone)]
pub struct ShiftReport {
    /// The shift.
    pub shift: Shift,
    /// When the report was made, ms.
    pub generated_at: u64,
    /// The events, oldest first.
    pub events: Vec<ShiftEvent>,
    /// The shift's checkpoints.
    pub checkpoints: Vec<CheckpointMark>,
    /// What the reader must know: what was cut and why.
    pub notes: Vec<String>,
    /// The incidents' photos the PDF shows, in the incidents' order.
    pub photos: Vec<IncidentPhoto>,
}

/// Counts for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Fixes.
    pub fixes: usize,
    /// Scans.
    pub scans: usize,
    /// Scans late, far or out of order.
    pub flagged: usize,
    /// Rounds ended.
    pub rounds: usize,
    /// Rounds that missed checkpoints.
    pub rounds_missed: usize,
    /// Checkpoint misses (one per checkpoint per round).
    pub checkpoints_missed: usize,
    /// Alerts.
    pub alerts: usize,
    /// Incidents.
    pub incidents: usize,
    /// Check-ins.
    pub check_ins: usize,
}

impl ShiftReport {
    /// The counts of the summary page.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for event in &self.events {
            match &event.what {
                What::Fix { .. } => s.fixes += 1,
                What::Scan { flags, .. } => {
                    s.scans += 1;
                    s.flagged += usize::from(!flags.words().is_empty());
                }
                What::Round { missed, .. } => {
                    s.rounds += 1;
                    s.rounds_missed += usize::from(!missed.is_empty());
                    s.checkpoints_missed += missed.len();
                }
                What::Alert { .. } => s.alerts += 1,
                What::AlertStep { .. } => {}
                What::CheckIn => s.check_ins += 1,
                What::Incident { .. } => s.incidents += 1,
            }
        }
        s
    }
}

/// The report of shift `id`, as `who` may see it.
pub async fn gather(
    src: &Sources<'_>,
    who: &Identity,
    id: &str,
    now: u64,
) -> Result<ShiftReport, ReportError> {
    let shift = src.field.shift(who, id).await?;
    let acting = who.acting_in(&shift.org);
    let span = (shift.start, shift.end);
    let max = src.max_events;
    let patrol = src
        .patrols
        .history(&acting, &shift.org, &shift.user, span, max)
        .await?;
    let mut notes = Vec::new();
    if patrol.truncated {
        notes.push(format!(
            "More scans or rounds than {max} in the shift: the later ones are left out (patrol.max_report_events)."
        ));
    }
    let mut events = patrol_events(&patrol);
    let round_alerts: BTreeSet<&str> = patrol
        .rounds
        .iter()
        .filter_map(|r| r.alert.as_deref())
        .collect();
    let query = AlertQuery {
        from: Some(shift.start),
        ..AlertQuery::default()
    };
    let alerts = src.field.alerts().list(&acting, &query).await?;
    for alert in alerts.iter().filter(|a| {
        (a.user == shift.user && a.created_at < shift.end) || round_alerts.contains(a.id.as_str())
    }) {
        events.extend(alert_events(alert));
    }
    let photos = incident_events(src, &acting, &shift, &mut events, &mut notes).await?;
    if let Some(at) = src.field.last_check_in(&shift.org, &shift.user).await? {
        if (shift.start..shift.end).contains(&at) {
            events.push(ShiftEvent {
                at,
                position: None,
                what: What::CheckIn,
            });
        }
    }
    events.sort_by_key(|e| e.at);
    if events.len() > max {
        events.truncate(max);
        notes.push(format!(
            "More than {max} scans, rounds, alerts and check-ins: the report stops at {} and draws no track (patrol.max_report_events).",
            super::format::utc(events.last().map_or(shift.start, |e| e.at))
        ));
    }
    let room = max - events.len();
    if room > 0 {
        let fixes = src
            .field
            .location_history(&acting, &shift.user, shift.start, shift.end, room + 1)
            .await?;
        if fixes.len() > room {
            notes.push(format!(
                "More than {max} events: the track ends at {}, the rest of the shift's fixes are left out (patrol.max_report_events).",
                super::format::utc(fixes.get(room - 1).map_or(shift.start, |(_, l)| l.ts))
            ));
        }
        events.extend(fixes.into_iter().take(room).map(|(_, l)| ShiftEvent {
            at: l.ts,
            position: Some((l.lat, l.lon)),
            what: What::Fix {
                accuracy: l.accuracy,
            },
        }));
        events.sort_by_key(|e| e.at);
    }
    Ok(ShiftReport {
        checkpoints: marks(&patrol),
        shift,
        generated_at: now,
        events,
        notes,
        photos,
    })
}

/// The incident reports the guard filed in the shift, as events, and their photos up to
/// `patrol.max_report_photo_bytes`.
async fn incident_events(
    src: &Sources<'_>,
    acting: &Identity,
    shift: &Shift,
    events: &mut Vec<ShiftEvent>,
    notes: &mut Vec<String>,
) -> Result<Vec<IncidentPhoto>, ReportError> {
    let mut filed = src
        .patrols
        .incidents(acting, Some(&shift.org), None, src.max_events)
        .await?;
    filed.retain(|i| i.author == shift.user && (shift.start..shift.end).contains(&i.created_at));
    filed.sort_by_key(|i| i.created_at);
    let mut photos = Vec::new();
    let mut bytes = 0;
    let mut left_out = 0;
    for incident in filed {
        for info in &incident.photos {
            let size = usize::try_from(info.bytes).unwrap_or(usize::MAX);
            if bytes + size > src.max_photo_bytes {
                left_out += 1;
                continue;
            }
            let jpeg = src
                .patrols
                .photo(acting, Some(&shift.org), &incident.id, info.n)
                .await?;
            bytes += jpeg.len();
            photos.push(IncidentPhoto {
                incident: incident.id.clone(),
                category: incident.category.clone(),
                n: info.n,
                jpeg,
            });
        }
        events.push(ShiftEvent {
            at: incident.created_at,
            position: None,
            what: What::Incident {
                id: incident.id,
                category: incident.category,
                text: incident.text,
                photos: incident.photos.iter().map(|p| p.n).collect(),
            },
        });
    }
    if left_out > 0 {
        notes.push(format!(
            "{left_out} incident photos are not in this PDF: more than {} bytes of photos (patrol.max_report_photo_bytes).",
            src.max_photo_bytes
        ));
    }
    Ok(photos)
}

/// Scans and ended rounds as events.
fn patrol_events(patrol: &PatrolHistory) -> Vec<ShiftEvent> {
    let by_id: HashMap<&str, &Checkpoint> = patrol
        .checkpoints
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    let name = |id: &str| {
        by_id
            .get(id)
            .map_or_else(|| id.to_string(), |c| c.name.clone())
    };
    let names = |ids: &[String]| ids.iter().map(|id| name(id)).collect::<Vec<_>>();
    let scans = patrol.scans.iter().map(|s| ShiftEvent {
        at: s.scanned_at,
        position: s.lat.zip(s.lon),
        what: What::Scan {
            checkpoint: s.checkpoint.clone(),
            name: name(&s.checkpoint),
            tour: s.tour.clone(),
            flags: flags(s, &patrol.late),
            distance_m: s.distance_m,
            via: s.via.clone(),
        },
    });
    let rounds = patrol.rounds.iter().map(|r: &RoundOutcome| ShiftEvent {
        at: r.end,
        position: None,
        what: What::Round {
            tour: r.tour.clone(),
            tour_name: r.tour_name.clone(),
            start: r.start,
            scanned: names(&r.scanned),
            missed: names(&r.missed),
            alert: r.alert.clone(),
        },
    });
    scans.chain(rounds).collect()
}

fn flags(scan: &Scan, late: &BTreeSet<String>) -> ScanFlags {
    ScanFlags {
        in_round: scan.tour.is_some(),
        late: late.contains(&scan.key),
        far: scan.far,
        out_of_order: scan.out_of_order,
    }
}

/// An alert's creation and each later step of its audit trail.
fn alert_events(alert: &Alert) -> Vec<ShiftEvent> {
    let kind = alert.kind.name();
    let mut events = vec![ShiftEvent {
        at: alert.created_at,
        position: alert.position.map(|p| (p.lat, p.lon)),
        what: What::Alert {
            id: alert.id.clone(),
            kind,
            priority: match alert.priority {
                crate::alerts::Priority::High => "HIGH",
                crate::alerts::Priority::Critical => "CRITICAL",
            },
            state: alert.state.as_str(),
            message: alert.message.clone(),
        },
    }];
    events.extend(
        alert
            .audit
            .iter()
            .filter(|step| step.action != "created")
            .map(|step| ShiftEvent {
                at: step.at,
                position: None,
                what: What::AlertStep {
                    id: alert.id.clone(),
                    kind,
                    action: step.action.clone(),
                    by: step.by.clone(),
                    note: step.note.clone(),
                },
            }),
    );
    events
}

/// How each checkpoint of the shift fared: the worst of its rounds and scans.
fn marks(patrol: &PatrolHistory) -> Vec<CheckpointMark> {
    let mut worst: HashMap<&str, Mark> = HashMap::new();
    let scans = patrol.scans.iter().map(|s| {
        let flagged = !flags(s, &patrol.late).words().is_empty();
        let mark = if flagged {
            Mark::Flagged
        } else {
            Mark::Scanned
        };
        (s.checkpoint.as_str(), mark)
    });
    let rounds = patrol.rounds.iter().flat_map(|r| {
        let scanned = r.scanned.iter().map(|c| (c.as_str(), Mark::Scanned));
        scanned.chain(r.missed.iter().map(|c| (c.as_str(), Mark::Missed)))
    });
    for (id, mark) in scans.chain(rounds) {
        let entry = worst.entry(id).or_insert(mark);
        *entry = (*entry).max(mark);
    }
    let mut marks: Vec<CheckpointMark> = patrol
        .checkpoints
        .iter()
        .filter_map(|c| {
            worst.get(c.id.as_str()).map(|mark| CheckpointMark {
                id: c.id.clone(),
                name: c.name.clone(),
                lat: c.lat,
                lon: c.lon,
                mark: *mark,
            })
        })
        .collect();
    marks.sort_by(|a, b| a.name.cmp(&b.name));
    marks
}
