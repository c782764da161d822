//! The coordinator job store (work in progress).
