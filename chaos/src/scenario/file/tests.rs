use super::*;
use crate::fault::{Kind, Side, Target};
use crate::scenario::{find, from_header};

const MINE: &str = r#"# A scenario of a user's own: kill the master while memcached-2 is paused, short TTLs.
name = "failover-under-pause"
about = "the master dies at 1 s while memcached-2 is frozen from 0.8 s to 2 s"

[workload]
duration_ms = 4000
l1_ttl_ms = 200
l2_ttl_ms = 400

[bounds]
staleness_ns_max = 2_000_000_000
hit_ratio_min = "off"

[[fault]]
at_ms = 1000
for_ms = 1500
kind = "kill"
target = "redis-master"

[[fault]]
at_ms = 800
for_ms = 1200
kind = "pause"
target = "memcached-2"

[promise.durable]
holds = true
why = "the invalidator replays W on the new master and fences the frozen node"
"#;

fn error(text: &str) -> String {
    let e = parse("my.toml", text).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

/// `MINE` with `from` replaced by `to` (exactly once).
fn mine_with(from: &str, to: &str) -> String {
    assert_eq!(MINE.matches(from).count(), 1, "{from}");
    MINE.replace(from, to)
}

#[test]
fn a_users_file_gives_its_workload_plan_bounds_and_promises() {
    let sc = parse("my.toml", MINE).unwrap();
    assert_eq!(sc.name, "failover-under-pause");
    assert_eq!(
        (sc.duration_ms, sc.l1_ttl_ms, sc.l2_ttl_ms),
        (4000, 200, 400)
    );
    assert_eq!(sc.keys, 40, "a field left out keeps the default");
    assert_eq!(sc.bounds.staleness_ns_max, Some(2_000_000_000));
    assert_eq!(sc.bounds.hit_ratio_min, None, "\"off\" unbounds");
    assert_eq!(sc.plan.steps.len(), 2);
    assert_eq!(
        sc.plan.steps[1].fault,
        Fault::new(Kind::Pause, Target::Memcached(1))
    );
    assert_eq!(sc.promises.len(), 1);
    assert_eq!(sc.promises[0].strategy, Builtin::Durable);
    assert_eq!(sc.promises[0].expect, Expect::Holds);
    assert_eq!(sc.source.as_deref(), Some(MINE));
}

#[test]
fn a_users_scenario_travels_in_its_header_and_comes_back_the_same() {
    let sc = parse("my.toml", MINE).unwrap();
    let config = sc.config();
    assert_eq!(config["scenario_file"], MINE);
    let back = from_header(&sc.name, &config).unwrap();
    assert_eq!(back.config(), config);
    assert_eq!(back.promises, sc.promises);
    // A shrunk run's header changes the workload; the file's text stays as it was.
    let mut c = config.clone();
    c["workload"]["clients_per_app"] = serde_json::json!(1);
    assert_eq!(from_header(&sc.name, &c).unwrap().clients_per_app, 1);
}

#[test]
fn the_catalog_is_the_files_and_states_every_promise() {
    let all = catalog();
    assert_eq!(all.len(), CATALOG.len());
    for (sc, (name, _)) in all.iter().zip(CATALOG) {
        assert_eq!(&sc.name, name, "a catalog file is named after its scenario");
        assert!(sc.source.is_none(), "catalog headers stay as they were");
        assert!(!sc.config().contains_key("scenario_file"));
        let strategies: Vec<Builtin> = sc.promises.iter().map(|p| p.strategy).collect();
        assert_eq!(strategies, Builtin::ALL.to_vec(), "{name}");
    }
    assert_eq!(find("random").unwrap().draw, Draw::Plan);
    assert_eq!(find("swarm").unwrap().draw, Draw::Swarm);
    let split = find("split-brain").unwrap();
    assert_eq!(split.plan.steps.len(), 5);
    assert!(matches!(
        split.plan.steps[4].fault.kind,
        Kind::Partition {
            peers: Side::Sentinels,
            one_way: false
        }
    ));
}

#[test]
fn an_unknown_field_is_refused_with_its_line() {
    let e = error(&mine_with("l1_ttl_ms = 200", "l1_ttl = 200"));
    assert!(e.starts_with("my.toml:7: unknown field `l1_ttl`"), "{e}");
    let e = error(&mine_with("name = ", "title = \"x\"\nname = "));
    assert!(e.starts_with("my.toml:2: unknown field `title`"), "{e}");
}

#[test]
fn a_value_of_the_wrong_type_is_refused_with_its_line() {
    let e = error(&mine_with("duration_ms = 4000", "duration_ms = \"long\""));
    assert!(e.starts_with("my.toml:6: "), "{e}");
    assert!(e.contains("u64") || e.contains("integer"), "{e}");
}

#[test]
fn a_ttl_of_zero_is_refused_not_a_panic() {
    let e = error(&mine_with("l1_ttl_ms = 200", "l1_ttl_ms = 0"));
    assert_eq!(
        e,
        "my.toml:7: workload.l1_ttl_ms: is 0: a TTL must be at least 1 ms"
    );
    // The same through a hand-edited seed log's header.
    let sc = find("fill-race").unwrap();
    let mut c = sc.config();
    c["workload"]["l1_ttl_ms"] = serde_json::json!(0);
    let e = sc.with_config(&c).unwrap_err();
    assert!(e.contains("workload.l1_ttl_ms: is 0"), "{e}");
    c["workload"]["l1_ttl_ms"] = serde_json::json!(100);
    c["workload"]["kees"] = serde_json::json!(3);
    let e = sc.with_config(&c).unwrap_err();
    assert!(e.contains("unknown field `kees`"), "{e}");
}

#[test]
fn an_unknown_bound_is_refused_with_the_known_ones() {
    let e = error(&mine_with(
        "staleness_ns_max = 2_000_000_000",
        "staleness_max = 2",
    ));
    assert!(
        e.starts_with("my.toml:11: bounds.staleness_max: ") && e.contains("hit_ratio_min"),
        "{e}"
    );
    let e = error(&mine_with("hit_ratio_min = \"off\"", "hit_ratio_min = 1.5"));
    assert!(
        e.starts_with("my.toml:12: bounds.hit_ratio_min: ") && e.contains("between 0 and 1"),
        "{e}"
    );
}

#[test]
fn a_fault_on_a_node_the_cluster_lacks_is_refused() {
    let e = error(&mine_with(
        "target = \"memcached-2\"",
        "target = \"memcached-5\"",
    ));
    assert_eq!(
        e,
        "my.toml:24: fault[2].target: memcached-5 does not exist: the cluster has 4 memcached nodes (the last a spare)"
    );
    let e = error(&mine_with("kind = \"kill\"", "kind = \"melt\""));
    assert!(
        e.starts_with("my.toml:14: fault[1]: unknown fault kind \"melt\""),
        "{e}"
    );
    let e = error(&mine_with(
        "target = \"redis-master\"",
        "target = \"redis-master\"\nlag_ms = 5",
    ));
    assert!(
        e.starts_with("my.toml:19: fault[1].lag_ms: unknown field for a kill fault"),
        "{e}"
    );
    let e = error(&mine_with("for_ms = 1500\n", ""));
    assert!(
        e.starts_with("my.toml:14: fault[1].for_ms: is missing"),
        "{e}"
    );
}

#[test]
fn a_promise_names_real_invariants_and_says_one_thing() {
    let e = error(&mine_with("holds = true", "finds = [\"stalness\"]"));
    assert!(
        e.starts_with("my.toml:27: unknown invariant \"stalness\": known invariants are staleness"),
        "{e}"
    );
    let e = error(&mine_with("holds = true", "holds = true\nfinds = []"));
    assert!(
        e.starts_with("my.toml:26: promise.durable: say either"),
        "{e}"
    );
    let e = error(&mine_with("[promise.durable]", "[promise.durabel]"));
    assert!(
        e.starts_with("my.toml:26: promise.durabel: unknown strategy"),
        "{e}"
    );
    let e = error(&mine_with("holds = true", "holds = true\nbuggify = true"));
    assert!(
        e.contains("promise.durable.buggify: BUGGIFY is for findings"),
        "{e}"
    );
}

#[test]
fn a_promise_reaches_named_coverage_goals() {
    let sc = parse(
        "my.toml",
        &mine_with(
            "holds = true",
            "holds = true\nreaches = [\"switch-replayed\"]",
        ),
    )
    .unwrap();
    let durable = sc.promise(Builtin::Durable).unwrap();
    assert_eq!(durable.reaches, vec![aside::goal::Goal::SwitchReplayed]);
    assert_eq!(
        sc.goals_required("sim", "durable"),
        vec![aside::goal::Goal::SwitchReplayed]
    );
    assert!(sc.goals_required("containers", "durable").is_empty());
    let header = sc.header("sim", "durable", 1);
    assert_eq!(
        header.config["goals_required"],
        serde_json::json!(["switch-replayed"])
    );
    // A replay from the header is held to the goals the header names, and to none when it
    // names none.
    assert_eq!(
        sc.with_config(&header.config)
            .unwrap()
            .goals_required("sim", "durable"),
        vec![aside::goal::Goal::SwitchReplayed]
    );
    let mut bare = header.config.clone();
    bare.remove("goals_required");
    assert!(sc
        .with_config(&bare)
        .unwrap()
        .goals_required("sim", "durable")
        .is_empty());
    let e = error(&mine_with(
        "holds = true",
        "holds = true\nreaches = [\"switch-replay\"]",
    ));
    assert!(
        e.starts_with(
            "my.toml:28: \"switch-replay\" is not a coverage goal: use one of single-flight-joined"
        ),
        "{e}"
    );
    let e = error(&mine_with(
        "holds = true",
        "holds = true\nreaches = [\"fence-set\", \"fence-set\"]",
    ));
    assert!(
        e.contains("promise.durable.reaches: names fence-set twice"),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_toml_or_not_a_scenario_says_so() {
    assert_eq!(
        error(""),
        "my.toml: the file is empty: a scenario needs at least `name` and `about` (docs/scenarios.md)"
    );
    let e = error("name = \"x\"\nabout = \"y\"\n[workload\n");
    assert!(e.starts_with("my.toml:3: "), "{e}");
    let e = error("about = \"y\"\n");
    assert!(e.contains("missing field `name`"), "{e}");
    let e = error("name = \"Has Spaces\"\nabout = \"y\"\n");
    assert!(
        e.starts_with("my.toml:1: name: \"Has Spaces\" is not a scenario name"),
        "{e}"
    );
    let e = load(std::path::Path::new("/nonexistent/s.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/s.toml: cannot read the scenario file"),
        "{e}"
    );
}

#[test]
fn the_docs_example_is_the_example_file_and_parses() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let doc = std::fs::read_to_string(format!("{root}/docs/scenarios.md")).unwrap();
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let block = &doc[start..start + doc[start..].find("```").unwrap()];
    let path = format!("{root}/examples/scenarios/failover-under-pause.toml");
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(
        file.ends_with(block),
        "docs/scenarios.md shows examples/scenarios/failover-under-pause.toml: keep them one text"
    );
    let sc = load(std::path::Path::new(&path)).unwrap();
    assert_eq!(sc.promises.len(), 3);
    assert_eq!(sc.arg(), path);
}

#[test]
fn the_docs_partition_shape_parses_as_a_bridge_of_the_quorum() {
    use crate::fault::{shape::Shape, Kind, Target};
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let doc = std::fs::read_to_string(format!("{root}/docs/scenarios.md")).unwrap();
    let at = doc
        .find("shape = \"bridge\"")
        .expect("docs/scenarios.md shows a shape");
    let start = doc[..at].rfind("```toml\n").unwrap() + "```toml\n".len();
    let block = &doc[start..start + doc[start..].find("```").unwrap()];
    let text = format!("name = \"bridge\"\nabout = \"the docs' bridge\"\n{block}");
    let sc = parse("docs/scenarios.md", &text).unwrap();
    let Kind::Shaped { shape, nodes } = sc.plan.steps[0].fault.kind else {
        panic!("{:?}", sc.plan)
    };
    assert_eq!(shape, Shape::Bridge);
    assert_eq!(nodes[2], Target::Sentinel(1), "sentinel-2 is the bridge");
    let beyond = text.replace("sentinel-3", "sentinel-4");
    let e = parse("docs/scenarios.md", &beyond).unwrap_err().to_string();
    assert!(e.contains("fault[1].nodes"), "{e}");
}

#[test]
fn a_scenarios_own_t_is_kept_when_within_the_settle_and_refused_past_it() {
    let text = |t_ns: u64| {
        format!("name = \"t\"\nabout = \"own T\"\n[bounds]\nconverge_within_ns = {t_ns}\n")
    };
    let sc = parse("t.toml", &text(500_000_000)).unwrap();
    let judged = sc.judged_by(None, false);
    assert_eq!(judged.bounds.converge_within_ns, Some(500_000_000));
    assert_eq!(judged.judged_by(None, false).bounds, judged.bounds);
    let e = parse("t.toml", &text(2_000_000_000))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bounds.converge_within_ns") && e.contains("settle_ms"),
        "{e}"
    );
    let plain = parse("t.toml", "name = \"t\"\nabout = \"default T\"\n").unwrap();
    assert_eq!(
        plain.judged_by(None, false).bounds.converge_within_ns,
        Some(plain.settle_ms * 1_000_000)
    );
}
