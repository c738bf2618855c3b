//! `[dashboard]`: the supervisor dashboard's site plan. Only the settings live here; serving
//! the plan is `dashboard`'s and `api`'s job, and `check-config` (in `cli`) sees that the file is
//! there.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::section::{config_section, ConfigError};

config_section! {
    /// Dashboard settings.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct DashboardSettings in "dashboard.", cross_checks: problems {
        /// site-plan image (PNG, JPEG or SVG) under the dashboard's map; unset: none
        ///
        /// Drawn under fences and guards, and served to signed-in users at `/api/v1/site/plan`.
        pub site_plan: Option<PathBuf> = None;
        /// the image's edges [west, south, east, north] in degrees; required with site_plan
        pub site_plan_bounds: Option<[f64; 4]> = None,
            check: |bounds| bounds.and_then(|[w, s, e, n]| {
                let lon = -180.0..=180.0;
                let lat = -90.0..=90.0;
                (!(lon.contains(&w) && lon.contains(&e) && lat.contains(&s) && lat.contains(&n))
                    || w >= e
                    || s >= n)
                    .then_some(
                        "must be [west, south, east, north] with west < east and south < north",
                    )
            });
    }
}

impl DashboardSettings {
    /// A plan comes with its bounds.
    fn problems(&self, out: &mut Vec<ConfigError>) {
        if self.site_plan.is_some() != self.site_plan_bounds.is_some() {
            out.push(ConfigError::Inconsistent {
                key: "dashboard.site_plan_bounds",
                message:
                    "dashboard.site_plan and dashboard.site_plan_bounds must be given together"
                        .into(),
            });
        }
    }
}
