//! A small HTTP/1.1 server on 127.0.0.1 for the outbound-HTTP tests: a
//! thread per connection, one request per connection, answers from a
//! handler, and a count of the requests per path. Bounded: it serves until
//! the test process ends, and a handler's delay is the test's to keep short
//! of that.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server answers for one path.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Answer {
    pub fn ok(body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
}

type Handler = dyn Fn(&str) -> Answer + Send + Sync;

pub struct TestServer {
    pub addr: SocketAddr,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl TestServer {
    /// Serve `handler` (path → answer) on a free port of 127.0.0.1.
    pub fn start(handler: impl Fn(&str) -> Answer + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let counted = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, counted) = (handler.clone(), counted.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    loop {
                        let mut header = String::new();
                        match reader.read_line(&mut header) {
                            Ok(n) if n > 2 => continue,
                            _ => break,
                        }
                    }
                    *counted.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                    let answer = handler(&path);
                    std::thread::sleep(answer.delay);
                    let mut stream = stream;
                    let head = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        answer.status,
                        answer.body.len()
                    );
                    let _ = stream
                        .write_all(head.as_bytes())
                        .and_then(|()| stream.write_all(&answer.body));
                });
            }
        });
        TestServer { addr, hits }
    }

    /// Requests served so far for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Requests served so far, all paths.
    pub fn total(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}
