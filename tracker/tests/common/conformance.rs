//! Checks real responses against the service's own OpenAPI document: the status is documented for the route,
//! the `Content-Type` is the documented one, and a JSON body validates against the documented schema.

use serde_json::{Value, json};

use super::Api;

/// The document, fetched from the running service.
pub struct Conformance {
    doc: Value,
}

impl Conformance {
    pub async fn fetch(api: &Api) -> Conformance {
        Conformance {
            doc: api.ok("/api/v1/openapi.json").await,
        }
    }

    /// GETs `path` (an instance of a documented route), checks the response and returns it.
    pub async fn get(&self, api: &Api, path: &str) -> (u16, String) {
        let (status, content_type, body) = api.get_typed(path).await;
        self.check(template_of(path), status, &content_type, &body);
        (status, body)
    }

    /// Like [`get`](Self::get), the body parsed as JSON.
    pub async fn json(&self, api: &Api, path: &str) -> (u16, Value) {
        let (status, body) = self.get(api, path).await;
        let value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
        (status, value)
    }

    /// GET expecting 200 and JSON, checked.
    pub async fn ok(&self, api: &Api, path: &str) -> Value {
        let (status, body) = self.json(api, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// The documented route templates seen by [`get`](Self::get) so far are in `paths`.
    pub fn paths(&self) -> Vec<String> {
        self.doc["paths"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn check(&self, template: &str, status: u16, content_type: &str, body: &str) {
        let operation = &self.doc["paths"][template]["get"];
        assert!(operation.is_object(), "{template} is not documented");
        let response = &operation["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{template}: status {status} is not documented; body {body}"
        );
        let content = response["content"].as_object().expect("documented content");
        let media = content_type.split(';').next().unwrap_or("").trim();
        let (documented, spec) = content
            .iter()
            .find(|(k, _)| k.split(';').next().unwrap_or("").trim() == media)
            .unwrap_or_else(|| {
                panic!("{template} {status}: Content-Type {content_type} not documented")
            });
        if documented != "application/json" {
            assert_eq!(spec["schema"]["type"], "string", "{template}");
            return;
        }
        let instance: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{template} {status}: not JSON ({e}): {body}"));
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [spec["schema"]],
        });
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{template} {status}: schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{template} {status}: response does not match the document: {errors:?}\n{body}"
        );
    }
}

/// The documented route a request path belongs to.
pub fn template_of(path: &str) -> &'static str {
    use saga_tracker_service::api::paths;
    let path = path.split('?').next().unwrap_or(path);
    match path.strip_prefix("/api/v1/sagas/") {
        Some(rest) if rest.ends_with("/timeline") => paths::TIMELINE,
        Some(_) => paths::SAGA,
        None => paths::ALL
            .into_iter()
            .find(|p| *p == path)
            .unwrap_or_else(|| panic!("{path} is not a documented route")),
    }
}
