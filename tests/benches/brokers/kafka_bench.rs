//! The Kafka half: topics, seed, plain relay, sluice, checks.
use super::*;
// ---------------------------------------------------------------- Kafka

pub(crate) fn kafka_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

/// Create topics (name, partitions); each must be new.
pub(crate) async fn kafka_create(brokers: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> =
        kafka_config(brokers).create().expect("Kafka admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
        .await
        .unwrap_or_else(|e| panic!("cannot reach Kafka at {brokers} (start it with `bash tests/brokers.sh kafka`): {e}"));
    for result in results {
        if let Err((topic, code)) = result {
            panic!("creating Kafka topic {topic}: {code}");
        }
    }
}

/// Delete topics, ignoring failures (a broker without deletion keeps them).
pub(crate) async fn kafka_delete(brokers: &str, topics: &[&str]) {
    if let Ok(admin) = kafka_config(brokers).create::<AdminClient<DefaultClientContext>>() {
        let _ = tokio::time::timeout(STEP, admin.delete_topics(topics, &AdminOptions::new())).await;
    }
}

/// An idempotent, acks=all producer with linger.ms=5: the settings of
/// sluice's kafka sink.
pub(crate) fn kafka_producer(brokers: &str) -> FutureProducer {
    kafka_config(brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("Kafka producer")
}

/// Queue one record, waiting while librdkafka's queue is full.
pub(crate) async fn kafka_send(
    producer: &FutureProducer,
    record: FutureRecord<'_, [u8], [u8]>,
) -> Result<rdkafka::producer::DeliveryFuture, KafkaError> {
    let mut record = record;
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Produce every input to `topic` and wait for all delivery reports.
pub(crate) async fn kafka_seed(brokers: &str, topic: &str, inputs: &[Input]) {
    let producer = kafka_producer(brokers);
    let mut reports = FuturesUnordered::new();
    for input in inputs {
        let record = FutureRecord::to(topic)
            .key(input.key.as_bytes())
            .payload(input.payload.as_bytes());
        reports.push(
            kafka_send(&producer, record)
                .await
                .expect("queueing an input record"),
        );
    }
    while let Some(report) = reports.next().await {
        match report {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => panic!("seeding the input topic: {e}"),
            Err(_) => panic!("seeding the input topic: the producer went away"),
        }
    }
}

/// Per input partition: offsets taken and not yet delivered, and the next
/// offset after the highest taken. Everything below the first undelivered
/// offset may be committed.
#[derive(Default)]
pub(crate) struct Progress {
    partitions: HashMap<i32, (BTreeSet<i64>, i64)>,
    committed: HashMap<i32, i64>,
}

impl Progress {
    fn taken(&mut self, partition: i32, offset: i64) {
        let (in_flight, next) = self.partitions.entry(partition).or_default();
        in_flight.insert(offset);
        *next = (*next).max(offset + 1);
    }

    fn delivered(&mut self, partition: i32, offset: i64) {
        if let Some((in_flight, _)) = self.partitions.get_mut(&partition) {
            in_flight.remove(&offset);
        }
    }

    /// Partitions whose commit point moved since the last call.
    fn take_commit(&mut self, topic: &str) -> Option<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (partition, (in_flight, next)) in &self.partitions {
            let point = in_flight.first().copied().unwrap_or(*next);
            if self.committed.get(partition) != Some(&point) {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(point))
                    .expect("offset list");
                self.committed.insert(*partition, point);
            }
        }
        (tpl.count() > 0).then_some(tpl)
    }
}

/// The plain relay: StreamConsumer (fresh group, earliest, no auto-commit)
/// → FutureProducer, up to [`KAFKA_IN_FLIGHT`] delivery reports
/// outstanding; offsets committed every second up to the first record not
/// yet delivered, and at the end.
pub(crate) async fn kafka_relay(
    brokers: &str,
    input: &str,
    names: &RunNames,
    n: usize,
    timeout: Duration,
    broker_pid: Option<&str>,
) -> Result<Timed, String> {
    let producer = kafka_producer(brokers);
    let consumer: StreamConsumer = kafka_config(brokers)
        .set("group.id", &names.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    consumer
        .subscribe(&[input])
        .map_err(|e| format!("subscribe: {e}"))?;
    let started = Stopwatch::start(broker_pid);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = None;
    let mut progress = Progress::default();
    let mut in_flight = FuturesUnordered::new();
    let mut tick = tokio::time::interval(COMMIT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut delivered = 0;
    while delivered < n {
        tokio::select! {
            biased;
            Some((partition, offset, report)) = in_flight.next(), if !in_flight.is_empty() => {
                match report {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(format!("delivery failed: {e}")),
                    Err(_) => return Err("the producer went away".into()),
                }
                progress.delivered(partition, offset);
                delivered += 1;
            }
            _ = tick.tick() => {
                if let Some(tpl) = progress.take_commit(input) {
                    consumer.commit(&tpl, CommitMode::Async).map_err(|e| format!("commit: {e}"))?;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Err(format!("abandoned after {timeout:?}: {delivered} of {n} delivered"));
            }
            fetched = consumer.recv(), if in_flight.len() < KAFKA_IN_FLIGHT => {
                let m = fetched.map_err(|e| format!("consume: {e}"))?;
                first.get_or_insert_with(|| started.elapsed());
                let mut record = FutureRecord::<[u8], [u8]>::to(&names.output).payload(m.payload().unwrap_or_default());
                if let Some(key) = m.key() {
                    record = record.key(key);
                }
                let (partition, offset) = (m.partition(), m.offset());
                let report = kafka_send(&producer, record).await.map_err(|e| format!("produce: {e}"))?;
                progress.taken(partition, offset);
                in_flight.push(async move { (partition, offset, report.await) });
            }
        }
    }
    let timed = started.stop(first);
    if let Some(tpl) = progress.take_commit(input) {
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| format!("final commit: {e}"))?;
    }
    consumer.unsubscribe();
    Ok(timed)
}

/// sluice: kafka source → identity.wasm → kafka sink, DLQ a kafka topic.
#[allow(clippy::too_many_arguments)] // one per knob the bench turns
pub(crate) async fn kafka_sluice(
    brokers: &str,
    input: &str,
    names: &RunNames,
    host: &sluice_wasm::WasmHost,
    shape: Shape,
    n: usize,
    timeout: Duration,
    broker_pid: Option<&str>,
) -> (Result<Timed, String>, Option<PipelineReport>) {
    let base = Path::new(".");
    let sink = |topic: &str| {
        SinkConfig::Kafka(KafkaSinkConfig {
            brokers: brokers.into(),
            topic: Some(topic.into()),
            connect_timeout: secs(Duration::from_secs(10)),
            properties: BTreeMap::new(),
            tls: None,
            sasl: None,
        })
    };
    let source = SourceConfig::Kafka(KafkaSourceConfig {
        brokers: brokers.into(),
        group: names.group.clone(),
        topics: vec![input.into()],
        topic_pattern: None,
        auto_offset_reset: OffsetReset::Earliest,
        commit_interval: secs(COMMIT_EVERY),
        connect_timeout: secs(Duration::from_secs(10)),
        properties: BTreeMap::new(),
        retry_topic: None,
        tls: None,
        sasl: None,
    });
    // Sinks first: the source subscribes, and the clock starts right after.
    let out = sink(&names.output)
        .open(base, "out")
        .await
        .expect("opening the kafka sink");
    let dlq = sink(&names.dlq)
        .open(base, "bench.dlq")
        .await
        .expect("opening the kafka DLQ");
    let source = source.open(base).await.expect("opening the kafka source");
    let (pipeline, stats) = one_stage_pipeline(source, out, dlq, host, shape);
    time_pipeline(pipeline, stats, n as u64, timeout, broker_pid).await
}

/// Records in `topic` (sum of high − low watermarks over its partitions).
pub(crate) fn kafka_count(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
) -> Result<i64, String> {
    let mut total = 0;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, STEP)
            .map_err(|e| format!("watermarks of {topic}/{p}: {e}"))?;
        total += high - low;
    }
    Ok(total)
}

/// After a run: the output topic holds exactly `n` records, the DLQ none,
/// and the group committed every input partition up to its end.
pub(crate) fn kafka_check(brokers: &str, input: &str, names: &RunNames, n: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let consumer: BaseConsumer = match kafka_config(brokers)
        .set("group.id", &names.group)
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(c) => c,
        Err(e) => return vec![format!("checking consumer: {e}")],
    };
    match kafka_count(&consumer, &names.output, PARTITIONS) {
        Ok(count) if count == n as i64 => {}
        Ok(count) => problems.push(format!("output topic holds {count} records, want {n}")),
        Err(e) => problems.push(e),
    }
    match kafka_count(&consumer, &names.dlq, 1) {
        Ok(0) => {}
        Ok(count) => problems.push(format!("DLQ topic holds {count} records")),
        Err(e) => problems.push(e),
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(input, p);
    }
    match consumer.committed_offsets(tpl, STEP) {
        Ok(committed) => {
            for e in committed.elements() {
                let high = consumer
                    .fetch_watermarks(input, e.partition(), STEP)
                    .map(|(_, h)| h)
                    .unwrap_or(-1);
                if e.offset() != Offset::Offset(high) {
                    problems.push(format!(
                        "partition {} committed at {:?}, its end is {high}",
                        e.partition(),
                        e.offset()
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("committed offsets: {e}")),
    }
    problems
}

/// The tansu version tests/brokers.sh installed, if it did.
pub(crate) fn tansu_version() -> String {
    std::fs::read_to_string(sluice_cache().join("tools/tansu.version"))
        .map(|v| format!("tansu {} (tests/brokers.sh)", v.trim()))
        .unwrap_or_else(|_| "Kafka-compatible broker (version unknown)".into())
}

/// The pid of the tansu that tests/brokers.sh started, if it runs.
pub(crate) fn tansu_pid() -> Option<String> {
    brokers_sh_pid("tansu", "tansu")
}

/// The whole Kafka half: seed, then rounds of every variant, interleaved.
pub(crate) fn bench_kafka(
    rt: &tokio::runtime::Runtime,
    s: &Settings,
    inputs: &[Input],
    host: &sluice_wasm::WasmHost,
) -> BrokerResults {
    let brokers = kafka_addr();
    let prefix = run_prefix();
    let input = format!("{prefix}.in");
    rt.block_on(async {
        kafka_create(&brokers, &[(&input, PARTITIONS)]).await;
        let seeding = Instant::now();
        kafka_seed(&brokers, &input, inputs).await;
        let seeded = seeding.elapsed();
        eprintln!(
            "bench: kafka: {} records produced to `{input}` in {seeded:.2?}",
            inputs.len()
        );
        let mut results = BrokerResults::new(
            Broker::Kafka,
            format!("{} at {brokers}", tansu_version()),
            s.n,
        );
        results.input = format!("input written once in {:.2} s", seeded.as_secs_f64());
        results.settings = format!(
            "commit_interval {} s (relay and source)",
            COMMIT_EVERY.as_secs()
        );
        let pid = tansu_pid();
        let pid = pid.as_deref();
        let mut topics = vec![input.clone()];
        for round in 0..s.rounds {
            for variant in Variant::all(Broker::Kafka) {
                let names = RunNames::new(&prefix, variant, round);
                kafka_create(&brokers, &[(&names.output, PARTITIONS), (&names.dlq, 1)]).await;
                let (timed, mut problems) = match variant {
                    Variant::Relay => (
                        kafka_relay(&brokers, &input, &names, s.n, s.timeout, pid).await,
                        Vec::new(),
                    ),
                    Variant::Sluice(shape) => {
                        let (timed, report) = kafka_sluice(
                            &brokers, &input, &names, host, shape, s.n, s.timeout, pid,
                        )
                        .await;
                        (timed, report_problems(report.as_ref(), s.n as u64))
                    }
                };
                let (b, i, to_check, n) = (brokers.clone(), input.clone(), names.clone(), s.n);
                let checked =
                    tokio::task::spawn_blocking(move || kafka_check(&b, &i, &to_check, n));
                problems.extend(checked.await.expect("kafka check task"));
                topics.extend([names.output, names.dlq]);
                results.record(variant, round, s.rounds, RunResult { timed, problems });
            }
        }
        kafka_delete(
            &brokers,
            &topics.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        results
    })
}
