//! Prints every CRD (`crdgen`) or writes them into a directory (`crdgen DIR`), one file each.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::args_os().nth(1).map(PathBuf::from) {
        Some(dir) => {
            for (file, crd) in l2sm_operator::crds() {
                std::fs::write(dir.join(file), l2sm_operator::crd_yaml(&crd)?)?;
            }
        }
        None => print!("{}", l2sm_operator::all_crds_yaml()?),
    }
    Ok(())
}
