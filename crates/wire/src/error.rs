//! The one error type of this crate. Every variant says what is wrong and, where the input has a
//! structure, where (`resourceSpans[0].scopeSpans[1].spans[3].traceId`, `spans[2].id`), so a
//! receiver can put it straight into a 400 / INVALID_ARGUMENT answer.

/// Why a payload could not be decoded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes are not a valid protobuf message of the expected type (truncated, bad wire type, ...).
    #[error("malformed {format} protobuf: {message}")]
    Protobuf {
        format: &'static str,
        message: String,
    },
    /// The body is not JSON at all (syntax error, truncated, not UTF-8).
    #[error("malformed {format} JSON at line {line}, column {column}: {message}")]
    Json {
        format: &'static str,
        line: usize,
        column: usize,
        message: String,
    },
    /// The body is well-formed but a value has the wrong type or content.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl WireError {
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        WireError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Maps a `serde_json` syntax/IO error to [`WireError::Json`].
    pub(crate) fn json_syntax(format: &'static str, err: &serde_json::Error) -> Self {
        WireError::Json {
            format,
            line: err.line(),
            column: err.column(),
            message: strip_position(&err.to_string()),
        }
    }
}

/// serde_json appends " at line L column C" to its messages; the variant carries those apart.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}
