//! Recognising ECR registry host names. Pure.
//!
//! `copy --dest <host>/<repo>` must know whether the destination is ECR (and then which account
//! and region, to get a token from the right control plane) or some other registry (plain
//! registry auth). The host name is the only reliable signal, so the grammar is exact rather
//! than a loose `contains(".dkr.ecr.")`:
//!
//! * `<12 digits>.dkr.ecr.<region>.amazonaws.com` (commercial and GovCloud regions)
//! * `<12 digits>.dkr.ecr-fips.<region>.amazonaws.com` (FIPS endpoints)
//! * the same with `.amazonaws.com.cn` (China regions)
//! * `<12 digits>.dkr-ecr[-fips].<region>.on.aws` (the dual-stack IPv6 endpoints)
//!
//! A `:port` suffix is accepted and ignored; matching is case-insensitive, as DNS is.

/// The account and region of an ECR registry host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcrHost {
    /// The 12-digit AWS account id.
    pub account: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
}

/// Parses an ECR registry host name; `None` for any other host. See the module docs for the
/// accepted forms.
pub fn parse_ecr_host(host: &str) -> Option<EcrHost> {
    let host = host.to_ascii_lowercase();
    let host = strip_port(&host)?;
    let labels: Vec<&str> = host.split('.').collect();
    let (account, service, region, suffix) = match labels.as_slice() {
        [account, "dkr", service, region, rest @ ..] => (*account, *service, *region, rest),
        [account, service, region, rest @ ..] => (*account, *service, *region, rest),
        _ => return None,
    };
    let dkr_prefixed = labels.get(1) == Some(&"dkr");
    let ok_service = if dkr_prefixed {
        matches!(service, "ecr" | "ecr-fips")
            && matches!(suffix, ["amazonaws", "com"] | ["amazonaws", "com", "cn"])
    } else {
        matches!(service, "dkr-ecr" | "dkr-ecr-fips") && matches!(suffix, ["on", "aws"])
    };
    if !ok_service || !is_account(account) || !is_region(region) {
        return None;
    }
    Some(EcrHost {
        account: account.to_string(),
        region: region.to_string(),
    })
}

/// `host[:port]` → `host`; `None` when the port is not a number.
fn strip_port(s: &str) -> Option<&str> {
    match s.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => Some(h),
        Some(_) => None,
        None => Some(s),
    }
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `us-east-1`, `us-gov-west-1`, `cn-north-1`, `ap-southeast-5`: lowercase words separated by
/// `-`, at least two words, ending in a number.
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let Some((last, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_hosts() {
        let cases = [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                "123456789012",
                "us-east-1",
            ),
            (
                "123456789012.dkr.ecr.eu-central-2.amazonaws.com",
                "123456789012",
                "eu-central-2",
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "123456789012",
                "us-gov-west-1",
            ),
            (
                "000000000000.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "000000000000",
                "cn-north-1",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
                "123456789012",
                "us-east-1",
            ),
            (
                "123456789012.DKR.ECR.US-EAST-1.AMAZONAWS.COM",
                "123456789012",
                "us-east-1",
            ),
            (
                "123456789012.dkr-ecr.us-west-2.on.aws",
                "123456789012",
                "us-west-2",
            ),
            (
                "123456789012.dkr-ecr-fips.us-east-1.on.aws",
                "123456789012",
                "us-east-1",
            ),
        ];
        for (host, account, region) in cases {
            let h = parse_ecr_host(host).unwrap_or_else(|| panic!("{host} should parse"));
            assert_eq!(
                (h.account.as_str(), h.region.as_str()),
                (account, region),
                "{host}"
            );
        }
    }

    #[test]
    fn other_hosts() {
        for host in [
            "",
            "docker.io",
            "ghcr.io",
            "127.0.0.1:5000",
            "localhost",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com", // 11 digits
            "1234567890123.dkr.ecr.us-east-1.amazonaws.com", // 13 digits
            "12345678901a.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.amazonaws.com",
            "123456789012.dkr.ecr.us-east.amazonaws.com",
            "123456789012.dkr.ecr.useast1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "123456789012.dkr.ecr.us-east-1.example.com",
            "123456789012.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.s3.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.on.aws",
            "123456789012.dkr-ecr.us-east-1.amazonaws.com",
            "public.ecr.aws",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:https",
            "api.ecr.us-east-1.amazonaws.com",
        ] {
            assert_eq!(parse_ecr_host(host), None, "{host:?} should not parse");
        }
    }
}
