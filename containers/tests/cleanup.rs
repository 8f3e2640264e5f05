//! Containers and the network go away when a cluster is dropped, also when the test panics.

use std::time::Duration;

use containers::{containers_of, Cluster, ClusterSpec};

fn small() -> ClusterSpec {
    ClusterSpec::one_of_each()
}

async fn gone(run_id: &str) -> usize {
    for _ in 0..100 {
        if containers_of(run_id) == 0 {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    containers_of(run_id)
}

fn network_exists(name: &str) -> bool {
    std::process::Command::new("docker")
        .args(["network", "inspect", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_cluster_removes_its_containers_and_network() {
    let c = Cluster::start(small()).await.expect("cluster");
    let run = c.run_id.clone();
    assert_eq!(containers_of(&run), 3, "redis, postgres, one memcached");
    drop(c);
    assert_eq!(gone(&run).await, 0, "containers left behind");
    for _ in 0..50 {
        if !network_exists(&run) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!network_exists(&run), "network {run} left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_test_still_removes_its_cluster() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let c = Cluster::start(small()).await.expect("cluster");
        tx.send(c.run_id.clone()).unwrap();
        panic!("the test fails with its cluster up");
    });
    let run = rx.await.expect("cluster started");
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(gone(&run).await, 0, "containers left behind after a panic");
}
