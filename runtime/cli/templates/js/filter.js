// {{name}}: a sluice `filter` plugin (world `filter` in wit/plugin.wit).
//
// Keeps a message whose payload has at least param `min-bytes` bytes
// (default 1), drops the others.
//
// How componentize-js maps the world onto this ES module:
// - each export is an exported function, named in camelCase
//   (`filter`, `filterBatch`); the host's functions are imported from
//   'sluice:plugin/host@0.1.0';
// - a function returning `result<T, error>` returns T, or throws the error
//   variant, e.g. `throw { tag: 'fatal', val: 'why' }`; a list of results
//   holds `{ tag: 'ok', val: T }` or `{ tag: 'err', val: error }`;
// - a message is `{ key, payload, headers, source, timestampMs, attempt }`
//   with `payload` (and `key`, when set) a Uint8Array and `headers` a list
//   of `[name, Uint8Array]`.
// The module's top level runs once at build time (it is snapshotted into
// the component), where there is no host: read params on the first call.

import { config, log } from 'sluice:plugin/host@0.1.0';

let params; // this instance's params, read on the first call

function readParams() {
  const text = config('min-bytes');
  if (text == null) return { minBytes: 1 }; // not set
  if (!/^\d+$/.test(text.trim())) {
    return { error: fatal(`param \`min-bytes\` = ${JSON.stringify(text)} is not a whole number`) };
  }
  return { minBytes: Number(text.trim()) };
}

function fatal(text) {
  return { tag: 'fatal', val: text };
}

export function filter(msg) {
  params ??= readParams();
  if (params.error) throw params.error;
  const keep = msg.payload.length >= params.minBytes;
  if (!keep) log('debug', `dropped a message of ${msg.payload.length} bytes (min-bytes ${params.minBytes})`);
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
