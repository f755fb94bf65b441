//! ECR resource tags → `MirrorSpec` (`spec_from_tags`). The input is text: the first line is
//! the repository name, every further line a `key=value` tag (a line without `=` is a key
//! with an empty value). Checks: no panic, and a spec that parses writes back (`spec_to_tags`)
//! to tags that parse to the same spec, as `spec_to_tags` documents.
#![no_main]

use ecr_mirror_sync::mirror::tags::{spec_from_tags, spec_to_tags, TagKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let repository = lines.next().unwrap_or_default();
    let tags: Vec<(String, String)> = lines
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect();
    let keys = TagKeys::default();
    let parsed = spec_from_tags(repository, &tags, &keys);
    if let Some(Ok(spec)) = parsed.spec {
        let again = spec_from_tags(repository, &spec_to_tags(&spec, &keys), &keys);
        assert_eq!(
            again.spec,
            Some(Ok(spec)),
            "spec_to_tags is not the inverse of spec_from_tags"
        );
    }
});
