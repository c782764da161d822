//! The OpenAPI 3.1 document of `/api/v1`, generated (utoipa) from the parameter and answer
//! types of this crate, so it cannot say other than what the server parses and writes.
//!
//! Each operation is declared on a function with no body: the contract lives here, next to
//! its types; the coordinator's web layer serves it and answers each route with these types
//! (its tests hold its routes to [`crate::routes::ALL`], and this document too). Links
//! between operations say which answer field names what another operation takes, for
//! clients and for stateful testing.

use utoipa::OpenApi;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use crate::answers::{
    ArtifactAnswer, Builder, BuilderAnswer, CrateAnswer, CrateList, ErrorBody, FeedPage,
    QueueAnswer, TaskAnswer, VersionAnswer,
};
use crate::params::{
    ArtifactPath, BuilderPath, CratePath, CrateSearch, FeedQuery, PageQuery, TaskPath, VersionPath,
};
use crate::schema::OpenApiDocument;

/// The document.
///
/// Every field of every answer is always written (`null` where there is nothing), so every
/// property is required, nullable ones included: a client can tell a missing field from an
/// empty one, and the contract test catches an answer that leaves one out.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if let Some(components) = doc.components.as_mut() {
        for schema in components.schemas.values_mut() {
            if let RefOr::T(Schema::Object(object)) = schema {
                object.required = object.properties.keys().cloned().collect();
            }
        }
    }
    doc
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "buildsrs coordinator API",
        version = "1",
        description = "Crates, versions, build tasks, verified artifacts and builders of a \
                       buildsrs coordinator. Every answer is JSON, errors included \
                       (`{\"error\": {\"status\", \"message\"}}`). The artifacts themselves \
                       are outside this API: `/crates/{name}/{version}/{target}`, \
                       `/blobs/{hash}` and `/attestations/{hash}`."
    ),
    servers((url = "/api/v1")),
    paths(
        search_crates,
        get_crate,
        get_version,
        get_task,
        get_artifact,
        list_builders,
        get_builder,
        get_queue,
        get_verified,
        get_openapi
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "crates", description = "Crates and their versions"),
        (name = "builds", description = "Tasks, the queue and verified artifacts"),
        (name = "builders", description = "The builders and their results"),
        (name = "meta", description = "This document")
    )
)]
struct ApiDoc;

/// Search crates
///
/// The crates whose name contains `q` (all crates without it), by name, a page at a time.
#[utoipa::path(
    get,
    path = "/crates",
    tag = "crates",
    params(CrateSearch),
    responses(
        (status = 200, description = "A page of crates", body = CrateList, links(
            ("crate" = (operation_id = "get_crate", parameters(("name" = "$response.body#/items/0/name"))))
        )),
        (status = 400, description = "A malformed parameter", body = ErrorBody),
    )
)]
#[allow(dead_code)] // Declares the operation; the web layer answers it.
fn search_crates() {}

/// A crate and its versions
///
/// With `latest`, the version the other routes take for `latest`.
#[utoipa::path(
    get,
    path = "/crates/{name}",
    tag = "crates",
    params(CratePath),
    responses(
        (status = 200, description = "The crate", body = CrateAnswer, links(
            ("version" = (operation_id = "get_version", parameters(
                ("name" = "$response.body#/name"),
                ("version" = "$response.body#/versions/0/version")
            )))
        )),
        (status = 400, description = "A malformed name", body = ErrorBody),
        (status = 404, description = "No such crate", body = ErrorBody),
    )
)]
#[allow(dead_code)] // Declares the operation; the web layer answers it.
fn get_crate() {}

/// A version and its tasks
///
/// Each task with its results and, once verified, the paths of its archive and bundle.
#[utoipa::path(
    get,
    path = "/crates/{name}/{version}",
    tag = "crates",
    params(VersionPath),
    responses(
        (status = 200, description = "The version", body = VersionAnswer, links(
            ("task" = (operation_id = "get_task", parameters(
                ("id" = "$response.body#/targets/0/task/id")
            ))),
            ("artifact" = (operation_id = "get_artifact", parameters(
                ("hash" = "$response.body#/targets/0/task/artifact/blake3")
            )))
        )),
        (status = 400, description = "A malformed name or version", body = ErrorBody),
        (status = 404, description = "No such crate or version, or for `latest` none that \
                                      is not yanked", body = ErrorBody),
    )
)]
#[allow(dead_code)] // Declares the operation; the web layer answers it.
fn get_version() {}

/// A task
///
/// The task, every lease granted for it and every result sent for it.
#[utoipa::path(
    get,
    path = "/tasks/{id}",
    tag = "builds",
    params(TaskPath),
    responses(
        (status = 200, description = "The task", body = TaskAnswer, links(
            ("version" = (operation_id = "get_version", parameters(
                ("name" = "$response.body#/task/crate_name"),
                ("version" = "$response.body#/task/version")
            ))),
            ("artifact" = (operation_id = "get_artifact", parameters(
                ("hash" = "$response.body#/task/artifact/blake3")
            ))),
            ("builder" = (operation_id = "get_builder", parameters(
                ("key" = "$response.body#/leases/0/builder")
            )))
        )),
        (status = 400, description = "A malformed id", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
    )
)]
#[allow(dead_code)] // Declares the operation; the web layer answers it.
fn get_task() {}

/// A verified artifact
///
/// Its tasks, the attestations its bundle holds, and its downloads.
#[utoipa::path(
    get,
    path = "/artifacts/{hash}",
    tag = "builds",
    params(ArtifactPath),
    responses(
        (status = 200, description = "The artifact", body = ArtifactAnswer, links(
            ("task" = (operation_id = "get_task", parameters(("id" = "$response.body#/tasks/0/id")))),
            ("builder" = (operation_id = "get_builder", parameters(
                ("key" = "$response.body#/attestations/0/builder")
            )))
        )),
        (status = 400, description = "A malformed hash", body = ErrorBody),
        (status = 404, description = "No such artifact", body = ErrorBody),
    )
)]
#[allow(dead_code)] // Declares the operation; the web layer answers it.
fn get_artifact() {}

/// The builders
///
/// A page of the builders in the order they registered (`offset`, `limit`: 100 by default,
/// at most 200); an empty page is past the last.
#[utoipa::path(
    get,
    path = "/builders",
    tag = "builders",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of builders, in the order they registered", body = [Builder], links(
            ("builder" = (operation_id = "get_builder", parameters(("key" = "$response.body#/0/public_key"))))
        )),
        (status = 400, description = "A malformed parameter", body = ErrorBody),
    )
)]
#[allow(dead_code)] // Declares the operation; the web layer answers it.
fn list_builders() {}

/// A builder and its recent results
#[utoipa::path(
    get,
    path = "/builders/{key}",
    tag = "builders",
    params(BuilderPath),
    responses(
        (status = 200, description = "The builder", body = BuilderAnswer, links(
            ("task" = (operation_id = "get_task", parameters(
                ("id" = "$response.body#/recent_results/0/result/task_id")
            )))
        )),
        (status = 400, description = "A malformed key", body = ErrorBody),
        (status = 404, description = "No such builder", body = ErrorBody),
    )
)]
#[allow(dead_code)] // Declares the operation; the web layer answers it.
fn get_builder() {}

/// The queue
///
/// Statistics, and the open tasks in the order builders get them.
#[utoipa::path(
    get,
    path = "/queue",
    tag = "builds",
    params(PageQuery),
    responses(
        (status = 200, description = "The queue", body = QueueAnswer, links(
            ("task" = (operation_id = "get_task", parameters(("id" = "$response.body#/tasks/items/0/id"))))
        )),
        (status = 400, description = "A malformed parameter", body = ErrorBody),
    )
)]
#[allow(dead_code)] // Declares the operation; the web layer answers it.
fn get_queue() {}

/// The feed of verified artifacts
///
/// The artifacts in object storage after a cursor, in publication order, each with the
/// iroh-blobs addresses of peers that hold it. What mirrors follow.
#[utoipa::path(
    get,
    path = "/verified",
    tag = "builds",
    params(FeedQuery),
    responses(
        (status = 200, description = "A page of the feed", body = FeedPage, links(
            ("artifact" = (operation_id = "get_artifact", parameters(("hash" = "$response.body#/items/0/hash")))),
            ("next" = (operation_id = "get_verified", parameters(("since" = "$response.body#/next"))))
        )),
        (status = 400, description = "A malformed parameter", body = ErrorBody),
    )
)]
#[allow(dead_code)] // Declares the operation; the web layer answers it.
fn get_verified() {}

/// This document
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document of this API", body = OpenApiDocument))
)]
#[allow(dead_code)] // Declares the operation; the web layer answers it.
fn get_openapi() {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::Value;

    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes_with_their_parameters() {
        let doc = serde_json::to_value(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
        let mut routes = crate::routes::ALL.to_vec();
        documented.sort_unstable();
        routes.sort_unstable();
        assert_eq!(documented, routes);
        for (path, item) in paths {
            let operation = &item["get"];
            let declared: Vec<&str> = operation["parameters"]
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
            // Every parameter has a real schema: a type and its rules.
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let schema = &parameter["schema"];
                assert!(schema["type"].is_string(), "{path}: {parameter}");
                assert!(
                    schema.get("pattern").is_some() || schema.get("maximum").is_some(),
                    "{path}: {parameter} has no rule"
                );
            }
            // Every answer is JSON with a schema; every error is the error body.
            for (status, response) in operation["responses"].as_object().unwrap() {
                let schema = &response["content"]["application/json"]["schema"];
                assert!(schema.is_object(), "{path} {status}: {response}");
                if status != "200" {
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/ErrorBody",
                        "{path} {status}"
                    );
                }
            }
        }
        // Links name operations that exist.
        let operations: Vec<&str> = paths
            .values()
            .filter_map(|item| item["get"]["operationId"].as_str())
            .collect();
        for item in paths.values() {
            for link in item["get"]["responses"]["200"]["links"]
                .as_object()
                .into_iter()
                .flat_map(|links| links.values())
            {
                let target = link["operationId"].as_str().unwrap();
                assert!(operations.contains(&target), "{target}");
            }
        }
        // Every referenced schema is in the components.
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referenced but missing"
            );
        }
        assert!(matches!(schemas["CrateName"]["pattern"], Value::String(_)));
        let task = &schemas["Task"];
        let required: Vec<&str> = task["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            required.contains(&"decided_at"),
            "nullable and always written"
        );
        assert_eq!(
            required.len(),
            task["properties"].as_object().unwrap().len()
        );
    }
}
