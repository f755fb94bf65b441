//! Near misses: a key or word that is almost, but not exactly, a known one (a different case,
//! `_` for `-`, or one edit).

/// Why `key` looks like a misspelt `want`, if it does: a different case, `_` for `-`, or one
/// edit (insertion, deletion, substitution, or swap of adjacent characters) after both.
pub(crate) fn near_miss(key: &str, want: &str) -> Option<&'static str> {
    if key == want {
        return None;
    }
    if key.eq_ignore_ascii_case(want) {
        return Some("different case");
    }
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let (k, w) = (norm(key), norm(want));
    if k == w {
        return Some("'_' instead of '-'");
    }
    if edit_distance(&k, &w) == 1 {
        return Some("a one-character typo");
    }
    None
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent swaps), by characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j]
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}
