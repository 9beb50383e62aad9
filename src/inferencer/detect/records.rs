//! The batch side of `detect`: where image paths come from (arguments, folders, `--list FILE`),
//! the JSON-lines records written per image, and `--output`/`--resume` files that a killed run
//! can be restarted from without losing or repeating an image.
//!
//! Invariants: every record is one whole line, written with one `write_all` of the complete line
//! (newline included) and flushed before the next image starts, so a killed run leaves at most
//! one partial last line, which `--resume` cuts away. This module never runs a model.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use super::super::{Detection, InferError};

/// Where `detect` reads image paths from: the expanded arguments, then `--list FILE` streamed
/// line by line (so a list of millions of paths, or a pipe from `find`, is never held whole).
pub(super) struct ImageSources {
    given: std::vec::IntoIter<(PathBuf, PathBuf)>,
    list: Option<ListReader>,
}

struct ListReader {
    name: PathBuf,
    reader: Box<dyn BufRead>,
    line_no: usize,
}

impl ImageSources {
    /// `given`: (file, output-relative path) from the arguments; `list`: `--list FILE`
    /// (`-` = stdin).
    pub(super) fn new(
        given: Vec<(PathBuf, PathBuf)>,
        list: Option<&Path>,
    ) -> Result<Self, InferError> {
        let list = match list {
            None => None,
            Some(p) if p == Path::new("-") => Some(ListReader {
                name: PathBuf::from("<stdin>"),
                reader: Box::new(std::io::stdin().lock()),
                line_no: 0,
            }),
            Some(p) => {
                let file = File::open(p).map_err(|source| InferError::Io {
                    path: p.to_path_buf(),
                    source,
                })?;
                Some(ListReader {
                    name: p.to_path_buf(),
                    reader: Box::new(BufReader::new(file)),
                    line_no: 0,
                })
            }
        };
        Ok(ImageSources {
            given: given.into_iter(),
            list,
        })
    }

    /// The number of images, when known before reading the list (for the progress bar).
    pub(super) fn known_len(&self) -> Option<usize> {
        self.list.is_none().then(|| self.given.len())
    }
}

impl Iterator for ImageSources {
    type Item = Result<(PathBuf, PathBuf), InferError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(next) = self.given.next() {
            return Some(Ok(next));
        }
        let list = self.list.as_mut()?;
        let mut line = String::new();
        loop {
            line.clear();
            list.line_no += 1;
            match list.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {
                    // A path is the whole line but its line ending (names may hold spaces);
                    // blank lines are skipped.
                    let path = line.trim_end_matches(['\n', '\r']);
                    if path.trim().is_empty() {
                        continue;
                    }
                    let path = PathBuf::from(path);
                    let rel = output_relative(&path);
                    return Some(Ok((path, rel)));
                }
                Err(source) => {
                    return Some(Err(InferError::Input(format!(
                        "--list {} line {}: {source} (one UTF-8 path a line)",
                        list.name.display(),
                        list.line_no
                    ))))
                }
            }
        }
    }
}

/// Where a listed image's PNG goes under `--out-dir`: its path without root, `.` and `..`
/// (`/data/a/b.jpg` → `data/a/b.png`), so no listed path can write outside the folder.
fn output_relative(path: &Path) -> PathBuf {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// The JSON record of an image's detections (README "`--json`"), without the newline; also
/// the body `mmcompat serve` answers (src/serve/router.rs) and what the Python `Detector.detect`
/// returns (bindings/).
pub fn detections_record(image: &str, width: usize, height: usize, dets: &[Detection]) -> String {
    json!({
        "image": image,
        "width": width,
        "height": height,
        "detections": dets.iter().map(|d| json!({
            "bbox": d.bbox,
            "score": d.score,
            "label": d.label,
            "class": d.class_name,
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// The JSON record of an image that could not be read or run, without the newline.
pub(super) fn error_record(image: &str, error: &str) -> String {
    json!({"image": image, "error": error}).to_string()
}

/// One human-readable line per image (issue 17 item 6): path, size, count and the three best
/// detections with their scores; no trailer when there is nothing to list.
pub(super) fn text_line(image: &str, width: usize, height: usize, dets: &[Detection]) -> String {
    const SHOWN: usize = 3;
    let head = format!("{image} ({width}x{height}):");
    match dets.len() {
        0 => format!("{head} no detections"),
        n => {
            let best: Vec<String> = dets
                .iter()
                .take(SHOWN)
                .map(|d| format!("{} {:.3}", d.class_name, d.score))
                .collect();
            let more = if n > SHOWN {
                format!(" (+{} more)", n - SHOWN)
            } else {
                String::new()
            };
            let noun = if n == 1 { "detection" } else { "detections" };
            format!("{head} {n} {noun}: {}{more}", best.join(", "))
        }
    }
}

/// The fields of a record that `--resume` needs; the detections are skipped unparsed.
#[derive(Deserialize)]
struct RecordHead {
    image: String,
    #[serde(default)]
    error: Option<String>,
}

/// What an earlier run recorded in a `--resume` file.
#[derive(Debug, Default)]
pub(super) struct Recorded {
    /// (detection records, error records) per image path not yet matched (a path listed twice
    /// is run twice, so it is skipped twice).
    remaining: HashMap<String, (usize, usize)>,
    pub(super) records: usize,
}

/// What [`Recorded::take`] found for an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Earlier {
    NotRecorded,
    Detections,
    /// An error record: it counts as done and is not retried (README "Batch runs" says how to
    /// retry), so that a resumed file never holds two records of one image.
    Failed,
}

impl Recorded {
    /// What the earlier run recorded for `image` (consuming that record).
    pub(super) fn take(&mut self, image: &str) -> Earlier {
        match self.remaining.get_mut(image) {
            Some((ok, _)) if *ok > 0 => {
                *ok -= 1;
                Earlier::Detections
            }
            Some((_, failed)) if *failed > 0 => {
                *failed -= 1;
                Earlier::Failed
            }
            _ => Earlier::NotRecorded,
        }
    }
}

/// Reads the records of `path` (missing: nothing recorded yet) and cuts away a partial last line
/// (a run killed while writing it, or a full disk), so appending continues on a line boundary.
/// Streams the file: records can be large (every detection `test_cfg` keeps).
pub(super) fn read_recorded(path: &Path) -> Result<Recorded, InferError> {
    let io = |source| InferError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recorded::default()),
        Err(e) => return Err(io(e)),
    };
    let mut reader = BufReader::new(file);
    let mut recorded = Recorded::default();
    let mut line = Vec::new();
    let mut complete_end = 0u64;
    let mut line_no = 0usize;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            tracing::warn!(
                file = %path.display(),
                bytes = n,
                "--resume: dropping a partial last line (the earlier run stopped while writing it)"
            );
            let f = OpenOptions::new().write(true).open(path).map_err(io)?;
            f.set_len(complete_end).map_err(io)?;
            break;
        }
        line_no += 1;
        let head: RecordHead = serde_json::from_slice(&line).map_err(|e| {
            InferError::Input(format!(
                "--resume {} line {line_no}: not a `detect` record ({e}); --resume continues a \
                 file that `detect --output`/`--resume` wrote, one JSON object per line with an \
                 \"image\" key",
                path.display()
            ))
        })?;
        let counts = recorded.remaining.entry(head.image).or_default();
        match head.error {
            Some(_) => counts.1 += 1,
            None => counts.0 += 1,
        }
        recorded.records += 1;
        complete_end += n as u64;
    }
    Ok(recorded)
}

/// `--output`/`--resume` FILE: one whole record line per write, flushed per image.
pub(super) struct RecordFile {
    path: PathBuf,
    file: File,
}

impl RecordFile {
    /// `append`: continue `path` (for `--resume`, after [`read_recorded`] cut it to a line
    /// boundary); otherwise start it empty.
    pub(super) fn open(path: &Path, append: bool) -> Result<Self, InferError> {
        let mut opts = OpenOptions::new();
        if append {
            opts.append(true).create(true);
        } else {
            opts.write(true).create(true).truncate(true);
        }
        let file = opts.open(path).map_err(|source| InferError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(RecordFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes `record` and its newline as one `write_all` of one buffer, then flushes it to the
    /// OS: a kill between images never leaves half a record.
    pub(super) fn write_record(&mut self, record: &str) -> Result<(), InferError> {
        let mut line = String::with_capacity(record.len() + 1);
        line.push_str(record);
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| InferError::Io {
                path: self.path.clone(),
                source,
            })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_paths_stay_inside_the_out_dir() {
        assert_eq!(
            output_relative(Path::new("/data/../a/./b.jpg")),
            PathBuf::from("data/a/b.jpg")
        );
    }

    #[test]
    fn resume_cuts_a_partial_last_line_and_counts_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        let whole =
            "{\"image\":\"a.png\",\"detections\":[]}\n{\"image\":\"b.png\",\"error\":\"x\"}\n\
                     {\"image\":\"a.png\",\"detections\":[]}\n";
        std::fs::write(&p, format!("{whole}{{\"image\":\"c.pn")).unwrap();
        let mut r = read_recorded(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), whole);
        assert_eq!(r.records, 3);
        assert_eq!(r.take("a.png"), Earlier::Detections);
        assert_eq!(r.take("a.png"), Earlier::Detections);
        assert_eq!(r.take("a.png"), Earlier::NotRecorded);
        assert_eq!(r.take("b.png"), Earlier::Failed);
        assert_eq!(r.take("c.png"), Earlier::NotRecorded);
    }

    #[test]
    fn resume_refuses_a_file_that_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.txt");
        std::fs::write(&p, "hello\n").unwrap();
        let err = read_recorded(&p).unwrap_err().to_string();
        assert!(
            err.contains("notes.txt line 1: not a `detect` record"),
            "{err}"
        );
    }
}
