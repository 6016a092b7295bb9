//! {{name}}: a sluice `route` plugin in Zig (world `route` in
//! wit/plugin.wit).
//!
//! Routes each message to the value of its header `route`, else to param
//! `default`, else to "default". A `route` header that is not UTF-8 is a
//! fatal error (a route is a string).
//!
//! `sluice plugin build` runs `wit-bindgen c` into build/bindings/ and
//! compiles this file (the root; other .zig files may be imported from it),
//! the generated route.c and any src/*.c. The bindings are wit-bindgen's
//! C bindings, imported below; this file defines the `exports_*` functions
//! they call. Ownership follows them:
//! - an exported function owns its arguments and must free them
//!   (`route_message_free`, `route_list_message_free`);
//! - what it returns (lists, strings, error texts) must come from malloc
//!   (`std.heap.raw_c_allocator` here): the generated post-return code
//!   frees it;
//! - a string the host returns (config) is the caller's to free.

const std = @import("std");
const c = @cImport(@cInclude("route.h"));

const malloc = std.heap.raw_c_allocator;

/// A panic prints its message to stderr (the host's log) and traps: the
/// host dead-letters the message.
pub const panic = std.debug.simple_panic;

/// Param `default`, or "default"; read once.
var fallback: ?[]const u8 = null;

fn string(s: []const u8) c.route_string_t {
    return .{ .ptr = @constCast(s.ptr), .len = s.len };
}

/// A copy of `s` from malloc, as a string.
fn dupe(s: []const u8) c.route_string_t {
    return string(malloc.dupe(u8, s) catch @panic("out of memory"));
}

fn defaultRoute() []const u8 {
    if (fallback) |f| return f;
    var key = string("default");
    var value: c.route_string_t = undefined;
    // Kept for the life of the instance, never freed.
    const f: []const u8 = if (c.sluice_plugin_host_config(&key, &value)) value.ptr[0..value.len] else "default";
    fallback = f;
    return f;
}

/// Route one message; `msg` stays the caller's.
fn routeOne(msg: *const c.route_message_t, ret: *c.route_list_string_t, err: *c.route_error_t) bool {
    var to = defaultRoute();
    for (msg.headers.ptr[0..msg.headers.len]) |h| {
        if (std.mem.eql(u8, h.f0.ptr[0..h.f0.len], "route")) {
            to = h.f1.ptr[0..h.f1.len];
            break;
        }
    }
    if (!std.unicode.utf8ValidateSlice(to)) {
        err.tag = c.SLUICE_PLUGIN_TYPES_ERROR_FATAL;
        err.val.fatal = dupe("header `route` is not UTF-8");
        return false;
    }
    const routes = malloc.alloc(c.route_string_t, 1) catch @panic("out of memory");
    routes[0] = dupe(to);
    ret.* = .{ .ptr = routes.ptr, .len = 1 };
    return true;
}

export fn exports_route_route(msg: *c.route_message_t, ret: *c.route_list_string_t, err: *c.route_error_t) bool {
    defer c.route_message_free(msg);
    return routeOne(msg, ret, err);
}

export fn exports_route_route_batch(msgs: *c.route_list_message_t, ret: *c.route_list_result_list_string_error_t) void {
    defer c.route_list_message_free(msgs);
    const n = msgs.len;
    ret.* = .{ .ptr = null, .len = n };
    if (n == 0) return;
    const results = malloc.alloc(c.route_result_list_string_error_t, n) catch @panic("out of memory");
    for (results, msgs.ptr[0..n]) |*r, *m| {
        r.is_err = !routeOne(m, &r.val.ok, &r.val.err);
    }
    ret.ptr = results.ptr;
}
