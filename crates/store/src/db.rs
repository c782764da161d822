//! The small SQL interface both backends implement, so that every operation is written once.
//!
//! An operation is an `async fn` over `&mut dyn Db`, run inside one transaction that the
//! backend opens and commits (or rolls back on error). SQL is written in the common subset of
//! SQLite and Postgres with `$1`-style parameters; the few places that differ (row locks,
//! array parameters) ask [`Db::dialect`].
//!
//! Parameters are [`Param`]s, results come back as [`Row`]s of [`Cell`]s. All integers are
//! `i64` (`BIGINT` in Postgres, `INTEGER` in SQLite) and booleans are `BOOLEAN`/`0|1`, so the
//! two backends never disagree about types.

use async_trait::async_trait;
use buildsrs_domain::{
    ArtifactId, Blake3Hash, BuilderName, CrateName, CrateVersion, LeaseId, Operator, PublicKey,
    Sha256Digest, TargetTriple, TaskId, ToolchainRelease,
};
use futures::future::BoxFuture;
use jiff::Timestamp;

use crate::error::{Result, StoreError};
use crate::policy::Policy;

/// An operation as the backends run it: a plain function (so Postgres can retry it) over an
/// open transaction, the policy and the operation's arguments.
pub(crate) type Op<A, T> =
    for<'a> fn(&'a mut dyn Db, &'a Policy, &'a A) -> BoxFuture<'a, Result<T>>;

/// Which SQL dialect a [`Db`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A query parameter.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Param<'a> {
    Null,
    Int(i64),
    Bool(bool),
    Text(&'a str),
    Blob(&'a [u8]),
    /// Postgres only: a `BIGINT[]`.
    IntArray(&'a [i64]),
    /// Postgres only: a `TEXT[]`.
    TextArray(&'a [String]),
    /// Postgres only: a `BOOLEAN[]`.
    BoolArray(&'a [bool]),
    /// Postgres only: a `TEXT[]` that may hold NULLs.
    OptTextArray(&'a [Option<String>]),
}

impl From<i64> for Param<'_> {
    fn from(value: i64) -> Self {
        Param::Int(value)
    }
}

impl From<u32> for Param<'_> {
    fn from(value: u32) -> Self {
        Param::Int(i64::from(value))
    }
}

impl From<bool> for Param<'_> {
    fn from(value: bool) -> Self {
        Param::Bool(value)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(value: &'a str) -> Self {
        Param::Text(value)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(value: &'a String) -> Self {
        Param::Text(value)
    }
}

/// The checked strings of the domain go in as their text.
macro_rules! text_param {
    ($($name:ty),*) => {$(
        impl<'a> From<&'a $name> for Param<'a> {
            fn from(value: &'a $name) -> Self {
                Param::Text(value.as_str())
            }
        }
    )*};
}
text_param!(
    CrateName,
    CrateVersion,
    TargetTriple,
    ToolchainRelease,
    BuilderName,
    Operator
);

impl From<TaskId> for Param<'_> {
    fn from(value: TaskId) -> Self {
        Param::Int(value.0)
    }
}

impl From<LeaseId> for Param<'_> {
    fn from(value: LeaseId) -> Self {
        Param::Int(value.0)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(value: &'a [u8]) -> Self {
        Param::Blob(value)
    }
}

impl<'a> From<&'a Vec<u8>> for Param<'a> {
    fn from(value: &'a Vec<u8>) -> Self {
        Param::Blob(value)
    }
}

impl<'a> From<&'a [i64]> for Param<'a> {
    fn from(value: &'a [i64]) -> Self {
        Param::IntArray(value)
    }
}

impl<'a> From<&'a Vec<i64>> for Param<'a> {
    fn from(value: &'a Vec<i64>) -> Self {
        Param::IntArray(value)
    }
}

impl<'a> From<&'a Vec<String>> for Param<'a> {
    fn from(value: &'a Vec<String>) -> Self {
        Param::TextArray(value)
    }
}

impl<'a> From<&'a Vec<bool>> for Param<'a> {
    fn from(value: &'a Vec<bool>) -> Self {
        Param::BoolArray(value)
    }
}

impl<'a> From<&'a Vec<Option<String>>> for Param<'a> {
    fn from(value: &'a Vec<Option<String>>) -> Self {
        Param::OptTextArray(value)
    }
}

impl From<Timestamp> for Param<'_> {
    fn from(value: Timestamp) -> Self {
        Param::Int(value.as_millisecond())
    }
}

impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Param::Null, Into::into)
    }
}

/// Builds a `&[Param]` from expressions.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::db::Param::from($value)),*][..]
    };
}
pub(crate) use params;

/// A value read from a row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A result row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row(pub Vec<Cell>);

impl Row {
    /// Column `index` as `T`.
    pub(crate) fn get<T: FromCell>(&self, index: usize) -> Result<T> {
        let cell = self
            .0
            .get(index)
            .ok_or_else(|| StoreError::corrupt(format!("row has no column {index}")))?;
        T::from_cell(cell).map_err(|expected| {
            StoreError::corrupt(format!("column {index}: expected {expected}, got {cell:?}"))
        })
    }
}

/// Conversion from a [`Cell`]; the error names what was expected.
pub(crate) trait FromCell: Sized {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str>;
}

impl FromCell for i64 {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
        match cell {
            Cell::Int(v) => Ok(*v),
            _ => Err("an integer"),
        }
    }
}

impl FromCell for u64 {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
        i64::from_cell(cell).and_then(|v| u64::try_from(v).map_err(|_| "a non-negative integer"))
    }
}

impl FromCell for u32 {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
        i64::from_cell(cell)
            .and_then(|v| u32::try_from(v).map_err(|_| "a small non-negative integer"))
    }
}

impl FromCell for bool {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
        match cell {
            Cell::Int(0) => Ok(false),
            Cell::Int(1) => Ok(true),
            _ => Err("a boolean"),
        }
    }
}

impl FromCell for String {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
        match cell {
            Cell::Text(v) => Ok(v.clone()),
            _ => Err("text"),
        }
    }
}

impl FromCell for Vec<u8> {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
        match cell {
            Cell::Blob(v) => Ok(v.clone()),
            _ => Err("bytes"),
        }
    }
}

impl FromCell for Timestamp {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
        i64::from_cell(cell)
            .and_then(|ms| Timestamp::from_millisecond(ms).map_err(|_| "a timestamp in range"))
    }
}

impl FromCell for PublicKey {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
        match cell {
            Cell::Text(v) => v.parse().map_err(|_| "a public key"),
            _ => Err("a public key"),
        }
    }
}

impl FromCell for Blake3Hash {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
        match cell {
            Cell::Text(v) => v.parse().map_err(|_| "a BLAKE3 hash"),
            _ => Err("a BLAKE3 hash"),
        }
    }
}

/// Domain values come out of their text column through their one parser: a row the rules
/// refuse is reported as corrupt, never handed on.
macro_rules! parsed_cell {
    ($($name:ty => $what:literal),*) => {$(
        impl FromCell for $name {
            fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
                match cell {
                    Cell::Text(v) => v.parse().map_err(|_| $what),
                    _ => Err($what),
                }
            }
        }
    )*};
}
parsed_cell!(
    CrateName => "a crate name",
    CrateVersion => "a crate version",
    TargetTriple => "a target triple",
    ToolchainRelease => "a toolchain release",
    Sha256Digest => "a SHA-256 digest",
    BuilderName => "a builder name",
    Operator => "an operator"
);

impl FromCell for TaskId {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
        i64::from_cell(cell).map(TaskId)
    }
}

impl FromCell for LeaseId {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
        i64::from_cell(cell).map(LeaseId)
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: &Cell) -> std::result::Result<Self, &'static str> {
        match cell {
            Cell::Null => Ok(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// Reads an artifact from a hash column and a size column, both null or both set.
pub(crate) fn artifact_at(row: &Row, hash: usize, size: usize) -> Result<Option<ArtifactId>> {
    let hash: Option<Blake3Hash> = row.get(hash)?;
    let size: Option<u64> = row.get(size)?;
    match (hash, size) {
        (Some(blake3), Some(size)) => Ok(Some(ArtifactId { blake3, size })),
        (None, None) => Ok(None),
        _ => Err(StoreError::corrupt(
            "artifact hash and size must both be set",
        )),
    }
}

/// One open transaction on either backend.
#[async_trait]
pub(crate) trait Db: Send {
    /// The SQL dialect.
    fn dialect(&self) -> Dialect;

    /// Runs a statement, returning the number of rows changed.
    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64>;

    /// Runs a query, returning all its rows.
    async fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>>;

    /// Runs a query that returns at most one row.
    async fn query_opt(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>> {
        let mut rows = self.query(sql, params).await?;
        if rows.len() > 1 {
            return Err(StoreError::corrupt(format!(
                "expected at most one row, got {}",
                rows.len()
            )));
        }
        Ok(rows.pop())
    }

    /// Runs a query that returns exactly one row.
    async fn query_one(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Row> {
        self.query_opt(sql, params)
            .await?
            .ok_or_else(|| StoreError::corrupt("expected one row, got none"))
    }

    /// `FOR UPDATE` on Postgres, where rows must be locked for read-modify-write; nothing on
    /// SQLite, where the whole database is locked by `BEGIN IMMEDIATE`.
    fn for_update(&self) -> &'static str {
        match self.dialect() {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }
}

/// Translates `$1`-style parameters to SQLite's `?1`. Our SQL holds no `$` elsewhere.
pub(crate) fn sqlite_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_translate_for_sqlite() {
        assert_eq!(
            sqlite_sql("SELECT $1, $12 FROM t WHERE a = $2"),
            "SELECT ?1, ?12 FROM t WHERE a = ?2"
        );
    }
}
