//! crates.io, the default registry: its index URL and how to recognise it. One definition for
//! every crate (the node's default registry and cache choice, the coordinator's default index,
//! the crates.io test group).

/// crates.io's sparse index, as cargo and crates-index spell it.
pub use buildsrs_keys::names::CRATES_IO_INDEX as INDEX;

/// The git index cargo knows crates.io by (lock files name it as their source).
pub use buildsrs_keys::names::CRATES_IO_GIT_INDEX as GIT_INDEX;

/// Whether a crates-index URL names crates.io (its sparse index, or the git index cargo
/// knows it by), whatever the trailing slash.
pub use buildsrs_keys::names::is_crates_io;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crates_io_is_recognised_by_either_index_url() {
        assert!(is_crates_io("sparse+https://index.crates.io/"));
        assert!(is_crates_io("sparse+https://index.crates.io"));
        assert!(is_crates_io(GIT_INDEX));
        assert!(!is_crates_io("sparse+http://127.0.0.1:7780/index/"));
        assert!(!is_crates_io("sparse+https://index.crates.io.example/"));
        assert!(!is_crates_io("sparse+https://index.crates.io/extra/"));
    }
}
