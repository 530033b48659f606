//! Query API (to be written).
