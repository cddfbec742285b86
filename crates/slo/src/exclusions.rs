//! Which declared maintenance minutes the addendum lets us leave out: "scheduled maintenance
//! (≤ 60 min/mo with 48h notice)". A window counts only if it was created (by the gateway's
//! clock: that is its announcement) 48 hours before it started; and of the qualifying minutes,
//! only the first 60 of the month (in time order) are excluded. Anything beyond is ordinary
//! time, judged like any other minute.
//!
//! A minute is in a window when it overlaps it (a window 10:00:30–10:01:10 covers the
//! minutes 10:00 and 10:01).

use std::collections::BTreeSet;

use switchyard_metering::maintenance::Maintenance;
use switchyard_metering::sli::{minute_of, MS_PER_MINUTE};

pub const NOTICE_MS: i64 = 48 * 60 * MS_PER_MINUTE;
pub const MAX_EXCLUDED_MINUTES: usize = 60;

/// Excluded minutes for `tenant_id` within `[from_minute, to_minute)`, and the minutes of
/// windows covering the tenant that could not be excluded (no notice, or over the cap).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    pub excluded: BTreeSet<i64>,
    pub not_excluded: u64,
}

/// Whether `w` was created with the 48 hours' notice the addendum asks for.
pub fn qualifies(w: &Maintenance) -> bool {
    w.created_at_ms <= w.start_ms.saturating_sub(NOTICE_MS)
}

pub fn exclusions(
    windows: &[Maintenance],
    tenant_id: &str,
    from_minute: i64,
    to_minute: i64,
) -> Exclusions {
    let mut qualifying = BTreeSet::new();
    let mut declared = BTreeSet::new();
    for w in windows.iter().filter(|w| w.scope.covers(tenant_id)) {
        let first = minute_of(w.start_ms).max(from_minute);
        let last = minute_of(w.end_ms - 1).min(to_minute - 1);
        let announced = qualifies(w);
        for m in first..=last {
            declared.insert(m);
            if announced {
                qualifying.insert(m);
            }
        }
    }
    let excluded: BTreeSet<i64> = qualifying.into_iter().take(MAX_EXCLUDED_MINUTES).collect();
    Exclusions {
        not_excluded: u64::try_from(declared.len() - excluded.len()).unwrap_or(u64::MAX),
        excluded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_metering::maintenance::MaintenanceScope;

    const M: i64 = MS_PER_MINUTE;

    fn window(
        start_min: i64,
        minutes: i64,
        announced_min: i64,
        scope: MaintenanceScope,
    ) -> Maintenance {
        Maintenance {
            id: 0,
            start_ms: start_min * M,
            end_ms: (start_min + minutes) * M,
            scope,
            note: String::new(),
            announced_at_ms: 0,
            created_at_ms: announced_min * M,
        }
    }

    #[test]
    fn announced_windows_are_excluded_up_to_an_hour_a_month() {
        let notice = NOTICE_MS / M; // 2,880 minutes
        let start = 10_000;
        // 45 announced minutes, then another 45: only 60 of the 90 are excluded.
        let w = [
            window(start, 45, start - notice, MaintenanceScope::All),
            window(start + 100, 45, start - notice, MaintenanceScope::All),
        ];
        let e = exclusions(&w, "acme", 0, 100_000);
        assert_eq!(e.excluded.len(), 60);
        assert_eq!(e.excluded.first(), Some(&start));
        assert_eq!(e.excluded.last(), Some(&(start + 114)));
        assert_eq!(e.not_excluded, 30);
    }

    #[test]
    fn late_notice_and_other_tenants_windows_do_not_count() {
        let notice = NOTICE_MS / M;
        let w = [
            // One minute short of 48 hours' notice.
            window(10_000, 10, 10_000 - notice + 1, MaintenanceScope::All),
            window(20_000, 10, 0, MaintenanceScope::Tenant("other".into())),
        ];
        let e = exclusions(&w, "acme", 0, 100_000);
        assert!(e.excluded.is_empty());
        assert_eq!(e.not_excluded, 10);
        // A notice claimed long ago on a window created after the fact does not count: only
        // the creation time (the gateway's clock) does.
        let mut backdated = window(10_000, 10, 10_001, MaintenanceScope::All);
        backdated.announced_at_ms = 0;
        assert!(exclusions(&[backdated], "acme", 0, 100_000)
            .excluded
            .is_empty());
        // Clipped to the period.
        let w = [window(
            99_995,
            10,
            0,
            MaintenanceScope::Tenant("acme".into()),
        )];
        assert_eq!(exclusions(&w, "acme", 0, 100_000).excluded.len(), 5);
    }
}
