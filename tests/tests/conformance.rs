//! The OCI distribution-spec conformance suites against the real binary:
//! the v1.1.x suite (all four workflows, with and without automatic
//! cross-mount) and the redesigned suite from the spec's main branch, with
//! every option on but those in `MAIN_SUITE_OFF` (each with its reason).
//! Garbage collection sweeps every second throughout (`SWEEPING`).

use quarry_e2e::Registry;
use quarry_e2e::conformance::{
    MAIN_MIN_PASSED, V1_MAX_SKIPPED, V1_MIN_PASSED, main_suite, v1_suite,
};

/// Sweeps every second with a short grace period, so the suites' pushes,
/// deletes and pulls run against sweeps that condemn and delete.
const SWEEPING: &str = "GARBAGE_COLLECTION_FREQUENCY: 1\nPUSH_TEMP_TAG_EXPIRATION_SEC: 1\n";

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn v1(automatic_cross_mount: bool) {
    let registry = Registry::start_with_config(Some(&format!(
        "FEATURE_AUTOMATIC_CROSS_MOUNT: {automatic_cross_mount}\n{SWEEPING}"
    )));
    v1_suite(&registry.url(), automatic_cross_mount, &[]).assert_clean(
        V1_MIN_PASSED,
        V1_MAX_SKIPPED,
        &tail(&registry.log_text(), 80),
    );
}

#[test]
fn conformance_v1_all_workflows_with_automatic_cross_mount() {
    v1(true);
}

#[test]
fn conformance_v1_all_workflows_without_automatic_cross_mount() {
    v1(false);
}

#[test]
fn conformance_main_suite_every_supported_option() {
    let registry = Registry::start_with_config(Some(SWEEPING));
    main_suite(&registry.host(), &[]).assert_clean(
        MAIN_MIN_PASSED,
        0,
        &tail(&registry.log_text(), 80),
    );
}
