//! `aside check` as a user runs it: exit codes, the table, the JSON, one-line errors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn aside(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aside"))
        .args(args)
        .output()
        .expect("run aside")
}

fn fixture(name: &str) -> String {
    let p: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "invariants",
        "test_data",
        name,
    ]
    .iter()
    .collect();
    p.to_string_lossy().into_owned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_failing_history_exits_1_and_shows_its_witness_lines() {
    let out = aside(&["check", &fixture("fill-race.jsonl")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("staleness         FAIL"), "{t}");
    assert!(
        t.contains(r#"3: {"type":"op","id":2,"client":2,"key":"post:42","f":"write""#),
        "{t}"
    );
    assert!(t.contains("=> history FAILS"));
}

#[test]
fn json_is_one_object_per_file_with_the_issue_fields() {
    let f = fixture("fill-race.jsonl");
    let out = aside(&["check", "--json", &f, &f]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out.stdout);
    let objs: Vec<serde_json::Value> = t
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 2);
    let st = &objs[0]["invariants"][0];
    assert_eq!(
        (st["name"].as_str(), st["holds"].as_bool()),
        (Some("staleness"), Some(false))
    );
    assert_eq!(st["delta_ns"], 500_000_000);
    assert_eq!(st["stale_reads"], 1);
    assert_eq!(st["witness"], serde_json::json!([2, 3]));
    assert_eq!(objs[0]["ops"], 3);
}

#[test]
fn a_looser_bound_from_the_flags_lets_it_pass_staleness() {
    let out = aside(&[
        "check",
        "--json",
        "--bound-ms",
        "600",
        &fixture("fill-race.jsonl"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["invariants"][0]["holds"], true);
}

#[test]
fn a_holding_history_exits_0() {
    let out = aside(&["check", &fixture("holds.jsonl")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("=> history holds"));
}

#[test]
fn bad_input_is_one_line_and_exit_2_and_other_files_are_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"type\":\"header\",\"format\":1}\n{\"type\":\"op\",\"id\":1,\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.jsonl");
    let out = aside(&[
        "check",
        bad.to_str().unwrap(),
        missing.to_str().unwrap(),
        dir.path().to_str().unwrap(),
        &fixture("holds.jsonl"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].contains("bad.jsonl:2: invalid JSON"), "{err}");
    assert!(lines[1].contains("missing.jsonl: cannot read"), "{err}");
    assert!(lines[2].contains("is a directory"), "{err}");
    assert!(
        text(&out.stdout).contains("=> history holds"),
        "the good file is still reported"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn bad_flags_exit_2() {
    let out = aside(&[
        "check",
        "--bound",
        "hit_ratio_min=2",
        &fixture("holds.jsonl"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("hit_ratio_min must be a number between 0 and 1"));
    let out = aside(&[
        "check",
        "--bound-ms",
        "99999999999999999",
        &fixture("holds.jsonl"),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

fn aside_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_aside"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The command may exit (bad flags) before reading: a closed pipe is not the test's failure.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

#[test]
fn ring_prints_where_each_key_lives_as_other_ketama_clients_do() {
    let vectors = include_str!("../../test_data/ketama.tsv");
    let mut lines = vectors.lines().filter(|l| !l.starts_with('#'));
    let nodes = lines.next().unwrap();
    let pairs: Vec<(&str, &str)> = lines
        .take(200)
        .map(|l| l.split_once('\t').unwrap())
        .collect();
    let input: String = pairs.iter().map(|(k, _)| format!("{k}\n")).collect();
    let out = aside_stdin(&["ring", "--raw", "--nodes", nodes], &input);
    assert_eq!(out.status.code(), Some(0));
    let want: String = pairs.iter().map(|(k, n)| format!("{k}\t{n}\n")).collect();
    assert_eq!(text(&out.stdout), want);
    // Without --raw, a key with spaces is routed by the memcached key aside sends for it.
    let out = aside_stdin(&["ring", "--nodes", nodes], "posts:v1:two words\n");
    let expected = aside::Ring::new(&nodes.split(',').collect::<Vec<_>>())
        .unwrap()
        .node(
            aside::Key::parse("posts:v1:two words")
                .unwrap()
                .memcached()
                .as_bytes(),
        )
        .to_string();
    assert_eq!(
        text(&out.stdout),
        format!("posts:v1:two words\t{expected}\n")
    );
}

#[test]
fn ring_rejects_bad_nodes_in_one_line() {
    let out = aside_stdin(&["ring", "--nodes", "a:1,a:1"], "k\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("appears twice"));
    let out = aside_stdin(&["ring", "--nodes", "nohost"], "k\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("\"nohost\" is not host:port"));
}

#[test]
fn aside_log_shows_the_check_span_and_a_bad_filter_is_one_line() {
    let f = fixture("fill-race.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_aside"))
        .args(["check", &f])
        .env("ASIDE_LOG", "info")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        err.contains("aside.check") && err.contains("fails=true") && err.contains("close"),
        "{err}"
    );
    let quiet = Command::new(env!("CARGO_BIN_EXE_aside"))
        .args(["check", &f])
        .env_remove("ASIDE_LOG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(quiet.stderr.is_empty(), "{}", text(&quiet.stderr));
    let bad = Command::new(env!("CARGO_BIN_EXE_aside"))
        .args(["check", &f])
        .env("ASIDE_LOG", "aside=[")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(
        err.contains("is not a log filter") && err.lines().count() == 1,
        "{err}"
    );
}
