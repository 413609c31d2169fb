//! Prints every CRD (`crdgen`) or writes them into a directory (`crdgen DIR`), one file each.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).map(PathBuf::from);
    for (file, crd) in l2sm_operator::crds() {
        let yaml = l2sm_operator::crd_yaml(&crd)?;
        match &dir {
            Some(dir) => std::fs::write(dir.join(file), yaml)?,
            None => print!("{yaml}"),
        }
    }
    Ok(())
}
