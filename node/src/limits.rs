//! Which build limits hold on this machine, and by what.
//!
//! A volunteer must know what a hostile crate can do to their machine, so `buildsrs-node
//! run` states every limit and what enforces it (a cgroup, the sandbox's watchdog, an rlimit)
//! before it takes a job, and refuses to start when builds would run without a process,
//! memory or disk limit, unless told `--allow-unlimited-builds`.

use buildsrs_sandbox::SandboxCapabilities;

use crate::datadir::LimitsConfig;

/// One limit as this node applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enforced {
    /// What is limited.
    pub name: &'static str,
    /// The limit and what enforces it; `None` when builds run without it.
    pub how: Option<String>,
}

/// The limits of this node's builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsReport {
    /// Every limit, in a fixed order.
    pub limits: Vec<Enforced>,
}

/// What a build is limited by, given the configured `limits` and what the sandbox found it
/// can enforce here.
pub fn report(limits: &LimitsConfig, capabilities: &SandboxCapabilities) -> LimitsReport {
    let tree = |kernel: bool, kernel_name: &str| {
        if kernel {
            Some(kernel_name.to_owned())
        } else if capabilities.watchdog {
            Some("the sandbox's watchdog, checked every 100 ms".to_owned())
        } else {
            None
        }
    };
    let positive = |value: u64| (value > 0).then_some(value);
    let memory = positive(limits.memory_mib).and_then(|mib| {
        tree(capabilities.memory_cgroup, "a memory cgroup")
            .map(|by| format!("{mib} MiB for the whole build ({by})"))
    });
    let processes = positive(limits.processes).and_then(|n| {
        tree(capabilities.pids_cgroup, "a pids cgroup")
            .map(|by| format!("{n} processes and threads ({by})"))
    });
    let disk = positive(limits.disk_mib).map(|mib| {
        format!(
            "{mib} MiB written per build phase (the sandbox's watchdog), and {} MiB for each \
             in-memory filesystem (HOME, /tmp, /dev/shm)",
            limits.tmpfs_mib
        )
    });
    LimitsReport {
        limits: vec![
            Enforced {
                name: "memory",
                how: memory,
            },
            Enforced {
                name: "processes",
                how: processes,
            },
            Enforced {
                name: "disk",
                how: disk,
            },
            Enforced {
                name: "file size",
                how: Some(format!("{} MiB per file (rlimit)", limits.file_size_mib)),
            },
            Enforced {
                name: "wall clock",
                how: Some(format!("{} s per build phase", limits.wall_clock_secs)),
            },
        ],
    }
}

impl LimitsReport {
    /// The limits builds would run without, of those a node must have.
    pub fn missing(&self) -> Vec<&'static str> {
        self.limits
            .iter()
            .filter(|limit| limit.how.is_none())
            .map(|limit| limit.name)
            .collect()
    }

    /// One line per limit, for the log.
    pub fn lines(&self) -> Vec<String> {
        self.limits
            .iter()
            .map(|limit| match &limit.how {
                Some(how) => format!("{}: {how}", limit.name),
                None => format!("{}: NONE", limit.name),
            })
            .collect()
    }

    /// An error naming what is missing, unless nothing is or the volunteer allowed it.
    pub fn require_all(&self, allow_unlimited: bool) -> anyhow::Result<()> {
        let missing = self.missing();
        if missing.is_empty() || allow_unlimited {
            return Ok(());
        }
        anyhow::bail!(
            "builds would run without a {} limit here: a hostile crate could exhaust this \
             machine. Set the limit in the node's config.toml ([limits]), make cgroups or \
             /proc available, or start with --allow-unlimited-builds to accept the risk",
            missing.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capabilities(cgroups: bool, watchdog: bool) -> SandboxCapabilities {
        SandboxCapabilities {
            strategy: "bubblewrap",
            isolated: true,
            bwrap_version: None,
            memory_cgroup: cgroups,
            pids_cgroup: cgroups,
            watchdog,
            notes: Vec::new(),
        }
    }

    #[test]
    fn names_what_enforces_each_limit() {
        let config = LimitsConfig::default();
        let with_cgroups = report(&config, &capabilities(true, true));
        assert!(with_cgroups.missing().is_empty());
        assert!(with_cgroups.lines()[0].contains("memory cgroup"));
        let watched = report(&config, &capabilities(false, true));
        assert!(watched.missing().is_empty());
        assert!(
            watched.lines()[0].contains("watchdog"),
            "{:?}",
            watched.lines()
        );
        assert!(watched.require_all(false).is_ok());
    }

    #[test]
    fn refuses_to_run_unlimited_unless_allowed() {
        let blind = report(&LimitsConfig::default(), &capabilities(false, false));
        assert_eq!(blind.missing(), ["memory", "processes"]);
        let error = blind.require_all(false).expect_err("refused");
        assert!(error.to_string().contains("memory, processes"), "{error}");
        assert!(blind.require_all(true).is_ok());

        let no_disk = LimitsConfig {
            disk_mib: 0,
            ..LimitsConfig::default()
        };
        let report = report(&no_disk, &capabilities(true, true));
        assert_eq!(report.missing(), ["disk"]);
        assert!(report.lines().contains(&"disk: NONE".to_owned()));
    }
}
