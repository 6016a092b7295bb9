"""{{name}}: a sluice `transform` plugin (world `transform` in wit/plugin.wit).

Returns each message with the header `processed-by: {{name}}` appended;
an empty payload is a fatal error.

How componentize-py maps the world onto this module (`app`): the world's
exports are methods of a class named `WitWorld` (snake_case: `transform`,
`transform_batch`); the host's functions are in `wit_world.imports.host`,
the types in `wit_world.imports.types`. A function returning
`result<T, error>` returns T or raises `Err(types.Error_Fatal("why"))` (or
`Error_Retryable`); a list of results holds `Ok(value)` or `Err(error)`.
A message is a dataclass `types.Message(key, payload, headers, source,
timestamp_ms, attempt)` with bytes payload and a list of `(name, bytes)`
headers. The module is imported once at build time (it is snapshotted
into the component), where there is no host: call `host` functions only
from the exports.
"""

import wit_world
from componentize_py_types import Err, Ok
from wit_world.imports import types

PROCESSED_BY = ("processed-by", b"{{name}}")


def _transform(msg: types.Message) -> list[types.Message]:
    if not msg.payload:
        raise Err(types.Error_Fatal("empty payload"))
    msg.headers.append(PROCESSED_BY)
    return [msg]


def _settle(call, msg):
    """One message's outcome as a `result`; other exceptions trap, as in the single call."""
    try:
        return Ok(call(msg))
    except Err as e:
        return e


class WitWorld(wit_world.WitWorld):
    def transform(self, msg: types.Message) -> list[types.Message]:
        return _transform(msg)

    def transform_batch(self, msgs):
        return [_settle(_transform, msg) for msg in msgs]
