//! `identity`: a `transform` component that returns every message unchanged.
//! It does no work of its own, so benchmarks with it measure the host's cost
//! of a plugin call (copying the message in and out of the instance).

wit_bindgen::generate!({
    world: "transform",
    path: "../../../wit",
});

struct Identity;

impl Guest for Identity {
    fn transform(msg: Message) -> Result<Vec<Message>, Error> {
        Ok(vec![msg])
    }

    fn transform_batch(msgs: Vec<Message>) -> Vec<Result<Vec<Message>, Error>> {
        msgs.into_iter().map(|msg| Ok(vec![msg])).collect()
    }
}

export!(Identity);
