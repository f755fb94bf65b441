//! Kubernetes Events for one run: a `Normal` summary and a `Warning` per failed or blocked image.
//!
//! # One Recorder per event
//! kube's [`Recorder`] de-duplicates: a second event with the same type, reason, action and object within six
//! minutes becomes a PATCH that bumps the first event's `series.count` and keeps the first event's note. That is
//! right for a controller repeating itself, but here every warning has the same reason and object and a different
//! note (the image and the error), so all but the first would be lost. Each event therefore goes through a fresh
//! `Recorder` and is always a create. The RBAC Role still grants `patch`, as kube's documentation asks.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::{pod_from_env, PodRef};

/// The reporting controller of every event (`reportingController`, and `source.component` in `kubectl get events`).
pub const REPORTING_CONTROLLER: &str = "ecr-mirror-sync";

/// At most this many `Warning` events per run. Past it, one last `Warning` with reason `MoreProblems` gives the
/// number left out; the logs have them all. It keeps a run against a registry that is down from flooding the
/// namespace (and the API server) with thousands of events.
pub const MAX_WARNING_EVENTS: usize = 100;

/// The Events API rejects a note over 1 kB.
const MAX_NOTE_BYTES: usize = 1024;

/// The outcome of a run, counted per image (destination repository and tag).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Images copied (missing or stale in ECR).
    pub copied: usize,
    /// Images already in sync, left alone.
    pub skipped: usize,
    /// Images that failed (a bad tag, a missing upstream tag, a registry error after retries).
    pub failed: usize,
    /// Images the signature policy rejected.
    pub blocked: usize,
    /// Images left for the next run because a registry's pull budget was used up.
    pub deferred: usize,
}

/// One image that failed or was blocked; it becomes one `Warning` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemProblem {
    /// The destination, `repository:tag`.
    pub image: String,
    /// The upstream reference it was copied from, e.g. `ghcr.io/kedacore/keda:2.4.0`.
    pub source: String,
    /// Why it failed or was blocked, for a person.
    pub reason: String,
    /// The stable failure label (`docs/output.md`), e.g. `rate-limited`.
    pub label: String,
    /// `true` when the signature policy rejected it (reason `PolicyBlocked`), `false` for a failure (`CopyFailed`).
    pub blocked: bool,
    /// `true` when it was deferred to the next run (reason `CopyDeferred`, label `rate-limited`).
    pub deferred: bool,
}

/// Posts the run's events on `pod`: first one `Normal` event (reason `SyncFinished`) with the summary, then one
/// `Warning` per problem (reason `CopyFailed` or `PolicyBlocked`), at most [`MAX_WARNING_EVENTS`] of them.
///
/// Every event regards the Pod (`v1`, `Pod`, name, namespace and uid) and is created in the pod's namespace through
/// `events.k8s.io/v1`, with reporting controller [`REPORTING_CONTROLLER`] and reporting instance the pod name.
///
/// # Errors
/// Stops at the first call the API server refuses (RBAC missing, API server unreachable) and returns its error: the
/// calls after it would fail the same way. Callers log it; it should not change the run's exit code.
pub async fn publish(
    client: kube::Client,
    pod: &PodRef,
    summary: &RunSummary,
    problems: &[ItemProblem],
) -> Result<(), kube::Error> {
    let reporter = Reporter {
        controller: REPORTING_CONTROLLER.to_owned(),
        instance: Some(pod.name.clone()),
    };
    let regarding = pod_reference(pod);
    for event in events_for(summary, problems) {
        // A fresh Recorder for each event: see the module docs.
        Recorder::new(client.clone(), reporter.clone())
            .publish(&event, &regarding)
            .await?;
    }
    tracing::debug!(
        pod = %pod.name,
        namespace = %pod.namespace,
        warnings = problems.len().min(MAX_WARNING_EVENTS),
        "posted Kubernetes events"
    );
    Ok(())
}

/// [`publish`] when running in a pod ([`pod_from_env`] is `Some`), with a client from the in-cluster config
/// (`kube::Client::try_default`). Outside a pod it returns `Ok(())` at once: no client is built and no Kubernetes
/// call is made.
///
/// # Errors
/// The client cannot be built from the environment, or [`publish`] fails.
pub async fn publish_from_env(
    summary: &RunSummary,
    problems: &[ItemProblem],
) -> Result<(), anyhow::Error> {
    let Some(pod) = pod_from_env() else {
        tracing::debug!(
            "POD_NAME/POD_NAMESPACE not set: not running in a pod, no Kubernetes events"
        );
        return Ok(());
    };
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("building the Kubernetes client for events: {e}"))?;
    publish(client, &pod, summary, problems).await.map_err(|e| {
        anyhow::anyhow!(
            "posting Kubernetes events on pod {}/{}: {e}",
            pod.namespace,
            pod.name
        )
    })
}

/// The Pod as the object every event regards.
fn pod_reference(pod: &PodRef) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Pod".to_owned()),
        name: Some(pod.name.clone()),
        namespace: Some(pod.namespace.clone()),
        uid: pod.uid.clone(),
        ..ObjectReference::default()
    }
}

/// `copied=N skipped=N failed=N blocked=N`, plus ` deferred=N` when some were deferred.
fn summary_note(s: &RunSummary) -> String {
    let mut note = format!(
        "copied={} skipped={} failed={} blocked={}",
        s.copied, s.skipped, s.failed, s.blocked
    );
    if s.deferred > 0 {
        note.push_str(&format!(" deferred={}", s.deferred));
    }
    note
}

/// The events of one run, in the order they are posted (pure, so it is tested without an API server).
fn events_for(summary: &RunSummary, problems: &[ItemProblem]) -> Vec<Event> {
    let mut events = Vec::with_capacity(2 + problems.len().min(MAX_WARNING_EVENTS));
    events.push(Event {
        type_: EventType::Normal,
        reason: "SyncFinished".to_owned(),
        note: Some(summary_note(summary)),
        action: "Sync".to_owned(),
        secondary: None,
    });
    for problem in problems.iter().take(MAX_WARNING_EVENTS) {
        events.push(Event {
            type_: EventType::Warning,
            reason: if problem.blocked {
                "PolicyBlocked"
            } else if problem.deferred {
                "CopyDeferred"
            } else {
                "CopyFailed"
            }
            .to_owned(),
            note: Some(truncate_note(format!(
                "{} from {}: [{}] {}",
                problem.image, problem.source, problem.label, problem.reason
            ))),
            action: "Copy".to_owned(),
            secondary: None,
        });
    }
    if problems.len() > MAX_WARNING_EVENTS {
        events.push(Event {
            type_: EventType::Warning,
            reason: "MoreProblems".to_owned(),
            note: Some(format!(
                "{} more failed or blocked images not posted as events; see the pod logs",
                problems.len() - MAX_WARNING_EVENTS
            )),
            action: "Copy".to_owned(),
            secondary: None,
        });
    }
    events
}

/// Cuts `note` to the Events API limit, on a character boundary, marking the cut with `…`.
fn truncate_note(mut note: String) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note;
    }
    const MARK: &str = "…";
    let mut end = MAX_NOTE_BYTES - MARK.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push_str(MARK);
    note
}

#[cfg(test)]
mod tests {
    //! The API calls are checked against a mocked API server, in controller-rs's style: a [`Scenario`] says what the
    //! run reports, and the [`ApiServerVerifier`] asserts the exact method, path and body of every call, in order,
    //! and that nothing else is called.

    use super::*;
    use http::{Method, Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{json, Value};
    use std::pin::pin;
    use std::time::Duration;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn pod() -> PodRef {
        PodRef {
            name: "ecr-mirror-sync-29000000-0-x7k2p".into(),
            namespace: "mirror".into(),
            uid: Some("5f1c2a9e-0000-4000-8000-000000000001".into()),
        }
    }

    fn problem(n: usize, blocked: bool) -> ItemProblem {
        ItemProblem {
            image: format!("mirror/app{n}:1.{n}.0"),
            source: format!("ghcr.io/org/app{n}:1.{n}.0"),
            reason: if blocked {
                "no valid signature".into()
            } else {
                "manifest unknown (404)".into()
            },
            label: if blocked {
                "policy-blocked"
            } else {
                "upstream-not-found"
            }
            .into(),
            blocked,
            deferred: false,
        }
    }

    #[test]
    fn a_deferred_image_is_a_copy_deferred_warning_and_counted_in_the_summary() {
        let summary = RunSummary {
            copied: 1,
            deferred: 1,
            ..RunSummary::default()
        };
        let deferred = ItemProblem {
            label: "rate-limited".into(),
            reason: "docker.io: the pull budget is used up (w=21600 s)".into(),
            blocked: false,
            deferred: true,
            ..problem(1, false)
        };
        let events = events_for(&summary, &[deferred]);
        assert_eq!(
            events[0].note.as_deref(),
            Some("copied=1 skipped=0 failed=0 blocked=0 deferred=1")
        );
        assert_eq!(events[1].reason, "CopyDeferred");
        assert!(events[1]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("[rate-limited]") && n.contains("w=21600")));
    }

    /// What one run reports, and so which calls the API server must see.
    enum Scenario {
        /// Everything in sync: the summary only.
        CleanRun,
        /// One failed and one blocked image: the summary, then a Warning for each.
        FailedAndBlocked,
        /// More problems than [`MAX_WARNING_EVENTS`]: the summary, the first warnings, then `MoreProblems`.
        ManyProblems,
        /// RBAC is missing: the first call gets 403, and `publish` makes no further call.
        Forbidden,
    }

    struct ApiServerVerifier(Handle);

    /// One expected call: `POST /apis/events.k8s.io/v1/namespaces/mirror/events` with these fields.
    struct Expected {
        type_: &'static str,
        reason: &'static str,
        note: String,
    }

    impl ApiServerVerifier {
        fn run(
            self,
            scenario: Scenario,
            summary: RunSummary,
            problems: Vec<ItemProblem>,
        ) -> tokio::task::JoinHandle<()> {
            tokio::spawn(async move {
                let summary_note = format!(
                    "copied={} skipped={} failed={} blocked={}",
                    summary.copied, summary.skipped, summary.failed, summary.blocked
                );
                let normal = Expected {
                    type_: "Normal",
                    reason: "SyncFinished",
                    note: summary_note,
                };
                let warning = |p: &ItemProblem| Expected {
                    type_: "Warning",
                    reason: if p.blocked {
                        "PolicyBlocked"
                    } else {
                        "CopyFailed"
                    },
                    note: format!("{} from {}: [{}] {}", p.image, p.source, p.label, p.reason),
                };
                let mut handle = self.0;
                match scenario {
                    Scenario::CleanRun => {
                        handle = handle.expect_create(&normal).await;
                    }
                    Scenario::FailedAndBlocked => {
                        handle = handle.expect_create(&normal).await;
                        for p in &problems {
                            handle = handle.expect_create(&warning(p)).await;
                        }
                    }
                    Scenario::ManyProblems => {
                        handle = handle.expect_create(&normal).await;
                        for p in problems.iter().take(MAX_WARNING_EVENTS) {
                            handle = handle.expect_create(&warning(p)).await;
                        }
                        let more = Expected {
                            type_: "Warning",
                            reason: "MoreProblems",
                            note: format!(
                                "{} more failed or blocked images not posted as events; see the pod logs",
                                problems.len() - MAX_WARNING_EVENTS
                            ),
                        };
                        handle = handle.expect_create(&more).await;
                    }
                    Scenario::Forbidden => {
                        handle = handle.refuse_create(&normal).await;
                    }
                }
                handle.expect_no_more_calls().await;
            })
        }
    }

    trait HandleExt: Sized {
        async fn expect_create(self, want: &Expected) -> Self;
        async fn refuse_create(self, want: &Expected) -> Self;
        async fn expect_no_more_calls(self);
    }

    /// Asserts one event create call and returns its body.
    fn check_create(request: &Request<Body>, body: &[u8], want: &Expected) -> Value {
        assert_eq!(request.method(), Method::POST);
        assert_eq!(
            request.uri().path(),
            "/apis/events.k8s.io/v1/namespaces/mirror/events"
        );
        assert!(
            request.uri().query().unwrap_or("").is_empty(),
            "{}",
            request.uri()
        );
        let event: Value = serde_json::from_slice(body).expect("the body is JSON");
        let pod = pod();
        assert_eq!(event["apiVersion"], "events.k8s.io/v1");
        assert_eq!(event["kind"], "Event");
        assert_eq!(event["type"], want.type_);
        assert_eq!(event["reason"], want.reason);
        assert_eq!(event["note"], want.note.as_str());
        assert_eq!(
            event["regarding"],
            json!({"apiVersion": "v1", "kind": "Pod", "name": pod.name, "namespace": pod.namespace, "uid": pod.uid})
        );
        assert_eq!(event["reportingController"], "ecr-mirror-sync");
        assert_eq!(event["reportingInstance"], pod.name.as_str());
        assert_eq!(event["metadata"]["namespace"], "mirror");
        let name = event["metadata"]["name"].as_str().expect("metadata.name");
        assert!(name.starts_with(&format!("{}.", pod.name)), "{name}");
        assert!(event["eventTime"].is_string());
        assert!(
            event.get("series").is_none(),
            "a create, never a series: {event}"
        );
        event
    }

    impl HandleExt for Handle {
        async fn expect_create(mut self, want: &Expected) -> Self {
            let (request, send) = pin!(&mut self)
                .next_request()
                .await
                .expect("an event create call");
            let (parts, body) = request.into_parts();
            let body = body.collect_bytes().await.unwrap();
            let event = check_create(&Request::from_parts(parts, Body::empty()), &body, want);
            let mut response = Response::new(Body::from(serde_json::to_vec(&event).unwrap()));
            *response.status_mut() = StatusCode::CREATED;
            send.send_response(response);
            self
        }

        async fn refuse_create(mut self, want: &Expected) -> Self {
            let (request, send) = pin!(&mut self)
                .next_request()
                .await
                .expect("an event create call");
            let (parts, body) = request.into_parts();
            let body = body.collect_bytes().await.unwrap();
            check_create(&Request::from_parts(parts, Body::empty()), &body, want);
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                "message": "events.events.k8s.io is forbidden: User \"system:serviceaccount:mirror:ecr-mirror-sync\" cannot create resource \"events\""
            });
            let mut response = Response::new(Body::from(serde_json::to_vec(&status).unwrap()));
            *response.status_mut() = StatusCode::FORBIDDEN;
            send.send_response(response);
            self
        }

        async fn expect_no_more_calls(mut self) {
            // The client (and so the mock service) is dropped when publish returns: the handle then yields None.
            let next =
                tokio::time::timeout(Duration::from_secs(5), pin!(&mut self).next_request()).await;
            match next {
                Ok(None) => {}
                Ok(Some((request, _))) => {
                    panic!("unexpected call: {} {}", request.method(), request.uri())
                }
                Err(_) => panic!("the client was not dropped"),
            }
        }
    }

    async fn run(
        scenario: Scenario,
        summary: RunSummary,
        problems: Vec<ItemProblem>,
    ) -> Result<(), kube::Error> {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let verifier = ApiServerVerifier(handle).run(scenario, summary, problems.clone());
        let result = publish(client, &pod(), &summary, &problems).await;
        tokio::time::timeout(Duration::from_secs(10), verifier)
            .await
            .expect("verifier timed out")
            .expect("scenario assertions");
        result
    }

    #[tokio::test]
    async fn clean_run_posts_the_summary_only() {
        let summary = RunSummary {
            copied: 3,
            skipped: 40,
            failed: 0,
            blocked: 0,
            deferred: 0,
        };
        run(Scenario::CleanRun, summary, vec![]).await.unwrap();
    }

    #[tokio::test]
    async fn one_warning_per_failed_or_blocked_image() {
        let summary = RunSummary {
            copied: 1,
            skipped: 2,
            failed: 1,
            blocked: 1,
            deferred: 0,
        };
        let problems = vec![problem(1, false), problem(2, true)];
        run(Scenario::FailedAndBlocked, summary, problems)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn same_reason_twice_is_two_creates_not_a_series() {
        // Two failures share type, reason and object: a shared Recorder would PATCH the first event instead.
        let summary = RunSummary {
            failed: 2,
            ..RunSummary::default()
        };
        let problems = vec![problem(1, false), problem(2, false)];
        run(Scenario::FailedAndBlocked, summary, problems)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn warnings_are_capped() {
        let problems: Vec<_> = (0..MAX_WARNING_EVENTS + 7)
            .map(|n| problem(n, n % 3 == 0))
            .collect();
        let summary = RunSummary {
            failed: problems.len(),
            ..RunSummary::default()
        };
        run(Scenario::ManyProblems, summary, problems)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn forbidden_stops_at_the_first_call() {
        let summary = RunSummary {
            copied: 1,
            ..RunSummary::default()
        };
        let err = run(Scenario::Forbidden, summary, vec![problem(1, false)])
            .await
            .unwrap_err();
        match err {
            kube::Error::Api(status) => assert_eq!(status.code, 403),
            other => panic!("expected the API's 403, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn publish_from_env_outside_a_pod_makes_no_call() {
        // Without POD_NAME/POD_NAMESPACE it must return Ok before building a client: building one here (no
        // in-cluster service account, and in CI no kubeconfig) would fail, and then publishing would too.
        if std::env::var_os("POD_NAME").is_none() && std::env::var_os("POD_NAMESPACE").is_none() {
            publish_from_env(&RunSummary::default(), &[problem(1, false)])
                .await
                .unwrap();
        }
    }

    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let short = "x".repeat(MAX_NOTE_BYTES);
        assert_eq!(truncate_note(short.clone()), short);
        let long = "é".repeat(MAX_NOTE_BYTES);
        let cut = truncate_note(long);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        let events = events_for(
            &RunSummary::default(),
            &[ItemProblem {
                reason: "e".repeat(5000),
                ..problem(1, false)
            }],
        );
        assert!(events[1].note.as_ref().unwrap().len() <= MAX_NOTE_BYTES);
    }
}
