// See json_field.h. Every read is checked against the end of the text; no
// recursion (nesting is tracked in a fixed stack), so hostile input can
// neither overrun the buffer nor the Wasm stack.
#include "json_field.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} cursor;

void json_buf_free(json_buf *b) {
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

size_t utf8_prefix(const uint8_t *s, size_t len, size_t max) {
    if (len <= max) return len;
    while (max > 0 && (s[max] & 0xC0) == 0x80) max--;
    return max;
}

static bool buf_push(json_buf *b, const uint8_t *bytes, size_t n) {
    if (n == 0) return true;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) return false;
            cap *= 2;
        }
        uint8_t *p = realloc(b->ptr, cap);
        if (!p) return false;
        b->ptr = p;
        b->cap = cap;
    }
    memcpy(b->ptr + b->len, bytes, n);
    b->len += n;
    return true;
}

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static bool eat(cursor *c, uint8_t ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool literal(cursor *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return false;
    c->p += n;
    return true;
}

static bool digits(cursor *c) {
    const uint8_t *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    return c->p > start;
}

// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
static bool number(cursor *c) {
    if (c->p < c->end && *c->p == '-') c->p++;
    if (c->p < c->end && *c->p == '0') {
        c->p++;
    } else if (!digits(c)) {
        return false;
    }
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digits(c)) return false;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (!digits(c)) return false;
    }
    return true;
}

static int hex4(cursor *c) {
    if (c->end - c->p < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t h = c->p[i];
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    c->p += 4;
    return v;
}

static bool push_utf8(json_buf *out, uint32_t cp) {
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (uint8_t)(0xC0 | cp >> 6);
        b[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | cp >> 12);
        b[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (uint8_t)(0xF0 | cp >> 18);
        b[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        b[3] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_push(out, b, n);
}

// One well-formed UTF-8 character of two to four bytes at c->p (no
// overlong forms, no surrogates, nothing past U+10FFFF).
static bool utf8_char(cursor *c) {
    const uint8_t *p = c->p;
    size_t left = (size_t)(c->end - p);
    uint8_t b = p[0];
    size_t n = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
    if (n == 0 || left < n) return false;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return false;
    }
    if ((b == 0xE0 && p[1] < 0xA0) || (b == 0xED && p[1] > 0x9F) || (b == 0xF0 && p[1] < 0x90) || (b == 0xF4 && p[1] > 0x8F)) return false;
    c->p += n;
    return true;
}

typedef enum { STR_OK, STR_BAD, STR_NO_MEMORY } str_status;

// A string at c->p (which must be `"`); decoded into `out` unless NULL.
static str_status string(cursor *c, json_buf *out) {
    if (c->p >= c->end || *c->p != '"') return STR_BAD;
    c->p++;
    if (out) out->len = 0;
    for (;;) {
        const uint8_t *run = c->p;
        while (c->p < c->end && *c->p != '"' && *c->p != '\\' && *c->p >= 0x20) {
            if (*c->p < 0x80) {
                c->p++;
            } else if (!utf8_char(c)) {
                return STR_BAD;
            }
        }
        if (out && !buf_push(out, run, (size_t)(c->p - run))) return STR_NO_MEMORY;
        if (c->p >= c->end || *c->p < 0x20) return STR_BAD;
        if (*c->p == '"') {
            c->p++;
            return STR_OK;
        }
        c->p++;  // the backslash
        if (c->p >= c->end) return STR_BAD;
        uint8_t e = *c->p++;
        uint32_t cp;
        switch (e) {
            case '"': case '\\': case '/': cp = e; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u': {
                int hi = hex4(c);
                if (hi < 0) return STR_BAD;
                cp = (uint32_t)hi;
                if (hi >= 0xD800 && hi <= 0xDBFF) {
                    // A high surrogate: a low one must follow.
                    if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u') return STR_BAD;
                    c->p += 2;
                    int lo = hex4(c);
                    if (lo < 0xDC00 || lo > 0xDFFF) return STR_BAD;
                    cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
                    return STR_BAD;
                }
                break;
            }
            default: return STR_BAD;
        }
        if (out && !push_utf8(out, cp)) return STR_NO_MEMORY;
    }
}

// Skip one value of any kind, validating it.
static str_status skip_value(cursor *c) {
    uint8_t closers[JSON_FIELD_MAX_DEPTH];
    size_t depth = 0;
    for (;;) {
        // One value starts here.
        skip_ws(c);
        if (c->p >= c->end) return STR_BAD;
        uint8_t ch = *c->p;
        if (ch == '{' || ch == '[') {
            c->p++;
            uint8_t close = ch == '{' ? '}' : ']';
            if (eat(c, close)) goto done;
            if (depth == JSON_FIELD_MAX_DEPTH) return STR_BAD;
            closers[depth++] = close;
            if (close == '}') {
                skip_ws(c);
                if (string(c, NULL) != STR_OK || !eat(c, ':')) return STR_BAD;
            }
            continue;
        }
        bool ok = ch == '"' ? string(c, NULL) == STR_OK
                : ch == 't' ? literal(c, "true")
                : ch == 'f' ? literal(c, "false")
                : ch == 'n' ? literal(c, "null")
                : number(c);
        if (!ok) return STR_BAD;
    done:
        // A value ended: close containers until one goes on with a comma.
        for (;;) {
            if (depth == 0) return STR_OK;
            if (eat(c, ',')) {
                if (closers[depth - 1] == '}') {
                    skip_ws(c);
                    if (string(c, NULL) != STR_OK || !eat(c, ':')) return STR_BAD;
                }
                break;
            }
            if (!eat(c, closers[depth - 1])) return STR_BAD;
            depth--;
        }
    }
}

json_field_status json_field(const uint8_t *text, size_t len, const uint8_t *name, size_t name_len, json_buf *key, json_buf *value) {
    cursor c = {text, text + len};
    json_field_status found = JSON_FIELD_MISSING;
    skip_ws(&c);
    if (c.p >= c.end) return JSON_FIELD_INVALID;
    if (*c.p != '{') {
        // Valid JSON of another kind, or not JSON at all?
        str_status s = skip_value(&c);
        if (s == STR_NO_MEMORY) return JSON_FIELD_NO_MEMORY;
        skip_ws(&c);
        return s == STR_OK && c.p == c.end ? JSON_FIELD_NOT_OBJECT : JSON_FIELD_INVALID;
    }
    c.p++;
    if (!eat(&c, '}')) {
        for (;;) {
            skip_ws(&c);
            str_status s = string(&c, key);
            if (s != STR_OK) return s == STR_NO_MEMORY ? JSON_FIELD_NO_MEMORY : JSON_FIELD_INVALID;
            if (!eat(&c, ':')) return JSON_FIELD_INVALID;
            skip_ws(&c);
            if (key->len == name_len && memcmp(key->ptr, name, name_len) == 0) {
                if (c.p < c.end && *c.p == '"') {
                    s = string(&c, value);
                    found = JSON_FIELD_FOUND;
                } else {
                    s = skip_value(&c);
                    found = JSON_FIELD_NOT_STRING;
                }
            } else {
                s = skip_value(&c);
            }
            if (s != STR_OK) return s == STR_NO_MEMORY ? JSON_FIELD_NO_MEMORY : JSON_FIELD_INVALID;
            if (eat(&c, ',')) continue;
            if (eat(&c, '}')) break;
            return JSON_FIELD_INVALID;
        }
    }
    skip_ws(&c);
    return c.p == c.end ? found : JSON_FIELD_INVALID;
}
