//! The broker conformance suite: every scenario a connector must pass,
//! written once against [`Broker`] (and [`Restart`] for a broker the test
//! may stop and start), as Redpanda Connect's `integration.StreamTests`
//! runs one set of stream tests over each connector's config template.
//!
//! A connector joins by implementing the trait in its test file and
//! instantiating the scenarios there:
//!
//! ```ignore
//! impl Broker for Kafka { ... }
//! impl Restart for Kafka { ... }
//! sluice_tests::conformance!(Kafka, restart);
//! ```
//!
//! Each scenario runs the `sluice` binary on a relay pipeline (input →
//! the json-filter plugin → output, DLQ beside it; [`relay_config`]) and
//! asserts what a user cares about: every input comes out or is
//! dead-lettered, keys and headers survive, the DLQ copy says why and where
//! it came from, nothing is lost across SIGKILL, a second daemon or a broker
//! restart. Duplicates are allowed where at-least-once allows them, and
//! counted. Time bounds are loose ([`LONG`]): a scenario waits for a state,
//! never fails for being slow on a loaded machine.

mod dedupe;
mod odd;
mod scenarios;

pub use dedupe::{dedupe_config, dedupe_sigkill, dedupe_two_daemons, Kept};
pub use odd::{
    case as odd_case, cases as odd_cases, odd_messages, odd_through, Odd, OddRoute,
    CASE as ODD_CASE,
};
pub use scenarios::*;

use crate::daemon::{relay_config, Daemon, Names};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a scenario waits for a state before it fails: far above what
/// any of them takes on a loaded 2-core machine.
pub const LONG: Duration = Duration::from_secs(300);

/// One input: key, payload and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// One message read back from an output or a DLQ.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub key: Option<String>,
    pub payload: Vec<u8>,
    /// Headers, attributes or fields, text values.
    pub headers: Vec<(String, String)>,
}

impl Output {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Which daemon a source table is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// The only daemon on its input.
    Alone,
    /// One of a series killed with SIGKILL: what it held should come back
    /// to the next one soon (a short SQS visibility timeout).
    Killed,
    /// One of two daemons sharing the input, by a name of its own.
    Sharing(&'static str),
}

/// Messages produced while daemons run: `total` in batches of `batch`, a
/// `pause` after each.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    pub total: usize,
    pub batch: usize,
    pub pause: Duration,
}

/// How many messages each scenario moves on a broker (fewer where the
/// broker is slow, as moto is).
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// The round trip's inputs, all produced before the daemon starts.
    pub round_trip: usize,
    /// The SIGKILL scenario's inputs, produced while daemons come and go.
    pub crash: Stream,
    /// The SIGKILL scenario kills a daemon once outputs + DLQ hold each of these.
    pub kills: [usize; 3],
    /// The two-daemons scenario's inputs, produced once both consume.
    pub shared: Stream,
}

/// The DLQ headers naming where each input came from
/// (`sluice-error-source-*`), by the input's key: each name with its value,
/// or `None` where only its presence can be checked (a delivery tag, a
/// message id the test never saw).
pub type Coordinates = Box<dyn Fn(&str) -> Vec<(&'static str, Option<String>)>>;

/// A connector under test: its config template and test-side access to
/// its broker. One value per test; dropped at the test's end.
pub trait Broker: Sized + Sync {
    /// For test and queue names and log lines: `kafka`, `amqp`, ...
    const NAME: &'static str;
    const SCALE: Scale;
    /// Orders of `examples/orders.jsonl` the examples scenario loads (its
    /// first N lines).
    const EXAMPLE_ORDERS: usize = 10_000;

    /// The broker of one test: the shared server, or a private one.
    fn new(dir: &Path) -> Self;
    /// The connector pointed at an address where nothing listens, with a
    /// short connect timeout, and the text the exit-2 message must contain
    /// (the address, any password hidden).
    fn unreachable(dir: &Path) -> (Self, String);

    /// `name` as this broker allows it (SQS: no dots but `.fifo`).
    fn legal(name: String) -> String {
        name
    }
    /// Make topics or queues before a test uses them (nothing where the
    /// first write makes them).
    fn create(&self, names: &[&str]);

    /// The source table (`{ type = ..., ... }`) reading `t.input` in group
    /// `t.group`, for a daemon in `role`.
    fn source(&self, t: &Names, role: Role) -> String;
    /// The sink table writing to `name` (outputs and the DLQ alike).
    fn sink(&self, name: &str) -> String;

    /// Produce `messages` to `to` and wait until the broker has them all.
    fn produce(&self, to: &str, messages: &[Input]);
    /// Produce one input with `key` that the source cannot decode into a
    /// message, if the broker has such a thing; returns what the DLQ
    /// entry's `sluice-error-text` must contain (class `decode`).
    fn produce_undecodable(&self, _to: &str, _key: &str) -> Option<&'static str> {
        None
    }
    /// Messages in `name` now (without consuming them).
    fn count(&self, name: &str) -> usize;
    /// Everything in `name` (a queue is emptied).
    fn read(&self, name: &str) -> Vec<Output>;
    /// Inputs of `input` that `group` has not acknowledged yet (unread,
    /// in flight or unacked; a queue's ready messages).
    fn unacked(&self, input: &str, group: &str) -> usize;
    /// Where the DLQ copies of `t.input`'s messages must say they came
    /// from; asked after the run (a log may read its input back).
    fn coordinates(&self, t: &Names) -> Coordinates;

    /// Whether every one of `daemons` (started on `t`, ready) takes part in
    /// consuming `t.input` (joined its group, has partitions).
    fn sharing(&self, _t: &Names, _daemons: &[&Daemon]) -> bool {
        true
    }
    /// Whether an output keeps the order messages of one key were published
    /// in (a standard SQS queue does not).
    const KEEPS_ORDER: bool = true;
    /// Duplicates two daemons sharing `total` inputs may deliver with no
    /// failure in between (a standard SQS queue: at least once).
    fn allowed_duplicates(_total: usize) -> usize {
        0
    }

    /// What the broker does with odd message `case` (see [`odd_cases`]):
    /// each broker's test file lists where it does not keep it as it is.
    fn odd(_case: &str) -> Odd {
        Odd::Same
    }
    /// Odd messages only this broker has, produced to `to` with its own
    /// client, each with the message its source must make of it (Kafka: a
    /// tombstone). Each carries an [`ODD_CASE`] header naming it.
    fn produce_native_odd(&self, _to: &str) -> Vec<(&'static str, sluice_core::Message)> {
        Vec::new()
    }

    /// The examples this connector ships, pointed at this test's broker
    /// and names of its own (made unique by `unique`).
    fn example(&self, unique: &str) -> Example;
}

/// A broker of one test's own that it may stop and start again on the same
/// port and data (the shared servers are never restarted).
pub trait Restart: Broker {
    /// Inputs before the stop, how many must be done when it comes (all of
    /// them: the stop comes at a quiet point instead of mid-stream), and
    /// inputs after the broker is back.
    const RESTART: (usize, usize, usize);

    /// A broker of this test alone, running, its data in `dir`.
    fn private(dir: &Path) -> Self;
    /// Stop the broker (cleanly) and wait until it is gone.
    fn stop(&mut self);
    /// Start it again on the same port and data, and wait until it listens.
    fn boot(&mut self);
    /// After a restart: the daemon says it connected again, where the
    /// connector logs that (and the broker shows its connections).
    fn assert_reconnected(&self, _daemon: &Daemon) {}
}

/// `examples/<load>` (orders.jsonl → the broker) and `examples/<orders>`
/// (the broker → two regions and a DLQ), with the replacements that point
/// each at the test's broker and names, and those names.
pub struct Example {
    pub load: &'static str,
    pub load_replacements: Vec<(String, String)>,
    pub orders: &'static str,
    pub orders_replacements: Vec<(String, String)>,
    /// What the orders pipeline reads, in which group.
    pub input: String,
    pub group: String,
    pub europe: String,
    pub americas: String,
    pub dlq: String,
}

/// Input `i`: key `k{i}`, header `trace = t{i}`, payload `{"amount":i}`;
/// every tenth (`i % 10 == 7`) is not JSON, so the json-filter stage fails
/// it (fatal) and it is dead-lettered.
pub fn message(i: usize) -> Input {
    let payload = if malformed(i) {
        b"not json".to_vec()
    } else {
        format!(r#"{{"amount":{i}}}"#).into_bytes()
    };
    Input {
        key: format!("k{i}"),
        payload,
        headers: vec![("trace".into(), format!("t{i}"))],
    }
}

/// Whether [`message`] `i` is the malformed kind.
pub fn malformed(i: usize) -> bool {
    i % 10 == 7
}

pub fn messages(range: std::ops::Range<usize>) -> Vec<Input> {
    range.map(message).collect()
}

/// [`messages`] without the malformed ones: every payload is JSON.
pub fn json_messages(range: std::ops::Range<usize>) -> Vec<Input> {
    range
        .map(|i| Input {
            payload: format!(r#"{{"amount":{i}}}"#).into_bytes(),
            ..message(i)
        })
        .collect()
}

/// Fresh names for `test` (prefixed with the broker's name), legal on `B`,
/// not made on the broker.
pub fn plain_names<B: Broker>(test: &str) -> Names {
    let n = Names::new(&format!("{}-{test}", B::NAME));
    Names {
        input: B::legal(n.input),
        output: B::legal(n.output),
        dlq: B::legal(n.dlq),
        group: n.group,
    }
}

/// [`plain_names`], made on the broker.
pub fn names<B: Broker>(broker: &B, test: &str) -> Names {
    let n = plain_names::<B>(test);
    broker.create(&[&n.input, &n.output, &n.dlq]);
    n
}

/// The relay config over `broker`: `t.input` → json-filter → `output`,
/// DLQ `t.dlq`.
pub fn config<B: Broker>(broker: &B, dir: &Path, t: &Names, output: &str, role: Role) -> PathBuf {
    relay_config(
        dir,
        &broker.source(t, role),
        &broker.sink(output),
        &broker.sink(&t.dlq),
    )
}

/// Keys of `outputs`, in order, duplicates kept.
pub fn keys(outputs: &[Output]) -> Vec<String> {
    outputs.iter().filter_map(|o| o.key.clone()).collect()
}

/// Produce `stream` to `to` as its batches and pauses say, each batch
/// made by `make` ([`messages`], [`json_messages`]).
pub fn produce_stream<B: Broker>(
    broker: &B,
    to: &str,
    stream: Stream,
    make: fn(std::ops::Range<usize>) -> Vec<Input>,
) {
    for start in (0..stream.total).step_by(stream.batch) {
        broker.produce(to, &make(start..(start + stream.batch).min(stream.total)));
        std::thread::sleep(stream.pause);
    }
}

/// Poll `check` every 250 ms until it is true or `within` passes (the
/// broker reads behind a check cost more than [`crate::daemon::eventually`]'s
/// 50 ms allow).
pub fn wait_for(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Is the daemon listening on `http` ready (every source and sink connected)?
pub fn ready(http: &str) -> bool {
    crate::daemon::http_get(http, "/readyz").is_some_and(|(status, _)| status == 200)
}

/// The logs of `daemons`, for failure messages.
pub fn logs(daemons: &[&Daemon]) -> String {
    daemons
        .iter()
        .map(|d| format!("--- {}:\n{}", d.log.display(), d.log_text()))
        .collect()
}

/// Every shared scenario as a `#[test]` in a module `conformance`, for the
/// broker type given; `restart` adds the broker-restart scenario (the type
/// implements [`Restart`]).
#[macro_export]
macro_rules! conformance {
    (@tests $broker:ty { $($more:item)* }) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn every_message_is_delivered_or_dead_lettered_with_keys_headers_and_coordinates() {
                $crate::conformance::round_trip::<$broker>();
            }

            #[test]
            fn sigkill_mid_stream_loses_nothing_and_duplicates_are_counted() {
                $crate::conformance::sigkill_mid_stream::<$broker>();
            }

            #[test]
            fn a_retry_parks_only_its_own_key_and_the_key_keeps_its_order() {
                $crate::conformance::parking::<$broker>();
            }

            #[test]
            fn a_sigkill_while_retries_wait_in_the_broker_loses_nothing() {
                $crate::conformance::sigkill_during_retries::<$broker>();
            }

            #[test]
            fn dead_letters_replay_through_the_fixed_plugin_and_a_failing_one_stops_at_the_guard() {
                $crate::conformance::dlq_replay::<$broker>();
            }

            #[test]
            fn two_daemons_share_the_work() {
                $crate::conformance::two_daemons::<$broker>();
            }

            #[test]
            fn an_unreachable_broker_at_start_is_exit_2_naming_it() {
                $crate::conformance::unreachable_at_start::<$broker>();
            }

            #[test]
            fn odd_messages_come_back_as_the_broker_keeps_them() {
                $crate::conformance::odd_messages::<$broker>();
            }

            #[test]
            fn with_a_dedupe_stage_on_redis_three_sigkills_pass_only_the_window() {
                $crate::conformance::dedupe_sigkill::<$broker>($crate::conformance::Kept::Redis);
            }

            #[test]
            fn with_a_dedupe_stage_on_an_embedded_store_restarts_pass_only_the_window() {
                $crate::conformance::dedupe_sigkill::<$broker>($crate::conformance::Kept::Embedded);
            }

            #[test]
            fn two_daemons_on_one_redis_store_let_one_copy_of_each_id_out() {
                $crate::conformance::dedupe_two_daemons::<$broker>();
            }

            #[test]
            fn the_examples_load_and_process_the_orders() {
                $crate::conformance::examples::<$broker>();
            }

            $($more)*
        }
    };
    ($broker:ty) => {
        $crate::conformance!(@tests $broker {});
    };
    ($broker:ty, restart) => {
        $crate::conformance!(@tests $broker {
            #[test]
            fn a_broker_restart_while_running_is_ridden_out_without_loss() {
                $crate::conformance::broker_restart::<$broker>();
            }
        });
    };
}
