//! The fuzz targets: one per parser of outside input, each with the contracts it must keep on
//! any bytes, and the corpus of real files it starts from.

use std::path::Path;

/// A target: its name, the function, and its corpus.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub corpus: fn() -> Vec<Vec<u8>>,
}

pub const ALL: &[Target] = &[
    Target {
        name: "history",
        run: history,
        corpus: history_corpus,
    },
    Target {
        name: "key",
        run: key,
        corpus: key_corpus,
    },
    Target {
        name: "envelope",
        run: envelope,
        corpus: envelope_corpus,
    },
    Target {
        name: "scenario-file",
        run: scenario_file,
        corpus: scenario_corpus,
    },
    Target {
        name: "seed-log",
        run: seed_log,
        corpus: history_corpus,
    },
];

pub fn find(name: &str) -> Result<&'static Target, String> {
    ALL.iter().find(|t| t.name == name).ok_or_else(|| {
        let names: Vec<&str> = ALL.iter().map(|t| t.name).collect();
        format!(
            "unknown target {name:?}: the targets are {}",
            names.join(", ")
        )
    })
}

/// An error a user sees must be one line.
fn one_line(what: &str, e: &str) {
    assert!(
        !e.contains('\n') && !e.contains('\r'),
        "{what}'s error spans lines: {e:?}"
    );
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn files(dir: &str, ext: &str) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(root().join(dir))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == ext));
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// A history: the checkers judge it or refuse it in one line; a report renders; the fast line
/// scanner agrees with serde_json on every line it accepts.
pub fn history(b: &[u8]) {
    match invariants::check_reader("<fuzz>", b, &[]) {
        Ok(r) => {
            let _ = r.table(&Default::default());
            let _ = r.to_json();
        }
        Err(e) => one_line("the history checker", &e.to_string()),
    }
    for line in b.split(|&x| x == b'\n') {
        if let Some(Ok(fast)) = invariants::history::parse_line_fast(line) {
            let serde = invariants::history::parse_line_serde(line, false);
            assert_eq!(
                format!("{:?}", Ok::<_, ()>(fast)),
                format!("{:?}", serde.map_err(|_| ())),
                "the fast scanner accepted a line serde_json reads otherwise: {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}

fn history_corpus() -> Vec<Vec<u8>> {
    files("invariants/test_data", "jsonl")
}

/// A key: parsed or refused in one line; every key the library makes is a valid memcached key.
pub fn key(b: &[u8]) {
    let Ok(s) = std::str::from_utf8(b) else {
        return;
    };
    let valid = |k: &str| {
        assert!(
            k.len() <= aside::key::MEMCACHED_KEY_BYTES_MAX
                && k.bytes().all(|c| (0x21..=0x7e).contains(&c)),
            "not a memcached key: {k:?} (from {s:?})"
        )
    };
    match aside::Key::parse(s) {
        Ok(k) => {
            valid(&k.memcached());
            valid(&k.route());
            assert_eq!(
                aside::Key::parse(k.as_str()).map(|k2| k2.as_str().to_string()),
                Ok(k.as_str().to_string()),
                "a parsed key does not parse back to itself"
            );
        }
        Err(e) => one_line("Key::parse", &e.to_string()),
    }
    valid(&aside::key::memcached_safe(s));
}

fn key_corpus() -> Vec<Vec<u8>> {
    [
        "posts:v1:42",
        "users:v3:alice",
        "posts:v1:a b",
        "posts:v1:line\r\nbreak",
        "feed:v2:group:7#g3",
        "aside-gen:v1:posts",
        ":v1:",
        "posts:v99999999999:1",
        "x",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// A cache entry: decoded or refused, never a panic; what decodes encodes back to the same
/// bytes' meaning, and its predicted size is its size.
pub fn envelope(b: &[u8]) {
    use aside::envelope::{decode, encode, encoded_len};
    match decode("posts:v1:1", b) {
        Ok(e) => {
            let again = encode("posts:v1:1", &e);
            assert_eq!(encoded_len(&e), again.len(), "encoded_len is not the size");
            assert_eq!(
                decode("posts:v1:1", &again).ok(),
                Some(e),
                "an entry does not survive encode and decode"
            );
        }
        Err(e) => one_line("envelope::decode", &e.to_string()),
    }
}

fn envelope_corpus() -> Vec<Vec<u8>> {
    use aside::envelope::{encode, Entry};
    vec![
        encode(
            "posts:v1:1",
            &Entry::Value {
                version: 7,
                fresh_until_ms: 1_700_000_000_000,
                payload: b"hello".to_vec(),
            },
        ),
        encode(
            "posts:v1:1",
            &Entry::Value {
                version: 1,
                fresh_until_ms: 0,
                payload: b"a|b|c\r\n".to_vec(),
            },
        ),
        encode("posts:v1:1", &Entry::Tombstone { version: 9 }),
        encode("posts:v1:1", &Entry::Absent { version: 0 }),
        b"not an envelope".to_vec(),
    ]
}

/// A scenario file: loaded or refused in one line naming the file; what loads can be described.
pub fn scenario_file(b: &[u8]) {
    let text = String::from_utf8_lossy(b);
    match chaos::scenario::file::parse("fuzz.toml", &text) {
        Ok(sc) => {
            let _ = chaos::scenario::file::describe(&sc);
        }
        Err(e) => {
            let e = e.to_string();
            one_line("a scenario file", &e);
            assert!(
                e.starts_with("fuzz.toml"),
                "the error does not name the file: {e}"
            );
        }
    }
}

fn scenario_corpus() -> Vec<Vec<u8>> {
    let mut c = files("chaos/scenarios", "toml");
    c.extend(files("examples/scenarios", "toml"));
    c
}

/// A seed log: read or refused in one line naming the file.
pub fn seed_log(b: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("fuzz.jsonl");
    std::fs::write(&path, b).expect("write the input");
    if let Err(e) = sim::seedlog::read(&path) {
        one_line("a seed log", &e);
        assert!(
            e.contains("fuzz.jsonl"),
            "the error does not name the file: {e}"
        );
    }
}
