// Rewriting the string values of a JSON text in place.
//
// Only the string values that change are re-encoded; keys, numbers,
// whitespace and the order of everything stay byte for byte as they were
// (a parse and re-serialise would round big integers and reorder
// integer-like keys).

// Calls `rewrite(value)` for each string value (not object key) of `json`,
// which must be valid JSON; `rewrite` returns the new value or the same one.
export function mapStringValues(json, rewrite) {
  let out = '';
  let copied = 0; // json[0..copied) is in `out` already
  let i = 0;
  while ((i = json.indexOf('"', i)) !== -1) {
    const end = closingQuote(json, i);
    if (!isKey(json, end + 1)) {
      const token = json.slice(i, end + 1);
      const value = JSON.parse(token);
      const changed = rewrite(value);
      if (changed !== value) {
        out += json.slice(copied, i) + JSON.stringify(changed);
        copied = end + 1;
      }
    }
    i = end + 1;
  }
  return copied === 0 ? json : out + json.slice(copied);
}

// The index of the quote closing the string that opens at `start`.
function closingQuote(json, start) {
  let i = start + 1;
  while (json[i] !== '"') i += json[i] === '\\' ? 2 : 1;
  return i;
}

// Whether the next character after `from`, past whitespace, is a `:`.
function isKey(json, from) {
  let i = from;
  while (json[i] === ' ' || json[i] === '\t' || json[i] === '\n' || json[i] === '\r') i++;
  return json[i] === ':';
}
