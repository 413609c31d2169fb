//! Turns the raw samples `scripts/bench.sh` collects into `BENCHMARKS.md` and one PNG per scaling
//! curve. Measuring lives in the script (it needs labs, namespaces and root); this crate only
//! reads files, so the report's arithmetic and layout are testable without any of that.
//!
//! Inputs, all in one results directory:
//! - `samples.jsonl`: `{"key":K,"v":X}` (one raw sample), `{"skip":SECTION,"reason":R}`
//!   (a section that did not run) and `{"note":K,"text":T}` lines;
//! - `machine.json`: an object describing the machine and the run;
//! - `controller/*.json` (optional): documents printed by `l2sm-bench … --json` (the controller
//!   benchmarks), e.g. `{"controller": {…}}` or `{"cold_start": {…}}`;
//! - `codec/<group>/<function>/estimates.json` (optional): Criterion's estimates.

mod plot;
mod report;
pub mod stats;

pub use plot::{draw, register_font, Plot, Series};
pub use report::render;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why loading the inputs or writing the report failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading or writing a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An input file holds something the report cannot use.
    #[error("{path}:{line}: {msg}")]
    Parse {
        /// The input file.
        path: PathBuf,
        /// Line number, from 1 (1 for a file holding one JSON document).
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// Drawing a plot failed.
    #[error("plot {file}: {msg}")]
    Plot {
        /// File name of the plot.
        file: String,
        /// What went wrong.
        msg: String,
    },
    /// The file is not a TrueType font the plotting library can use.
    #[error("font {path}: not a usable TrueType font")]
    Font {
        /// The font file.
        path: PathBuf,
    },
}

/// Everything one run measured.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// Members of `machine.json`: the machine and the run.
    pub machine: BTreeMap<String, Value>,
    /// Key -> raw samples, in file order, from `{"key":K,"v":X}` records.
    pub samples: BTreeMap<String, Vec<f64>>,
    /// Section -> why it was not measured.
    pub skipped: BTreeMap<String, String>,
    /// Key -> text, from `{"note":K,"text":T}` records.
    pub notes: BTreeMap<String, String>,
    /// File stem -> document, from `controller/*.json`.
    pub controller: BTreeMap<String, Value>,
    /// `group/function` -> median nanoseconds per iteration.
    pub codec_ns: BTreeMap<String, f64>,
}

impl Inputs {
    /// The samples of `key`; `None` when there are none.
    pub fn get(&self, key: &str) -> Option<&[f64]> {
        self.samples
            .get(key)
            .map(Vec::as_slice)
            .filter(|v| !v.is_empty())
    }
}

fn read(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })
}

fn parse_json(path: &Path, text: &str, line: usize) -> Result<Value, ReportError> {
    serde_json::from_str(text).map_err(|e| ReportError::Parse {
        path: path.to_owned(),
        line,
        msg: e.to_string(),
    })
}

/// Parses `samples.jsonl` text into `inputs`. Every line must be one of the three record kinds.
pub fn parse_samples(path: &Path, text: &str, inputs: &mut Inputs) -> Result<(), ReportError> {
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |msg: &str| ReportError::Parse {
            path: path.to_owned(),
            line: line_no,
            msg: msg.to_string(),
        };
        let v = parse_json(path, line, line_no)?;
        if let Some(key) = v.get("key").and_then(Value::as_str) {
            let x = v
                .get("v")
                .and_then(Value::as_f64)
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad("\"v\" must be a finite number"))?;
            inputs.samples.entry(key.to_string()).or_default().push(x);
        } else if let Some(section) = v.get("skip").and_then(Value::as_str) {
            let reason = v.get("reason").and_then(Value::as_str).unwrap_or("");
            inputs
                .skipped
                .insert(section.to_string(), reason.to_string());
        } else if let Some(k) = v.get("note").and_then(Value::as_str) {
            let text = v.get("text").and_then(Value::as_str).unwrap_or("");
            inputs.notes.insert(k.to_string(), text.to_string());
        } else {
            return Err(bad("expected a \"key\", \"skip\" or \"note\" record"));
        }
    }
    Ok(())
}

/// Reads a results directory written by `scripts/bench.sh`.
pub fn load(dir: &Path) -> Result<Inputs, ReportError> {
    let mut inputs = Inputs::default();
    let samples = dir.join("samples.jsonl");
    parse_samples(&samples, &read(&samples)?, &mut inputs)?;
    let machine = dir.join("machine.json");
    if let Value::Object(m) = parse_json(&machine, &read(&machine)?, 1)? {
        inputs.machine = m.into_iter().collect();
    } else {
        return Err(ReportError::Parse {
            path: machine,
            line: 1,
            msg: "expected an object".into(),
        });
    }
    let controller = dir.join("controller");
    if controller.is_dir() {
        let io = |source| ReportError::Io {
            path: controller.clone(),
            source,
        };
        let mut files = Vec::new();
        for e in std::fs::read_dir(&controller).map_err(io)? {
            let p = e.map_err(io)?.path();
            if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
        files.sort();
        for f in files {
            let v = parse_json(&f, &read(&f)?, 1)?;
            let stem = f
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            inputs.controller.insert(stem, v);
        }
    }
    let codec = dir.join("codec");
    if codec.is_dir() {
        for group in list_dir(&codec)? {
            for function in list_dir(&group)? {
                let f = function.join("estimates.json");
                if !f.exists() {
                    continue;
                }
                let v = parse_json(&f, &read(&f)?, 1)?;
                let ns = v
                    .pointer("/median/point_estimate")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| ReportError::Parse {
                        path: f.clone(),
                        line: 1,
                        msg: "no median.point_estimate".into(),
                    })?;
                let name = format!(
                    "{}/{}",
                    group.file_name().unwrap_or_default().to_string_lossy(),
                    function.file_name().unwrap_or_default().to_string_lossy()
                );
                inputs.codec_ns.insert(name, ns);
            }
        }
    }
    Ok(inputs)
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let io = |source| ReportError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let p = e.map_err(io)?.path();
        if p.is_dir() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `BENCHMARKS.md` and `docs/bench/*.png` under `out`; returns the files written.
pub fn write_report(inputs: &Inputs, out: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let (markdown, plots) = render(inputs);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ReportError::Io { path, source }
    };
    let bench_dir = out.join("docs/bench");
    std::fs::create_dir_all(&bench_dir).map_err(io(&bench_dir))?;
    let mut written = Vec::new();
    for p in &plots {
        let path = bench_dir.join(&p.file);
        draw(p, &path)?;
        written.push(path);
    }
    let md = out.join("BENCHMARKS.md");
    std::fs::write(&md, markdown).map_err(io(&md))?;
    written.push(md);
    Ok(written)
}
