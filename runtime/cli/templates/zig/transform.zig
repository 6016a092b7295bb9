//! {{name}}: a sluice `transform` plugin in Zig (world `transform` in
//! wit/plugin.wit).
//!
//! Returns each message with the header `processed-by: {{name}}` appended
//! after its headers; an empty payload is a fatal error.
//!
//! `sluice plugin build` runs `wit-bindgen c` into build/bindings/ and
//! compiles this file (the root; other .zig files may be imported from it),
//! the generated transform.c and any src/*.c. The bindings are
//! wit-bindgen's C bindings, imported below; this file defines the
//! `exports_*` functions they call. Ownership follows them:
//! - an exported function owns its arguments: it must free them
//!   (`transform_message_free`) or move their parts into what it returns,
//!   as here, where the message itself is returned;
//! - what it returns (lists, strings, error texts) must come from malloc
//!   (`std.heap.raw_c_allocator` here): the generated post-return code
//!   frees it;
//! - a string the host returns (config) is the caller's to free.

const std = @import("std");
const c = @cImport(@cInclude("transform.h"));

const malloc = std.heap.raw_c_allocator;
const plugin_name = "{{name}}";

/// A panic prints its message to stderr (the host's log) and traps: the
/// host dead-letters the message.
pub const panic = std.debug.simple_panic;

/// A copy of `s` from malloc.
fn dupe(s: []const u8) []u8 {
    return malloc.dupe(u8, s) catch @panic("out of memory");
}

/// Transform one message, taking ownership of it.
fn transformOne(msg: *c.transform_message_t, ret: *c.transform_list_message_t, err: *c.transform_error_t) bool {
    if (msg.payload.len == 0) {
        c.transform_message_free(msg);
        const text = dupe("empty payload");
        err.tag = c.SLUICE_PLUGIN_TYPES_ERROR_FATAL;
        err.val.fatal = .{ .ptr = text.ptr, .len = text.len };
        return false;
    }
    // Append the header: a new, longer list (a zero-length list's pointer
    // is not from malloc, so only a non-empty old list is freed).
    const n = msg.headers.len;
    const headers = malloc.alloc(c.transform_tuple2_string_list_u8_t, n + 1) catch @panic("out of memory");
    if (n > 0) {
        @memcpy(headers[0..n], msg.headers.ptr[0..n]);
        std.c.free(msg.headers.ptr);
    }
    const name = dupe("processed-by");
    const value = dupe(plugin_name);
    headers[n] = .{ .f0 = .{ .ptr = name.ptr, .len = name.len }, .f1 = .{ .ptr = value.ptr, .len = value.len } };
    msg.headers = .{ .ptr = headers.ptr, .len = n + 1 };
    // The message moves into the result: one message.
    const out = malloc.alloc(c.transform_message_t, 1) catch @panic("out of memory");
    out[0] = msg.*;
    ret.* = .{ .ptr = out.ptr, .len = 1 };
    return true;
}

export fn exports_transform_transform(msg: *c.transform_message_t, ret: *c.transform_list_message_t, err: *c.transform_error_t) bool {
    return transformOne(msg, ret, err);
}

export fn exports_transform_transform_batch(msgs: *c.transform_list_message_t, ret: *c.transform_list_result_list_message_error_t) void {
    const n = msgs.len;
    ret.* = .{ .ptr = null, .len = n };
    if (n == 0) return;
    const results = malloc.alloc(c.transform_result_list_message_error_t, n) catch @panic("out of memory");
    for (results, msgs.ptr[0..n]) |*r, *m| {
        r.is_err = !transformOne(m, &r.val.ok, &r.val.err);
    }
    ret.ptr = results.ptr;
    // Each message was moved or freed; only the array itself is left.
    std.c.free(msgs.ptr);
}
