//! {{name}}: a sluice `filter` plugin in Zig (world `filter` in
//! wit/plugin.wit).
//!
//! Keeps a message whose payload has at least param `min-bytes` bytes
//! (default 1), drops the others.
//!
//! `sluice plugin build` runs `wit-bindgen c` into build/bindings/ and
//! compiles this file (the root; other .zig files may be imported from it),
//! the generated filter.c and any src/*.c. The bindings are wit-bindgen's
//! C bindings, imported below; this file defines the `exports_*` functions
//! they call. Ownership follows them:
//! - an exported function owns its arguments and must free them
//!   (`filter_message_free`, `filter_list_message_free`);
//! - what it returns (lists, strings, error texts) must come from malloc
//!   (`std.heap.raw_c_allocator` here): the generated post-return code
//!   frees it;
//! - a string the host returns (config) is the caller's to free.

const std = @import("std");
const c = @cImport(@cInclude("filter.h"));

const malloc = std.heap.raw_c_allocator;

/// A panic prints its message to stderr (the host's log) and traps: the
/// host dead-letters the message.
pub const panic = std.debug.simple_panic;

var loaded = false;
var min_bytes: usize = 1;
/// Set when a param is bad: every message fails with it.
var param_error: ?[]const u8 = null;

fn string(s: []const u8) c.filter_string_t {
    return .{ .ptr = @constCast(s.ptr), .len = s.len };
}

fn loadParams() void {
    if (loaded) return;
    loaded = true;
    var key = string("min-bytes");
    var value: c.filter_string_t = undefined;
    if (!c.sluice_plugin_host_config(&key, &value)) return; // not set
    defer c.filter_string_free(&value);
    const text = value.ptr[0..value.len];
    if (wholeNumber(std.mem.trim(u8, text, " "))) |n| {
        min_bytes = n;
    } else {
        const why = std.fmt.allocPrint(malloc, "param `min-bytes` = \"{s}\" is not a whole number", .{text}) catch @panic("out of memory");
        param_error = why;
        var line = string(why);
        c.sluice_plugin_host_log(c.SLUICE_PLUGIN_HOST_LEVEL_ERROR, &line);
    }
}

/// Digits only (no sign, no `_`), and no overflow.
fn wholeNumber(text: []const u8) ?usize {
    if (text.len == 0) return null;
    var n: usize = 0;
    for (text) |ch| {
        if (ch < '0' or ch > '9') return null;
        n = std.math.mul(usize, n, 10) catch return null;
        n = std.math.add(usize, n, ch - '0') catch return null;
    }
    return n;
}

/// Decide for one message; `msg` stays the caller's.
fn filterOne(msg: *const c.filter_message_t, keep: *bool, err: *c.filter_error_t) bool {
    loadParams();
    if (param_error) |why| {
        err.tag = c.SLUICE_PLUGIN_TYPES_ERROR_FATAL;
        err.val.fatal = string(malloc.dupe(u8, why) catch @panic("out of memory"));
        return false;
    }
    keep.* = msg.payload.len >= min_bytes;
    return true;
}

export fn exports_filter_filter(msg: *c.filter_message_t, ret: *bool, err: *c.filter_error_t) bool {
    defer c.filter_message_free(msg);
    return filterOne(msg, ret, err);
}

export fn exports_filter_filter_batch(msgs: *c.filter_list_message_t, ret: *c.filter_list_result_bool_error_t) void {
    defer c.filter_list_message_free(msgs);
    const n = msgs.len;
    ret.* = .{ .ptr = null, .len = n };
    if (n == 0) return;
    const results = malloc.alloc(c.filter_result_bool_error_t, n) catch @panic("out of memory");
    for (results, msgs.ptr[0..n]) |*r, *m| {
        r.is_err = !filterOne(m, &r.val.ok, &r.val.err);
    }
    ret.ptr = results.ptr;
}
