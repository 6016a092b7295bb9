// {{name}}: a sluice `route` plugin in C (world `route` in wit/plugin.wit).
//
// Routes each message to the value of its header `route`, else to param
// `default`, else to "default". A `route` header that is not UTF-8 is a
// fatal error (a route is a string).
//
// `sluice plugin build` runs `wit-bindgen c` into build/bindings/ (route.h,
// included here, and route.c) and compiles them with every src/*.c.
// Ownership follows wit-bindgen's C bindings:
// - an exported function owns its arguments and must free them
//   (route_message_free, route_list_message_free);
// - what it returns (lists, strings, error texts) must come from malloc,
//   e.g. route_string_dup_n: the generated post-return code frees it;
// - a string the host returns (config) is the caller's to free.
#include <stdlib.h>
#include <string.h>

#include "route.h"

static bool loaded;
static route_string_t fallback;  // param `default`, or "default"

static void load_params(void) {
    if (loaded) return;
    loaded = true;
    route_string_t key;
    route_string_set(&key, "default");
    if (!sluice_plugin_host_config(&key, &fallback)) route_string_dup(&fallback, "default");
}

// Is `s` well-formed UTF-8? (The host refuses strings that are not.)
static bool valid_utf8(const uint8_t *s, size_t len) {
    for (size_t i = 0; i < len;) {
        uint8_t b = s[i];
        size_t n = b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
        if (n == 0 || len - i < n) return false;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
        }
        if (n > 1 && ((b == 0xE0 && s[i + 1] < 0xA0) || (b == 0xED && s[i + 1] > 0x9F) || (b == 0xF0 && s[i + 1] < 0x90) || (b == 0xF4 && s[i + 1] > 0x8F))) return false;
        i += n;
    }
    return true;
}

// Route one message; `msg` stays the caller's.
static bool route_one(const route_message_t *msg, route_list_string_t *ret, route_error_t *err) {
    load_params();
    const uint8_t *to = fallback.ptr;
    size_t len = fallback.len;
    for (size_t i = 0; i < msg->headers.len; i++) {
        const route_tuple2_string_list_u8_t *h = &msg->headers.ptr[i];
        if (h->f0.len == 5 && memcmp(h->f0.ptr, "route", 5) == 0) {
            to = h->f1.ptr;
            len = h->f1.len;
            break;
        }
    }
    if (!valid_utf8(to, len)) {
        err->tag = SLUICE_PLUGIN_TYPES_ERROR_FATAL;
        route_string_dup(&err->val.fatal, "header `route` is not UTF-8");
        return false;
    }
    ret->ptr = malloc(sizeof *ret->ptr);
    if (!ret->ptr) abort();
    ret->len = 1;
    route_string_dup_n(&ret->ptr[0], (const char *)to, len);
    return true;
}

bool exports_route_route(route_message_t *msg, route_list_string_t *ret, route_error_t *err) {
    bool ok = route_one(msg, ret, err);
    route_message_free(msg);
    return ok;
}

void exports_route_route_batch(route_list_message_t *msgs, route_list_result_list_string_error_t *ret) {
    ret->len = msgs->len;
    ret->ptr = NULL;
    if (msgs->len > 0) {
        ret->ptr = calloc(msgs->len, sizeof *ret->ptr);
        if (!ret->ptr) abort();
    }
    for (size_t i = 0; i < msgs->len; i++) {
        route_result_list_string_error_t *r = &ret->ptr[i];
        r->is_err = !route_one(&msgs->ptr[i], &r->val.ok, &r->val.err);
    }
    route_list_message_free(msgs);
}
