//! Results: medians, CPU per message, and the printed and markdown tables.
use super::*;
// ---------------------------------------------------------------- results

/// Every run of one broker, by variant.
pub(crate) struct BrokerResults {
    broker: Broker,
    server: String,
    /// Messages per run.
    n: usize,
    /// How the input was written (once, or before every run), for the notes.
    pub(crate) input: String,
    /// The read and write settings relay and source share, for the notes.
    pub(crate) settings: String,
    runs: HashMap<Variant, Vec<RunResult>>,
}

impl BrokerResults {
    pub(crate) fn new(broker: Broker, server: String, n: usize) -> BrokerResults {
        BrokerResults {
            broker,
            server,
            n,
            input: String::new(),
            settings: String::new(),
            runs: HashMap::new(),
        }
    }

    pub(crate) fn record(&mut self, variant: Variant, round: usize, rounds: usize, run: RunResult) {
        let what = format!(
            "bench: {:?} round {}/{rounds}: {}",
            self.broker,
            round + 1,
            variant.label(self.broker)
        );
        match &run.timed {
            Ok(t) => match t.stopped {
                Some(stopped) => eprintln!(
                    "{what}: {:.2?} (first message after {:.2?}, stopped after {stopped:.2?})",
                    t.elapsed, t.first
                ),
                None => eprintln!(
                    "{what}: {:.2?} (first message after {:.2?})",
                    t.elapsed, t.first
                ),
            },
            Err(e) => eprintln!("{what}: FAILED: {e}"),
        }
        for p in &run.problems {
            eprintln!("{what}: CHECK FAILED: {p}");
        }
        self.runs.entry(variant).or_default().push(run);
    }

    pub(crate) fn failed(&self) -> bool {
        self.runs
            .values()
            .flatten()
            .any(|r| r.timed.is_err() || !r.problems.is_empty())
    }

    /// Medians over the successful runs of one variant.
    fn summary(&self, variant: Variant) -> Option<Summary> {
        let n = self.n;
        let timed: Vec<&Timed> = self
            .runs
            .get(&variant)?
            .iter()
            .filter_map(|r| r.timed.as_ref().ok())
            .collect();
        if timed.is_empty() {
            return None;
        }
        let of =
            |f: &dyn Fn(&Timed) -> f64| median(&mut timed.iter().map(|t| f(t)).collect::<Vec<_>>());
        let secs = of(&|t| t.elapsed.as_secs_f64());
        let (min, max) = timed
            .iter()
            .map(|t| t.elapsed.as_secs_f64())
            .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
        Some(Summary {
            secs,
            stopped: timed
                .iter()
                .map(|t| t.stopped.map(|s| s.as_secs_f64()))
                .collect::<Option<Vec<_>>>()
                .map(|mut s| median(&mut s)),
            rate: n as f64 / secs,
            steady_rate: of(&|t| n as f64 / (t.elapsed - t.first).as_secs_f64().max(1e-9)),
            first_ms: of(&|t| t.first.as_secs_f64() * 1000.0),
            cpu_us: per_message(timed.iter().map(|t| t.cpu), n),
            broker_cpu_us: per_message(timed.iter().map(|t| t.broker_cpu), n),
            spread: (max - min) / secs * 100.0,
        })
    }

    /// Goal 7 of issue 16 for this broker: the default shape (concurrency
    /// 1, the default `max_in_flight`) against the relay of the same run.
    pub(crate) fn goal(&self) -> Option<sluice_tests::goals::Goal> {
        let relay = self.summary(Variant::Relay)?;
        let shape = Shape {
            concurrency: 1,
            max_in_flight: EngineOptions::default().max_in_flight,
        };
        let sluice = self.summary(Variant::Sluice(shape))?;
        let ratio = sluice.rate / relay.rate;
        let (goal, target, floor) = match self.broker {
            Broker::Rabbitmq => ("7 RabbitMQ, prefetch 100", "≥ 0.95× the lapin relay", 0.95),
            Broker::Redis => ("7 Redis streams", "≥ 1.0× the relay", 1.0),
            Broker::Kafka => ("7 Kafka", "≥ 1.0× the relay", 1.0),
            Broker::Sqs => ("7 SQS (no target; moto)", "none set", 0.0),
        };
        Some(sluice_tests::goals::Goal {
            goal,
            figure: format!("{} msg/s", thousands(sluice.rate)),
            baseline: format!("relay {} msg/s", thousands(relay.rate)),
            ratio,
            target,
            met: ratio >= floor,
        })
    }

    pub(crate) fn table(&self, rounds: usize) -> Table {
        let n = self.n;
        let title = match self.broker {
            Broker::Redis => "Redis streams: input stream → (relay | sluice) → output stream",
            Broker::Kafka => "Kafka: input topic (3 partitions) → (relay | sluice) → output topic (3 partitions)",
            Broker::Rabbitmq => "RabbitMQ: durable input queue → (relay | sluice) → durable output queue (persistent, publisher confirms)",
            Broker::Sqs => "SQS (moto): input queue → (relay | sluice) → output queue",
        };
        let start = match self.broker {
            Broker::Redis => "group created",
            Broker::Kafka => "consumer subscribed",
            Broker::Rabbitmq => {
                "connections open, before the consumer's channel, qos and basic.consume"
            }
            Broker::Sqs => "clients connected, before the first ReceiveMessage",
        };
        let mut t = Table::new(
            title,
            &[
                "variant",
                "messages",
                "seconds",
                "until stopped (s)",
                "msg/s",
                "vs relay",
                "first msg (ms)",
                "msg/s after first",
                "bench CPU µs/msg",
                "broker CPU µs/msg",
                "spread",
                "ok runs",
                "check",
            ],
        );
        let relay = self.summary(Variant::Relay).map(|r| r.rate);
        for variant in Variant::all(self.broker) {
            let runs = self
                .runs
                .get(&variant)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let ok = runs.iter().filter(|r| r.timed.is_ok()).count();
            let problems: Vec<String> = runs
                .iter()
                .flat_map(|r| {
                    r.timed
                        .as_ref()
                        .err()
                        .into_iter()
                        .chain(&r.problems)
                        .cloned()
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let check = if problems.is_empty() {
                "ok".to_string()
            } else {
                problems.join("; ")
            };
            let mut row = vec![variant.label(self.broker), n.to_string()];
            match self.summary(variant) {
                Some(m) => row.extend([
                    format!("{:.2}", m.secs),
                    m.stopped
                        .map(|s| format!("{s:.2}"))
                        .unwrap_or_else(|| "-".into()),
                    thousands(m.rate),
                    match (variant, relay) {
                        (Variant::Relay, _) => "1.00x".into(),
                        (_, Some(r)) => format!("{:.2}x", m.rate / r),
                        (_, None) => "-".into(),
                    },
                    format!("{:.0}", m.first_ms),
                    thousands(m.steady_rate),
                    m.cpu_us
                        .map(|c| format!("{c:.1}"))
                        .unwrap_or_else(|| "-".into()),
                    m.broker_cpu_us
                        .map(|c| format!("{c:.1}"))
                        .unwrap_or_else(|| "-".into()),
                    format!("{:.0}%", m.spread),
                ]),
                None => row.extend(["-", "-", "-", "-", "-", "-", "-", "-", "-"].map(String::from)),
            }
            row.extend([format!("{ok}/{rounds}"), check]);
            t.rows.push(row);
        }
        t.notes.push(format!(
            "server: {}; {}; median of {rounds} runs per variant, rounds interleaved.",
            self.server, self.input
        ));
        if !self.settings.is_empty() {
            t.notes.push(format!("settings: {}.", self.settings));
        }
        t.notes.push(format!("seconds: from the start ({start}) to N acknowledged; msg/s = N / seconds; vs relay = msg/s ratio sluice/relay."));
        t.notes.push("until stopped: sluice only, from the start until Pipeline::run returned after the cancel at N acked, i.e. until".into());
        t.notes.push("the source had also sent the broker acks, deletes or commits it still held, and closed.".into());
        t.notes.push(match self.broker {
            Broker::Kafka => "first msg: time until the first message was in hand (mostly the group join); msg/s after first = N / (seconds - first msg).",
            Broker::Sqs => "first msg: time until the first message was in hand (the first ReceiveMessage, slow on moto's full queue); msg/s after first = N / (seconds - first msg).",
            Broker::Redis | Broker::Rabbitmq => "first msg: time until the first message was in hand; msg/s after first = N / (seconds - first msg).",
        }.into());
        t.notes.push("CPU µs/msg: user + system CPU time during the timed part / N, median; bench = this whole process (client and".into());
        t.notes.push("sluice engine, all threads), broker = the broker process (when it runs on this machine; 10 ms ticks).".into());
        t.notes
            .push("spread: (max - min) / median of the seconds over the rounds.".into());
        t
    }
}

/// Medians of one variant's successful runs.
pub(crate) struct Summary {
    secs: f64,
    /// sluice: median seconds until the pipeline had stopped.
    stopped: Option<f64>,
    rate: f64,
    steady_rate: f64,
    first_ms: f64,
    /// Median CPU microseconds per message, of this process and of the broker.
    cpu_us: Option<f64>,
    broker_cpu_us: Option<f64>,
    /// (max − min) / median of the seconds, in percent.
    spread: f64,
}

/// Median of some CPU times, in microseconds per message; `None` if any is unknown.
pub(crate) fn per_message(cpu: impl Iterator<Item = Option<Duration>>, n: usize) -> Option<f64> {
    let mut us: Vec<f64> = cpu
        .map(|c| c.map(|c| c.as_secs_f64() * 1e6 / n as f64))
        .collect::<Option<_>>()?;
    Some(median(&mut us))
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------- output

pub(crate) struct Table {
    title: String,
    head: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    pub(crate) fn new(title: &str, head: &[&'static str]) -> Table {
        Table {
            title: title.into(),
            head: head.to_vec(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Aligned plain text: the first column left, the others right.
    pub(crate) fn text(&self) -> String {
        let mut widths: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::from(" ");
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                let pad = " ".repeat(w - cell.chars().count());
                let last = i + 1 == cells.len();
                match (i, last) {
                    (0, _) => write!(out, " {cell}{pad}"),
                    (_, true) => write!(out, "  {cell}"), // the check column: left, unpadded
                    _ => write!(out, "  {pad}{cell}"),
                }
                .expect("write to a String");
            }
            out.push('\n');
            out
        };
        let mut out = format!("{}\n", self.title);
        out += &line(self.head.clone());
        out += &format!(
            "  {}\n",
            "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
        );
        for row in &self.rows {
            out += &line(row.iter().map(String::as_str).collect());
        }
        for note in &self.notes {
            out += &format!("  {note}\n");
        }
        out
    }

    pub(crate) fn markdown(&self) -> String {
        let mut out = format!("#### {}\n\n| {} |\n|", self.title, self.head.join(" | "));
        for i in 0..self.head.len() {
            out += if i == 0 || i + 1 == self.head.len() {
                " --- |"
            } else {
                " ---: |"
            };
        }
        out.push('\n');
        for row in &self.rows {
            out += &format!("| {} |\n", row.join(" | "));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                out += &format!("{note}\n");
            }
        }
        out
    }
}

pub(crate) use sluice_tests::goals::thousands;

/// Today's date (UTC) as YYYY-MM-DD, from the civil-from-days conversion.
pub(crate) fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64 + 719_468; // days since 0000-03-01
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
