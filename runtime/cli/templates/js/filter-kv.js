// {{name}}: a sluice `filter` plugin with the `kv` capability (world
// `filter-kv` of sluice:plugin@0.2.0 in wit/plugin.wit): a rate limit per key.
//
// Keeps at most param `limit` (default 1) messages of each key within param
// `window-ms` (default 60000) and drops the rest; a message without a key is
// kept. The counts are in the stage's key-value store, so every instance of
// the stage (and every daemon sharing a Redis store) counts together. The
// stage must grant the capability: `capabilities = ["kv"]`.
//
// How componentize-js maps the imports (see also the plain filter template):
// - `kv` functions are imported from 'sluice:plugin/kv@0.2.0'; s64 and u64
//   are BigInt, an `option` is the value or undefined;
// - an imported function returning `result<T, kv-error>` returns T, or
//   throws; the thrown error's `payload` is the kv-error variant,
//   `{ tag: 'limit' | 'invalid' | 'unavailable', val: 'why' }`.
// The module's top level runs once at build time, where there is no host:
// read params on the first call.

import { config, log } from 'sluice:plugin/host@0.2.0';
import { increment } from 'sluice:plugin/kv@0.2.0';

let params; // this instance's params, read on the first call

function number(key, fallback) {
  const text = config(key);
  if (text == null) return { value: fallback };
  if (!/^\d+$/.test(text.trim())) {
    return { error: fatal(`param \`${key}\` = ${JSON.stringify(text)} is not a whole number`) };
  }
  return { value: BigInt(text.trim()) };
}

function readParams() {
  const limit = number('limit', 1n);
  const windowMs = number('window-ms', 60000n);
  const error = limit.error ?? windowMs.error;
  if (error) return { error };
  return { limit: limit.value, windowMs: windowMs.value > 0n ? windowMs.value : 1n };
}

function fatal(text) {
  return { tag: 'fatal', val: text };
}

// A store that cannot answer is worth a retry; the rest will not pass.
function storeError(e) {
  const why = e?.payload ?? e;
  const text = `kv: ${why?.tag ?? 'error'}: ${why?.val ?? String(e)}`;
  return why?.tag === 'unavailable' ? { tag: 'retryable', val: text } : fatal(text);
}

export function filter(msg) {
  params ??= readParams();
  if (params.error) throw params.error;
  if (msg.key == null) return true;
  const counter = `count:${new TextDecoder().decode(msg.key)}`;
  let seen;
  try {
    // The count expires with the window that its first message opened.
    seen = increment(counter, 1n, params.windowMs);
  } catch (e) {
    throw storeError(e);
  }
  const keep = seen <= params.limit;
  if (!keep) log('debug', `dropped: message ${seen} of \`${counter}\` in its window`);
  return keep;
}

export function filterBatch(msgs) {
  return msgs.map((msg) => settle(filter, msg));
}

// One message's outcome as a `result`. Only the error variant becomes `err`:
// anything else thrown is a bug and traps, as it does in the single call.
function settle(call, msg) {
  try {
    return { tag: 'ok', val: call(msg) };
  } catch (e) {
    if (e?.tag === 'fatal' || e?.tag === 'retryable') return { tag: 'err', val: e };
    throw e;
  }
}
