//! The OpenAPI 3.1 document served at `/api/v1/openapi.json` (hand-written; a test checks it lists every route).

use serde_json::{Value, json};

use super::paths;
use super::routes::{DEFAULT_LIMIT, MAX_LIMIT};

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

/// The document.
pub fn document() -> Value {
    let id_param = json!({ "name": "id", "in": "path", "required": true, "description": "The saga id.", "schema": { "type": "string" } });
    let secured = json!([{ "bearer": [] }]);
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "saga-tracker-service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Saga summaries, timelines and statistics derived from the saga.tracker topic."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error", "message"], "properties": {
                    "error": { "type": "string", "enum": ["bad_request", "unauthorized", "not_found", "database_unavailable"] },
                    "message": { "type": "string" } } },
                "SagaStatus": { "type": "string", "enum": ["RUNNING", "SUCCEEDED", "FAILED", "COMPENSATING", "COMPENSATED", "COMPENSATION_FAILED"] },
                "Saga": { "type": "object", "properties": {
                    "saga_id": { "type": "string" }, "saga_type": { "type": "string" },
                    "status": { "$ref": "#/components/schemas/SagaStatus" },
                    "order_id": { "type": ["string", "null"] },
                    "started_at": { "type": "string", "format": "date-time" },
                    "updated_at": { "type": "string", "format": "date-time" },
                    "failed_step": { "type": ["string", "null"] },
                    "pending_compensations": { "type": "array", "items": { "type": "string" } },
                    "steps": { "type": "array", "items": { "type": "string" } },
                    "services": { "type": "array", "items": { "type": "string" } },
                    "event_count": { "type": "integer" },
                    "last_ingested_at": { "type": "string", "format": "date-time" } } },
                "TimelineEvent": { "type": "object", "properties": {
                    "event_id": { "type": "string", "format": "uuid" }, "idempotency_key": { "type": "string" },
                    "saga_id": { "type": "string" }, "saga_type": { "type": "string" }, "step": { "type": "string" },
                    "status": { "type": "string", "enum": ["STARTED", "SUCCEEDED", "FAILED", "COMPENSATION_STARTED", "COMPENSATED", "COMPENSATION_FAILED", "UNKNOWN"] },
                    "attempt": { "type": "integer" }, "order_id": { "type": ["string", "null"] }, "service": { "type": "string" },
                    "recorded_at": { "type": "string", "format": "date-time" },
                    "duration_micros": { "type": ["integer", "null"] },
                    "error_kind": { "type": ["string", "null"] }, "error_message": { "type": ["string", "null"] },
                    "metadata": { "type": "object", "additionalProperties": { "type": "string" } },
                    "kafka_topic": { "type": "string" }, "kafka_partition": { "type": "integer" }, "kafka_offset": { "type": "integer" },
                    "ingested_at": { "type": "string", "format": "date-time" },
                    "triggered_by": { "type": "string", "format": "uuid", "description": "On a compensation event: the FAILED event that triggered it." },
                    "triggered_compensations": { "type": "array", "items": { "type": "string", "format": "uuid" }, "description": "On a FAILED event: the compensation events it triggered." } } },
                "Timeline": { "type": "object", "properties": {
                    "saga_id": { "type": "string" },
                    "saga": { "oneOf": [{ "$ref": "#/components/schemas/Saga" }, { "type": "null" }] },
                    "events": { "type": "array", "items": { "$ref": "#/components/schemas/TimelineEvent" } } } },
                "SagaPage": { "type": "object", "properties": {
                    "items": { "type": "array", "items": { "$ref": "#/components/schemas/Saga" } },
                    "next_cursor": { "type": "string", "description": "Absent on the last page." } } },
                "Health": { "type": "object", "required": ["status"], "properties": {
                    "status": { "type": "string", "enum": ["ok", "degraded"] },
                    "reasons": { "type": "array", "items": { "type": "string" }, "description": "Why the service is degraded (present when `status` is `degraded`)." } } },
                "Unavailable": { "type": "object", "required": ["status", "error", "message"], "properties": {
                    "status": { "type": "string", "enum": ["unavailable"] },
                    "error": { "type": "string", "enum": ["database_unavailable"] },
                    "message": { "type": "string" } } },
                "Stats": { "type": "object", "properties": {
                    "sagas_total": { "type": "integer" },
                    "sagas_by_status": { "type": "object", "additionalProperties": { "type": "integer" } },
                    "events_total": { "type": "integer" }, "stuck_sagas": { "type": "integer" },
                    "stuck_after_seconds": { "type": "integer" }, "ingested_since_start": { "type": "integer" },
                    "duplicates_since_start": { "type": "integer" }, "dlq_since_start": { "type": "integer" },
                    "consumer_lag": { "type": ["integer", "null"] } } }
            }
        },
        "paths": {}
    });
    let paths_obj = json!({
        (paths::HEALTHZ): { "get": { "summary": "Database check and ingestion health: `ok`, or `degraded` with reasons (a stalled partition); 503 when the database does not answer (no token needed).", "security": [],
            "responses": { "200": ok_json("Healthy or degraded.", json!({ "$ref": "#/components/schemas/Health" })), "503": ok_json("Database unreachable.", json!({ "$ref": "#/components/schemas/Unavailable" })) } } },
        (paths::LIVEZ): { "get": { "summary": "Liveness: 200 while the process serves (no token needed).", "security": [],
            "responses": { "200": ok_json("Alive.", json!({ "$ref": "#/components/schemas/Health" })) } } },
        (paths::READYZ): { "get": { "summary": "Readiness: 503 while the database does not answer (no token needed).", "security": [],
            "responses": { "200": ok_json("Ready.", json!({ "$ref": "#/components/schemas/Health" })), "503": ok_json("Database unreachable.", json!({ "$ref": "#/components/schemas/Unavailable" })) } } },
        (paths::METRICS): { "get": { "summary": "Prometheus metrics, text exposition format (no token needed).", "security": [],
            "responses": { "200": { "description": "Metrics.", "content": { "text/plain": { "schema": { "type": "string" } } } } } } },
        (paths::SAGAS): { "get": { "summary": "Search sagas, newest first, keyset pagination.", "security": secured,
            "parameters": [
                query_param("type", "Saga type.", json!({ "type": "string" })),
                query_param("status", "Derived state.", json!({ "$ref": "#/components/schemas/SagaStatus" })),
                query_param("step", "Sagas with an event of this step.", json!({ "type": "string" })),
                query_param("service", "Sagas with an event recorded by this service.", json!({ "type": "string" })),
                query_param("from", "Started at or after (RFC 3339).", json!({ "type": "string", "format": "date-time" })),
                query_param("to", "Started before (RFC 3339).", json!({ "type": "string", "format": "date-time" })),
                query_param("cursor", "`next_cursor` of the previous page.", json!({ "type": "string" })),
                query_param("limit", "Page size; larger values are capped.", json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT }))
            ],
            "responses": { "200": ok_json("A page of sagas.", json!({ "$ref": "#/components/schemas/SagaPage" })),
                "400": error_response("Invalid query parameter."), "401": error_response("Missing or wrong token.") } } },
        (paths::SAGA): { "get": { "summary": "One saga's derived summary.", "security": secured, "parameters": [id_param.clone()],
            "responses": { "200": ok_json("The saga.", json!({ "$ref": "#/components/schemas/Saga" })),
                "401": error_response("Missing or wrong token."), "404": error_response("Unknown saga.") } } },
        (paths::TIMELINE): { "get": { "summary": "One saga's events in order; failures linked to the compensations they triggered.",
            "security": secured, "parameters": [id_param],
            "responses": { "200": ok_json("The timeline.", json!({ "$ref": "#/components/schemas/Timeline" })),
                "401": error_response("Missing or wrong token."), "404": error_response("Unknown saga.") } } },
        (paths::STATS): { "get": { "summary": "Totals: sagas per state, events, stuck sagas, ingestion counters.", "security": secured,
            "responses": { "200": ok_json("Statistics.", json!({ "$ref": "#/components/schemas/Stats" })),
                "401": error_response("Missing or wrong token.") } } },
        (paths::OPENAPI): { "get": { "summary": "This document.", "security": secured,
            "responses": { "200": ok_json("OpenAPI 3.1 document.", json!({ "type": "object" })),
                "401": error_response("Missing or wrong token.") } } }
    });
    doc["paths"] = paths_obj;
    doc
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_documented() {
        let doc = super::document();
        let documented = doc["paths"].as_object().expect("paths object");
        for path in super::paths::ALL {
            assert!(
                documented[path]["get"].is_object(),
                "{path} missing from the OpenAPI document"
            );
        }
        assert_eq!(documented.len(), super::paths::ALL.len());
    }
}
