//! Test code is not product code: every test helper of this crate (the
//! `reauth-server-testd` daemon, `ManualClock`, raw database access) is
//! behind the `test-util` feature, which is off by default and which no
//! crate of the workspace turns on outside its dev-dependencies.

use std::path::Path;

/// The lines of a manifest's `[section]` (up to the next section header).
fn section<'a>(manifest: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("[{name}]");
    manifest
        .lines()
        .skip_while(|line| line.trim() != header)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .collect()
}

#[test]
fn test_helper_binaries_are_built_only_with_test_util() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let default = section(&manifest, "features")
        .into_iter()
        .find(|line| line.trim_start().starts_with("default"))
        .expect("a default feature set");
    assert!(!default.contains("test-util"), "{default}");
    // Every binary of this crate is a test helper: each must require test-util.
    let bins: Vec<&str> = manifest.split("[[bin]]").skip(1).collect();
    for entry in std::fs::read_dir(dir.join("src/bin")).unwrap() {
        let name = entry.unwrap().path();
        let name = name.file_stem().unwrap().to_str().unwrap().to_owned();
        let declared = bins
            .iter()
            .find(|bin| bin.contains(&format!("name = \"{name}\"")))
            .unwrap_or_else(|| panic!("{name} is built by default: no [[bin]] entry"));
        let declared = declared.split("\n[").next().unwrap();
        assert!(
            declared.contains("required-features = [\"test-util\"]"),
            "{name} is built without test-util:\n{declared}"
        );
    }
}

#[test]
fn no_crate_enables_test_util_outside_its_dev_dependencies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for line in section(&workspace, "workspace.dependencies") {
        assert!(
            !line.contains("test-util") || !line.contains("reauth-server"),
            "{line}"
        );
    }
    // Test crates, never published and never a dependency of a shipped
    // crate, may use the test helpers: the simulation runs the server on an
    // in-memory database.
    const TEST_CRATES: &[&str] = &["reauth-sim", "reauth-testkit"];
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        if TEST_CRATES.contains(&name.as_str()) {
            assert!(manifest.contains("publish = false"), "{name} is published");
            continue;
        }
        for line in section(&manifest, "dependencies") {
            assert!(
                !(line.contains("reauth-server") && line.contains("test-util")),
                "{line}"
            );
            assert!(
                !TEST_CRATES
                    .iter()
                    .any(|t| line.starts_with(&format!("{t} "))),
                "{name} depends on a test crate: {line}"
            );
        }
    }
}
