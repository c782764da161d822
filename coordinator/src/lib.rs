//! The coordinator (work in progress).
