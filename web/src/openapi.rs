//! The OpenAPI 3.1 document of `/api/v1/`, served at `/api/v1/openapi.json`.
//!
//! Written out here rather than derived, so the store's types need not know about it; the
//! test at the bottom holds it to [`crate::api::ROUTES`] in both directions.

use serde_json::{Value, json};

/// A path parameter.
fn path_param(name: &str, description: &str, pattern: Option<&str>) -> Value {
    let mut schema = json!({ "type": "string" });
    if let Some(pattern) = pattern {
        schema["pattern"] = json!(pattern);
    }
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema })
}

/// A query parameter.
fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

/// A GET operation answering an object, or an error.
fn get(summary: &str, parameters: Vec<Value>, errors: &[u16]) -> Value {
    get_schema(summary, parameters, errors, json!({ "type": "object" }))
}

/// A GET operation answering an object of this schema, or an error.
fn get_schema(summary: &str, parameters: Vec<Value>, errors: &[u16], schema: Value) -> Value {
    let mut responses = json!({
        "200": {
            "description": "OK",
            "content": { "application/json": { "schema": schema } }
        }
    });
    for status in errors {
        responses[status.to_string()] = json!({
            "description": match status {
                400 => "malformed parameter",
                404 => "not found",
                _ => "error",
            },
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
        });
    }
    json!({ "get": { "summary": summary, "parameters": parameters, "responses": responses } })
}

const NAME: &str = "^[A-Za-z][A-Za-z0-9_-]{0,63}$";
const HASH: &str = "^[0-9a-f]{64}$";
const KEY: &str = "^(ed25519:)?[0-9a-f]{64}$";

/// The document.
pub fn document() -> Value {
    let name = || path_param("name", "crate name", Some(NAME));
    let paging = || {
        vec![
            query_param(
                "offset",
                "items to skip",
                json!({ "type": "integer", "minimum": 0, "maximum": 1_000_000 }),
            ),
            query_param(
                "limit",
                "items per page",
                json!({ "type": "integer", "minimum": 1, "maximum": 200 }),
            ),
        ]
    };
    let mut search = paging();
    search.push(query_param(
        "q",
        "substring of the name (case-insensitive; - and _ match each other)",
        json!({ "type": "string", "maxLength": 64 }),
    ));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "buildsrs coordinator API",
            "version": "1",
            "description": "Crates, versions, build tasks, verified artifacts and builders. \
                            Artifacts themselves are at /crates/{name}/{version}/{target}, \
                            /blobs/{hash} and /attestations/{hash}."
        },
        "servers": [{ "url": "/api/v1" }],
        "paths": {
            "/crates": get("Search crates", search, &[400]),
            "/crates/{name}": get("A crate and its versions", vec![name()], &[400, 404]),
            "/crates/{name}/{version}": get_schema(
                "A version's tasks, results and download links",
                vec![name(), path_param("version", "semver version or `latest`", None)],
                &[400, 404],
                json!({ "$ref": "#/components/schemas/VersionAnswer" }),
            ),
            "/tasks/{id}": get(
                "A task with its leases and results",
                vec![path_param("id", "task id", Some("^[1-9][0-9]*$"))],
                &[400, 404],
            ),
            "/artifacts/{hash}": get(
                "A verified artifact, its attestations and downloads",
                vec![path_param("hash", "BLAKE3 hash", Some(HASH))],
                &[400, 404],
            ),
            "/builders": get("Every builder", vec![], &[]),
            "/builders/{key}": get(
                "A builder and its recent results",
                vec![path_param("key", "ed25519 public key", Some(KEY))],
                &[400, 404],
            ),
            "/queue": get("Queue statistics and open tasks", paging(), &[400]),
            "/verified": get(
                "Artifacts in object storage after a cursor, in publication order, each with \
                 the iroh-blobs addresses of peers that hold it",
                vec![
                    query_param(
                        "since",
                        "the `next` of the previous answer; 0 to start",
                        json!({ "type": "integer", "minimum": 0 }),
                    ),
                    query_param(
                        "limit",
                        "items per page",
                        json!({ "type": "integer", "minimum": 1, "maximum": 200 }),
                    ),
                ],
                &[400],
            ),
            "/openapi.json": get("This document", vec![], &[]),
        },
        "components": {
            "schemas": {
                "VersionAnswer": {
                    "type": "object",
                    "required": ["crate_name", "version", "targets"],
                    "properties": {
                        "crate_name": { "type": "string" },
                        "version": { "$ref": "#/components/schemas/Version" },
                        "targets": {
                            "type": "array",
                            "description": "one entry per task: the task, its results, and \
                                            download links once verified",
                            "items": { "type": "object" }
                        }
                    }
                },
                "Version": {
                    "type": "object",
                    "required": ["version", "cksum", "yanked", "first_seen", "rust_version",
                                 "plan", "plan_note"],
                    "properties": {
                        "version": { "type": "string" },
                        "cksum": { "type": "string", "description": "SHA-256 of the .crate" },
                        "yanked": { "type": "boolean" },
                        "first_seen": { "type": "string", "format": "date-time" },
                        "rust_version": {
                            "type": ["string", "null"],
                            "description": "the manifest's rust-version, from the index"
                        },
                        "plan": {
                            "enum": ["probe", "matrix", null],
                            "description": "what the planner chose to build: null (not \
                                            chosen: older than the newest version when the \
                                            crate was watched, and not asked for), probe (one \
                                            task: the crate had no binaries) or matrix"
                        },
                        "plan_note": {
                            "type": ["string", "null"],
                            "description": "why a chosen version has no tasks, e.g. \
                                            \"needs Rust 1.96 or newer; enabled toolchains: \
                                            1.95.0\""
                        }
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["status", "message"],
                            "properties": {
                                "status": { "type": "integer" },
                                "message": { "type": "string" }
                            }
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes() {
        let doc = document();
        let mut documented: Vec<&str> = doc["paths"]
            .as_object()
            .map(|paths| paths.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut routed = crate::api::ROUTES.to_vec();
        documented.sort_unstable();
        routed.sort_unstable();
        assert_eq!(documented, routed);
        // Every `{param}` of a path is declared as a path parameter.
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            let declared: Vec<&str> = item["get"]["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let in_path: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            assert_eq!(declared, in_path, "{path}");
        }
    }
}
