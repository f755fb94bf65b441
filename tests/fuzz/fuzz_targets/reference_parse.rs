//! Image references: `TaggedRef::parse`, `ImageRef::parse` and the policy's
//! `ImageName::parse`. Checks: no panic, and a parsed `TaggedRef`/`ImageRef` prints (Display)
//! to a string that parses back to the same value.
#![no_main]

use ecr_mirror_sync::policy::ImageName;
use ecr_mirror_sync::oci::{ImageRef, TaggedRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = TaggedRef::parse(s) {
        let _ = r.reference();
        let printed = r.to_string();
        assert_eq!(
            TaggedRef::parse(&printed).as_ref(),
            Ok(&r),
            "{s:?} parsed, printed as {printed:?}, which does not parse back"
        );
    }
    if let Ok(r) = ImageRef::parse(s) {
        let printed = r.to_string();
        assert_eq!(
            ImageRef::parse(&printed).as_ref(),
            Ok(&r),
            "{s:?} -> {printed:?}"
        );
        let _ = r.at_tag("latest");
    }
    let _ = ImageName::parse(s);
});
