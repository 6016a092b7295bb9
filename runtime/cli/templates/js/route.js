// {{name}}: a sluice `route` plugin (world `route` in wit/plugin.wit).
//
// Routes each message to the sink named by its header `route`, else to
// param `default` (default "default").
//
// How componentize-js maps the world onto this ES module:
// - each export is an exported function, named in camelCase
//   (`route`, `routeBatch`); the host's functions are imported from
//   'sluice:plugin/host@0.1.0';
// - a function returning `result<T, error>` returns T, or throws the error
//   variant, e.g. `throw { tag: 'fatal', val: 'why' }`; a list of results
//   holds `{ tag: 'ok', val: T }` or `{ tag: 'err', val: error }`;
// - a message is `{ key, payload, headers, source, timestampMs, attempt }`
//   with `payload` (and `key`, when set) a Uint8Array and `headers` a list
//   of `[name, Uint8Array]`.
// The module's top level runs once at build time (it is snapshotted into
// the component), where there is no host: read params on the first call.

import { config } from 'sluice:plugin/host@0.1.0';

let fallback; // param `default`, read on the first call
const decoder = new TextDecoder();

function header(msg, name) {
  const found = msg.headers.find(([key]) => key === name);
  return found && decoder.decode(found[1]);
}

export function route(msg) {
  fallback ??= config('default') ?? 'default';
  return [header(msg, 'route') ?? fallback];
}

export function routeBatch(msgs) {
  return msgs.map((msg) => settle(route, msg));
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
