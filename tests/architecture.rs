//! The layout's rules, checked on the source (docs/architecture.md), in the way ggcr's
//! `depcheck_test.go` checks its packages:
//! * dependencies point one way: `app → mirror → {oci, ecr, policy}`, and `oci`, `ecr` and
//!   `policy` do not import one another; the library never reaches the app or clap;
//! * no import cycle between files;
//! * no file in `src/` over 600 lines, test modules aside.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, relative (`oci/client.rs`).
fn files() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(&src(), &src(), &mut out);
    out.sort();
    out
}

/// The file's code without its test module (everything from the first `#[cfg(test)]` at the
/// start of a line), or nothing for a file that is a test module itself.
fn code(file: &str) -> String {
    let text = std::fs::read_to_string(src().join(file)).unwrap();
    if file.ends_with("/tests.rs") {
        return String::new();
    }
    let cut = text.find("\n#[cfg(test)]").unwrap_or(text.len());
    text[..cut]
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("//") || t.starts_with("#!"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of a file: `oci/client.rs` → `oci::client`, `oci/copy/mod.rs` → `oci::copy`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of `path` (module segments).
fn file_of(path: &[String], by_module: &BTreeMap<Vec<String>, String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .find_map(|n| by_module.get(&path[..n]).cloned())
}

/// The files a file imports: `crate::…`, `ecr_mirror_sync::…` (the binary's view of the
/// library) and `super::…` paths, resolved to files.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let all = files();
    let by_module: BTreeMap<Vec<String>, String> =
        all.iter().map(|f| (module_of(f), f.clone())).collect();
    let mut out = BTreeMap::new();
    for f in &all {
        let text = code(f);
        let here = module_of(f);
        let mut deps = BTreeSet::new();
        for root in ["crate::", "ecr_mirror_sync::"] {
            for (i, _) in text.match_indices(root) {
                let rest = &text[i + root.len()..];
                let path: Vec<String> = rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                // In the binary, `crate::app` is `src/app`; in the library `crate::x` is `src/x`;
                // `ecr_mirror_sync::x` (the binary's view of the library) is `src/x` too.
                if let Some(t) = file_of(&path, &by_module) {
                    deps.insert(t);
                }
            }
        }
        for (i, _) in text.match_indices("super::") {
            // Only `super::` that starts a path (not the tail of another one).
            if i > 0 && text[..i].ends_with("::") {
                continue;
            }
            // `super` of `oci/client.rs` (module `oci::client`) and of `oci/copy/mod.rs`
            // (module `oci::copy`) is `oci` alike.
            let mut rest = &text[i..];
            let mut level = here.len();
            while let Some(r) = rest.strip_prefix("super::") {
                rest = r;
                level = level.saturating_sub(1);
            }
            let mut full: Vec<String> = here[..level].to_vec();
            full.extend(
                rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty() && *s != "*")
                    .map(str::to_string),
            );
            if let Some(t) = file_of(&full, &by_module) {
                deps.insert(t);
            }
        }
        deps.remove(f);
        out.insert(f.clone(), deps);
    }
    out
}

fn layer(file: &str) -> &str {
    file.split('/').next().unwrap_or("")
}

#[test]
fn dependencies_point_one_way() {
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("oci", &[][..]),
        ("ecr", &[][..]),
        ("policy", &[][..]),
        ("mirror", &["oci", "ecr", "policy"][..]),
        ("app", &["mirror", "oci", "ecr", "policy"][..]),
    ]);
    let mut bad = Vec::new();
    for (f, deps) in edges() {
        let Some(ok) = allowed.get(layer(&f)) else {
            continue; // lib.rs, main.rs
        };
        for d in deps {
            let l = layer(&d);
            if l != layer(&f) && !ok.contains(&l) && !l.ends_with(".rs") {
                bad.push(format!("{f} imports {d}"));
            }
        }
    }
    for f in files() {
        if layer(&f) != "app" && f != "main.rs" && code(&f).contains("clap::") {
            bad.push(format!("{f} uses clap outside the app"));
        }
    }
    assert!(bad.is_empty(), "against the flow:\n{}", bad.join("\n"));
}

#[test]
fn no_import_cycle_between_files() {
    let g = edges();
    // A depth-first search with colours reports one cycle, enough to fix.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut c = stack[at..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, &g, &mut state, &mut Vec::new()) {
                panic!("import cycle: {}", c.join(" → "));
            }
        }
    }
}

#[test]
fn no_file_over_600_lines_test_modules_aside() {
    let long: Vec<String> = files()
        .into_iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(src().join(&f)).unwrap();
            if f.ends_with("/tests.rs") {
                return None;
            }
            let cut = text.find("\n#[cfg(test)]").unwrap_or(text.len());
            let n = text[..cut].lines().count();
            (n > MAX_LINES).then(|| format!("{f}: {n} lines"))
        })
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}
