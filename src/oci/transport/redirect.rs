//! The redirect policy of every registry client.

/// Redirects, for manifests, blobs and tag lists alike: Docker Hub sends blob GETs to a CDN
/// with a signed URL, and registry.k8s.io sends every GET and HEAD to a regional backend on
/// another host. They are followed (at most [`MAX_REDIRECTS`] hops), never from `https` down
/// to `http`, and **never with credentials to another origin**: reqwest strips
/// `Authorization` (and cookies) from the redirected request whenever the host, port or
/// scheme changes (`remove_sensitive_headers` in `reqwest::redirect`), which is what the
/// CDN's signed URL needs (it refuses a second auth mechanism with 400) and what keeps a
/// token from leaking to a backend. `tests/integration/registries.rs`
/// (`redirect_targets_get_no_credentials_for_manifests_or_blobs`) checks both kinds.
pub(super) fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let downgrade = attempt
            .previous()
            .last()
            .is_some_and(|p| p.scheme() == "https")
            && attempt.url().scheme() == "http";
        if downgrade {
            return attempt.error("a redirect from https to http is refused");
        }
        attempt.follow()
    })
}

/// The longest chain of redirects followed for one request.
const MAX_REDIRECTS: usize = 10;
