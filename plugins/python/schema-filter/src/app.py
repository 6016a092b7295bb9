"""schema-filter: a sluice `filter` plugin (world `filter` in the contract
wit/plugin.wit).

Validates each JSON payload against the JSON Schema (a small subset, see
`minischema.py`) given as param `schema`. A valid message is kept. An invalid
one is dead-lettered with a fatal error naming the first violation
(`$.amount: expected number, got string`) when param `on-invalid` is
`dead-letter` (the default), or dropped (and the violation logged at debug)
when it is `drop`. A payload that is not JSON is a fatal error; so is a
missing or invalid `schema` param, for every message.
"""

import json

import wit_world
from componentize_py_types import Err, Ok
from wit_world.imports import host, types

import minischema

ON_INVALID = ("dead-letter", "drop")


class Params:
    """The stage params, read once per instance on the first call (module
    level code runs at build time, where there is no host)."""

    def __init__(self):
        self.schema, self.drop, self.error = None, False, None
        try:
            self.schema = self._schema()
            self.drop = self._on_invalid() == "drop"
        except ValueError as e:
            self.error = types.Error_Fatal(str(e))

    @staticmethod
    def _schema():
        text = host.config("schema")
        if text is None:
            raise ValueError("param `schema` is not set: give the JSON Schema (a JSON object) to validate payloads against")
        try:
            parsed = json.loads(text, parse_constant=_reject_constant)
            minischema.check(parsed)
        except ValueError as e:  # json.JSONDecodeError and SchemaError are ValueErrors
            raise ValueError(f"param `schema` is invalid: {e}") from None
        return parsed

    @staticmethod
    def _on_invalid():
        value = host.config("on-invalid")
        value = "dead-letter" if value is None else value.strip()
        if value not in ON_INVALID:
            raise ValueError(f"param `on-invalid` = {json.dumps(value)}: use `dead-letter` or `drop`")
        return value


_params = None


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _parse(payload: bytes):
    try:
        return json.loads(payload, parse_constant=_reject_constant)
    except ValueError as e:  # also UnicodeDecodeError
        raise Err(types.Error_Fatal(f"payload is not valid JSON: {e}")) from None


def _filter(msg: types.Message) -> bool:
    global _params
    if _params is None:
        _params = Params()
    if _params.error is not None:
        raise Err(_params.error)
    violation = minischema.first_violation(_params.schema, _parse(msg.payload))
    if violation is None:
        return True
    if _params.drop:
        host.log(host.Level.DEBUG, f"dropped an invalid message: {violation}")
        return False
    raise Err(types.Error_Fatal(violation))


def _settle(msg):
    """One message's outcome as a `result`; other exceptions trap, as in the single call."""
    try:
        return Ok(_filter(msg))
    except Err as e:
        return e


class WitWorld(wit_world.WitWorld):
    def filter(self, msg: types.Message) -> bool:
        return _filter(msg)

    def filter_batch(self, msgs):
        return [_settle(msg) for msg in msgs]
