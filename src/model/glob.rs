//! Redis's glob matching (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`.

pub fn matches(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    // Backtracking point for the last `*`: (pattern index after it, string index).
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p + 1, i));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, next)) = class(pattern, p, s[i]) {
                        if ok {
                            p = next;
                            i += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == s[i] {
                        p += 2;
                        i += 1;
                        continue;
                    }
                }
                c => {
                    if c == s[i] {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A `[...]` class at `p`: whether `c` is in it, and the index after `]`.
fn class(pat: &[u8], p: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = p + 1;
    let not = pat.get(j) == Some(&b'^');
    if not {
        j += 1;
    }
    let mut hit = false;
    loop {
        match pat.get(j) {
            None => return None, // unterminated: Redis treats the rest literally; we do not match
            Some(b']') => break,
            Some(b'\\') if j + 1 < pat.len() => {
                hit |= pat[j + 1] == c;
                j += 2;
            }
            Some(&a)
                if pat.get(j + 1) == Some(&b'-') && j + 2 < pat.len() && pat[j + 2] != b']' =>
            {
                let (lo, hi) = if a <= pat[j + 2] {
                    (a, pat[j + 2])
                } else {
                    (pat[j + 2], a)
                };
                hit |= (lo..=hi).contains(&c);
                j += 3;
            }
            Some(&a) => {
                hit |= a == c;
                j += 1;
            }
        }
    }
    Some((hit != not, j + 1))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob() {
        let m = |p: &str, s: &str| matches(p.as_bytes(), s.as_bytes());
        assert!(m("posts:v3:r/rust:*", "posts:v3:r/rust:hot"));
        assert!(!m("posts:v3:r/rust:*", "posts:v3:r/go:hot"));
        assert!(
            m("h?llo", "hello")
                && m("h*llo", "heeeello")
                && m("h[ae]llo", "hallo")
                && !m("h[^e]llo", "hello")
        );
        assert!(m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
        assert!(m(r"r/\*evil", "r/*evil") && !m(r"r/\*evil", "r/xevil"));
        assert!(m(r"posts:v3:r/\[*", "posts:v3:r/[x]") && !m(r"posts:v3:r/\[*", "posts:v3:r/x"));
        assert!(m("*", "") && m("a*b*c", "aXXbYYc") && !m("a*b*c", "aXXbYY"));
    }
}
