//! `sandbox-probe`: a `transform` component for the host's sandbox test. For
//! every message it tries what a plugin must not be able to do — read a file,
//! list the root directory, read environment variables and arguments — and
//! returns the message with one header per probe saying
//! what happened (`denied: ...` or `ALLOWED: ...`).
//! (Sockets are not probed: Debian's wasi-libc has no socket symbols, and the
//! host denies `wasi:sockets` anyway.)

wit_bindgen::generate!({
    world: "transform",
    path: "../../../wit",
});

struct Probe;

fn outcome<T, E: std::fmt::Display>(r: Result<T, E>, allowed: impl FnOnce(T) -> String) -> Vec<u8> {
    match r {
        Ok(v) => format!("ALLOWED: {}", allowed(v)).into_bytes(),
        Err(e) => format!("denied: {e}").into_bytes(),
    }
}

fn probe(mut msg: Message) -> Message {
    let file = outcome(std::fs::read("/etc/passwd"), |b| format!("read {} bytes", b.len()));
    let dir = outcome(std::fs::read_dir("/"), |d| format!("{} entries", d.count()));
    let env: Vec<(String, String)> = std::env::vars().collect();
    let env = if env.is_empty() { b"denied: no variables".to_vec() } else { format!("ALLOWED: {} variables", env.len()).into_bytes() };
    let args: Vec<String> = std::env::args().collect();
    let args = if args.is_empty() { b"denied: no arguments".to_vec() } else { format!("ALLOWED: {args:?}").into_bytes() };
    msg.headers.push(("probe-file".into(), file));
    msg.headers.push(("probe-dir".into(), dir));
    msg.headers.push(("probe-env".into(), env));
    msg.headers.push(("probe-args".into(), args));
    msg
}

impl Guest for Probe {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        Ok(vec![probe(msg)])
    }

    fn transform_batch(msgs: Vec<Message>) -> Vec<Result<Vec<Message>, Error>> {
        msgs.into_iter().map(|m| Ok(vec![probe(m)])).collect()
    }
}

export!(Probe);
