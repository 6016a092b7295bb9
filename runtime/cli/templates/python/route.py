"""{{name}}: a sluice `route` plugin (world `route` in wit/plugin.wit).

Routes each message to the sink named by its header `route`, else to
param `default` (default "default").

How componentize-py maps the world onto this module (`app`): the world's
exports are methods of a class named `WitWorld` (snake_case: `route`,
`route_batch`); the host's functions are in `wit_world.imports.host`, the
types in `wit_world.imports.types`. A function returning `result<T, error>`
returns T or raises `Err(types.Error_Fatal("why"))` (or `Error_Retryable`);
a list of results holds `Ok(value)` or `Err(error)`. A message is a
dataclass `types.Message(key, payload, headers, source, timestamp_ms,
attempt)` with bytes payload and a list of `(name, bytes)` headers.
The module is imported once at build time (it is snapshotted into the
component), where there is no host: read params on the first call.
"""

import wit_world
from componentize_py_types import Err, Ok
from wit_world.imports import host, types

_fallback = None  # param `default`, read on the first call


def _header(msg: types.Message, name: str):
    for key, value in msg.headers:
        if key == name:
            return value.decode("utf-8", "replace")
    return None


def _route(msg: types.Message) -> list[str]:
    global _fallback
    if _fallback is None:
        value = host.config("default")
        _fallback = "default" if value is None else value
    route = _header(msg, "route")
    return [route if route is not None else _fallback]


def _settle(call, msg):
    """One message's outcome as a `result`; other exceptions trap, as in the single call."""
    try:
        return Ok(call(msg))
    except Err as e:
        return e


class WitWorld(wit_world.WitWorld):
    def route(self, msg: types.Message) -> list[str]:
        return _route(msg)

    def route_batch(self, msgs):
        return [_settle(_route, msg) for msg in msgs]
