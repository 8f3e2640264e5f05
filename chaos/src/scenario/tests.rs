use super::*;

#[test]
fn unknown_scenarios_name_the_known_ones() {
    let e = find("nope").unwrap_err();
    assert!(e.contains("fill-race") && e.contains("redis-failover"));
    assert_eq!(find("fill-race").unwrap().name, "fill-race");
}

#[test]
fn the_tables_scenario_column_is_as_wide_as_the_longest_name() {
    let longest = catalog().iter().map(|s| s.name.len()).max().unwrap();
    assert_eq!(NAME_WIDTH, longest);
}

#[test]
fn a_scenario_is_what_its_header_config_says() {
    for sc in catalog() {
        let sc = sc.for_seed(3);
        let back = sc.with_config(&sc.config()).unwrap();
        assert_eq!(back.config(), sc.config(), "{}", sc.name);
        assert_eq!(back.draw, Draw::Fixed);
    }
    let sc = find("split-brain").unwrap();
    let mut c = sc.config();
    c["workload"]["clients_per_app"] = json!(2);
    c["faults"] = json!([]);
    let small = sc.with_config(&c).unwrap();
    assert_eq!((small.clients_per_app, small.plan.steps.len()), (2, 0));
    c["workload"]["zipf_s"] = json!("steep");
    assert!(sc.with_config(&c).unwrap_err().contains("workload.zipf_s"));
}

#[test]
fn the_header_config_gives_back_the_typed_bounds() {
    for sc in catalog() {
        let mut b = Bounds::default();
        b.apply_config(&sc.config()).unwrap();
        assert_eq!(b, sc.bounds, "{}", sc.name);
        let _ = sc.cache_config();
    }
}

#[test]
fn every_swarm_family_draws_a_scenario_the_worlds_accept_and_its_header_replays() {
    let swarm = find("swarm").unwrap();
    let mut workloads = std::collections::BTreeSet::new();
    for seed in (1..=1000).chain([crate::swarm::seed(5, 9)]) {
        let sc = swarm.for_seed(seed);
        assert_eq!(sc.draw, Draw::Fixed);
        sc.validate().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let back = sc.with_config(&sc.config()).unwrap();
        assert_eq!(back.config(), sc.config(), "seed {seed}");
        workloads.insert(sc.config()["workload"].to_string());
    }
    // A family's variants share its workload; families differ.
    assert_eq!(
        swarm.for_seed(crate::swarm::seed(5, 9)).config()["workload"],
        swarm.for_seed(5).config()["workload"]
    );
    assert!(workloads.len() > 900, "{}", workloads.len());
}

#[test]
fn a_random_plan_takes_the_hit_ratio_bound_of_the_incidents_it_draws() {
    let random = find("random").unwrap();
    let base = random.bounds.hit_ratio_min;
    let (mut lowered, mut kept) = (0, 0);
    for seed in 1..=200 {
        let sc = random.for_seed(seed);
        let latency = sc
            .plan
            .steps
            .iter()
            .any(|s| matches!(s.fault.kind, Kind::Latency { .. }));
        if latency {
            // The lowest of its incidents' bounds (seed 81 also draws a memory limit: 0.7).
            let min = sc.bounds.hit_ratio_min.unwrap();
            assert!(min <= 0.75, "seed {seed}: {min}");
        }
        if sc.bounds.hit_ratio_min == base {
            kept += 1;
        } else {
            lowered += 1;
        }
        // The bound travels with the history: a replay judges by the same one.
        let again = random.with_config(&sc.config()).unwrap();
        assert_eq!(again.bounds, sc.bounds, "seed {seed}");
    }
    // The first seed drawing two incidents of 0.75 each (a spike, a flush): 0.1 lower for the
    // second.
    let lows = |seed: u64| -> Vec<f64> {
        let sc = random.for_seed(seed);
        (sc.plan.steps.iter())
            .filter_map(|s| incident_hit_ratio_min(s.fault.kind, sc.read_from_replica))
            .collect()
    };
    let two = (1..=1000)
        .find(|&seed| lows(seed) == [0.75, 0.75])
        .expect("some seed of 1-1000 draws two incidents of 0.75");
    let sc = random.for_seed(two);
    let min = sc.bounds.hit_ratio_min.unwrap();
    assert!(
        (min - 0.65).abs() < 1e-9,
        "seed {two}: {min}: {:?}",
        sc.plan
    );
    assert!(lowered > 0 && kept > 0, "{lowered} lowered, {kept} kept");
    // The catalog's incidents are judged by the same rule.
    assert_eq!(
        find("latency-spike").unwrap().bounds.hit_ratio_min,
        incident_hit_ratio_min(Kind::Latency { one_way_ms: 55 }, false)
    );
}

#[test]
fn a_pool_wait_the_library_would_refuse_is_refused_naming_the_workload_field() {
    let sc = find("pool-exhaustion").unwrap();
    let mut c = sc.config();
    c["workload"]["pg_pool_wait_ms"] = json!(2000);
    let e = sc.with_config(&c).unwrap_err();
    assert!(
        e.contains("workload.pg_pool_wait_ms") && e.contains("db_timeout_ms (2000)"),
        "{e}"
    );
    c["workload"]["pg_pool_wait_ms"] = json!(1999);
    assert_eq!(sc.with_config(&c).unwrap().pg_pool_wait_ms, 1999);
}

/// A random plan that resets PostgreSQL's replies unbinds availability (every miss fails while
/// it lasts); one that does not keeps the scenario's bound, and a replay judges by the same.
#[test]
fn a_random_plan_that_takes_the_database_away_unbinds_availability() {
    let random = find("random").unwrap();
    let base = random.bounds.availability_min;
    let (mut away, mut kept) = (0, 0);
    for seed in 1..=200 {
        let sc = random.for_seed(seed);
        let takes = (sc.plan.steps.iter()).any(|s| draw::takes_the_database_away(&s.fault));
        if takes {
            away += 1;
            assert_eq!(sc.bounds.availability_min, Some(0.0), "seed {seed}");
        } else {
            kept += 1;
            assert_eq!(sc.bounds.availability_min, base, "seed {seed}");
        }
        let again = random.with_config(&sc.config()).unwrap();
        assert_eq!(again.bounds, sc.bounds, "seed {seed}");
    }
    assert!(away > 0 && kept > 0, "{away} take it away, {kept} do not");
}
