//! What an alert says to an alarm receiving centre: its SIA DC-03 event code (alarm and
//! restoral), its Contact ID event code, and the zone number that tells Lookout's alert types
//! apart where two share a code. The table of docs/arc.md is this one.
//!
//! Pure data and formatting: no sockets, no store.

use crate::alerts::AlertType;

/// The codes of one alert type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codes {
    /// SIA DC-03 code of the alarm.
    pub sia_alarm: &'static str,
    /// SIA DC-03 code of its restoral (the alert resolved).
    pub sia_restore: &'static str,
    /// Contact ID event code (qualifier 1 for the alarm, 3 for its restoral).
    pub cid: u16,
    /// The zone (SIA) or zone/user (Contact ID) number.
    pub zone: u16,
}

/// The codes of `kind`.
pub fn codes(kind: AlertType) -> Codes {
    let (sia_alarm, sia_restore, cid, zone) = match kind {
        // Panic alarm: the guard pressed the button.
        AlertType::Panic => ("PA", "PH", 120, 1),
        // Duress: a silent hold-up alarm (SIA HA "user under duress", CID 121 Duress).
        AlertType::Duress => ("HA", "HH", 121, 2),
        AlertType::Medical => ("MA", "MH", 100, 3),
        AlertType::Fire => ("FA", "FH", 110, 4),
        AlertType::Security => ("BA", "BH", 130, 5),
        // General alarm: SIA's untyped zone alarm, CID 140 General alarm.
        AlertType::General => ("UA", "UH", 140, 6),
        // Man down: a personal emergency the guard did not raise (SIA QA Emergency, CID 101
        // Personal emergency).
        AlertType::ManDown => ("QA", "QH", 101, 7),
        // Missed check-in: SIA NA No activity (restored by NS Activity resumed), CID 102
        // Fail to report in.
        AlertType::CheckInMissed => ("NA", "NS", 102, 8),
        // Lost contact: the guard's device is missing (SIA UZ Untyped missing alarm, restored
        // by UR; CID 381 Loss of supervision).
        AlertType::LostContact => ("UZ", "UR", 381, 9),
        // Geofence: a guard where they must not be (SIA UA Untyped zone alarm with its own
        // zone, CID 150 24-hour non-burglary).
        AlertType::Geofence => ("UA", "UH", 150, 10),
        // Tour missed: neither SIA DC-03 nor Contact ID has a guard-tour code, so it is an
        // untyped zone alarm like the geofence one, told apart by its own zone.
        AlertType::TourMissed => ("UA", "UH", 150, 11),
    };
    Codes {
        sia_alarm,
        sia_restore,
        cid,
        zone,
    }
}

/// Every alert type, in the table's order.
#[cfg(test)]
pub const ALL: [AlertType; 11] = [
    AlertType::Panic,
    AlertType::Duress,
    AlertType::Medical,
    AlertType::Fire,
    AlertType::Security,
    AlertType::General,
    AlertType::ManDown,
    AlertType::CheckInMissed,
    AlertType::LostContact,
    AlertType::Geofence,
    AlertType::TourMissed,
];

/// The data block of an event for `account`: SIA DC-03 `#acct|Nri1/PA001` or Contact ID
/// `#acct|1120 01 001` (`restore`: the alert resolved).
pub fn data(sia: bool, account: &str, kind: AlertType, restore: bool) -> String {
    let c = codes(kind);
    if sia {
        let code = if restore { c.sia_restore } else { c.sia_alarm };
        format!("#{account}|Nri1/{code}{:03}", c.zone)
    } else {
        let qualifier = if restore { 3 } else { 1 };
        format!("#{account}|{qualifier}{:03} 01 {:03}", c.cid, c.zone)
    }
}

/// DC-09's position fields: `X` longitude and `Y` latitude, each a hemisphere letter and
/// decimal degrees (6 decimals, 11 characters at most, within the field's 12).
pub fn position(lat: f64, lon: f64) -> Option<[(char, String); 2]> {
    if !lat.is_finite() || !lon.is_finite() || lat.abs() > 90.0 || lon.abs() > 180.0 {
        return None;
    }
    let x = format!("{}{:.6}", if lon < 0.0 { 'W' } else { 'E' }, lon.abs());
    let y = format!("{}{:.6}", if lat < 0.0 { 'S' } else { 'N' }, lat.abs());
    Some([('X', x), ('Y', y)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_its_own_zone() {
        let mut zones: Vec<u16> = ALL.iter().map(|k| codes(*k).zone).collect();
        zones.sort_unstable();
        zones.dedup();
        assert_eq!(zones.len(), ALL.len());
    }

    #[test]
    fn data_blocks() {
        assert_eq!(
            data(true, "1234", AlertType::Panic, false),
            "#1234|Nri1/PA001"
        );
        assert_eq!(
            data(true, "1234", AlertType::Panic, true),
            "#1234|Nri1/PH001"
        );
        assert_eq!(
            data(false, "1234", AlertType::Panic, false),
            "#1234|1120 01 001"
        );
        assert_eq!(
            data(false, "1234", AlertType::LostContact, true),
            "#1234|3381 01 009"
        );
    }

    #[test]
    fn positions() {
        let [x, y] = position(51.501364, -0.14189).expect("position");
        assert_eq!(x, ('X', "W0.141890".to_string()));
        assert_eq!(y, ('Y', "N51.501364".to_string()));
        let [x, _] = position(-33.8, 151.2).expect("position");
        assert_eq!(x.1, "E151.200000");
        assert!(position(f64::NAN, 0.0).is_none());
        assert!(position(91.0, 0.0).is_none());
    }
}
