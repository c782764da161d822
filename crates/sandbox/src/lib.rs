//! The build sandbox (work in progress).
