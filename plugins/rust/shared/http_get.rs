//! A blocking `GET` over `wasi:http` (capability `http`), shared by the
//! plugins that send requests (`#[path]`-included; not a crate of its own).
//! An error is the text of the `wasi:http` error code, e.g.
//! `ErrorCode::HttpRequestDenied`.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    http_error_code, Fields, IncomingBody, Method, OutgoingRequest, Scheme,
};
use wasip2::io::streams::StreamError;

/// `GET url` (`http://host:port/path` or `https://...`): status and body.
pub fn get(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not an http(s) URL"))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("scheme `{other}` is not http or https")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let set = request
        .set_method(&Method::Get)
        .and(request.set_scheme(Some(&scheme)))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some(path)));
    set.map_err(|()| format!("`{url}`: the host refused the request's parts"))?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    let response = loop {
        match pending.get() {
            Some(answer) => break answer,
            None => pending.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| "the response was already taken".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response
        .consume()
        .map_err(|()| "the body was already taken".to_string())?;
    let mut bytes = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|()| "the body stream was already taken".to_string())?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(match http_error_code(&e) {
                        Some(code) => format!("{code:?}"),
                        None => e.to_debug_string(),
                    });
                }
            }
        }
    }
    IncomingBody::finish(body);
    Ok((status, bytes))
}
