// {{name}}: a sluice `transform` plugin in C (world `transform` in
// wit/plugin.wit).
//
// Returns each message with the header `processed-by: {{name}}` appended
// after its headers; an empty payload is a fatal error.
//
// `sluice plugin build` runs `wit-bindgen c` into build/bindings/
// (transform.h, included here, and transform.c) and compiles them with
// every src/*.c. Ownership follows wit-bindgen's C bindings:
// - an exported function owns its arguments: it must free them
//   (transform_message_free) or move their parts into what it returns, as
//   here, where the message itself is returned;
// - what it returns (lists, strings, error texts) must come from malloc,
//   e.g. transform_string_dup: the generated post-return code frees it;
// - a string the host returns (config) is the caller's to free.
#include <stdlib.h>
#include <string.h>

#include "transform.h"

static const char PLUGIN_NAME[] = "{{name}}";

// Transform one message, taking ownership of it.
static bool transform_one(transform_message_t *msg, transform_list_message_t *ret, transform_error_t *err) {
    if (msg->payload.len == 0) {
        transform_message_free(msg);
        err->tag = SLUICE_PLUGIN_TYPES_ERROR_FATAL;
        transform_string_dup(&err->val.fatal, "empty payload");
        return false;
    }
    // Append the header: grow the header list (a zero-length list's pointer
    // is not from malloc, so start a new one then).
    transform_list_tuple2_string_list_u8_t *headers = &msg->headers;
    size_t n = headers->len;
    transform_tuple2_string_list_u8_t *grown = malloc((n + 1) * sizeof *grown);
    if (!grown) abort();
    if (n > 0) {
        memcpy(grown, headers->ptr, n * sizeof *grown);
        free(headers->ptr);
    }
    transform_string_dup(&grown[n].f0, "processed-by");
    grown[n].f1.len = sizeof PLUGIN_NAME - 1;
    grown[n].f1.ptr = malloc(grown[n].f1.len);
    if (!grown[n].f1.ptr) abort();
    memcpy(grown[n].f1.ptr, PLUGIN_NAME, grown[n].f1.len);
    headers->ptr = grown;
    headers->len = n + 1;
    // The message moves into the result: one message.
    ret->ptr = malloc(sizeof *ret->ptr);
    if (!ret->ptr) abort();
    ret->ptr[0] = *msg;
    ret->len = 1;
    return true;
}

bool exports_transform_transform(transform_message_t *msg, transform_list_message_t *ret, transform_error_t *err) {
    return transform_one(msg, ret, err);
}

void exports_transform_transform_batch(transform_list_message_t *msgs, transform_list_result_list_message_error_t *ret) {
    ret->len = msgs->len;
    ret->ptr = NULL;
    if (msgs->len == 0) return;
    ret->ptr = calloc(msgs->len, sizeof *ret->ptr);
    if (!ret->ptr) abort();
    for (size_t i = 0; i < msgs->len; i++) {
        transform_result_list_message_error_t *r = &ret->ptr[i];
        r->is_err = !transform_one(&msgs->ptr[i], &r->val.ok, &r->val.err);
    }
    // Each message was moved or freed; only the array itself is left.
    free(msgs->ptr);
}
