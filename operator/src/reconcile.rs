//! The reconcile pipeline: dereference -> plan -> build -> apply -> status.
//! Only dereference, apply and status talk to the API server; plan and
//! build are pure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, ResourceExt};

use crate::build::{self, Built};
use crate::capabilities::ClusterApis;
use crate::components::StatusInput;
use crate::components::route::route_host;
use crate::crd::QuarryRegistry;
use crate::dereference::{Read, dereference};
use crate::generated::{self, Existing, Generated};
use crate::metrics::OperatorMetrics;
use crate::names::registry_name;
use crate::plan::{self, Plan};
use crate::resources::{self, ObjectKind};
use crate::{pki, status};

pub use crate::error::Error;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<OperatorMetrics>,
    /// Image repository of the registry; the tag is the version.
    pub image_repository: String,
    /// Version run when the resource names none.
    pub default_version: String,
    /// Optional APIs of the cluster (Routes, ServiceMonitors).
    pub apis: crate::capabilities::ApiCache,
    /// Remembers the garbage-collection sweeps already reported.
    pub gc_reports: crate::gc_report::Reporter,
    /// Remembers the mirror syncs already reported.
    pub mirror_reports: crate::mirror_report::Reporter,
    /// Reads what the registry pods publish for the operator.
    pub pods: crate::registry_pods::PodReader,
    /// The bucket and upstream probes that passed (probe_memory.rs).
    pub probes: crate::probe_memory::ProbeMemory,
}

/// How soon a resource refused for a failed probe is looked at again.
const PROBE_RETRY: Duration = Duration::from_secs(30);

/// Reconcile one resource.
pub async fn reconcile(cr: Arc<QuarryRegistry>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&cr, &ctx).await;
    ctx.metrics
        .observe_reconcile(started.elapsed(), result.is_ok());
    result
}

async fn reconcile_inner(cr: &QuarryRegistry, ctx: &Context) -> Result<Action, Error> {
    let ns = cr.namespace().ok_or(Error::NoNamespace)?;
    let apis = ctx.apis.get(&ctx.client).await;
    let read = dereference(cr, &ctx.client, &ns, &apis, &ctx.probes).await?;
    let offers = apis.offers();
    let plan = match plan::plan_with(&cr.spec, &read.inputs, &ctx.default_version, offers) {
        Ok(plan) => plan,
        Err(errors) => {
            // Invalid input never touches what runs: only status changes.
            status::write(cr, ctx, &ns, status::invalid(cr, &errors)).await?;
            // A bucket or upstream that failed its probe may come back
            // without an event we watch; anything else waits for an edit.
            return Ok(match read.inputs.probe_failed() {
                true => Action::requeue(PROBE_RETRY),
                false => Action::await_change(),
            });
        }
    };
    let now = Timestamp::now().as_second();
    let rolled = roll_out(cr, ctx, &ns, &apis, &plan, read, now).await?;
    announce_certificates(cr, ctx, &rolled.made).await;
    let (deployment, hpa) = observe(ctx, &ns, cr, &plan).await?;
    let serving = deployment
        .as_ref()
        .and_then(|d| d.status.as_ref()?.ready_replicas)
        .is_some_and(|n| n > 0);
    let gc_health = match plan.registry_config.feature_garbage_collection && serving {
        true => {
            ctx.gc_reports
                .poll(ctx, cr, &ns, plan.tls.serves_https())
                .await
        }
        false => None,
    };
    let mirroring = plan.registry_config.feature_repo_mirror && serving;
    let mirrors = match mirroring {
        true => {
            ctx.mirror_reports
                .poll(ctx, cr, &ns, plan.tls.serves_https())
                .await
        }
        false => None,
    };
    let new_status = status::valid(
        &StatusInput {
            cr,
            plan: &plan,
            generated: &rolled.made,
            deployment: deployment.as_ref(),
            hpa: hpa.as_ref(),
            route_host: rolled.route_host.as_deref(),
            gc_health: gc_health.as_ref(),
            mirrors: mirrors.as_ref(),
            now,
        },
        &rolled.built.config_hash,
    );
    let ready = new_status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    status::write(cr, ctx, &ns, new_status).await?;
    let mut after = requeue_after(ready, &rolled.made, now);
    if plan.registry_config.feature_garbage_collection && serving {
        after = after.min(journal_poll_interval(
            plan.registry_config.garbage_collection_frequency,
        ));
    }
    if mirroring {
        after = after.min(journal_poll_interval(
            plan.registry_config.repo_mirror_interval,
        ));
    }
    Ok(Action::requeue(after))
}

/// What one rollout generated, built and learned.
struct RolledOut {
    made: Generated,
    built: Built,
    /// The host the managed Route serves, as the API server returned it.
    route_host: Option<String>,
}

/// Generate, build and apply. A Route host seen for the first time joins
/// the certificate's names and the pull secret's hosts, so that round is
/// made once more with it (applying what did not change writes nothing).
async fn roll_out(
    cr: &QuarryRegistry,
    ctx: &Context,
    ns: &str,
    apis: &ClusterApis,
    plan: &Plan,
    read: Read,
    now: i64,
) -> Result<RolledOut, Error> {
    let (mut existing, mut known_host) = (read.existing, read.route_host);
    loop {
        let made = generate(cr, plan, &existing, known_host.clone(), now).await?;
        let built = build::build(cr, plan, &ctx.image_repository, &made)?;
        let applied =
            resources::apply(&ctx.client, cr, ns, apis, &built.resources, &ctx.metrics).await?;
        let seen = applied.get(ObjectKind::Route).and_then(route_host);
        if seen.is_none() || seen == known_host {
            return Ok(RolledOut {
                made,
                built,
                route_host: seen,
            });
        }
        existing = generated::as_existing(&made, cr);
        known_host = seen;
    }
}

/// The objects status is derived from, as the API server reports them.
async fn observe(
    ctx: &Context,
    ns: &str,
    cr: &QuarryRegistry,
    plan: &Plan,
) -> Result<(Option<Deployment>, Option<HorizontalPodAutoscaler>), Error> {
    let name = registry_name(cr);
    let read = |kind: &str| {
        let object = format!("{kind} {ns}/{name}");
        move |source| Error::Read { object, source }
    };
    let deployment = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
        .get_opt(&name)
        .await
        .map_err(read("Deployment"))?;
    let hpa = match &plan.hpa {
        Some(_) => Api::<HorizontalPodAutoscaler>::namespaced(ctx.client.clone(), ns)
            .get_opt(&name)
            .await
            .map_err(read("HorizontalPodAutoscaler"))?,
        None => None,
    };
    Ok((deployment, hpa))
}

/// Owned-object watches wake us on rollout progress; the periodic requeue
/// is a safety net only, and comes early for a certificate renewal.
fn requeue_after(ready: bool, made: &Generated, now: i64) -> Duration {
    let after = Duration::from_secs(if ready { 300 } else { 30 });
    match &made.certificate {
        Some(cert) => {
            let until_renewal = (pki::renew_at(cert.not_after) - now).max(1);
            after.min(Duration::from_secs(until_renewal.unsigned_abs()))
        }
        None => after,
    }
}

/// How often the sweep journals (gc_report.rs) and the mirrors' last
/// syncs (mirror_report.rs) are read: about once per interval, within 10 s
/// to 5 min; the journal keeps 32 sweeps, so none is missed (a mirror
/// synced more often than read is told by its latest sync).
fn journal_poll_interval(sweep_every_seconds: u64) -> Duration {
    Duration::from_secs(sweep_every_seconds.clamp(10, 300))
}

/// `generated::generate` on a blocking thread: bcrypt hashing and key
/// generation take tens of milliseconds, which must not stall the runtime
/// (leader-election renewals, other reconciles).
async fn generate(
    cr: &QuarryRegistry,
    plan: &Plan,
    existing: &Existing,
    route_host: Option<String>,
    now: i64,
) -> Result<Generated, Error> {
    let (cr, plan, existing) = (cr.clone(), plan.clone(), existing.clone());
    tokio::task::spawn_blocking(move || {
        generated::generate(&cr, &plan, &existing, route_host.as_deref(), now)
    })
    .await
    .map_err(|e| Error::Generate(format!("the generating task failed: {e}")))?
    .map_err(Error::Generate)
}

/// Publish an Event when a certificate was (re)issued or the CA replaced.
async fn announce_certificates(cr: &QuarryRegistry, ctx: &Context, made: &Generated) {
    let mut notes = Vec::new();
    if let Some(why) = &made.new_ca_because {
        notes.push((
            "CANewlyGenerated",
            format!("a new CA replaces the stored one: {why}"),
        ));
    }
    if let Some(why) = &made.issued_because {
        let until = made
            .certificate
            .as_ref()
            .map(|c| pki::rfc3339(c.not_after))
            .unwrap_or_default();
        notes.push((
            "CertificateIssued",
            format!("serving certificate issued, valid until {until}: {why}"),
        ));
    }
    for (reason, note) in notes {
        tracing::info!(name = %cr.name_any(), namespace = ?cr.namespace(), %note, "{reason}");
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(status::truncate(&note, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        };
        status::publish(ctx, cr, event).await;
    }
}

/// Failed reconciles are logged, counted and retried with a pause.
pub fn error_policy(cr: Arc<QuarryRegistry>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %cr.name_any(), namespace = ?cr.namespace(), error = %error, "reconcile failed");
    ctx.metrics.errors.inc();
    Action::requeue(Duration::from_secs(10))
}
