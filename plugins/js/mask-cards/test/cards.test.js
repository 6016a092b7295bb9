// Unit tests of the pure modules: `node --test test/` (no build needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { luhnValid, maskCards } from '../src/cards.js';
import { mapStringValues } from '../src/json.js';

test('luhn', () => {
  assert.ok(luhnValid('4111111111111111'));
  assert.ok(luhnValid('378282246310005'));
  assert.ok(!luhnValid('4111111111111112'));
});

test('masks whole runs of 13 to 19 digits that pass luhn, keeping separators', () => {
  assert.deepEqual(maskCards('4111 1111 1111 1111', 4), { text: '**** **** **** 1111', count: 1 });
  assert.deepEqual(maskCards('a 4012-8888-8888-1881 b 5555555555554444', 2), { text: 'a ****-****-****-**81 b **************44', count: 2 });
  assert.deepEqual(maskCards('41111111111111111111', 4).count, 0); // 20 digits
  assert.deepEqual(maskCards('411111111111', 4).count, 0); // 12 digits
  assert.deepEqual(maskCards('4111  1111 1111 1111', 4).count, 0); // two separators: two runs
  assert.deepEqual(maskCards('4111111111111111', 0).text, '****************');
});

test('rewrites string values only, leaving the rest of the text as it was', () => {
  const json = '{"a" : "x", "b": [1e3, "y\\"z"], "x": {"c":"x"}, "n": 12345678901234567890}';
  const out = mapStringValues(json, (v) => (v === 'x' ? 'X' : v));
  assert.equal(out, '{"a" : "X", "b": [1e3, "y\\"z"], "x": {"c":"X"}, "n": 12345678901234567890}');
  assert.equal(mapStringValues('[1, "a"]', (v) => v), '[1, "a"]');
});
