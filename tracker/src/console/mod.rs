//! The operator console: a few static pages (plain HTML, CSS and JavaScript modules embedded in the binary, no
//! CDN) served at `/ui/`, that read the `/api/v1` routes with the token the operator types in. The assets are
//! public; the data is not (every request of the page carries `Authorization: Bearer` from sessionStorage).
//!
//! [`assets`] holds the embedded files, [`router`] serves them with `/ui/config.json` (the trace link template).

mod assets;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Serialize;

use crate::db::SagaState;

/// Where the console lives.
pub const UI: &str = "/ui/";

/// What the page learns from the service (public: no secret belongs here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// `--trace-url-template`: a trace id becomes a link to this URL, `{traceId}` replaced.
    pub trace_url_template: Option<String>,
}

/// `/ui/config.json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageConfig<'a> {
    trace_url_template: Option<&'a str>,
    /// The states in which a saga is not stuck however long it is silent ([`SagaState::is_terminal`]).
    terminal_states: Vec<SagaState>,
}

/// The placeholder of a trace URL template.
pub const TRACE_ID_PLACEHOLDER: &str = "{traceId}";

/// Checks a `--trace-url-template`: an `http://` or `https://` URL holding `{traceId}` (a `javascript:` link would
/// run code in the console's origin).
pub fn check_trace_template(template: &str) -> Result<(), &'static str> {
    let lower = template.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err("must start with http:// or https://");
    }
    if !template.contains(TRACE_ID_PLACEHOLDER) {
        return Err("must contain {traceId}");
    }
    Ok(())
}

/// The console's routes: `/` and `/ui` redirect to `/ui/`, which serves the page; `/ui/{file}` the assets;
/// `/ui/config.json` the [`ConsoleConfig`]. No state of the API is needed: the page reads the API itself.
pub fn router(config: ConsoleConfig) -> Router {
    let page = PageConfig {
        trace_url_template: config.trace_url_template.as_deref(),
        terminal_states: SagaState::terminal().collect(),
    };
    let config_json: Arc<str> = serde_json::to_string(&page)
        .unwrap_or_else(|_| "{}".to_owned())
        .into();
    Router::new()
        .route("/", get(|| async { Redirect::to(UI) }))
        .route("/ui", get(|| async { Redirect::to(UI) }))
        .route(UI, get(|| async { assets::serve("index.html") }))
        .route(
            "/ui/config.json",
            get(move || {
                let body = Arc::clone(&config_json);
                async move { json(&body) }
            }),
        )
        .route(
            "/ui/{file}",
            get(
                |axum::extract::Path(file): axum::extract::Path<String>| async move {
                    assets::serve(&file)
                },
            ),
        )
}

fn json(body: &str) -> Response {
    let mut response = body.to_owned().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_templates() {
        assert!(check_trace_template("https://tempo.example/trace/{traceId}").is_ok());
        assert!(check_trace_template("HTTP://jaeger:16686/trace/{traceId}").is_ok());
        assert!(check_trace_template("javascript:alert(1)//{traceId}").is_err());
        assert!(check_trace_template("https://tempo.example/trace/").is_err());
        assert!(check_trace_template("//tempo.example/{traceId}").is_err());
    }
}
