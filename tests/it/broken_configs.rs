//! A table of broken configs (`tests/broken_configs/*.toml`): each starts with
//! `# expect: TEXT` lines, and `check-config` must exit 64 with every TEXT in its output,
//! line numbers included, and never panic.

use std::path::Path;
use std::process::Command;

#[test]
fn every_broken_config_fails_with_its_expected_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken_configs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the table has its cases: {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{}: no `# expect:` line",
            file.display()
        );
        let out = Command::new(env!("CARGO_BIN_EXE_firebreak"))
            .arg("check-config")
            .arg("--config")
            .arg(file)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let name = file.file_name().unwrap().to_string_lossy();
        if out.status.code() != Some(64) {
            failures.push(format!(
                "{name}: exit {:?}, want 64\n{all}",
                out.status.code()
            ));
        }
        if all.contains("panicked") {
            failures.push(format!("{name}: panicked\n{all}"));
        }
        for want in expected {
            if !all.contains(want) {
                failures.push(format!("{name}: missing `{want}` in\n{all}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
