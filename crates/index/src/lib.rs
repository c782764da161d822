//! The registry index follower (work in progress).
