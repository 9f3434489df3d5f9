//! Host calls (being written).
