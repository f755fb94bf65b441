//! The Kubernetes adapter: post the run's outcome as Events on the pod that ran it.
//!
//! This module sits at the edge (STYLE.md §12): the rest of the crate knows nothing of Kubernetes, and hands over a
//! [`RunSummary`] and a list of [`ItemProblem`]s once the run is over.
//!
//! # When it talks to the API server
//! Only inside a pod. The Helm chart sets `POD_NAME`, `POD_NAMESPACE` and `POD_UID` through the downward API;
//! [`pod_from_env`] reads them, and when they are absent (a person at a terminal, CI, a plain container)
//! [`publish_from_env`] returns at once without building a client, so no Kubernetes call is ever made outside a
//! cluster.
//!
//! # What it posts
//! [`publish`] posts, through kube's [`Recorder`](kube::runtime::events::Recorder) (the `events.k8s.io/v1` API),
//! one `Normal` event with the summary and one `Warning` per failed or blocked image, all regarding the Pod, with
//! reporting controller `ecr-mirror-sync` and reporting instance the pod name. The RBAC it needs (create and patch
//! on `events`) ships in the Helm chart's Role.
//!
//! # TLS
//! kube is built with `rustls-tls` + `aws-lc-rs`, the same provider as the AWS SDK, so rustls can pick the
//! process-level CryptoProvider on its own. `main` still installs it explicitly first thing (TESTING.md, "The rustls
//! CryptoProvider clash"), in case another dependency ever enables `ring` too.

mod events;

pub use self::events::{publish_from_env, ItemProblem, RunSummary};

/// The pod this process runs in, as given by the downward API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// `metadata.name`, from `POD_NAME`.
    pub name: String,
    /// `metadata.namespace`, from `POD_NAMESPACE`; the Events are created in this namespace.
    pub namespace: String,
    /// `metadata.uid`, from `POD_UID` when set. It ties the Events to this pod rather than to any later pod of the
    /// same name.
    pub uid: Option<String>,
}

/// The pod this process runs in: `Some` only when both `POD_NAME` and `POD_NAMESPACE` are set and not empty
/// (`POD_UID` is optional). `None` outside a pod, and then nothing in this module calls Kubernetes.
pub fn pod_from_env() -> Option<PodRef> {
    pod_from_lookup(|key| std::env::var(key).ok())
}

/// [`pod_from_env`] over any variable lookup, so that tests need not touch the process environment.
fn pod_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<PodRef> {
    let get = |key: &str| {
        lookup(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    Some(PodRef {
        name: get("POD_NAME")?,
        namespace: get("POD_NAMESPACE")?,
        uid: get("POD_UID"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        move |key| map.get(key).map(|v| (*v).to_owned())
    }

    #[test]
    fn pod_needs_name_and_namespace() {
        assert_eq!(pod_from_lookup(lookup(&[])), None);
        assert_eq!(pod_from_lookup(lookup(&[("POD_NAME", "p")])), None);
        assert_eq!(pod_from_lookup(lookup(&[("POD_NAMESPACE", "ns")])), None);
        assert_eq!(
            pod_from_lookup(lookup(&[("POD_NAME", ""), ("POD_NAMESPACE", "ns")])),
            None
        );
        assert_eq!(
            pod_from_lookup(lookup(&[("POD_NAME", "p"), ("POD_NAMESPACE", " ")])),
            None
        );
        assert_eq!(pod_from_lookup(lookup(&[("POD_UID", "u")])), None);
    }

    #[test]
    fn pod_from_downward_api_vars() {
        assert_eq!(
            pod_from_lookup(lookup(&[
                ("POD_NAME", "sync-1-abc"),
                ("POD_NAMESPACE", "mirror")
            ])),
            Some(PodRef {
                name: "sync-1-abc".into(),
                namespace: "mirror".into(),
                uid: None
            })
        );
        assert_eq!(
            pod_from_lookup(lookup(&[
                ("POD_NAME", "sync-1-abc"),
                ("POD_NAMESPACE", "mirror"),
                ("POD_UID", "1234")
            ])),
            Some(PodRef {
                name: "sync-1-abc".into(),
                namespace: "mirror".into(),
                uid: Some("1234".into())
            })
        );
    }

    #[test]
    fn pod_from_env_is_none_without_the_vars() {
        // The test process is not a pod of our chart. Guarded rather than clearing the variables, because
        // changing the process environment races with other tests.
        if std::env::var_os("POD_NAME").is_none() && std::env::var_os("POD_NAMESPACE").is_none() {
            assert_eq!(pod_from_env(), None);
        }
    }
}
