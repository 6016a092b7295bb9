//! `{{name}}`: a sluice router. Sends each message to the sink named by its
//! header `route`, else to param `default` (default `default`). Every name
//! must be a sink of the pipeline; the host dead-letters the others.

use std::sync::OnceLock;

wit_bindgen::generate!({ world: "route", path: "wit" });

use sluice::plugin::host;

/// Params are read from the host once per instance.
fn default_route() -> &'static str {
    static DEFAULT: OnceLock<String> = OnceLock::new();
    DEFAULT.get_or_init(|| host::config("default").unwrap_or_else(|| "default".to_string()))
}

struct Plugin;

impl Guest for Plugin {
    fn route(msg: Message) -> Result<Vec<String>, Error> {
        let header = msg.headers.iter().find(|(name, _)| name == "route");
        let route = match header {
            Some((_, value)) => String::from_utf8(value.clone()).map_err(|_| Error::Fatal("header `route` is not UTF-8".to_string()))?,
            None => default_route().to_string(),
        };
        Ok(vec![route])
    }

    fn route_batch(msgs: Vec<Message>) -> Vec<Result<Vec<String>, Error>> {
        msgs.into_iter().map(Self::route).collect()
    }
}

export!(Plugin);
