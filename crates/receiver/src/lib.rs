//! Receivers (to be written).
