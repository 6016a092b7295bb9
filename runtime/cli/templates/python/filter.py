"""{{name}}: a sluice `filter` plugin (world `filter` in wit/plugin.wit).

Keeps a message whose payload has at least param `min-bytes` bytes
(default 1), drops the others.

How componentize-py maps the world onto this module (`app`): the world's
exports are methods of a class named `WitWorld` (snake_case: `filter`,
`filter_batch`); the host's functions are in `wit_world.imports.host`, the
types in `wit_world.imports.types`. A function returning `result<T, error>`
returns T or raises `Err(types.Error_Fatal("why"))` (or `Error_Retryable`);
a list of results holds `Ok(value)` or `Err(error)`. A message is a
dataclass `types.Message(key, payload, headers, source, timestamp_ms,
attempt)` with bytes payload and a list of `(name, bytes)` headers.
The module is imported once at build time (it is snapshotted into the
component), where there is no host: read params on the first call.
"""

import json

import wit_world
from componentize_py_types import Err, Ok
from wit_world.imports import host, types

_params = None  # this instance's (min_bytes, error), read on the first call


def _read_params():
    text = host.config("min-bytes")
    if text is None:
        return 1, None
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()):
        return None, types.Error_Fatal(f"param `min-bytes` = {json.dumps(text)} is not a whole number")
    return int(digits), None


def _filter(msg: types.Message) -> bool:
    global _params
    if _params is None:
        _params = _read_params()
    min_bytes, error = _params
    if error is not None:
        raise Err(error)
    keep = len(msg.payload) >= min_bytes
    if not keep:
        host.log(host.Level.DEBUG, f"dropped a message of {len(msg.payload)} bytes (min-bytes {min_bytes})")
    return keep


def _settle(call, msg):
    """One message's outcome as a `result`; other exceptions trap, as in the single call."""
    try:
        return Ok(call(msg))
    except Err as e:
        return e


class WitWorld(wit_world.WitWorld):
    def filter(self, msg: types.Message) -> bool:
        return _filter(msg)

    def filter_batch(self, msgs):
        return [_settle(_filter, msg) for msg in msgs]
