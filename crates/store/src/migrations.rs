//! Versioned schema migrations, one list per backend, applied in order at open.
//!
//! Each backend records applied versions in `schema_migrations` and applies the missing ones
//! in one transaction (on Postgres under an advisory lock, so coordinator processes starting
//! together do not race; on SQLite under `BEGIN IMMEDIATE`). A database whose version is
//! newer than this build knows is refused rather than used with the wrong schema.
//!
//! Migrations are append-only: never edit one that has shipped, add the next number.

/// One migration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// SQLite migrations.
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "lease_function",
        sql: include_str!("../migrations/sqlite/0002_lease_function.sql"),
    },
    Migration {
        version: 3,
        name: "publication_feed",
        sql: include_str!("../migrations/sqlite/0003_publication_feed.sql"),
    },
    Migration {
        version: 4,
        name: "drop_leases_builder_active",
        sql: include_str!("../migrations/sqlite/0004_drop_leases_builder_active.sql"),
    },
    Migration {
        version: 5,
        name: "crate_name_trigrams",
        sql: include_str!("../migrations/sqlite/0005_crate_name_trigrams.sql"),
    },
    Migration {
        version: 6,
        name: "planning",
        sql: include_str!("../migrations/sqlite/0006_planning.sql"),
    },
    Migration {
        version: 7,
        name: "outcome_kinds",
        sql: include_str!("../migrations/sqlite/0007_outcome_kinds.sql"),
    },
    Migration {
        version: 8,
        name: "download_url",
        sql: include_str!("../migrations/sqlite/0008_download_url.sql"),
    },
    Migration {
        version: 9,
        name: "lease_limits",
        sql: include_str!("../migrations/sqlite/0009_lease_limits.sql"),
    },
    Migration {
        version: 10,
        name: "operators",
        sql: include_str!("../migrations/sqlite/0010_operators.sql"),
    },
    Migration {
        version: 11,
        name: "publishing",
        sql: include_str!("../migrations/sqlite/0011_publishing.sql"),
    },
];

/// Postgres migrations.
pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "lease_function",
        sql: include_str!("../migrations/postgres/0002_lease_function.sql"),
    },
    Migration {
        version: 3,
        name: "publication_feed",
        sql: include_str!("../migrations/postgres/0003_publication_feed.sql"),
    },
    Migration {
        version: 4,
        name: "drop_leases_builder_active",
        sql: include_str!("../migrations/postgres/0004_drop_leases_builder_active.sql"),
    },
    Migration {
        version: 5,
        name: "crate_name_trigrams",
        sql: include_str!("../migrations/postgres/0005_crate_name_trigrams.sql"),
    },
    Migration {
        version: 6,
        name: "planning",
        sql: include_str!("../migrations/postgres/0006_planning.sql"),
    },
    Migration {
        version: 7,
        name: "outcome_kinds",
        sql: include_str!("../migrations/postgres/0007_outcome_kinds.sql"),
    },
    Migration {
        version: 8,
        name: "download_url",
        sql: include_str!("../migrations/postgres/0008_download_url.sql"),
    },
    Migration {
        version: 9,
        name: "lease_limits",
        sql: include_str!("../migrations/postgres/0009_lease_limits.sql"),
    },
    Migration {
        version: 10,
        name: "operators",
        sql: include_str!("../migrations/postgres/0010_operators.sql"),
    },
    Migration {
        version: 11,
        name: "publishing",
        sql: include_str!("../migrations/postgres/0011_publishing.sql"),
    },
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 11;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_lists_are_numbered_in_order_and_reach_the_same_version() {
        for list in [SQLITE, POSTGRES] {
            for (i, migration) in list.iter().enumerate() {
                assert_eq!(migration.version, i as i64 + 1);
            }
            assert_eq!(list.last().map(|m| m.version), Some(SCHEMA_VERSION));
        }
    }
}
