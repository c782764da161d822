//! Deciding what to build from a crate's `cargo metadata --no-deps`.
//!
//! A crate author can steer the build with `[package.metadata.buildsrs]`:
//!
//! ```toml
//! [package.metadata.buildsrs]
//! features = ["cli"]            # enabled on top of the defaults
//! no-default-features = false   # turn the default features off
//! binaries = ["tool"]           # build only these bin targets
//! targets = ["x86_64-unknown-linux-gnu"]  # the targets worth building
//! ```
//!
//! Unknown keys are reported as warnings in the build log, not errors: a typo should be
//! visible, but must not fail builds of crates written for a newer buildsrs. A binary whose
//! `required-features` are not enabled is left out, as `cargo build` would.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildPlan {
    /// The package name.
    pub package: String,
    /// The package version.
    pub version: String,
    /// Bin targets to build, sorted. Empty means "no binaries".
    pub binaries: Vec<String>,
    /// Features passed with `--features`, sorted.
    pub features: Vec<String>,
    /// Whether `--no-default-features` is passed.
    pub no_default_features: bool,
    /// Every feature that ends up enabled (for the attestation), sorted.
    pub enabled_features: Vec<String>,
    /// Targets the crate asks to be built for, when it says.
    pub targets: Option<Vec<String>>,
    /// The oldest Rust the crate says it builds with (`package.rust-version`).
    pub rust_version: Option<buildsrs_keys::RustRelease>,
    /// Things the author should know about (unknown metadata keys, skipped binaries).
    pub warnings: Vec<String>,
}

impl BuildPlan {
    /// Whether the crate wants to be built for `target` at all.
    pub fn wants_target(&self, target: &str) -> bool {
        self.targets
            .as_ref()
            .is_none_or(|targets| targets.iter().any(|t| t == target))
    }
}

/// Why the metadata could not be turned into a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `cargo metadata` output did not parse.
    #[error("cannot read cargo metadata: {0}")]
    Metadata(String),
    /// The metadata holds no package, or several.
    #[error("expected exactly one package in the crate, found {0}")]
    PackageCount(usize),
    /// `[package.metadata.buildsrs]` is malformed or contradicts the crate.
    #[error("[package.metadata.buildsrs]: {0}")]
    BadSettings(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Settings {
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    no_default_features: bool,
    binaries: Option<Vec<String>>,
    targets: Option<Vec<String>>,
}

const KNOWN_KEYS: &[&str] = &["features", "no-default-features", "binaries", "targets"];

/// Makes a plan from the JSON of `cargo metadata --no-deps --format-version 1`.
pub fn plan_from_metadata(json: &[u8]) -> Result<BuildPlan, PlanError> {
    let metadata = cargo_metadata::MetadataCommand::parse(
        std::str::from_utf8(json).map_err(|e| PlanError::Metadata(e.to_string()))?,
    )
    .map_err(|e| PlanError::Metadata(e.to_string()))?;
    let [package] = metadata.packages.as_slice() else {
        return Err(PlanError::PackageCount(metadata.packages.len()));
    };

    let mut warnings = Vec::new();
    let settings = match package.metadata.get("buildsrs") {
        None | Some(serde_json::Value::Null) => Settings::default(),
        Some(value) => {
            if let Some(table) = value.as_object() {
                for key in table.keys().filter(|k| !KNOWN_KEYS.contains(&k.as_str())) {
                    warnings.push(format!(
                        "warning: unknown key `{key}` in [package.metadata.buildsrs] (known: {})",
                        KNOWN_KEYS.join(", ")
                    ));
                }
            }
            let mut known = value.clone();
            if let Some(table) = known.as_object_mut() {
                table.retain(|k, _| KNOWN_KEYS.contains(&k.as_str()));
            }
            serde_json::from_value(known).map_err(|e| PlanError::BadSettings(e.to_string()))?
        }
    };

    let declared: BTreeMap<String, Vec<String>> = package
        .features
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for feature in &settings.features {
        if !declared.contains_key(feature) && !is_optional_dependency(package, feature) {
            return Err(PlanError::BadSettings(format!(
                "feature `{feature}` is not declared by the crate"
            )));
        }
    }
    let enabled = enabled_features(&declared, &settings.features, !settings.no_default_features);

    let all_bins: Vec<&cargo_metadata::Target> =
        package.targets.iter().filter(|t| t.is_bin()).collect();
    if let Some(wanted) = &settings.binaries {
        for name in wanted {
            if !all_bins.iter().any(|t| &t.name == name) {
                return Err(PlanError::BadSettings(format!(
                    "binary `{name}` is not a bin target of the crate"
                )));
            }
        }
    }
    let mut binaries = Vec::new();
    for target in all_bins {
        if settings
            .binaries
            .as_ref()
            .is_some_and(|wanted| !wanted.contains(&target.name))
        {
            continue;
        }
        let missing: Vec<&String> = target
            .required_features
            .iter()
            .filter(|f| !enabled.contains(*f))
            .collect();
        if missing.is_empty() {
            binaries.push(target.name.clone());
        } else {
            warnings.push(format!(
                "skipping binary `{}`: it requires features {missing:?} that are not enabled",
                target.name
            ));
        }
    }
    binaries.sort();
    binaries.dedup();
    let mut features = settings.features.clone();
    features.sort();
    features.dedup();
    Ok(BuildPlan {
        package: package.name.to_string(),
        version: package.version.to_string(),
        binaries,
        features,
        no_default_features: settings.no_default_features,
        enabled_features: enabled.into_iter().collect(),
        targets: settings.targets,
        // Cargo parsed it already (into semver's type); carry it as the one release type.
        rust_version: package
            .rust_version
            .as_ref()
            .map(|v| buildsrs_keys::RustRelease {
                major: v.major,
                minor: v.minor,
                patch: v.patch,
            }),
        warnings,
    })
}

fn is_optional_dependency(package: &cargo_metadata::Package, name: &str) -> bool {
    package
        .dependencies
        .iter()
        .any(|d| d.optional && d.rename.as_deref().unwrap_or(&d.name) == name)
}

/// The closure of the requested features (and `default`) over the crate's feature table.
/// Entries that enable dependency features (`dep:x`, `x/y`, `x?/y`) are not features of
/// this crate and are not followed.
fn enabled_features(
    declared: &BTreeMap<String, Vec<String>>,
    requested: &[String],
    with_default: bool,
) -> BTreeSet<String> {
    let mut pending: Vec<String> = requested.to_vec();
    if with_default && declared.contains_key("default") {
        pending.push("default".to_owned());
    }
    let mut enabled = BTreeSet::new();
    while let Some(feature) = pending.pop() {
        if !enabled.insert(feature.clone()) {
            continue;
        }
        for implied in declared.get(&feature).into_iter().flatten() {
            if !implied.contains(':') && !implied.contains('/') {
                pending.push(implied.clone());
            }
        }
    }
    enabled
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal `cargo metadata` JSON for one package.
    fn metadata(features: &str, targets: &str, buildsrs: &str) -> Vec<u8> {
        format!(
            r#"{{"packages":[{{"name":"demo","version":"1.0.0","id":"demo 1.0.0","license":null,
            "license_file":null,"description":null,"source":null,"dependencies":[],
            "targets":[{targets}],"features":{{{features}}},"manifest_path":"/x/Cargo.toml",
            "metadata":{buildsrs},"publish":null,"authors":[],"categories":[],"keywords":[],
            "readme":null,"repository":null,"homepage":null,"documentation":null,
            "edition":"2021","links":null,"default_run":null,"rust_version":null}}],
            "workspace_members":["demo 1.0.0"],"workspace_default_members":["demo 1.0.0"],
            "resolve":null,"target_directory":"/x/target","version":1,"workspace_root":"/x",
            "metadata":null}}"#
        )
        .into_bytes()
    }

    fn bin(name: &str, required: &str) -> String {
        format!(
            r#"{{"kind":["bin"],"crate_types":["bin"],"name":"{name}","src_path":"/x/src/{name}.rs",
            "edition":"2021","doc":true,"doctest":false,"test":true,"required-features":[{required}]}}"#
        )
    }

    fn lib() -> String {
        r#"{"kind":["lib"],"crate_types":["lib"],"name":"demo","src_path":"/x/src/lib.rs",
        "edition":"2021","doc":true,"doctest":true,"test":true}"#
            .to_owned()
    }

    #[test]
    fn every_bin_without_settings() {
        let json = metadata(
            "",
            &format!("{},{},{}", lib(), bin("b", ""), bin("a", "")),
            "null",
        );
        let plan = plan_from_metadata(&json).unwrap();
        assert_eq!(plan.binaries, ["a", "b"]);
        assert!(plan.features.is_empty() && !plan.no_default_features);
        assert!(plan.wants_target("x86_64-unknown-linux-gnu"));
    }

    #[test]
    fn lib_only_has_no_binaries() {
        let plan = plan_from_metadata(&metadata("", &lib(), "null")).unwrap();
        assert!(plan.binaries.is_empty());
    }

    #[test]
    fn settings_choose_features_binaries_and_targets() {
        let features = r#""default":["fast"],"fast":[],"cli":["dep:clap"],"extra":["fast"]"#;
        let targets = format!(
            "{},{},{}",
            bin("tool", r#""cli""#),
            bin("other", ""),
            bin("gated", r#""nope""#)
        );
        let settings = r#"{"buildsrs":{"features":["cli","extra"],"binaries":["tool","gated"],
            "targets":["x86_64-unknown-linux-gnu"],"colour":"blue"}}"#;
        let plan = plan_from_metadata(&metadata(features, &targets, settings)).unwrap();
        assert_eq!(plan.binaries, ["tool"]);
        assert_eq!(plan.features, ["cli", "extra"]);
        assert_eq!(plan.enabled_features, ["cli", "default", "extra", "fast"]);
        assert!(plan.wants_target("x86_64-unknown-linux-gnu"));
        assert!(!plan.wants_target("aarch64-unknown-linux-gnu"));
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("unknown key `colour`"))
        );
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.contains("skipping binary `gated`"))
        );
    }

    #[test]
    fn no_default_features_drops_the_defaults() {
        let features = r#""default":["fast"],"fast":[]"#;
        let settings = r#"{"buildsrs":{"no-default-features":true}}"#;
        let plan =
            plan_from_metadata(&metadata(features, &bin("t", r#""fast""#), settings)).unwrap();
        assert!(plan.no_default_features);
        assert!(
            plan.binaries.is_empty(),
            "t requires `fast`, which is now off"
        );
    }

    #[test]
    fn bad_settings_are_errors() {
        let cases = [
            r#"{"buildsrs":{"features":["missing"]}}"#,
            r#"{"buildsrs":{"binaries":["missing"]}}"#,
            r#"{"buildsrs":{"features":"cli"}}"#,
        ];
        for settings in cases {
            let json = metadata(r#""cli":[]"#, &bin("t", ""), settings);
            assert!(
                matches!(plan_from_metadata(&json), Err(PlanError::BadSettings(_))),
                "{settings}"
            );
        }
        assert!(matches!(
            plan_from_metadata(b"{}"),
            Err(PlanError::Metadata(_))
        ));
    }
}
