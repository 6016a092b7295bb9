"""A small subset of JSON Schema: checking a schema, validating a document.

Supported keywords: `type` (object, array, string, number, integer, boolean,
null; one name or a list of them), `required`, `properties` (recursive),
`items` (one schema for every element), `enum`, `minimum`, `maximum`,
`minLength`, `maxLength`. Annotations (`$schema`, `$id`, `title`,
`description`, `$comment`, `default`, `examples`) are allowed and ignored;
any other keyword is refused by `check`, so a schema never silently means
less than it says.

Paths are written `$`, `$.name`, `$.items[0]`, `$["odd name"]`.
"""

import json
import re

TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
ANNOTATIONS = frozenset(("$schema", "$id", "title", "description", "$comment", "default", "examples"))
KEYWORDS = frozenset(("type", "required", "properties", "items", "enum", "minimum", "maximum", "minLength", "maxLength"))
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class SchemaError(ValueError):
    """The schema itself is not one this module understands."""


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if _IDENTIFIER.match(name) else f"{path}[{json.dumps(name)}]"


def type_of(value) -> str:
    """The JSON type name of a parsed value (integers are numbers too)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _has_type(value, name: str) -> bool:
    if name == "integer":
        return _is_number(value) and (isinstance(value, int) or value.is_integer())
    return type_of(value) == name


def _same(a, b) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    if _is_number(a) and _is_number(b):
        return a == b
    if type_of(a) != type_of(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


# --- checking the schema -----------------------------------------------------

def check(schema, path: str = "$") -> None:
    """Raise `SchemaError` naming the first problem of `schema`."""
    if not isinstance(schema, dict):
        raise SchemaError(f"{path}: a schema is a JSON object, got {type_of(schema)}")
    for key, value in schema.items():
        if key in ANNOTATIONS:
            continue
        if key not in KEYWORDS:
            raise SchemaError(f"{path}: unsupported keyword `{key}` (supported: {', '.join(sorted(KEYWORDS))})")
        _check_keyword(key, value, f"{path}.{key}")


def _check_keyword(key: str, value, path: str) -> None:
    if key == "type":
        names = value if isinstance(value, list) else [value]
        if not names or not all(isinstance(n, str) and n in TYPES for n in names):
            raise SchemaError(f"{path}: expected one of {', '.join(TYPES)} (or a list of them), got {json.dumps(value)}")
    elif key == "required":
        if not (isinstance(value, list) and all(isinstance(n, str) for n in value)):
            raise SchemaError(f"{path}: expected a list of property names")
    elif key == "properties":
        if not isinstance(value, dict):
            raise SchemaError(f"{path}: expected an object of schemas, got {type_of(value)}")
        for name, sub in value.items():
            check(sub, child(path, name))
    elif key == "items":
        check(value, path)
    elif key == "enum":
        if not isinstance(value, list) or not value:
            raise SchemaError(f"{path}: expected a non-empty list of values")
    elif key in ("minimum", "maximum"):
        if not _is_number(value):
            raise SchemaError(f"{path}: expected a number, got {type_of(value)}")
    elif not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        raise SchemaError(f"{path}: expected a whole number of characters, got {json.dumps(value)}")


# --- validating a document ---------------------------------------------------

def first_violation(schema: dict, value, path: str = "$"):
    """The first way `value` breaks `schema`, as `"PATH: what"`, or None.

    `schema` must have passed `check`. Keywords are tried in the order
    type, enum, minimum/maximum, minLength/maxLength, required, properties,
    items; properties in the schema's order, items in the array's.
    """
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_has_type(value, n) for n in names):
            return f"{path}: expected {' or '.join(names)}, got {type_of(value)}"
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        return f"{path}: expected one of {json.dumps(schema['enum'])}, got {json.dumps(value)}"
    if _is_number(value):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{path}: expected at least {schema['minimum']}, got {value}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{path}: expected at most {schema['maximum']}, got {value}"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{path}: expected at least {schema['minLength']} characters, got {len(value)}"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{path}: expected at most {schema['maxLength']} characters, got {len(value)}"
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                return f"{child(path, name)}: required property is missing"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                found = first_violation(sub, value[name], child(path, name))
                if found:
                    return found
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found = first_violation(schema["items"], item, f"{path}[{i}]")
            if found:
                return found
    return None
