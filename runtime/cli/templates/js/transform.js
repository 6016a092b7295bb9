// {{name}}: a sluice `transform` plugin (world `transform` in wit/plugin.wit).
//
// Returns each message with the header `processed-by: {{name}}` appended;
// an empty payload is a fatal error.
//
// How componentize-js maps the world onto this ES module:
// - each export is an exported function, named in camelCase
//   (`transform`, `transformBatch`); the host's functions are imported from
//   'sluice:plugin/host@0.1.0';
// - a function returning `result<T, error>` returns T, or throws the error
//   variant, e.g. `throw { tag: 'fatal', val: 'why' }`; a list of results
//   holds `{ tag: 'ok', val: T }` or `{ tag: 'err', val: error }`;
// - a message is `{ key, payload, headers, source, timestampMs, attempt }`
//   with `payload` (and `key`, when set) a Uint8Array and `headers` a list
//   of `[name, Uint8Array]`.
// The module's top level runs once at build time (it is snapshotted into
// the component), where there is no host: call the host's `config` and
// `log` (import them from 'sluice:plugin/host@0.1.0') only from the
// exported functions.

const PROCESSED_BY = new TextEncoder().encode('{{name}}');

function fatal(text) {
  return { tag: 'fatal', val: text };
}

export function transform(msg) {
  if (msg.payload.length === 0) throw fatal('empty payload');
  return [{ ...msg, headers: [...msg.headers, ['processed-by', PROCESSED_BY]] }];
}

export function transformBatch(msgs) {
  return msgs.map((msg) => settle(transform, msg));
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
