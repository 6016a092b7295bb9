//! `http-probe`: a `transform` component that sends one `GET` per message
//! over `wasi:http` (capability `http`), to the URL that is the message's
//! payload, and returns `{"status": N, "bytes": LEN, "body": TEXT}` (the
//! body's first 200 bytes as text). A request the host refuses or that
//! fails is a `fatal` error with the `wasi:http` error code
//! (`http-probe: GET URL: ErrorCode::HttpRequestDenied`), so the tests can
//! read what the plugin was told from the dead letter.

wit_bindgen::generate!({
    world: "transform",
    path: "../../../wit/0.2.0",
});

#[path = "../../shared/http_get.rs"]
mod http_get;

fn probe(msg: Message) -> Result<Vec<Message>, Error> {
    let url = String::from_utf8_lossy(&msg.payload).trim().to_owned();
    let (status, body) =
        http_get::get(&url).map_err(|e| Error::Fatal(format!("http-probe: GET {url}: {e}")))?;
    let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    let out = serde_json::json!({ "status": status, "bytes": body.len(), "body": shown });
    Ok(vec![Message {
        payload: out.to_string().into_bytes(),
        ..msg
    }])
}

struct HttpProbe;

impl Guest for HttpProbe {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        probe(msg)
    }

    fn transform_batch(msgs: Vec<Message>) -> Vec<Result<Vec<Message>, Error>> {
        msgs.into_iter().map(probe).collect()
    }
}

export!(HttpProbe);
