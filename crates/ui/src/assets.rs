//! The embedded files of the UI (`assets/`), their content types and content hashes.
//!
//! Hashes are FNV-1a 64 over the bytes, computed once on first use; the asset `version` is the
//! hash of every file together, so it changes whenever any file changes.

use std::sync::LazyLock;

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
    /// Hex FNV-1a 64 of `body`, used as the ETag.
    pub hash: &'static str,
}

macro_rules! files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("../assets/", $name)) as &[u8])),*]
    };
}

/// Every file under `/static/{version}/`. `index.html` is the shell and is served at page paths.
const FILES: &[(&str, &[u8])] = files![
    "index.html",
    "style.css",
    "app.js",
    "api.js",
    "format.js",
    "search.js",
    "scatter.js",
    "tracemodel.js",
    "trace.js",
    "timeline.js",
    "details.js",
    "minimap.js",
    "flame.js",
    "graph.js",
    "compare.js",
    "favicon.svg",
];

struct Table {
    assets: Vec<(&'static str, Asset)>,
    version: &'static str,
    shell: Shell,
}

/// The shell page with its asset URLs filled in.
pub struct Shell {
    pub body: Vec<u8>,
    pub hash: String,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let mut all = Vec::new();
    let assets = FILES
        .iter()
        .map(|&(name, body)| {
            all.extend_from_slice(name.as_bytes());
            all.extend_from_slice(body);
            let hash: &'static str = Box::leak(hex(fnv1a64(body)).into_boxed_str());
            let asset = Asset {
                body,
                content_type: content_type(name),
                hash,
            };
            (name, asset)
        })
        .collect();
    let version: &'static str = Box::leak(hex(fnv1a64(&all))[..12].to_owned().into_boxed_str());
    let index = FILES
        .iter()
        .find(|(name, _)| *name == "index.html")
        .map(|(_, body)| String::from_utf8_lossy(body).into_owned())
        .unwrap_or_default();
    let body = index
        .replace("{{static}}", &format!("/static/{version}"))
        .into_bytes();
    let hash = hex(fnv1a64(&body));
    Table {
        assets,
        version,
        shell: Shell { body, hash },
    }
});

/// The embedded file `name` (e.g. `app.js`), if there is one.
pub fn asset(name: &str) -> Option<Asset> {
    TABLE
        .assets
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
}

/// The current asset version: the path segment after `/static/`.
pub fn version() -> &'static str {
    TABLE.version
}

/// The app shell, asset URLs filled in.
pub fn shell() -> &'static Shell {
    &TABLE.shell
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn hex(v: u64) -> String {
    format!("{v:016x}")
}
