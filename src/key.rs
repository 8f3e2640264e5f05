//! Cache keys: namespace + schema version + id, e.g. `posts:v3:r/programming:hot`.
//!
//! Redis keys are binary-safe and take the key as it is. Memcached's text protocol does not: a
//! key there is at most 250 bytes of printable ASCII without spaces, and a key like
//! `a\r\nflush_all` would run a second command on the server. So every key that reaches memcached
//! goes through [`Key::memcached`]: printable keys without `~` pass unchanged, everything else is
//! replaced by a deterministic hash under the same prefix, marked with `~` so a passed-through key
//! can never collide with a hashed one.

use std::fmt;

use md5::{Digest, Md5};

/// The longest key memcached accepts.
pub const MEMCACHED_KEY_BYTES_MAX: usize = 250;
/// The longest id a key may carry (Redis accepts 512 MB; nobody should).
pub const ID_BYTES_MAX: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("namespace {0:?} must be 1-64 characters of a-z, 0-9, '_' or '-'")]
    Namespace(String),
    #[error(
        "key id is {0} bytes, over the {ID_BYTES_MAX}-byte limit: hash it before making a key"
    )]
    IdTooLong(usize),
    #[error("key {0:?} is not namespace:vN:id")]
    Malformed(String),
    #[error("{namespace} is a grouped namespace: a pattern invalidation there takes a whole group, an id prefix ending in ':' (such as \"r/rust:\"), not {prefix:?}")]
    NotAGroup { namespace: String, prefix: String },
}

/// A cache key. Cheap to clone; compares by its full text (and generation).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    full: String,
    prefix_len: usize,
    /// The generation of the key's group the tiers hold it under (see [`Key::in_generation`]):
    /// `None` for a key outside any group, and for the key as the history and database see it.
    generation: Option<u64>,
}

/// The namespace of group generation keys: `aside-gen:v1:listings:v1:r/rust:` holds, as its
/// version, the generation of the group `listings:v1:r/rust:`.
pub const GENERATION_NAMESPACE: &str = "aside-gen";

/// Whether `s` can be a key's namespace: 1 to 64 of `a-z`, `0-9`, `_`, `-`.
pub fn is_namespace(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Key {
    pub fn new(namespace: &str, schema_version: u32, id: &str) -> Result<Key, KeyError> {
        if !is_namespace(namespace) {
            return Err(KeyError::Namespace(namespace.to_string()));
        }
        if id.len() > ID_BYTES_MAX {
            return Err(KeyError::IdTooLong(id.len()));
        }
        let prefix = format!("{namespace}:v{schema_version}:");
        Ok(Key {
            prefix_len: prefix.len(),
            full: prefix + id,
            generation: None,
        })
    }

    /// Parses `namespace:vN:id` (the id may contain anything, `:` included).
    pub fn parse(full: &str) -> Result<Key, KeyError> {
        let bad = || KeyError::Malformed(full.to_string());
        let (ns, rest) = full.split_once(':').ok_or_else(bad)?;
        let (v, id) = rest.split_once(':').ok_or_else(bad)?;
        let n: u32 = v
            .strip_prefix('v')
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?;
        Key::new(ns, n, id)
    }

    /// The key as Redis (and the history) sees it.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// `namespace:vN:`
    pub fn prefix(&self) -> &str {
        &self.full[..self.prefix_len]
    }

    pub fn id(&self) -> &str {
        &self.full[self.prefix_len..]
    }

    /// The key's group: its id up to and including the last `:` (`r/rust:` for
    /// `listings:v1:r/rust:hot`), or `None` when the id has no `:`. A pattern invalidation in a
    /// grouped namespace drops a whole group at once by bumping its generation.
    pub fn group(&self) -> Option<&str> {
        let id = self.id();
        id.rfind(':').map(|end| &id[..=end])
    }

    /// The key whose version is the generation of this key's group
    /// (`aside-gen:v1:listings:v1:r/rust:`), or `None` outside any group.
    pub fn generation_key(&self) -> Option<Key> {
        let group = self.group()?;
        Key::new(
            GENERATION_NAMESPACE,
            1,
            &format!("{}{group}", self.prefix()),
        )
        .ok()
    }

    /// Whether this is a group's generation key (its version is the generation).
    pub fn is_generation(&self) -> bool {
        self.prefix().strip_prefix(GENERATION_NAMESPACE) == Some(":v1:")
    }

    /// This key as the tiers hold it in `generation` of its group: the tier key gains a
    /// `#g<generation>` suffix, so bumping the generation leaves every entry of the group
    /// unreachable at once. The history, the database and the envelope's checksum still see
    /// [`Key::as_str`]. A key outside any group is returned unchanged.
    pub fn in_generation(&self, generation: u64) -> Key {
        let mut k = self.clone();
        if self.group().is_some() {
            k.generation = Some(generation);
        }
        k
    }

    /// The key as the tiers hold it: [`Key::as_str`], with the generation suffix when it has
    /// one. The suffix is told apart from an id that ends the same way because a grouped id
    /// always holds a `:` before it, and the last `#g` is always followed by digits only.
    pub fn stored(&self) -> std::borrow::Cow<'_, str> {
        match self.generation {
            None => std::borrow::Cow::Borrowed(&self.full),
            Some(g) => std::borrow::Cow::Owned(stored_name(&self.full, g)),
        }
    }

    /// The stored key as memcached sees it: always valid for the text protocol.
    pub fn memcached(&self) -> String {
        memcached_key(&self.stored(), self.prefix_len)
    }

    /// What picks the memcached node: the key without its generation, so every generation of a
    /// key lives on the same node (a fence on that node covers them all).
    pub fn route(&self) -> String {
        memcached_key(&self.full, self.prefix_len)
    }
}

/// The name the tiers hold the key `full` under in `generation` of its group (the Redis script
/// `get_in_generation` builds the same: `KEYS[2] .. '#g' .. generation`).
pub fn stored_name(full: &str, generation: u64) -> String {
    format!("{full}#g{generation}")
}

fn passes(s: &str) -> bool {
    s.len() <= MEMCACHED_KEY_BYTES_MAX && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'~')
}

fn memcached_key(full: &str, prefix_len: usize) -> String {
    if passes(full) {
        return full.to_string();
    }
    let digest = Md5::digest(full.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    // The prefix is validated ASCII, so the result is valid and at most 64 + 12 + 33 bytes.
    format!("{}~{hex}", &full[..prefix_len])
}

/// Makes any string safe to send to memcached as a key (for keys that are not [`Key`]s: leases,
/// probes). Same rule as [`Key::memcached`] with no prefix kept.
pub fn memcached_safe(raw: &str) -> String {
    if passes(raw) {
        return raw.to_string();
    }
    let digest = Md5::digest(raw.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("~{hex}")
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.full)
    }
}

/// Escapes Redis glob characters (`*`, `?`, `[`, `]`, `\`) in user input, so that
/// `posts:v3:{escape(user)}*` matches exactly the keys that start with the user's text.
pub fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_keys_pass_unchanged() {
        let k = Key::new("posts", 3, "r/programming:hot").unwrap();
        assert_eq!(k.as_str(), "posts:v3:r/programming:hot");
        assert_eq!(k.memcached(), "posts:v3:r/programming:hot");
        assert_eq!((k.prefix(), k.id()), ("posts:v3:", "r/programming:hot"));
        assert_eq!(Key::parse(k.as_str()).unwrap(), k);
    }

    #[test]
    fn injection_spaces_long_and_unicode_keys_are_hashed_deterministically() {
        for id in [
            "a\r\nflush_all",
            "two words",
            "tab\there",
            "é",
            &"x".repeat(300),
            "~tilde",
            "\0",
        ] {
            let k = Key::new("posts", 1, id).unwrap();
            let m = k.memcached();
            assert!(
                passes(&m.replace('~', "")),
                "{m:?} is not a valid memcached key"
            );
            assert!(m.starts_with("posts:v1:~") && m.len() <= MEMCACHED_KEY_BYTES_MAX);
            assert_eq!(
                m,
                Key::new("posts", 1, id).unwrap().memcached(),
                "deterministic"
            );
        }
        assert_ne!(
            Key::new("p", 1, "a b").unwrap().memcached(),
            Key::new("p", 1, "a  b").unwrap().memcached()
        );
        // A passed-through key never contains `~`, a hashed one always does: no collisions.
        let hashed = Key::new("p", 1, "a b").unwrap().memcached();
        let forged = Key::new("p", 1, &hashed["p:v1:".len()..])
            .unwrap()
            .memcached();
        assert_ne!(hashed, forged);
    }

    #[test]
    fn bad_namespaces_and_ids_are_errors_not_panics() {
        assert!(matches!(
            Key::new("Posts", 1, "x"),
            Err(KeyError::Namespace(_))
        ));
        assert!(matches!(
            Key::new("a:b", 1, "x"),
            Err(KeyError::Namespace(_))
        ));
        assert!(matches!(Key::new("", 1, "x"), Err(KeyError::Namespace(_))));
        assert!(matches!(
            Key::new("p", 1, &"x".repeat(ID_BYTES_MAX + 1)),
            Err(KeyError::IdTooLong(_))
        ));
        assert!(Key::parse("nocolon").is_err() && Key::parse("p:3:x").is_err());
    }

    #[test]
    fn a_grouped_key_is_stored_under_its_generation_and_routed_without_it() {
        let k = Key::new("listings", 1, "r/rust:hot").unwrap();
        assert_eq!(k.group(), Some("r/rust:"));
        assert_eq!(
            k.generation_key().unwrap().as_str(),
            "aside-gen:v1:listings:v1:r/rust:"
        );
        let g = k.in_generation(7);
        assert_eq!(
            (g.as_str(), &*g.stored(), g.memcached().as_str()),
            (
                "listings:v1:r/rust:hot",
                "listings:v1:r/rust:hot#g7",
                "listings:v1:r/rust:hot#g7"
            )
        );
        assert_eq!((g.route(), k.route()), (k.memcached(), k.memcached()));
        assert_ne!(g, k.in_generation(8));
        // No `:` in the id: no group, no generation.
        let p = Key::new("posts", 1, "42").unwrap();
        assert_eq!((p.group(), p.generation_key()), (None, None));
        assert_eq!(p.in_generation(3).stored(), "posts:v1:42");
        // An id that already ends like a generation suffix cannot collide with one.
        let forged = Key::new("listings", 1, "r/rust:hot#g7").unwrap();
        assert_ne!(forged.in_generation(1).stored(), g.stored());
    }

    #[test]
    fn globs_are_escaped() {
        assert_eq!(escape_glob(r"a*b?[c]\d"), r"a\*b\?\[c\]\\d");
    }
}
