//! Sharding: split the set of mirrored repositories between the pods of an Indexed Job.
//!
//! With `shards: N` in the Helm chart, the CronJob's Job runs N pods at once (`completionMode: Indexed`). Kubernetes
//! gives each pod its index in `JOB_COMPLETION_INDEX`, and the chart sets `ECR_MIRROR_SYNC_SHARD_COUNT=N`. Each pod
//! then works only on the repositories its shard [owns](Shard::owns). Kubernetes is the distributed engine: there is
//! no coordinator, no lock and no communication between the pods.
//!
//! # Invariant
//! For a fixed `count`, every repository name is owned by **exactly one** index in `0..count`, and the answer never
//! changes between runs, processes, machines or versions of this program. That is what makes N independent pods
//! together do the work of one, with nothing lost and nothing done twice.
//!
//! # Why SHA-256 and not `std`'s hasher
//! `std::collections::hash_map::DefaultHasher` is SipHash with keys that `RandomState` picks at random per process,
//! and its algorithm is explicitly unspecified across Rust releases. Two pods would disagree about who owns a
//! repository, and repositories would be skipped or copied twice. The owner is instead the first 8 bytes of the
//! SHA-256 of the repository name (UTF-8), read big-endian, modulo the shard count. It is fixed by a standard, well
//! spread for short similar names, and an operator can reproduce it in a shell:
//!
//! ```sh
//! # which shard of 3 owns "mirror/keda"?
//! python3 -c "import hashlib,sys; print(int(hashlib.sha256(sys.argv[1].encode()).hexdigest()[:16],16) % 3)" mirror/keda
//! ```
//!
//! Changing the shard count reassigns most repositories; that is harmless, because every run is complete in itself.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// One shard of N: this process handles the repositories whose stable hash, modulo `count`, equals `index`.
///
/// Build one with [`FromStr`] (`"I/N"`, as given to `--shard`), [`Shard::new`] or [`from_env`], which check that
/// `count >= 1` and `index < count`. `Display` prints the same `I/N` form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    /// This shard's index, from 0 to `count - 1`.
    pub index: u32,
    /// The number of shards; at least 1.
    pub count: u32,
}

impl Shard {
    /// A checked shard: `count` must be at least 1 and `index` below `count`.
    pub fn new(index: u32, count: u32) -> Result<Self, String> {
        if count == 0 {
            return Err("invalid shard: the shard count must be at least 1".to_owned());
        }
        if index >= count {
            return Err(format!(
                "invalid shard {index}/{count}: the index must be below the count (0 to {})",
                count - 1
            ));
        }
        Ok(Self { index, count })
    }

    /// Whether this shard handles the repository `repo_name` (the ECR repository name, e.g. `mirror/keda`).
    ///
    /// Deterministic across processes and releases (see the module docs). A count of 0 or 1 owns everything, so a
    /// hand-built `Shard { index: 0, count: 0 }` is harmless rather than a division by zero.
    pub fn owns(&self, repo_name: &str) -> bool {
        match self.count {
            0 | 1 => true,
            count => bucket(repo_name, count) == self.index,
        }
    }
}

/// The index in `0..count` that owns `name`: the first 8 bytes of SHA-256(name), big-endian, modulo `count`.
fn bucket(name: &str, count: u32) -> u32 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // The result is below `count`, a u32, so the cast cannot truncate.
    (u64::from_be_bytes(first) % u64::from(count)) as u32
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// Parses `I/N`, e.g. `0/3`: shard I (counted from 0) of N.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (index, count) = s.trim().split_once('/').ok_or_else(|| {
            format!("invalid shard {s:?}: expected I/N, e.g. 0/3 (shard I of N, counted from 0)")
        })?;
        let index = parse_number(index, s, "index")?;
        let count = parse_number(count, s, "count")?;
        Shard::new(index, count)
    }
}

fn parse_number(part: &str, whole: &str, what: &str) -> Result<u32, String> {
    part.trim().parse::<u32>().map_err(|e| {
        format!("invalid shard {whole:?}: the {what} {part:?} is not a non-negative integer ({e})")
    })
}

/// Resolves the shard of this process, flags before environment.
///
/// - `explicit` (from `--shard I/N`) wins when given.
/// - Otherwise `job_index` (the value of `JOB_COMPLETION_INDEX`, set by Kubernetes in an Indexed Job) and `count`
///   (the value of `ECR_MIRROR_SYNC_SHARD_COUNT`) give the shard together. Empty values count as absent.
/// - Neither, or only a count of 1: `Ok(None)`, which means "no sharding, handle every repository".
///
/// One without the other is an error rather than a guess: a pod that silently handled everything would duplicate
/// the other pods' work, and a pod that guessed its index could leave repositories out.
pub fn from_env(
    explicit: Option<Shard>,
    job_index: Option<&str>,
    count: Option<&str>,
) -> Result<Option<Shard>, String> {
    if explicit.is_some() {
        return Ok(explicit);
    }
    let job_index = job_index.map(str::trim).filter(|v| !v.is_empty());
    let count = count.map(str::trim).filter(|v| !v.is_empty());
    match (job_index, count) {
        (None, None) => Ok(None),
        (Some(index), Some(count)) => {
            let index = index
                .parse::<u32>()
                .map_err(|e| format!("invalid JOB_COMPLETION_INDEX {index:?}: {e}"))?;
            let count = count
                .parse::<u32>()
                .map_err(|e| format!("invalid ECR_MIRROR_SYNC_SHARD_COUNT {count:?}: {e}"))?;
            Shard::new(index, count).map(Some)
        }
        (None, Some(count)) => match count.parse::<u32>() {
            Ok(1) => Ok(None),
            Ok(n) => Err(format!(
                "ECR_MIRROR_SYNC_SHARD_COUNT={n} but JOB_COMPLETION_INDEX is not set: run as an Indexed Job or pass --shard I/{n}"
            )),
            Err(e) => Err(format!("invalid ECR_MIRROR_SYNC_SHARD_COUNT {count:?}: {e}")),
        },
        (Some(index), None) => Err(format!(
            "JOB_COMPLETION_INDEX={index} is set (an Indexed Job) but ECR_MIRROR_SYNC_SHARD_COUNT is not: set it to the \
             number of shards, or pass --shard I/N"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| match i % 4 {
                0 => format!("mirror/ghcr.io/org{i}/app"),
                1 => format!("docker.io/library/image-{i}"),
                2 => format!("team-{}/service-{i}", i % 7),
                _ => format!("r{i}"),
            })
            .collect()
    }

    #[test]
    fn shards_partition_the_names_with_nothing_lost_or_doubled() {
        let names = names(1000);
        for count in 1..=12u32 {
            let shards: Vec<Shard> = (0..count).map(|i| Shard::new(i, count).unwrap()).collect();
            let mut sizes = vec![0usize; count as usize];
            for name in &names {
                let owners: Vec<u32> = shards
                    .iter()
                    .filter(|s| s.owns(name))
                    .map(|s| s.index)
                    .collect();
                assert_eq!(
                    owners.len(),
                    1,
                    "{name:?} with {count} shards is owned by {owners:?}"
                );
                sizes[owners[0] as usize] += 1;
            }
            assert_eq!(sizes.iter().sum::<usize>(), names.len());
            // Well spread: no shard is empty or more than twice its fair share.
            let fair = names.len() / count as usize;
            for (index, size) in sizes.iter().enumerate() {
                assert!(
                    *size > 0 && *size <= 2 * fair,
                    "shard {index}/{count} got {size} of {} names",
                    names.len()
                );
            }
        }
    }

    #[test]
    fn assignment_is_stable() {
        // Expected values computed outside Rust: int(sha256(name).hexdigest()[:16], 16) % count.
        let cases = [
            ("keda", 2, 3),
            ("nginx", 2, 8),
            ("mirror/ghcr.io/kedacore/keda", 0, 3),
            ("docker.io/library/redis", 0, 5),
            ("", 1, 2),
        ];
        for (name, of_3, of_10) in cases {
            assert_eq!(bucket(name, 3), of_3, "{name:?} of 3");
            assert_eq!(bucket(name, 10), of_10, "{name:?} of 10");
            assert!(Shard::new(of_3, 3).unwrap().owns(name));
        }
    }

    #[test]
    fn one_shard_owns_everything() {
        let all = Shard::new(0, 1).unwrap();
        assert!(names(100).iter().all(|n| all.owns(n)));
        // Hand-built with count 0: no panic, owns everything.
        assert!(Shard { index: 0, count: 0 }.owns("x"));
    }

    #[test]
    fn parses_and_displays() {
        assert_eq!("0/3".parse::<Shard>(), Ok(Shard { index: 0, count: 3 }));
        assert_eq!(" 2 / 3 ".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        assert_eq!("0/1".parse::<Shard>(), Ok(Shard { index: 0, count: 1 }));
        assert_eq!(
            Shard {
                index: 4,
                count: 10
            }
            .to_string(),
            "4/10"
        );
        let s = Shard::new(7, 9).unwrap();
        assert_eq!(s.to_string().parse::<Shard>(), Ok(s));
    }

    #[test]
    fn parse_errors_are_clear() {
        let cases = [
            ("3", "expected I/N"),
            ("", "expected I/N"),
            ("3/3", "the index must be below the count (0 to 2)"),
            ("5/3", "the index must be below the count"),
            ("0/0", "the shard count must be at least 1"),
            ("a/3", "the index \"a\" is not a non-negative integer"),
            ("-1/3", "the index \"-1\" is not a non-negative integer"),
            ("1/x", "the count \"x\" is not a non-negative integer"),
            ("1/2/3", "the count \"2/3\" is not a non-negative integer"),
        ];
        for (input, want) in cases {
            let err = input.parse::<Shard>().unwrap_err();
            assert!(
                err.contains(want),
                "{input:?}: {err:?} should contain {want:?}"
            );
        }
    }

    #[test]
    fn from_env_precedence_and_errors() {
        let s13 = Shard::new(1, 3).unwrap();
        // The flag wins over the environment, even an inconsistent one.
        assert_eq!(from_env(Some(s13), Some("0"), None), Ok(Some(s13)));
        assert_eq!(from_env(Some(s13), Some("2"), Some("5")), Ok(Some(s13)));
        // Indexed Job.
        assert_eq!(from_env(None, Some("1"), Some("3")), Ok(Some(s13)));
        assert_eq!(
            from_env(None, Some(" 2 "), Some("3")),
            Ok(Some(Shard::new(2, 3).unwrap()))
        );
        // Nothing set, or empty values: no sharding.
        assert_eq!(from_env(None, None, None), Ok(None));
        assert_eq!(from_env(None, Some(""), Some("")), Ok(None));
        assert_eq!(from_env(None, None, Some("1")), Ok(None));
        // Errors.
        let err = |i, c| from_env(None, i, c).unwrap_err();
        assert!(err(Some("3"), Some("3")).contains("below the count"));
        assert!(err(Some("0"), Some("0")).contains("at least 1"));
        assert!(err(Some("x"), Some("3")).contains("invalid JOB_COMPLETION_INDEX \"x\""));
        assert!(
            err(Some("0"), Some("three")).contains("invalid ECR_MIRROR_SYNC_SHARD_COUNT \"three\"")
        );
        assert!(err(None, Some("3")).contains("JOB_COMPLETION_INDEX is not set"));
        assert!(err(None, Some("nope")).contains("invalid ECR_MIRROR_SYNC_SHARD_COUNT"));
        assert!(err(Some("0"), None).contains("ECR_MIRROR_SYNC_SHARD_COUNT is not"));
    }
}
