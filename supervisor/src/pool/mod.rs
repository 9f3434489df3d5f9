//! The worker pool (being written).
