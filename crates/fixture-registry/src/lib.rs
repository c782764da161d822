//! A local fixture registry for tests (work in progress).
