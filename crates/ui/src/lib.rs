//! The web UI's static files, embedded into the binary and served on the query port (being built).

/// Routes of the web UI. The query port merges these beside the API (`/api/...`).
pub fn router() -> axum::Router {
    axum::Router::new()
}
