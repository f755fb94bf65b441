//! A repository's complete tag list: `GET /v2/<name>/tags/list?n=1000`, every page.
//!
//! The distribution spec paginates the tag list with `n` and `last`, and names the next page in
//! an RFC 5988 (RFC 8288) `Link` header, `<url>; rel="next"`, whose URL may be relative (the
//! spec's own example, `</v2/<name>/tags/list?n=<n>&last=<last>>`) or absolute. Registries
//! differ: distribution (`registry:2`) and ECR paginate; Docker Hub and GHCR answer large pages.
//! [`Registry::all_tags`] follows `next` links until there are none, bounded by
//! [`MAX_TAG_PAGES`] and [`MAX_TAG_LIST_TOTAL_BYTES`], and never sends credentials to a link
//! that leaves the registry.
//!
//! Unlike [`Registry::listed_tags`] (a best-effort, one-page shortcut), this list is complete
//! or an error: a tag rule selects from it, and a silently truncated list would select the
//! wrong tags. It is read once per repository per run and shared by every caller.

use std::sync::Arc;

use futures::StreamExt;
use reqwest::{Method, StatusCode};

pub use super::transport::AllTags;
use super::transport::{transport_err, Access, Registry};
use super::RegistryError;

/// Tags asked for per page (`n=`).
pub const TAG_PAGE_SIZE: usize = 1000;
/// The most pages [`Registry::all_tags`] follows: 1,000 pages of 1,000 tags.
pub const MAX_TAG_PAGES: usize = 1000;
/// The most bytes one page may have (4 MiB: far above 1,000 tags of 128 characters).
pub const MAX_TAG_PAGE_BYTES: usize = 4 << 20;
/// The most bytes of all pages together (64 MiB).
pub const MAX_TAG_LIST_TOTAL_BYTES: usize = 64 << 20;

impl Registry {
    /// Every tag of `repo`, following `Link: <...>; rel="next"` pagination, read once per run
    /// and shared by every caller (an error, too, is returned to every caller of the run).
    ///
    /// Fails, rather than return part of the list, when a page cannot be read, when the
    /// listing goes past [`MAX_TAG_PAGES`] pages or [`MAX_TAG_LIST_TOTAL_BYTES`] bytes, when a
    /// `next` link repeats or points at another host. A repository that does not exist (404)
    /// is an error too (`Status` 404, `NAME_UNKNOWN`).
    pub async fn all_tags(&self, repo: &str) -> Result<AllTags, Arc<RegistryError>> {
        let cell = self
            .all_tag_lists
            .lock()
            .expect("not poisoned")
            .entry(repo.to_string())
            .or_default()
            .clone();
        cell.get_or_init(|| async { self.list_all_tags(repo).await.map_err(Arc::new) })
            .await
            .clone()
    }

    /// The complete tag list of `repo` if this run has already read it, without a request.
    pub(super) fn cached_all_tags(&self, repo: &str) -> Option<AllTags> {
        let map = self.all_tag_lists.lock().expect("not poisoned");
        match map.get(repo)?.get()? {
            Ok(tags) => Some(tags.clone()),
            Err(_) => None,
        }
    }

    async fn list_all_tags(&self, repo: &str) -> Result<AllTags, RegistryError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let what = format!("tag list of {repo}");
        let scopes = Self::scope_key(repo, Access::Pull, None);
        let mut next = format!("/v2/{repo}/tags/list?n={TAG_PAGE_SIZE}");
        let mut seen = std::collections::HashSet::new();
        let mut tags = Vec::new();
        let mut total = 0usize;
        for page in 1.. {
            if page > MAX_TAG_PAGES {
                return Err(RegistryError::Invalid {
                    what,
                    reason: format!(
                        "the tag list goes on past {MAX_TAG_PAGES} pages of {TAG_PAGE_SIZE}; not reading further"
                    ),
                });
            }
            let page_what = format!("{what} (page {page})");
            let (body, url, link) = self
                .retrying(&page_what, || async {
                    let res = self
                        .send(
                            Method::GET,
                            &next,
                            &scopes,
                            &page_what,
                            &[StatusCode::OK],
                            &|rb| rb,
                        )
                        .await?;
                    let url = res.url().clone();
                    let link = res
                        .headers()
                        .get_all(reqwest::header::LINK)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .find_map(next_link)
                        .map(str::to_string);
                    if res
                        .content_length()
                        .is_some_and(|l| l > MAX_TAG_PAGE_BYTES as u64)
                    {
                        return Err(page_too_large(&page_what));
                    }
                    let mut body = Vec::new();
                    let mut stream = res.bytes_stream();
                    while let Some(chunk) = stream.next().await {
                        let chunk =
                            chunk.map_err(|e| transport_err(self.name(), &page_what, &e))?;
                        if body.len() + chunk.len() > MAX_TAG_PAGE_BYTES {
                            return Err(page_too_large(&page_what));
                        }
                        body.extend_from_slice(&chunk);
                    }
                    Ok((body, url, link))
                })
                .await?;
            total += body.len();
            if total > MAX_TAG_LIST_TOTAL_BYTES {
                return Err(RegistryError::Invalid {
                    what,
                    reason: format!(
                        "the tag list is larger than {MAX_TAG_LIST_TOTAL_BYTES} bytes; not reading further"
                    ),
                });
            }
            let list: TagList =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
                    what: page_what.clone(),
                    reason: format!("not a tag list: {e}"),
                })?;
            tags.extend(list.tags.unwrap_or_default());
            let Some(link) = link else { break };
            let resolved = url.join(&link).map_err(|e| RegistryError::Invalid {
                what: page_what.clone(),
                reason: format!("the Link header's next page {link:?} is not a URL: {e}"),
            })?;
            if resolved.origin() != url.origin() {
                // Following it would send this registry's credentials elsewhere.
                return Err(RegistryError::Invalid {
                    what: page_what,
                    reason: format!(
                        "the Link header's next page {resolved} is on another host; not following it"
                    ),
                });
            }
            if !seen.insert(resolved.to_string()) {
                return Err(RegistryError::Invalid {
                    what: page_what,
                    reason: format!(
                        "the Link header's next page {resolved} was already read (a loop)"
                    ),
                });
            }
            next = resolved.to_string();
        }
        Ok(Arc::new(tags))
    }
}

fn page_too_large(what: &str) -> RegistryError {
    RegistryError::Invalid {
        what: what.to_string(),
        reason: format!("a page is larger than {MAX_TAG_PAGE_BYTES} bytes"),
    }
}

/// The URL of the `rel="next"` link in one `Link` header value (RFC 8288): a comma-separated
/// list of `<URI-reference>; param=value; ...`, where `rel` may be quoted and may hold several
/// space-separated relation types. `None` when there is no next link.
pub fn next_link(header: &str) -> Option<&str> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let uri = &rest[start + 1..end];
        let after = &rest[end + 1..];
        // The parameters run up to the next link (a ',' outside quotes) or the end.
        let mut in_quotes = false;
        let mut params_end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '"' => in_quotes = !in_quotes,
                ',' if !in_quotes => {
                    params_end = i;
                    break;
                }
                _ => {}
            }
        }
        let params = &after[..params_end];
        let is_next = params.split(';').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(uri);
        }
        rest = &after[params_end..];
        if rest.is_empty() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn next_links() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                r#"</v2/a/tags/list?last=t999&n=1000>; rel="next""#,
                Some("/v2/a/tags/list?last=t999&n=1000"),
            ),
            (
                r#"<https://r.example/v2/a/tags/list?n=2&last=b>; rel=next"#,
                Some("https://r.example/v2/a/tags/list?n=2&last=b"),
            ),
            (
                r#"</x?last=1>; rel="prev", </y?last=2>; rel="next""#,
                Some("/y?last=2"),
            ),
            (r#"</y>; title="a, b"; rel="first next""#, Some("/y")),
            (r#"</y>; REL="Next""#, Some("/y")),
            (r#"</x>; rel="prev""#, None),
            (r#"</x>; rel="nextpage""#, None),
            ("", None),
            ("garbage", None),
            ("<unterminated; rel=next", None),
        ];
        for (header, want) in cases {
            assert_eq!(next_link(header), *want, "{header}");
        }
    }
}
