//! `{{name}}`: a sluice transform. Returns each message with the header
//! `processed-by: {{name}}` added; an empty payload is a fatal error (the
//! host dead-letters the message with this text).

wit_bindgen::generate!({ world: "transform", path: "wit" });

struct Plugin;

impl Guest for Plugin {
    fn transform(mut msg: Message) -> Result<Vec<Message>, Error> {
        if msg.payload.is_empty() {
            return Err(Error::Fatal("empty payload".to_string()));
        }
        msg.headers.push(("processed-by".to_string(), b"{{name}}".to_vec()));
        Ok(vec![msg])
    }

    fn transform_batch(msgs: Vec<Message>) -> Vec<Result<Vec<Message>, Error>> {
        msgs.into_iter().map(Self::transform).collect()
    }
}

export!(Plugin);
