// country-route: a sluice `route` plugin in C.
//
// Reads the top-level string field named by param `field` (default
// `country`) from the JSON object in the payload and maps it to a sink
// through param `routes` (`DE=europe,FR=europe,US=americas`). A value with
// no mapping, or a payload without the field, goes to param `default`;
// without a default, that is a fatal error. Malformed payloads are fatal.
//
// Ownership (wit-bindgen C): an export owns its arguments and frees them;
// what it returns must be malloc'ed (the generated post-return frees it).
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_field.h"
#include "route.h"

typedef struct {
    char *code;  // both point into `routes_text`
    char *sink;
} route_entry;

static struct {
    bool loaded;
    char *error;  // a bad param: every message fails with this text
    route_string_t field;
    bool has_default;
    route_string_t fallback;
    char *routes_text;
    route_entry *routes;
    size_t route_count;
    json_buf key, value;  // scanner scratch, reused between calls
} params;

static void log_line(sluice_plugin_host_level_t level, const char *text) {
    route_string_t s;
    route_string_set(&s, text);
    sluice_plugin_host_log(level, &s);
}

// The param `key`, or false when it is not set; `out` is ours to free.
static bool config(const char *key, route_string_t *out) {
    route_string_t k;
    route_string_set(&k, key);
    return sluice_plugin_host_config(&k, out);
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t')) *--end = '\0';
    return s;
}

// Parse `routes` (a NUL-terminated copy, kept for the entries) into params.
static void parse_routes(char *text) {
    size_t n = 1;
    for (char *p = text; *p; p++) n += *p == ',';
    params.routes = calloc(n, sizeof(route_entry));
    if (!params.routes) abort();
    for (char *item = text, *next; item; item = next) {
        next = strchr(item, ',');
        if (next) *next++ = '\0';
        item = trim(item);
        if (!*item) continue;
        char *eq = strchr(item, '=');
        char *code = eq ? (*eq = '\0', trim(item)) : NULL;
        char *sink = eq ? trim(eq + 1) : NULL;
        if (!code || !*code || !*sink) {
            size_t len = strlen(item) + 96;
            params.error = malloc(len);
            if (!params.error) abort();
            snprintf(params.error, len, "country-route: param `routes`: \"%s\" is not CODE=SINK (write e.g. DE=europe,US=americas)", item);
            return;
        }
        params.routes[params.route_count++] = (route_entry){code, sink};
    }
}

static void load_params(void) {
    if (params.loaded) return;
    params.loaded = true;
    if (!config("field", &params.field) || params.field.len == 0) {
        route_string_free(&params.field);
        route_string_dup(&params.field, "country");
    }
    params.has_default = config("default", &params.fallback) && params.fallback.len > 0;
    route_string_t routes;
    if (config("routes", &routes)) {
        params.routes_text = malloc(routes.len + 1);
        if (!params.routes_text) abort();
        memcpy(params.routes_text, routes.ptr, routes.len);
        params.routes_text[routes.len] = '\0';
        route_string_free(&routes);
        parse_routes(params.routes_text);
    }
    char line[160];
    snprintf(line, sizeof line, "country-route: %zu routes on field \"%.*s\"%s", params.route_count, (int)utf8_prefix(params.field.ptr, params.field.len, 64),
             (const char *)params.field.ptr, params.has_default ? ", with a default" : ", no default");
    log_line(params.error ? SLUICE_PLUGIN_HOST_LEVEL_ERROR : SLUICE_PLUGIN_HOST_LEVEL_INFO, params.error ? params.error : line);
}

static void fail(route_error_t *err, const char *text) {
    err->tag = SLUICE_PLUGIN_TYPES_ERROR_FATAL;
    route_string_dup(&err->val.fatal, text);
}

// `prefix "value"suffix`, the value (valid UTF-8) cut at 64 bytes on a
// character boundary and its control characters and quotes replaced, so
// untrusted input cannot make the error text unwieldy.
static void fail_quoted(route_error_t *err, const char *prefix, const uint8_t *value, size_t len, const char *suffix) {
    char text[256];
    size_t n = (size_t)snprintf(text, sizeof text, "%s \"", prefix);
    size_t cut = utf8_prefix(value, len, 64);
    for (size_t i = 0; i < cut; i++) text[n++] = value[i] < 0x20 || value[i] == '"' ? '?' : (char)value[i];
    snprintf(text + n, sizeof text - n, "%s\"%s", cut < len ? "..." : "", suffix);
    fail(err, text);
}

static bool route_to(const char *sink, size_t len, route_list_string_t *ret) {
    ret->ptr = malloc(sizeof(route_string_t));
    if (!ret->ptr) abort();
    ret->len = 1;
    route_string_dup_n(&ret->ptr[0], sink, len);
    return true;
}

// Route one message; `msg` stays the caller's.
static bool route_one(const route_message_t *msg, route_list_string_t *ret, route_error_t *err) {
    load_params();
    if (params.error) {
        fail(err, params.error);
        return false;
    }
    json_field_status found = json_field(msg->payload.ptr, msg->payload.len, params.field.ptr, params.field.len, &params.key, &params.value);
    switch (found) {
        case JSON_FIELD_FOUND:
            for (size_t i = 0; i < params.route_count; i++) {
                const route_entry *r = &params.routes[i];
                if (strlen(r->code) == params.value.len && memcmp(r->code, params.value.ptr, params.value.len) == 0) {
                    return route_to(r->sink, strlen(r->sink), ret);
                }
            }
            if (params.has_default) return route_to((const char *)params.fallback.ptr, params.fallback.len, ret);
            {
                char prefix[96];
                snprintf(prefix, sizeof prefix, "no route for %.*s", (int)utf8_prefix(params.field.ptr, params.field.len, 64), (const char *)params.field.ptr);
                fail_quoted(err, prefix, params.value.ptr, params.value.len, "");
            }
            return false;
        case JSON_FIELD_MISSING:
            if (params.has_default) return route_to((const char *)params.fallback.ptr, params.fallback.len, ret);
            fail_quoted(err, "payload has no string field", params.field.ptr, params.field.len, "");
            return false;
        case JSON_FIELD_NOT_STRING:
            fail_quoted(err, "field", params.field.ptr, params.field.len, " is not a string");
            return false;
        case JSON_FIELD_NOT_OBJECT: fail(err, "payload is not a JSON object"); return false;
        case JSON_FIELD_INVALID: fail(err, "payload is not valid JSON"); return false;
        case JSON_FIELD_NO_MEMORY: break;
    }
    abort();  // out of memory: a trap, the host dead-letters the message
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
