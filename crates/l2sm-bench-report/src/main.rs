//! `l2sm-bench-report --results DIR [--out DIR] [--font FILE]`: writes `BENCHMARKS.md` and
//! `docs/bench/*.png` under `--out` (default `.`) from the raw samples `scripts/bench.sh` left
//! in `--results`.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

const USAGE: &str = "usage: l2sm-bench-report --results DIR [--out DIR] [--font FILE.ttf]";
const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn main() -> Result<()> {
    let mut results = None;
    let mut out = PathBuf::from(".");
    let mut font = PathBuf::from(DEFAULT_FONT);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--results" => results = Some(PathBuf::from(value()?)),
            "--out" => out = PathBuf::from(value()?),
            "--font" => font = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => bail!("unknown argument {a}\n{USAGE}"),
        }
    }
    let results = results.with_context(|| format!("--results is required\n{USAGE}"))?;
    l2sm_bench_report::register_font(&font)
        .context("plot labels need a TrueType font (apt-get install fonts-dejavu-core)")?;
    let inputs = l2sm_bench_report::load(&results)?;
    for f in l2sm_bench_report::write_report(&inputs, &out)? {
        println!("wrote {}", f.display());
    }
    Ok(())
}
