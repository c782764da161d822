//! Prints the OpenAPI document of `/api/v1` (what `GET /api/v1/openapi.json` answers).

fn main() -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&buildsrs_api::openapi::document())?
    );
    Ok(())
}
