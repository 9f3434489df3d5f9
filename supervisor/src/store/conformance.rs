//! The conformance suite every store must pass (being written).
