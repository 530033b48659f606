//! `file`: every batch written to a file, as the OTel Collector's file exporter writes it: with
//! `format: json` (the default) one OTLP/JSON `ExportTraceServiceRequest` per line; with
//! `format: proto`, or with `compression: zstd`, each record (the request, compressed when
//! asked) preceded by its length as a 4-byte big-endian integer. Records are written through at
//! once, on a blocking thread, so a crash loses nothing that was exported. With `rotation`, a
//! file that would pass `max_megabytes` is moved aside as `NAME-<UTC time>.EXT` and a new one
//! started; backups past `max_backups` or older than `max_days` are deleted.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use model::TraceBatch;

use super::{Export, ExportError};
use crate::config::{FileExporter as Config, FileRotation};
use crate::consumer::BoxFuture;
use crate::payload::Payload;

pub struct FileExporter {
    json: bool,
    zstd: bool,
    out: Arc<Mutex<Output>>,
}

struct Output {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Option<FileRotation>,
}

impl FileExporter {
    pub fn new(cfg: &Config) -> Result<Self, String> {
        if cfg.path.is_empty() {
            return Err("path must be set".into());
        }
        let path = PathBuf::from(&cfg.path);
        let file = open(&path, cfg.append || cfg.rotation.is_some())?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            json: cfg.format.as_deref() != Some("proto"),
            zstd: cfg.compression.as_deref() == Some("zstd"),
            out: Arc::new(Mutex::new(Output {
                path,
                file,
                size,
                rotation: cfg.rotation.clone(),
            })),
        })
    }

    /// One record for an OTLP request (`encoded`: its protobuf or JSON bytes).
    fn record(&self, encoded: Vec<u8>) -> Result<Vec<u8>, ExportError> {
        if self.json && !self.zstd {
            let mut line = encoded;
            line.push(b'\n');
            return Ok(line);
        }
        let body = if self.zstd {
            zstd::bulk::compress(&encoded, 1)
                .map_err(|e| ExportError::Permanent(format!("zstd: {e}")))?
        } else {
            encoded
        };
        let len = u32::try_from(body.len())
            .map_err(|_| ExportError::Permanent("a record over 4 GiB".into()))?;
        let mut record = Vec::with_capacity(4 + body.len());
        record.extend_from_slice(&len.to_be_bytes());
        record.extend_from_slice(&body);
        Ok(record)
    }

    async fn write(&self, record: Vec<u8>) -> Result<(), ExportError> {
        let out = Arc::clone(&self.out);
        tokio::task::spawn_blocking(move || {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            out.write(&record)
        })
        .await
        .map_err(|e| ExportError::retryable(format!("file writer: {e}")))?
        .map_err(ExportError::retryable)
    }
}

impl Export for FileExporter {
    fn export<'a>(&'a self, batch: &'a TraceBatch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let encoded = if self.json {
                wire::otlp::encode_json(batch)
            } else {
                wire::otlp::encode_protobuf(batch)
            };
            self.write(self.record(encoded)?).await
        })
    }

    /// Protobuf records are the bytes as they came (concatenated requests are one request).
    fn export_payload<'a>(
        &'a self,
        payload: &'a Payload,
    ) -> BoxFuture<'a, Result<(), ExportError>> {
        match payload {
            Payload::Otlp(raw) if !self.json => Box::pin(async move {
                let bytes: Vec<u8> = raw.to_bytes().to_vec();
                self.write(self.record(bytes)?).await
            }),
            _ => super::export_decoded(self, payload),
        }
    }

    fn accepts_otlp(&self) -> bool {
        !self.json
    }
}

fn open(path: &Path, append: bool) -> Result<File, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("path {}: {e}", path.display()))?;
    }
    let mut options = OpenOptions::new();
    options.create(true);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    options
        .open(path)
        .map_err(|e| format!("path {}: {e}", path.display()))
}

impl Output {
    fn write(&mut self, record: &[u8]) -> Result<(), String> {
        if let Some(r) = &self.rotation {
            let limit = r.max_megabytes.saturating_mul(1 << 20);
            if self.size > 0 && self.size + record.len() as u64 > limit {
                self.rotate()?;
            }
        }
        self.file
            .write_all(record)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        self.size += record.len() as u64;
        Ok(())
    }

    /// Moves the file aside under a name with the time, starts a new one, and deletes the
    /// backups the rotation settings no longer keep.
    fn rotate(&mut self) -> Result<(), String> {
        let (stem, ext) = stem_and_ext(&self.path);
        let stamp = humantime::format_rfc3339_millis(SystemTime::now())
            .to_string()
            .trim_end_matches('Z')
            .replace(':', "-");
        let backup = self.path.with_file_name(format!("{stem}-{stamp}{ext}"));
        std::fs::rename(&self.path, &backup)
            .map_err(|e| format!("rotating {}: {e}", self.path.display()))?;
        self.file = open(&self.path, false)?;
        self.size = 0;
        if let Some(r) = &self.rotation {
            prune(&self.path, r);
        }
        Ok(())
    }
}

/// `traces.json` → (`traces`, `.json`).
fn stem_and_ext(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

/// Deletes backups of `path` past `max_backups` (oldest first) or older than `max_days`.
fn prune(path: &Path, r: &FileRotation) {
    let (stem, ext) = stem_and_ext(path);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    // Backup names sort by their UTC time.
    let mut backups: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| {
                n.starts_with(&format!("{stem}-"))
                    && n.ends_with(&ext)
                    && n.len() > stem.len() + ext.len() + 1
            })
        })
        .collect();
    backups.sort();
    let old = |p: &PathBuf| {
        r.max_days > 0
            && std::fs::metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(r.max_days * 86_400))
    };
    let excess = if r.max_backups > 0 {
        backups.len().saturating_sub(r.max_backups as usize)
    } else {
        0
    };
    for (i, b) in backups.iter().enumerate() {
        if i < excess || old(b) {
            if let Err(e) = std::fs::remove_file(b) {
                tracing::warn!(
                    "file exporter: cannot delete the old backup {}: {e}",
                    b.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{KeyValue, Resource, ResourceSpans, ScopeSpans, Span};

    fn batch(name: &str) -> TraceBatch {
        TraceBatch {
            resource_spans: vec![ResourceSpans {
                resource: Resource {
                    attributes: vec![KeyValue::new("service.name", "files")],
                    ..Default::default()
                },
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: model::TraceId::from_halves(1, 2),
                        span_id: model::SpanId::from_u64(3),
                        name: name.into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn cfg(path: &Path, yaml: &str) -> Config {
        serde_yaml::from_str(&format!("path: {}\n{yaml}", path.display())).unwrap()
    }

    #[tokio::test]
    async fn json_lines_and_length_prefixed_protobuf_and_zstd() {
        let d = tempfile::tempdir().unwrap();
        let json = d.path().join("t.json");
        let e = FileExporter::new(&cfg(&json, "")).unwrap();
        e.export(&batch("a")).await.unwrap();
        e.export(&batch("b")).await.unwrap();
        let text = std::fs::read_to_string(&json).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for (line, name) in lines.iter().zip(["a", "b"]) {
            let back = wire::otlp::decode_json(line.as_bytes()).unwrap();
            assert_eq!(
                back.batch.spans().next().map(|(_, _, s)| s.name.clone()),
                Some(name.to_owned())
            );
        }

        for (yaml, zstd) in [("format: proto", false), ("compression: zstd", true)] {
            let path = d.path().join(format!("t-{zstd}.bin"));
            let e = FileExporter::new(&cfg(&path, yaml)).unwrap();
            e.export(&batch("p")).await.unwrap();
            let raw = std::fs::read(&path).unwrap();
            let len = u32::from_be_bytes(raw[..4].try_into().unwrap()) as usize;
            assert_eq!(raw.len(), 4 + len);
            let body = if zstd {
                zstd::bulk::decompress(&raw[4..], 1 << 20).unwrap()
            } else {
                raw[4..].to_vec()
            };
            let back = if zstd {
                wire::otlp::decode_json(&body).unwrap()
            } else {
                wire::otlp::decode_protobuf(&body).unwrap()
            };
            assert_eq!(back.batch.span_count(), 1, "{yaml}");
        }
    }

    #[tokio::test]
    async fn append_keeps_and_otherwise_starts_anew() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t.json");
        std::fs::write(&path, "earlier\n").unwrap();
        FileExporter::new(&cfg(&path, "append: true"))
            .unwrap()
            .export(&batch("a"))
            .await
            .unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("earlier\n"));
        FileExporter::new(&cfg(&path, ""))
            .unwrap()
            .export(&batch("a"))
            .await
            .unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains("earlier"));
    }

    #[test]
    fn rotation_moves_files_aside_and_keeps_max_backups() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("traces.json");
        let mut out = Output {
            path: path.clone(),
            file: open(&path, false).unwrap(),
            size: 0,
            rotation: Some(FileRotation {
                max_megabytes: 1,
                max_backups: 2,
                ..Default::default()
            }),
        };
        let record = vec![b'x'; 700 * 1024];
        for _ in 0..5 {
            out.write(&record).unwrap();
            std::thread::sleep(Duration::from_millis(5)); // distinct backup names
        }
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "the file and two backups: {names:?}");
        assert!(names.iter().any(|n| n == "traces.json"));
        assert!(
            names
                .iter()
                .filter(|n| n.starts_with("traces-") && n.ends_with(".json"))
                .count()
                == 2,
            "{names:?}"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 700 * 1024);
    }
}
