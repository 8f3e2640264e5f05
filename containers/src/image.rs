//! The offline image: `aside-servers:<hash>`, built by `ci/build-images.sh` from the recipe in
//! `ci/images/`. The hash is computed here exactly as the script computes it, so a test never
//! runs against an image built from another recipe.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Error;

pub const REPOSITORY: &str = "aside-servers";

/// The repository root (where `ci/` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first 12 hex digits of the recipe hash: for each `ci/images/*.sh` and `*.c` in byte
/// order, its name and `sha256sum`'s line for its content (`<hex>  -`), all hashed together.
pub fn recipe_hash(images_dir: &Path) -> Result<String, Error> {
    let read = |e: std::io::Error| {
        Error::Image(format!(
            "cannot read the image recipe in {}: {e}",
            images_dir.display()
        ))
    };
    let mut names: Vec<String> = std::fs::read_dir(images_dir)
        .map_err(read)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sh") || n.ends_with(".c"))
        .collect();
    names.sort();
    let mut outer = Sha256::new();
    for n in &names {
        let content = std::fs::read(images_dir.join(n)).map_err(read)?;
        outer.update(format!("{n}\n{}  -\n", hex(&Sha256::digest(&content))).as_bytes());
    }
    Ok(hex(&outer.finalize())[..12].to_string())
}

/// The tag the current recipe builds.
pub fn tag() -> Result<String, Error> {
    recipe_hash(&repo_root().join("ci/images"))
}

/// Checks that Docker answers and the image for the current recipe exists; the error names the
/// command that fixes it.
pub fn ensure() -> Result<String, Error> {
    let tag = tag()?;
    let docker = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match docker {
        Ok(o) if o.status.success() => {}
        Ok(_) => {
            return Err(Error::Docker(
                "docker is not reachable: start the Docker engine (systemctl start docker)".into(),
            ))
        }
        Err(_) => {
            return Err(Error::Docker(
                "docker is not installed: install docker.io and start the engine".into(),
            ))
        }
    }
    let found = Command::new("docker")
        .args(["image", "inspect", &format!("{REPOSITORY}:{tag}")])
        .output();
    if !found.is_ok_and(|o| o.status.success()) {
        return Err(Error::Image(format!("image {REPOSITORY}:{tag} is not built: run `sudo ci/build-images.sh` (about 75 s, needs Debian mirrors)")));
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rust hash and the shell script's must agree, or tests would look for an image the
    /// script never builds.
    #[test]
    fn hash_matches_the_build_script() {
        let dir = repo_root().join("ci/images");
        let script = format!(
            "cd {} && LC_ALL=C ls -1 -- *.sh *.c | LC_ALL=C sort | while read -r f; do printf '%s\\n' \"$f\"; sha256sum <\"$f\"; done | sha256sum | cut -c1-12",
            dir.display()
        );
        let out = Command::new("bash")
            .args(["-c", &script])
            .output()
            .expect("bash");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            recipe_hash(&dir).unwrap()
        );
    }
}
