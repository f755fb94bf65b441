//! `containers-policy.json` parsing: `Policy::from_slice` must return `Ok` or `Err` for any
//! bytes, never panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `keyPath`/`keyPaths` are read from disk while parsing. A device or procfs path (e.g.
    // /dev/zero) would make the harness read forever; that is the policy author's choice of
    // file, not a parser bug, so such inputs are skipped.
    if [&b"/dev/"[..], b"/proc/", b"/sys/"]
        .iter()
        .any(|p| data.windows(p.len()).any(|w| w == *p))
    {
        return;
    }
    let _ = ecr_mirror_sync::policy::Policy::from_slice(data, "fuzz");
});
