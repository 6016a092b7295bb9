"""Unit tests of the validator (plain CPython, no build needed):
`python3 -m unittest discover -s tests` in this folder."""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from minischema import SchemaError, check, first_violation  # noqa: E402

ORDER = {
    "type": "object",
    "required": ["id", "amount"],
    "properties": {
        "id": {"type": "string", "minLength": 3, "maxLength": 8},
        "amount": {"type": "number", "minimum": 0, "maximum": 1000},
        "qty": {"type": "integer"},
        "status": {"enum": ["new", "paid"]},
        "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
        "the note": {"type": ["string", "null"]},
    },
}


class Validate(unittest.TestCase):
    def violation(self, doc):
        return first_violation(ORDER, doc)

    def test_valid(self):
        self.assertIsNone(self.violation({"id": "o-1", "amount": 5, "qty": 2.0, "status": "paid", "items": [{"sku": "a"}], "the note": None}))

    def test_each_keyword(self):
        cases = [
            ([], "$: expected object, got array"),
            ({"amount": 1}, "$.id: required property is missing"),
            ({"id": "o-1", "amount": "5"}, "$.amount: expected number, got string"),
            ({"id": "o-1", "amount": True}, "$.amount: expected number, got boolean"),
            ({"id": "o-1", "amount": -1}, "$.amount: expected at least 0, got -1"),
            ({"id": "o-1", "amount": 1000.5}, "$.amount: expected at most 1000, got 1000.5"),
            ({"id": "o", "amount": 1}, "$.id: expected at least 3 characters, got 1"),
            ({"id": "o-1234567", "amount": 1}, "$.id: expected at most 8 characters, got 9"),
            ({"id": "o-1", "amount": 1, "qty": 1.5}, "$.qty: expected integer, got number"),
            ({"id": "o-1", "amount": 1, "status": "lost"}, '$.status: expected one of ["new", "paid"], got "lost"'),
            ({"id": "o-1", "amount": 1, "items": [{"sku": 1}, {}]}, "$.items[1].sku: required property is missing"),
            ({"id": "o-1", "amount": 1, "the note": 3}, '$["the note"]: expected string or null, got number'),
        ]
        for doc, want in cases:
            self.assertEqual(self.violation(doc), want)

    def test_enum_tells_true_from_one(self):
        self.assertIsNotNone(first_violation({"enum": [1]}, True))
        self.assertIsNone(first_violation({"enum": [1]}, 1.0))


class Check(unittest.TestCase):
    def test_good_schemas_pass(self):
        check(ORDER)
        check({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "t"})

    def test_bad_schemas_name_the_place(self):
        cases = [
            ([], "$: a schema is a JSON object, got array"),
            ({"type": "float"}, "$.type: expected one of"),
            ({"properties": {"a": {"pattern": "x"}}}, "$.properties.a: unsupported keyword `pattern`"),
            ({"items": 3}, "$.items: a schema is a JSON object, got number"),
            ({"minLength": -1}, "$.minLength: expected a whole number"),
            ({"minimum": "0"}, "$.minimum: expected a number, got string"),
            ({"required": "id"}, "$.required: expected a list"),
        ]
        for schema, want in cases:
            with self.assertRaises(SchemaError) as e:
                check(schema)
            self.assertTrue(str(e.exception).startswith(want), str(e.exception))


if __name__ == "__main__":
    unittest.main()
