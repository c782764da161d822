//! The `buildsrs-keys` binary, driven as a user would: files on disk, exit codes, output.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Result;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn keys(args: &[&str]) -> Result<Run> {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_buildsrs-keys"))
        .args(args)
        .output()?;
    Ok(Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout)?,
        stderr: String::from_utf8(stderr)?,
    })
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A directory with three builder keys, a keyring trusting them, and an artifact.
struct Scene {
    dir: tempfile::TempDir,
    keyring_lines: Vec<String>,
}

impl Scene {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut keyring_lines = Vec::new();
        for name in ["alice", "bob", "carol"] {
            let key = dir.path().join(format!("{name}.key"));
            let run = keys(&["generate", "--out", s(&key)])?;
            assert_eq!(run.code, 0, "{}", run.stderr);
            keyring_lines.push(run.stdout.trim().to_owned());
        }
        fs::write(
            dir.path().join("rg.tar.zst"),
            b"pretend this is a release archive",
        )?;
        let scene = Self { dir, keyring_lines };
        scene.write_keyring(&scene.keyring_lines.join("\n"))?;
        Ok(scene)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_keyring(&self, text: &str) -> Result<()> {
        Ok(fs::write(
            self.path("keyring"),
            format!("# test keyring\n{text}\n"),
        )?)
    }

    fn attest(&self, who: &str, extra: &[&str]) -> Result<Run> {
        let key = self.path(&format!("{who}.key"));
        let artifact = self.path("rg.tar.zst");
        let bundle = self.path("rg.tar.zst.buildsrs.json");
        let mut args = vec![
            "attest",
            "--key",
            s(&key),
            "--artifact",
            s(&artifact),
            "--crate",
            "ripgrep",
            "--version",
            "14.1.1",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--toolchain",
            "1.95.0/59807616e/x86_64-unknown-linux-gnu",
            "--bundle",
            s(&bundle),
        ];
        args.extend_from_slice(extra);
        keys(&args)
    }

    fn verify(&self, threshold: &str, extra: &[&str]) -> Result<Run> {
        let artifact = self.path("rg.tar.zst");
        let keyring = self.path("keyring");
        let mut args = vec![
            "verify",
            s(&artifact),
            "--keyring",
            s(&keyring),
            "--threshold",
            threshold,
        ];
        args.extend_from_slice(extra);
        keys(&args)
    }

    fn attest_all(&self) -> Result<()> {
        for who in ["alice", "bob", "carol"] {
            let run = self.attest(who, &[])?;
            assert_eq!(run.code, 0, "{}", run.stderr);
        }
        Ok(())
    }
}

#[test]
fn generate_writes_a_private_key_and_prints_its_keyring_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("node1.key");
    let run = keys(&["generate", "--out", s(&key)])?;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::read(&key)?.len(), 32);
    let line = run.stdout.trim();
    assert!(
        line.starts_with("ed25519:") && line.ends_with(" node1"),
        "{line}"
    );
    buildsrs_keys::Keyring::parse(line)?;

    let again = keys(&["generate", "--out", s(&key)])?;
    assert_eq!(again.code, 2);
    assert!(
        again.stderr.contains("refusing to overwrite"),
        "{}",
        again.stderr
    );
    Ok(())
}

#[test]
fn show_prints_the_same_key_the_keyring_line_has() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("n.key");
    let line = keys(&["generate", "--out", s(&key), "--name", "n"])?.stdout;
    let run = keys(&["show", "--key", s(&key), "--json"])?;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let shown: serde_json::Value = serde_json::from_str(&run.stdout)?;
    let public_key = shown["public_key"].as_str().unwrap();
    assert!(line.starts_with(public_key));
    let identity = buildsrs_keys::Identity::load(&key)?;
    assert_eq!(shown["peer_id"], identity.peer_id().to_string());
    assert_eq!(shown["endpoint_id"], identity.endpoint_id().to_string());
    assert_eq!(shown["fingerprint"], identity.fingerprint().to_string());

    let text = keys(&["show", "--key", s(&key)])?;
    assert!(text.stdout.contains("peer id:") && text.stdout.contains(public_key));
    Ok(())
}

#[test]
fn a_key_file_readable_by_others_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("n.key");
    keys(&["generate", "--out", s(&key)])?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644))?;
    let run = keys(&["show", "--key", s(&key)])?;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("too open"), "{}", run.stderr);
    Ok(())
}

#[test]
fn attest_then_verify_with_a_threshold() -> Result<()> {
    let scene = Scene::new()?;
    scene.attest_all()?;
    let bundle = buildsrs_keys::Bundle::load(&scene.path("rg.tar.zst.buildsrs.json"))?;
    assert_eq!(bundle.attestations.len(), 3);

    let run = scene.verify("3", &["--crate", "ripgrep", "--version", "14.1.1"])?;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .starts_with("VERIFIED: 3 trusted builder(s) of 3 required attest ripgrep 14.1.1")
    );
    for name in ["alice", "bob", "carol"] {
        assert!(
            run.stdout.contains(&format!("counted: {name}")),
            "{}",
            run.stdout
        );
    }

    let json = scene.verify("2", &["--json"])?;
    assert_eq!(json.code, 0);
    let report: serde_json::Value = serde_json::from_str(&json.stdout)?;
    assert_eq!(report["verified"], true);
    assert_eq!(report["counted"], 3);
    Ok(())
}

#[test]
fn the_bundle_defaults_to_the_file_name_plus_suffix_and_can_be_given() -> Result<()> {
    let scene = Scene::new()?;
    scene.attest_all()?;
    fs::rename(
        scene.path("rg.tar.zst.buildsrs.json"),
        scene.path("elsewhere.json"),
    )?;
    assert_eq!(scene.verify("1", &[])?.code, 2);
    let elsewhere = scene.path("elsewhere.json");
    assert_eq!(scene.verify("1", &["--bundle", s(&elsewhere)])?.code, 0);
    Ok(())
}

#[test]
fn not_verified_cases_exit_1_and_say_why() -> Result<()> {
    let scene = Scene::new()?;
    scene.attest_all()?;

    let run = scene.verify("4", &[])?;
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .starts_with("NOT VERIFIED: 3 trusted builder(s) counted, 4 required")
    );

    let run = scene.verify("1", &["--target", "aarch64-apple-darwin"])?;
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("target is \"x86_64-unknown-linux-gnu\", expected \"aarch64-apple-darwin\"")
    );

    // A keyring that lacks carol and revokes bob.
    let lines = &scene.keyring_lines;
    scene.write_keyring(&format!("{}\n{} revoked", lines[0], lines[1]))?;
    let run = scene.verify("2", &[])?;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("rejected: bob"), "{}", run.stdout);
    assert!(run.stdout.contains("signer is revoked"));
    assert!(run.stdout.contains("signer is not in the keyring"));
    assert_eq!(scene.verify("1", &[])?.code, 0);
    Ok(())
}

#[test]
fn a_changed_file_never_verifies() -> Result<()> {
    let scene = Scene::new()?;
    scene.attest_all()?;
    let artifact = scene.path("rg.tar.zst");
    let mut bytes = fs::read(&artifact)?;
    bytes[0] ^= 0x20;
    fs::write(&artifact, &bytes)?;
    let run = scene.verify("1", &[])?;
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("the bundle is for different bytes"),
        "{}",
        run.stdout
    );

    fs::write(&artifact, b"something else entirely")?;
    assert_eq!(scene.verify("1", &[])?.code, 1);
    Ok(())
}

#[test]
fn a_tampered_bundle_does_not_verify() -> Result<()> {
    let scene = Scene::new()?;
    scene.attest_all()?;
    let path = scene.path("rg.tar.zst.buildsrs.json");
    let text = fs::read_to_string(&path)?;
    // Claim a different version in every statement: all signatures break.
    fs::write(&path, text.replace("\"14.1.1\"", "\"14.1.2\""))?;
    let run = scene.verify("1", &[])?;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout.matches("signature does not verify").count(),
        3,
        "{}",
        run.stdout
    );
    Ok(())
}

#[test]
fn a_builder_attesting_twice_counts_once() -> Result<()> {
    let scene = Scene::new()?;
    assert_eq!(scene.attest("alice", &[])?.code, 0);
    assert_eq!(scene.attest("alice", &["--feature", "extra"])?.code, 0);
    let run = scene.verify("2", &[])?;
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("signer already counted once"),
        "{}",
        run.stdout
    );
    Ok(())
}

#[test]
fn usage_and_input_errors_exit_2() -> Result<()> {
    let scene = Scene::new()?;
    scene.attest_all()?;

    let run = scene.verify("0", &[])?;
    assert_eq!(run.code, 2, "threshold 0 is a usage error");

    fs::write(
        scene.path("keyring"),
        format!("{}\nnot-a-key bob\n", scene.keyring_lines[0]),
    )?;
    let run = scene.verify("1", &[])?;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("keyring line 2"), "{}", run.stderr);
    scene.write_keyring(&scene.keyring_lines.join("\n"))?;

    let bundle = scene.path("rg.tar.zst.buildsrs.json");
    fs::write(&bundle, "{\"buildsrs_bundle\": 1, \"artifact\": 5}")?;
    let run = scene.verify("1", &[])?;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("malformed bundle"), "{}", run.stderr);

    let missing = scene.path("missing");
    let run = keys(&[
        "verify",
        s(&missing),
        "--keyring",
        s(&scene.path("keyring")),
        "--threshold",
        "1",
        "--bundle",
        s(&bundle),
    ])?;
    assert_eq!(run.code, 2);
    Ok(())
}

#[test]
fn attest_refuses_a_bundle_of_another_artifact_and_changes_nothing() -> Result<()> {
    let scene = Scene::new()?;
    scene.attest_all()?;
    let bundle = scene.path("rg.tar.zst.buildsrs.json");
    let before = fs::read(&bundle)?;
    fs::write(scene.path("rg.tar.zst"), b"a different build")?;
    let run = scene.attest("alice", &[])?;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("but the bundle is for"),
        "{}",
        run.stderr
    );
    assert_eq!(fs::read(&bundle)?, before);
    Ok(())
}

#[test]
fn attest_reads_the_toolchain_from_rustc_when_not_given() -> Result<()> {
    let scene = Scene::new()?;
    let key = scene.path("alice.key");
    let artifact = scene.path("rg.tar.zst");
    let bundle = scene.path("b.json");
    let run = keys(&[
        "attest",
        "--key",
        s(&key),
        "--artifact",
        s(&artifact),
        "--crate",
        "ripgrep",
        "--version",
        "14.1.1",
        "--target",
        "x86_64-unknown-linux-gnu",
        "--bundle",
        s(&bundle),
        "--build-started",
        "2026-01-01T00:00:00Z",
        "--build-finished",
        "2026-01-01T00:10:00Z",
    ])?;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bundle = buildsrs_keys::Bundle::load(&bundle)?;
    let statement =
        buildsrs_keys::SignedAttestation::from_value(&bundle.attestations[0])?.statement;
    let rustc = Command::new("rustc").arg("-vV").output()?;
    let expected =
        buildsrs_keys::Toolchain::from_rustc_verbose_version(&String::from_utf8(rustc.stdout)?)?;
    assert_eq!(statement.toolchain, expected);
    assert_eq!(statement.build_finished - statement.build_started, 600);
    Ok(())
}

#[test]
fn attest_refuses_invalid_statement_fields() -> Result<()> {
    let scene = Scene::new()?;
    let key = scene.path("alice.key");
    let artifact = scene.path("rg.tar.zst");
    let bundle = scene.path("b.json");
    let run = keys(&[
        "attest",
        "--key",
        s(&key),
        "--artifact",
        s(&artifact),
        "--crate",
        "rip grep",
        "--version",
        "14.1",
        "--target",
        "x86_64-unknown-linux-gnu",
        "--toolchain",
        "1/2/x86_64",
        "--bundle",
        s(&bundle),
    ])?;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not a crate name"), "{}", run.stderr);
    assert!(!bundle.exists());
    Ok(())
}

#[test]
fn verify_holds_attestations_to_the_source_the_user_read() -> Result<()> {
    let scene = Scene::new()?;
    let honest = "aa".repeat(32);
    let trojan = "bb".repeat(32);
    // Alice and Bob attest the source crates.io lists; Carol (colluding) another one, on the
    // registry she says it came from.
    for who in ["alice", "bob"] {
        let run = scene.attest(who, &["--source-sha256", &honest])?;
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let run = scene.attest(
        "carol",
        &[
            "--source-sha256",
            &trojan,
            "--registry",
            "sparse+http://127.0.0.1:9/index",
        ],
    )?;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ripgrep = ["--crate", "ripgrep", "--version", "14.1.1"];

    let run = scene.verify("2", &[&ripgrep[..], &["--source-sha256", &honest]].concat())?;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = scene.verify("3", &[&ripgrep[..], &["--source-sha256", &honest]].concat())?;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("registry is \"sparse+http://127.0.0.1:9/index/\""),
        "{}",
        run.stdout
    );
    let run = scene.verify("1", &[&ripgrep[..], &["--source-sha256", &trojan]].concat())?;
    assert_eq!(
        run.code, 1,
        "the trojan's checksum on crates.io: {}",
        run.stdout
    );

    // A Cargo.lock that locked ripgrep from crates.io with the honest checksum.
    let lock = scene.path("Cargo.lock");
    fs::write(
        &lock,
        format!(
            "version = 4\n\n[[package]]\nname = \"ripgrep\"\nversion = \"14.1.1\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
             checksum = \"{honest}\"\n"
        ),
    )?;
    let run = scene.verify("2", &[&ripgrep[..], &["--cargo-lock", s(&lock)]].concat())?;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = scene.verify("3", &[&ripgrep[..], &["--cargo-lock", s(&lock)]].concat())?;
    assert_eq!(run.code, 1, "{}", run.stdout);

    // A lock file without the crate is a usage error, not a verdict.
    let run = scene.verify(
        "1",
        &[
            "--crate",
            "ripgrep",
            "--version",
            "1.0.0",
            "--cargo-lock",
            s(&lock),
        ],
    )?;
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("no package ripgrep 1.0.0"),
        "{}",
        run.stderr
    );
    Ok(())
}
