//! The shift report routes: a shift's report as PDF or CSV, as a download (supervisors and
//! admins of the shift's org; the guard its own shift).

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::Response;

use super::extract::Call;
use crate::failure::ErrorCode;
use crate::http::{full, Body, HttpError};
use crate::report::{ShiftReport, Sources};

/// The report of the shift named in the path, as the caller may see it.
async fn report(call: &Call) -> Result<ShiftReport, HttpError> {
    let who = call.who()?;
    let state = &call.state;
    // Reading a track walks a channel's log, like the location history route.
    let _reading = state.hub.begin_read(&who)?;
    let sources = Sources {
        field: &state.field,
        patrols: &state.patrols,
        max_events: state.config.patrol.max_report_events,
        max_photo_bytes: state.config.patrol.max_report_photo_bytes,
    };
    let now = crate::clock::now_millis();
    Ok(crate::report::gather(&sources, &who, call.param(0), now).await?)
}

/// A download: its type and the name a browser saves it under; never cached (it holds a
/// guard's movements).
fn attachment(
    bytes: Vec<u8>,
    content_type: &'static str,
    name: &str,
) -> Result<Response<Body>, HttpError> {
    let disposition =
        HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")).map_err(|_| {
            HttpError::new(
                ErrorCode::Internal,
                "the report's file name is not a header",
            )
        })?;
    let mut response = Response::new(full(Bytes::from(bytes)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_DISPOSITION, disposition);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Runs `make` on the blocking pool: a report of many events is tens of milliseconds of CPU
/// (see `report::pdf`), which a runtime worker serving sockets should not spend.
async fn off_runtime<T: Send + 'static>(
    make: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(make).await.map_err(|e| {
        tracing::error!(error = %e, "making a shift report failed");
        HttpError::new(ErrorCode::Internal, "the report could not be made")
    })
}

/// `GET /api/v1/shifts/{id}/report.pdf`.
pub async fn pdf(call: Call) -> Result<Response<Body>, HttpError> {
    let report = report(&call).await?;
    let config = &call.state.config;
    let plan = config
        .dashboard
        .site_plan
        .as_deref()
        .zip(config.dashboard.site_plan_bounds);
    let settings =
        crate::report::map_settings(&report, plan, config.patrol.max_report_track_points).await;
    let name = crate::report::file_name(&report, "pdf");
    let bytes = off_runtime(move || crate::report::pdf(&report, &settings)).await?;
    attachment(bytes, "application/pdf", &name)
}

/// `GET /api/v1/shifts/{id}/report.csv`.
pub async fn csv(call: Call) -> Result<Response<Body>, HttpError> {
    let report = report(&call).await?;
    let name = crate::report::file_name(&report, "csv");
    let text = off_runtime(move || crate::report::csv(&report)).await?;
    attachment(text.into_bytes(), "text/csv; charset=utf-8", &name)
}
