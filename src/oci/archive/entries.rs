//! Reading the archive's entries: the tar index (headers only), names and links.

use super::*;

pub(super) fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Normalises an archive path: `./a//b` → `a/b`. `None` for `..`, absolute paths, or an
/// empty name.
pub(super) fn normalise(name: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Resolves a link target against the link's own directory (symlinks) or the root (hard
/// links), allowing `..` as long as it stays inside the archive.
pub(super) fn resolve_link(entry: &str, target: &Path, hard: bool) -> Option<String> {
    let mut parts: Vec<String> = if hard || target.is_absolute() {
        Vec::new()
    } else {
        let mut p: Vec<String> = entry.split('/').map(str::to_string).collect();
        p.pop();
        p
    };
    for c in target.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            // An absolute target is taken relative to the archive root, as tar does.
            Component::RootDir => {}
            Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

pub(super) fn truncated_error(
    path: &str,
    name: &str,
    offset: u64,
    size: u64,
    len: u64,
) -> ArchiveError {
    ArchiveError::Corrupt {
        path: path.to_string(),
        reason: format!(
            "the tar is truncated: entry {name} needs bytes {offset}..{} but the file is {len} \
             bytes long",
            offset.saturating_add(size)
        ),
    }
}

/// Fills as much of `buf` as the file has; returns how many bytes were read.
pub(super) fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Walks the tar headers (seeking over data) and indexes every entry by normalised name.
/// Also returns where the last entry's data (padded to a block) ends.
pub(super) fn index_tar(
    file: File,
    len: u64,
    shown: &str,
) -> Result<(HashMap<String, Node>, u64), ArchiveError> {
    let corrupt = |reason: String| ArchiveError::Corrupt {
        path: shown.to_string(),
        reason,
    };
    let mut archive = tar::Archive::new(BufReader::new(file));
    let entries = archive
        .entries_with_seek()
        .map_err(|e| corrupt(format!("not a valid tar archive: {e}")))?;
    let mut out = HashMap::new();
    let mut end = 0u64;
    for entry in entries {
        let entry = entry.map_err(|e| corrupt(format!("not a valid tar archive: {e}")))?;
        end = end.max(
            entry
                .raw_file_position()
                .saturating_add(entry.size().div_ceil(512).saturating_mul(512)),
        );
        let raw = entry
            .path()
            .map_err(|e| corrupt(format!("bad entry name: {e}")))?;
        let kind = entry.header().entry_type();
        if raw.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        }) {
            return Err(corrupt(format!(
                "entry {:?} points outside the archive (path traversal); refusing the archive",
                raw.display()
            )));
        }
        // `.` itself, or a name that is not UTF-8 (which no metadata file can refer to).
        let Some(name) = normalise(&raw) else {
            continue;
        };
        let (offset, size) = (entry.raw_file_position(), entry.size());
        let node = if kind.is_file() || kind == tar::EntryType::Continuous {
            if offset.saturating_add(size) > len {
                return Err(truncated_error(shown, &name, offset, size, len));
            }
            Node::File { offset, size }
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| corrupt(format!("bad link target in {name}: {e}")))?
                .ok_or_else(|| corrupt(format!("link {name} has no target")))?;
            match resolve_link(&name, &target, kind.is_hard_link()) {
                Some(t) => Node::Link(t),
                None => {
                    return Err(corrupt(format!(
                        "link {name} -> {} points outside the archive (path traversal)",
                        target.display()
                    )))
                }
            }
        } else if kind.is_dir() {
            Node::Other("directory")
        } else if kind.is_gnu_sparse() {
            Node::Other("sparse file")
        } else {
            Node::Other("special file")
        };
        out.insert(name, node);
    }
    Ok((out, end))
}

/// The tag of a reference as an archive records it: `host/repo:tag` and `repo:tag` (docker
/// `RepoTags`), or a bare `tag` (OCI `ref.name`). `None` when there is no valid tag.
pub fn tag_of_reference(reference: &str) -> Option<String> {
    let r = reference.trim();
    if r.is_empty() || r.contains('@') {
        return None;
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    let tag = if r.contains('/') {
        last.split_once(':')?.1
    } else {
        match last.split_once(':') {
            Some((_, t)) => t,
            None => last,
        }
    };
    crate::oci::validate_tag(tag).ok()?;
    Some(tag.to_string())
}
