//! The distribution reference grammar's name parts (distribution/reference `regexp.go`), as
//! byte checks. One leaf shared by `oci` (image references on the command line and in resource
//! tags) and `policy` (the scopes of `containers-policy.json`), which may not import each other.
//! Byte checks rather than the grammar's regexes: compiling oci-spec's reference regex took
//! 17.7 MiB of heap (docs/benchmarks.md, "Memory").

/// `[a-z0-9]`.
pub fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `nameComponent`: `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
pub fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        if !(matches!(sep, "." | "_" | "__") || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

/// `nameComponent(/nameComponent)*`.
pub fn is_path(s: &str) -> bool {
    s.split('/').all(is_path_component)
}

/// `domainComponent`: `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
pub fn is_domain_component(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// Anchored `DomainRegexp` without IPv6: `host[:port]`, the port digits.
pub fn is_domain(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    host.split('.').all(is_domain_component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_parts() {
        for ok in ["a", "a-b", "a---b", "a.b", "a_b", "a__b", "0"] {
            assert!(is_path_component(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a___b", "A", "a.-b"] {
            assert!(!is_path_component(bad), "{bad}");
        }
        assert!(is_path("team/app/x"));
        assert!(!is_path("team//app"));
        for ok in ["localhost", "ghcr.io", "my-reg.example.com:5000", "A1.io"] {
            assert!(is_domain(ok), "{ok}");
        }
        for bad in [
            "",
            "-bad.io",
            "bad-.io",
            "a..io",
            "host:",
            "host:port",
            "a_b.io",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
    }
}
