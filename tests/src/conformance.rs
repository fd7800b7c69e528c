//! Running the OCI distribution-spec conformance suites (built by `make
//! tools-test`) and reading their reports, so every test that runs them
//! checks the same things: the suite succeeded and really ran its cases.

use std::path::Path;
use std::process::Command;

use crate::tool;

/// What a suite run produced.
#[derive(Debug)]
pub struct SuiteRun {
    pub success: bool,
    /// stdout and stderr, for failure messages.
    pub output: String,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Names of the skipped cases.
    pub skipped_names: Vec<String>,
}

impl SuiteRun {
    /// Assert success, at least `min_passed` passed cases, no failure, and
    /// at most `max_skipped` skipped; `context` is shown on failure (e.g.
    /// the registry's log).
    pub fn assert_clean(&self, min_passed: usize, max_skipped: usize, context: &str) {
        assert!(
            self.success,
            "conformance suite failed:\n{}\n--- context\n{context}",
            self.output
        );
        assert_eq!(self.failed, 0, "failed cases:\n{}", self.output);
        assert!(
            self.passed >= min_passed,
            "only {} cases passed:\n{}",
            self.passed,
            self.output
        );
        assert!(
            self.skipped <= max_skipped,
            "{} cases skipped ({:?}):\n{}",
            self.skipped,
            self.skipped_names,
            self.output
        );
    }
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The v1.1 generation (Ginkgo), all four workflows, against `root_url`
/// (`http(s)://host:port`), with `env` added (credentials, CA, ...).
pub fn v1_suite(root_url: &str, automatic_cross_mount: bool, env: &[(&str, &str)]) -> SuiteRun {
    let report = tempfile::tempdir().expect("tempdir");
    let out = Command::new(tool("oci-conformance-v1"))
        .current_dir(report.path())
        .env("OCI_ROOT_URL", root_url)
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
        .env("OCI_REPORT_DIR", report.path())
        .envs(env.iter().copied())
        .output()
        .expect("run the v1.1 conformance suite");
    let xml = read_report(&report.path().join("junit.xml"));
    let cases = xml.matches("<testcase").count();
    let failed = xml.matches("<failure").count() + xml.matches("<error").count();
    let skipped = xml.matches("<skipped").count();
    let skipped_names = xml
        .split("<testcase ")
        .filter(|case| case.contains("<skipped"))
        .filter_map(|case| case.split("name=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect();
    SuiteRun {
        success: out.status.success(),
        output: output_text(&out),
        passed: cases.saturating_sub(failed + skipped),
        failed,
        skipped,
        skipped_names,
    }
}

/// Options of the redesigned suite we leave off, each with its reason.
/// Everything else it offers is on (`OCI_VERSION=dev` turns on upload
/// cancel, digest headers and `?tag=` pushes).
pub const MAIN_SUITE_OFF: &[(&str, &str)] = &[(
    "OCI_DATA_SPARSE",
    "a manifest whose blobs were never pushed is refused with MANIFEST_BLOB_UNKNOWN: \
     we keep every stored manifest pullable in full",
)];

/// Passed cases of a clean v1.1 run (all four workflows).
pub const V1_MIN_PASSED: usize = 75;
/// Skipped by design in v1.1: the two setup steps for read-only registries
/// and the cross-mount case of the other automatic-mount setting.
pub const V1_MAX_SKIPPED: usize = 4;
/// Passed cases of a clean main-suite run.
pub const MAIN_MIN_PASSED: usize = 100;

/// The redesigned suite of the spec's main branch against `host`
/// (`host:port`, plain HTTP), with `env` added.
pub fn main_suite(host: &str, env: &[(&str, &str)]) -> SuiteRun {
    let results = tempfile::tempdir().expect("tempdir");
    let out = Command::new(tool("oci-conformance-main"))
        .current_dir(results.path())
        .env("OCI_REGISTRY", host)
        .env("OCI_TLS", "disabled")
        .env("OCI_REPO1", "conformance/repo1")
        .env("OCI_REPO2", "conformance/nested/repo2")
        .env("OCI_VERSION", "dev")
        .env("OCI_RESULTS_DIR", results.path())
        .env("OCI_LOG", "warn")
        .envs(MAIN_SUITE_OFF.iter().map(|(key, _reason)| (*key, "false")))
        .envs(env.iter().copied())
        .output()
        .expect("run the main conformance suite");
    let xml = read_report(&results.path().join("junit.xml"));
    let skipped_names = xml
        .split("<testcase ")
        .filter(|case| case.contains("status=\"skipped\""))
        .filter_map(|case| case.split('"').nth(1))
        .map(str::to_string)
        .collect();
    SuiteRun {
        success: out.status.success(),
        output: output_text(&out),
        passed: xml.matches("status=\"passed\"").count(),
        failed: xml.matches("status=\"failure\"").count() + xml.matches("status=\"error\"").count(),
        skipped: xml.matches("status=\"skipped\"").count(),
        skipped_names,
    }
}

/// The JUnit report; a run that wrote none fails here, so a suite that
/// executed nothing cannot pass.
fn read_report(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no JUnit report at {}: {e}", path.display()))
}
