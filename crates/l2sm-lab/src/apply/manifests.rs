//! Reading manifests as `kubectl apply -f` does: a file as given, or a directory's `.yaml`,
//! `.yml` and `.json` files in name order (subdirectories only with `-R`); YAML streams of
//! several documents; `List` objects expanded into their items.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// One object read from a manifest.
#[derive(Debug, Clone)]
pub struct Doc {
    /// `FILE` or `FILE#N` (document N, from 1, of a YAML stream) for messages.
    pub origin: String,
    /// The object.
    pub value: Value,
}

/// Reads every object under `paths`. Files that cannot be read or parsed are reported, one
/// message each (all of them, not just the first).
pub fn read(paths: &[PathBuf], recursive: bool) -> Result<Vec<Doc>, Vec<String>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            if let Err(e) = walk(p, recursive, &mut files) {
                errors.push(format!("error reading {}: {e}", p.display()));
            }
        } else if p.exists() {
            files.push(p.clone());
        } else {
            errors.push(format!("the path \"{}\" does not exist", p.display()));
        }
    }
    let mut docs = Vec::new();
    for f in files {
        match read_file(&f) {
            Ok(mut d) => docs.append(&mut d),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
    }
}

fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                walk(&p, recursive, out)?;
            }
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<Doc>, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("error reading {name}: {e}"))?;
    let values: Vec<Value> = if path.extension().and_then(|e| e.to_str()) == Some("json") {
        vec![serde_json::from_str(&text).map_err(|e| format!("error parsing {name}: {e}"))?]
    } else {
        serde_saphyr::from_multiple::<Value>(&text)
            .map_err(|e| format!("error parsing {name}: {e}"))?
    };
    let many = values.len() > 1;
    let mut docs = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        if v.is_null() {
            continue;
        }
        let origin = if many {
            format!("{name}#{}", i + 1)
        } else {
            name.clone()
        };
        expand(origin, v, &mut docs);
    }
    Ok(docs)
}

/// `kind: List` (or `…List`) with `items`: the items, each its own object.
fn expand(origin: String, v: Value, out: &mut Vec<Doc>) {
    let is_list = v["kind"].as_str().is_some_and(|k| k.ends_with("List")) && v["items"].is_array();
    if is_list {
        if let Some(items) = v["items"].as_array() {
            for (j, item) in items.iter().enumerate() {
                expand(format!("{origin}[{j}]"), item.clone(), out);
            }
        }
        return;
    }
    out.push(Doc { origin, value: v });
}
