//! Serves a fixture registry with every fixture crate published at 0.1.0, until Ctrl-C: for
//! poking at it by hand (`cargo install --index sparse+http://... hello-bin`, curl).
//!
//! ```text
//! cargo run -p buildsrs-fixture-registry --example serve
//! ```

use buildsrs_fixture_registry::{FixtureRegistry, ServeOptions, fixtures_dir};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = FixtureRegistry::start_with(ServeOptions {
        etag: true,
        last_modified: true,
        ..ServeOptions::default()
    })
    .await?;
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let published = registry.publish(name, "0.1.0")?;
        println!(
            "published {} {} sha256 {}",
            published.name, published.version, published.cksum
        );
    }
    println!("index: {}", registry.index_url());
    println!("files: {}", registry.dir().display());
    tokio::signal::ctrl_c().await?;
    registry.shutdown().await;
    Ok(())
}
