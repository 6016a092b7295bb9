// {{name}}: a sluice `filter` plugin in C (world `filter` in wit/plugin.wit).
//
// Keeps a message whose payload has at least param `min-bytes` bytes
// (default 1), drops the others.
//
// `sluice plugin build` runs `wit-bindgen c` into build/bindings/ (filter.h,
// included here, and filter.c) and compiles them with every src/*.c.
// Ownership follows wit-bindgen's C bindings:
// - an exported function owns its arguments and must free them
//   (filter_message_free, filter_list_message_free);
// - what it returns (lists, strings, error texts) must come from malloc,
//   e.g. filter_string_dup: the generated post-return code frees it;
// - a string the host returns (config) is the caller's to free.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

static bool loaded;
static size_t min_bytes = 1;
static char *param_error;  // set when a param is bad: every message fails with it

static void load_params(void) {
    if (loaded) return;
    loaded = true;
    filter_string_t key, value;
    filter_string_set(&key, "min-bytes");
    if (!sluice_plugin_host_config(&key, &value)) return;  // not set
    size_t start = 0, end = value.len, n = 0;
    while (start < end && value.ptr[start] == ' ') start++;
    while (end > start && value.ptr[end - 1] == ' ') end--;
    bool ok = start < end;
    for (size_t i = start; ok && i < end; i++) {
        uint8_t d = value.ptr[i];
        ok = d >= '0' && d <= '9' && n <= (SIZE_MAX - 9) / 10;
        n = n * 10 + (size_t)(d - '0');
    }
    if (ok) {
        min_bytes = n;
    } else {
        size_t len = value.len + 64;
        param_error = malloc(len);
        if (!param_error) abort();
        snprintf(param_error, len, "param `min-bytes` = \"%.*s\" is not a whole number", (int)value.len, (const char *)value.ptr);
        filter_string_t text;
        filter_string_set(&text, param_error);
        sluice_plugin_host_log(SLUICE_PLUGIN_HOST_LEVEL_ERROR, &text);
    }
    filter_string_free(&value);
}

// Decide for one message; `msg` stays the caller's.
static bool filter_one(const filter_message_t *msg, bool *keep, filter_error_t *err) {
    load_params();
    if (param_error) {
        err->tag = SLUICE_PLUGIN_TYPES_ERROR_FATAL;
        filter_string_dup(&err->val.fatal, param_error);
        return false;
    }
    *keep = msg->payload.len >= min_bytes;
    return true;
}

bool exports_filter_filter(filter_message_t *msg, bool *ret, filter_error_t *err) {
    bool ok = filter_one(msg, ret, err);
    filter_message_free(msg);
    return ok;
}

void exports_filter_filter_batch(filter_list_message_t *msgs, filter_list_result_bool_error_t *ret) {
    ret->len = msgs->len;
    ret->ptr = NULL;
    if (msgs->len > 0) {
        ret->ptr = calloc(msgs->len, sizeof *ret->ptr);
        if (!ret->ptr) abort();
    }
    for (size_t i = 0; i < msgs->len; i++) {
        filter_result_bool_error_t *r = &ret->ptr[i];
        r->is_err = !filter_one(&msgs->ptr[i], &r->val.ok, &r->val.err);
    }
    filter_list_message_free(msgs);
}
