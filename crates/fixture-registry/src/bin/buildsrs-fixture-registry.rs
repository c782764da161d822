//! `buildsrs-fixture-registry`: serves the bundled fixture crates as a registry on loopback
//! until SIGINT/SIGTERM, for the offline devnet and for trying nodes by hand.
//!
//! ```text
//! buildsrs-fixture-registry --addr 127.0.0.1:7780 --publish hello-bin@0.1.0 --publish multi-bin@0.1.0
//! ```
//! Prints the index URL (`sparse+http://ADDR/`) on stdout once it answers.

use std::net::SocketAddr;
use std::process::ExitCode;

use buildsrs_fixture_registry::{FixtureRegistry, ServeOptions};

fn usage() -> ExitCode {
    eprintln!(
        "usage: buildsrs-fixture-registry [--addr 127.0.0.1:PORT] [--publish FIXTURE@VERSION]..."
    );
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut publish = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(value)) => match value.parse() {
                Ok(value) => addr = value,
                Err(error) => {
                    eprintln!("error: --addr {value:?}: {error}");
                    return usage();
                }
            },
            ("--publish", Some(value)) => match value.split_once('@') {
                Some((name, version)) => publish.push((name.to_owned(), version.to_owned())),
                None => {
                    eprintln!("error: --publish {value:?}: expected FIXTURE@VERSION");
                    return usage();
                }
            },
            _ => return usage(),
        }
    }
    let registry = match FixtureRegistry::start_on(addr, ServeOptions::default()).await {
        Ok(registry) => registry,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    for (name, version) in &publish {
        if let Err(error) = registry.publish(name, version) {
            eprintln!("error: publishing {name} {version}: {error}");
            return ExitCode::from(2);
        }
        eprintln!("published {name} {version}");
    }
    println!("{}", registry.index_url());
    wait_for_signal().await;
    registry.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
