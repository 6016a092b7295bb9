//! Test-side Redis access with the plain `redis` crate: the server address,
//! adding stream entries and reading streams back.

use redis::{Commands, Value};

/// The Redis server the test command made sure runs.
pub fn redis_url() -> String {
    std::env::var("SLUICE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn connection(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| {
            panic!("cannot reach Redis at {url} (run tests/run.sh, which starts it): {e}")
        })
}

/// One stream entry: id and fields in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// XADD each entry's fields to `stream`, pipelined.
pub fn add(conn: &mut redis::Connection, stream: &str, entries: &[Vec<(String, Vec<u8>)>]) {
    for chunk in entries.chunks(500) {
        let mut pipe = redis::pipe();
        for fields in chunk {
            let cmd = pipe.cmd("XADD").arg(stream).arg("*");
            for (n, v) in fields {
                cmd.arg(n).arg(v.as_slice());
            }
        }
        pipe.query::<()>(conn).expect("XADD");
    }
}

/// Every entry of `stream` (XRANGE - +).
pub fn read_stream(conn: &mut redis::Connection, stream: &str) -> Vec<Entry> {
    let reply: Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(conn)
        .expect("XRANGE");
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let mut pair = pair.into_iter();
            let id: String = redis::from_redis_value(pair.next()?).ok()?;
            let Value::Array(flat) = pair.next()? else {
                return None;
            };
            let mut flat = flat.into_iter();
            let mut fields = Vec::new();
            while let (Some(n), Some(v)) = (flat.next(), flat.next()) {
                fields.push((
                    redis::from_redis_value::<String>(n).ok()?,
                    redis::from_redis_value::<Vec<u8>>(v).ok()?,
                ));
            }
            Some(Entry { id, fields })
        })
        .collect()
}

/// XLEN, 0 for a missing stream.
pub fn len(conn: &mut redis::Connection, stream: &str) -> usize {
    conn.xlen(stream).unwrap_or(0)
}
