//! Authentication (`spec.auth`): the accounts the registry accepts — the
//! operator's generated admin and robot, or the user's accounts Secret,
//! checked before it reaches the registry — and who may pull anonymously.
//! The generated Secrets themselves are made in `generated`.

use k8s_openapi::api::core::v1::{SecretVolumeSource, Volume, VolumeMount};
use quarry_registry::auth::accounts::{ACCOUNTS_FILE_KEY, AccountsFile};

use super::{BuildContext, BuildError, Component, PodParts, RenderedKey, StatusInput};
use crate::crd::QuarryRegistrySpec;
use crate::credentials::TOKEN_KEY;
use crate::names::auth_secret_name;
use crate::plan::{Issues, Plan, PlanInput, Referenced};
use crate::resources::Resources;
use crate::status::StatusDraft;

/// Where the auth Secret (accounts file, token key) is mounted.
pub const AUTH_DIR: &str = "/etc/quarry/auth";

/// Where the registry's accounts come from.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthPlan {
    /// spec.auth.enabled is false: no login.
    Off,
    /// The operator's generated admin and robot accounts.
    Generated,
    /// The user's accounts Secret, checked: its name and accounts.yaml.
    FromSecret { name: String, text: String },
}

pub struct Auth;

impl Component for Auth {
    fn plan(&self, input: &PlanInput<'_>, plan: &mut Plan, issues: &mut Issues) {
        let auth = input.spec.auth.clone().unwrap_or_default();
        if plan.from_bundle("AUTH_ACCOUNTS_FILE") || plan.from_bundle("AUTH_TOKEN_KEY_FILE") {
            issues.warn(
                "bundle AUTH_ACCOUNTS_FILE/AUTH_TOKEN_KEY_FILE are ignored: accounts come from spec.auth",
            );
        }
        let config = &mut plan.registry_config;
        config.auth_accounts_file = None;
        config.auth_token_key_file = None;
        if let Some(namespaces) = &auth.anonymous_pull {
            if plan.bundle_keys.contains("ANONYMOUS_PULL_NAMESPACES")
                && &config.anonymous_pull_namespaces != namespaces
            {
                issues.warn(
                    "spec.auth.anonymousPull overrides ANONYMOUS_PULL_NAMESPACES from the config bundle",
                );
            }
            config.anonymous_pull_namespaces = namespaces.clone();
        }
        if !auth.enabled.unwrap_or(true) {
            if auth.accounts_secret.is_some() {
                issues.warn("spec.auth.accountsSecret is not used: spec.auth.enabled is false");
            }
            plan.auth = AuthPlan::Off;
            return;
        }
        config.auth_accounts_file = Some(format!("{AUTH_DIR}/{ACCOUNTS_FILE_KEY}"));
        config.auth_token_key_file = Some(format!("{AUTH_DIR}/{TOKEN_KEY}"));
        plan.auth = match &auth.accounts_secret {
            None => AuthPlan::Generated,
            Some(name) => accounts_secret(name, &input.inputs.accounts, issues),
        };
    }

    fn pod(&self, cx: &BuildContext<'_>, pod: &mut PodParts) {
        if cx.plan.auth != AuthPlan::Off {
            mount_secret(pod, "auth", auth_secret_name(cx.cr), AUTH_DIR);
        }
    }

    fn objects(
        &self,
        cx: &BuildContext<'_>,
        _pod: &PodParts,
        out: &mut Resources,
    ) -> Result<(), BuildError> {
        for secret in &cx.generated.auth_secrets {
            out.add(secret)?;
        }
        Ok(())
    }

    fn status(&self, cx: &StatusInput<'_>, draft: &mut StatusDraft) {
        draft.status.credentials_secret = cx.generated.credentials_secret.clone();
        draft.status.pull_secret = cx.generated.pull_secret.clone();
    }

    fn renders(&self, spec: &QuarryRegistrySpec) -> Vec<RenderedKey> {
        let set = spec
            .auth
            .as_ref()
            .is_some_and(|a| a.anonymous_pull.is_some());
        set.then_some(RenderedKey {
            key: "ANONYMOUS_PULL_NAMESPACES",
            field: "spec.auth.anonymousPull",
        })
        .into_iter()
        .collect()
    }
}

/// The user's accounts Secret, checked as the registry will read it.
fn accounts_secret(name: &str, found: &Referenced, issues: &mut Issues) -> AuthPlan {
    const PATH: &str = "spec.auth.accountsSecret";
    let data = match found {
        Referenced::Found(data) => data,
        Referenced::Missing(why) => {
            issues.error(PATH, why.clone());
            return AuthPlan::Generated;
        }
        Referenced::None => {
            issues.error(PATH, format!("Secret {name:?} was not read"));
            return AuthPlan::Generated;
        }
    };
    let Some(bytes) = data.get(ACCOUNTS_FILE_KEY) else {
        issues.error(
            PATH,
            format!("Secret {name:?} has no key {ACCOUNTS_FILE_KEY}"),
        );
        return AuthPlan::Generated;
    };
    let text = String::from_utf8_lossy(bytes).into_owned();
    match AccountsFile::from_yaml(&text) {
        Ok(file) if file.accounts.is_empty() => {
            issues.warn(format!(
                "Secret {name:?} lists no accounts: nobody can log in"
            ));
        }
        Ok(_) => {}
        Err(problems) => {
            for problem in problems {
                issues.error(format!("{PATH}[{ACCOUNTS_FILE_KEY}]"), problem);
            }
        }
    }
    AuthPlan::FromSecret {
        name: name.to_string(),
        text,
    }
}

/// Mount a Secret read-only into the registry container. Each in its own
/// folder: a volume cannot be mounted inside a (read-only) Secret volume.
pub fn mount_secret(pod: &mut PodParts, volume: &str, secret: String, dir: &str) {
    pod.mounts.push(VolumeMount {
        name: volume.into(),
        mount_path: dir.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    });
    pod.volumes.push(Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    });
}
