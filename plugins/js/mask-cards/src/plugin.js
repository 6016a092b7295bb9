// mask-cards: a sluice `transform` plugin (world `transform` in the
// contract wit/plugin.wit).
//
// Masks payment card numbers in a JSON payload: in every string value
// (nested objects and arrays included) each run of 13 to 19 digits,
// optionally separated by spaces or dashes, that passes the Luhn check
// keeps only its last `keep` digits (param, default 4), the others become
// `*`. Appends the header `x-masked: <count of numbers masked>`. A payload
// that is not JSON is a fatal error.

import { config, log } from 'sluice:plugin/host@0.1.0';
import { maskCards } from './cards.js';
import { mapStringValues } from './json.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

// This instance's params, read on the first call (the module's top level
// runs at build time, where there is no host).
let params;

function readParams() {
  const keep = config('keep');
  if (keep == null) return { keep: 4 };
  if (!/^\d+$/.test(keep.trim())) return { error: fatal(`param \`keep\` = ${JSON.stringify(keep)} is not a whole number`) };
  return { keep: Number(keep.trim()) };
}

function fatal(text) {
  return { tag: 'fatal', val: text };
}

function parsePayload(payload) {
  try {
    const text = decoder.decode(payload);
    JSON.parse(text);
    return text;
  } catch (e) {
    throw fatal(`payload is not valid JSON: ${e.message}`);
  }
}

export function transform(msg) {
  params ??= readParams();
  if (params.error) throw params.error;
  const json = parsePayload(msg.payload);
  let count = 0;
  const masked = mapStringValues(json, (value) => {
    const result = maskCards(value, params.keep);
    count += result.count;
    return result.count ? result.text : value;
  });
  log('debug', `masked ${count} card number(s)`);
  const payload = count ? encoder.encode(masked) : msg.payload;
  const headers = [...msg.headers, ['x-masked', encoder.encode(String(count))]];
  return [{ ...msg, payload, headers }];
}

export function transformBatch(msgs) {
  return msgs.map((msg) => {
    try {
      return { tag: 'ok', val: transform(msg) };
    } catch (e) {
      // Only the error variant becomes `err`; anything else is a bug and
      // traps, as it does in the single call.
      if (e?.tag === 'fatal' || e?.tag === 'retryable') return { tag: 'err', val: e };
      throw e;
    }
  });
}
