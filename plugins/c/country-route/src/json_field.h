// A small, bounds-checked JSON scanner: find one top-level string field of
// a JSON object. It validates the whole text (UTF-8, strings, numbers,
// literals, nesting up to JSON_FIELD_MAX_DEPTH) but builds no tree.
#ifndef COUNTRY_ROUTE_JSON_FIELD_H
#define COUNTRY_ROUTE_JSON_FIELD_H

#include <stddef.h>
#include <stdint.h>

#define JSON_FIELD_MAX_DEPTH 256

typedef enum {
    JSON_FIELD_FOUND,       // *value is the decoded string (UTF-8)
    JSON_FIELD_MISSING,     // a valid object without that key
    JSON_FIELD_NOT_STRING,  // the key's value is not a string
    JSON_FIELD_NOT_OBJECT,  // valid JSON, but not an object
    JSON_FIELD_INVALID,     // not valid JSON (or nested too deep)
    JSON_FIELD_NO_MEMORY,
} json_field_status;

// A growable byte buffer; the scanner reuses it between calls.
typedef struct {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} json_buf;

void json_buf_free(json_buf *b);

// The longest prefix of the UTF-8 text `s` (`len` bytes) of at most `max`
// bytes that does not split a character.
size_t utf8_prefix(const uint8_t *s, size_t len, size_t max);

// Look up the top-level key `name` (`name_len` bytes, compared after
// decoding escapes) in the JSON text `text`. When the key appears more than
// once, the last one wins. On JSON_FIELD_FOUND, `value` holds the decoded
// string; `key` is scratch space.
json_field_status json_field(const uint8_t *text, size_t len, const uint8_t *name, size_t name_len, json_buf *key, json_buf *value);

#endif
