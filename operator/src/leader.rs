//! Leader election on a coordination.k8s.io Lease, so two operator
//! replicas never reconcile at once. (No leader-election crate supports
//! kube 5 yet; this is the small subset we need.)

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_seconds: i32,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_seconds: i32,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            lease_seconds,
        }
    }

    /// Try once to take or renew the lease. Optimistic concurrency on the
    /// resourceVersion makes two candidates' writes exclusive.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.lease_seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(&self.identity);
        let expired = match &spec.renew_time {
            None => true,
            Some(MicroTime(t)) => {
                let duration = SignedDuration::from_secs(i64::from(
                    spec.lease_duration_seconds.unwrap_or(self.lease_seconds),
                ));
                t.checked_add(duration)
                    .map(|end| end < Timestamp::now())
                    .unwrap_or(true)
            }
        };
        if !mine && !expired {
            return Ok(false);
        }
        let mut new_spec = spec;
        if !mine {
            new_spec.acquire_time = Some(now.clone());
            new_spec.lease_transitions = Some(new_spec.lease_transitions.unwrap_or(0) + 1);
        }
        new_spec.holder_identity = Some(self.identity.clone());
        new_spec.lease_duration_seconds = Some(self.lease_seconds);
        new_spec.renew_time = Some(now);
        lease.spec = Some(new_spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Wait until this process leads.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Keep renewing; returns when leadership is lost (the caller exits, so
    /// a new leader never overlaps with us).
    pub async fn hold(&self) {
        let renew_every = Duration::from_secs((self.lease_seconds / 3).max(1) as u64);
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(renew_every).await;
            match self.try_acquire().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    if last_ok.elapsed() > Duration::from_secs(self.lease_seconds as u64) {
                        return;
                    }
                }
            }
        }
    }
}
