//! `aside servers`: the quickstart's servers from the offline image, the `aside.toml` that points
//! at them (a cache connects with it, writes and reads), and on SIGTERM every container removed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_start_print_their_settings_and_are_removed_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aside.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_aside"))
        .args(["servers", "--out", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("runs");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !file.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("aside servers ended before its settings were written: {status}");
        }
        assert!(Instant::now() < deadline, "no settings within 180 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("sentinels = [") && text.contains("strategy = \"durable\""),
        "{text}"
    );
    let settings = aside::Settings::load(&file).expect("the printed settings load");
    let cache = aside::backend::connect(&settings, "quickstart")
        .await
        .expect("a cache over the servers");
    let k = aside::Key::new("posts", 1, "servers").unwrap();
    let w = cache.write(&k, b"up").await.unwrap();
    let got = cache.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (got.row.version, got.row.payload),
        (w.version, b"up".to_vec())
    );
    drop(cache);

    // SIGTERM: stopped, removed, exit 0.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "aside servers did not stop within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    let mut printed = String::new();
    use std::io::Read as _;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut printed)
        .unwrap();
    assert_eq!(printed, text, "what it printed is what it wrote");
    // None of its containers is left (test binaries run one at a time: no other cluster is up).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = Command::new("docker")
            .args(["ps", "-aq", "--filter", "label=aside.run"])
            .output()
            .unwrap();
        if o.stdout.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "containers left: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
