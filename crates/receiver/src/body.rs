//! Reading an HTTP request body safely: size limits before and after decompression,
//! `Content-Encoding` (gzip, deflate or zlib, zstd, identity) and `Content-Type` essence.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};

/// Why a body could not be read. Each maps to an HTTP status and a message naming the problem.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body decompresses to more than the limit of {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("could not read the request body: {0}")]
    Read(String),
    #[error("unsupported Content-Encoding {0:?} (supported: gzip, deflate, zlib, zstd, identity)")]
    UnsupportedEncoding(String),
    #[error("request body is not valid {encoding} data: {reason}")]
    Decompress {
        encoding: &'static str,
        reason: String,
    },
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } | BodyError::DecompressedTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            BodyError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::Read(_) | BodyError::Decompress { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads the whole body (at most `limit` bytes) and undoes its `Content-Encoding`.
pub(crate) async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let encoding = content_encoding(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let raw = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            BodyError::TooLarge { limit }
        } else {
            BodyError::Read(inner.to_string())
        }
    })?;
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => inflate(flate2::read::MultiGzDecoder::new(&raw[..]), "gzip", limit),
        Encoding::Deflate => inflate(flate2::read::ZlibDecoder::new(&raw[..]), "deflate", limit),
        Encoding::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::new(&raw[..]).map_err(|e| BodyError::Decompress {
                    encoding: "zstd",
                    reason: e.to_string(),
                })?;
            inflate(decoder, "zstd", limit)
        }
    }
}

enum Encoding {
    Identity,
    Gzip,
    /// HTTP's `deflate` is the zlib format; the OTel Collector's `zlib` compression sends it too.
    Deflate,
    Zstd,
}

fn content_encoding(headers: &HeaderMap) -> Result<Encoding, BodyError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let text = value
        .to_str()
        .map_err(|_| BodyError::UnsupportedEncoding(format!("{value:?}")))?
        .trim()
        .to_ascii_lowercase();
    match text.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "deflate" | "zlib" => Ok(Encoding::Deflate),
        "zstd" => Ok(Encoding::Zstd),
        _ => Err(BodyError::UnsupportedEncoding(text)),
    }
}

fn inflate(reader: impl Read, encoding: &'static str, limit: usize) -> Result<Bytes, BodyError> {
    let mut out = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Decompress {
            encoding,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(BodyError::DecompressedTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// The media type without parameters, lowercased (`application/json; charset=utf-8` →
/// `application/json`); `None` when the header is absent or unreadable.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or("").trim();
    Some(essence.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().unwrap());
        }
        h
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[tokio::test]
    async fn gzip_bodies_are_inflated() {
        let h = headers(&[(header::CONTENT_ENCODING, "gzip")]);
        let got = read(&h, Body::from(gzip(b"hello")), 100).await.unwrap();
        assert_eq!(&got[..], b"hello");
    }

    #[tokio::test]
    async fn zstd_and_zlib_bodies_are_decoded_and_bombs_refused() {
        let zstd = zstd::bulk::compress(b"hello", 3).unwrap();
        let h = headers(&[(header::CONTENT_ENCODING, "zstd")]);
        let got = read(&h, Body::from(zstd), 100).await.unwrap();
        assert_eq!(&got[..], b"hello");
        let bomb = zstd::bulk::compress(&vec![0u8; 100_000], 3).unwrap();
        assert!(bomb.len() < 100);
        let err = read(&h, Body::from(bomb), 1000).await.unwrap_err();
        assert!(matches!(
            err,
            BodyError::DecompressedTooLarge { limit: 1000 }
        ));
        let err = read(&h, Body::from(b"not zstd".to_vec()), 100)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not valid zstd data"), "{err}");

        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(b"hello").unwrap();
        let h = headers(&[(header::CONTENT_ENCODING, "zlib")]);
        let got = read(&h, Body::from(zlib.finish().unwrap()), 100)
            .await
            .unwrap();
        assert_eq!(&got[..], b"hello");
    }

    #[tokio::test]
    async fn a_gzip_bomb_is_refused_by_its_inflated_size() {
        let h = headers(&[(header::CONTENT_ENCODING, "gzip")]);
        let bomb = gzip(&vec![0u8; 10_000]);
        assert!(bomb.len() < 100);
        let err = read(&h, Body::from(bomb), 1000).await.unwrap_err();
        assert!(matches!(
            err,
            BodyError::DecompressedTooLarge { limit: 1000 }
        ));
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn oversized_and_garbled_bodies_name_the_problem() {
        let err = read(&HeaderMap::new(), Body::from(vec![1u8; 101]), 100)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 100 }));
        let h = headers(&[(header::CONTENT_ENCODING, "gzip")]);
        let err = read(&h, Body::from("not gzip"), 100).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.to_string().contains("gzip"), "{err}");
        let h = headers(&[(header::CONTENT_ENCODING, "br")]);
        let err = read(&h, Body::from("x"), 100).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(err.to_string().contains("\"br\""), "{err}");
    }

    #[test]
    fn media_type_drops_parameters() {
        let h = headers(&[(header::CONTENT_TYPE, "Application/JSON; charset=utf-8")]);
        assert_eq!(media_type(&h).as_deref(), Some("application/json"));
        assert_eq!(media_type(&HeaderMap::new()), None);
    }
}
