//! order-total: a sluice `transform` plugin in Zig.
//!
//! Adds the order's total in cents (param `field`, default `total_cents`)
//! and `item_count` to a JSON order `{"items": [{"qty", "price"}, ...]}`;
//! see `order.zig` for the arithmetic. The message keeps its key, headers,
//! source and timestamp.
//!
//! The bindings are wit-bindgen's C bindings (`transform.h`, generated into
//! build/bindings by `sluice plugin build`). Ownership follows them: an
//! export owns its arguments, and what it returns must come from `malloc`
//! (the generated post-return `free`s it), so results are allocated with
//! `std.heap.raw_c_allocator`.

const std = @import("std");
const order = @import("order.zig");
const c = @cImport(@cInclude("transform.h"));

const malloc = std.heap.raw_c_allocator;

/// A panic prints its message to stderr (the host's log) and traps; the
/// host dead-letters the message. (Smaller than the default handler, which
/// would pull in stack-trace code.)
pub const panic = std.debug.simple_panic;

/// The params, read from the host once per instance.
var field: ?[]const u8 = null;

fn string(s: []const u8) c.transform_string_t {
    return .{ .ptr = @constCast(s.ptr), .len = s.len };
}

fn log(level: c.sluice_plugin_host_level_t, text: []const u8) void {
    var s = string(text);
    c.sluice_plugin_host_log(level, &s);
}

fn outputField() []const u8 {
    if (field) |f| return f;
    var key = string("field");
    var value: c.transform_string_t = undefined;
    const f: []const u8 = if (c.sluice_plugin_host_config(&key, &value) and value.len > 0) value.ptr[0..value.len] else "total_cents";
    field = f;
    var line: [128]u8 = undefined;
    log(c.SLUICE_PLUGIN_HOST_LEVEL_INFO, std.fmt.bufPrint(&line, "order-total: writing totals to field `{s}`", .{f}) catch "order-total: ready");
    return f;
}

/// Transform one message, taking ownership of it: its parts move into the
/// result (only the payload is replaced) or are freed.
fn transformOne(msg: *c.transform_message_t, ret: *c.transform_list_message_t, err: *c.transform_error_t) bool {
    const out_field = outputField();
    var arena = std.heap.ArenaAllocator.init(malloc);
    defer arena.deinit();
    const payload = msg.payload.ptr[0..msg.payload.len];
    const outcome = order.total(arena.allocator(), malloc, payload, out_field) catch @panic("order-total: out of memory");
    switch (outcome) {
        .payload => |p| {
            c.transform_list_u8_free(&msg.payload);
            msg.payload = .{ .ptr = p.ptr, .len = p.len };
            const one = malloc.alloc(c.transform_message_t, 1) catch @panic("order-total: out of memory");
            one[0] = msg.*;
            ret.* = .{ .ptr = one.ptr, .len = 1 };
            return true;
        },
        .fatal => |text| {
            c.transform_message_free(msg);
            err.tag = c.SLUICE_PLUGIN_TYPES_ERROR_FATAL;
            err.val.fatal = string(text);
            return false;
        },
    }
}

export fn exports_transform_transform(msg: *c.transform_message_t, ret: *c.transform_list_message_t, err: *c.transform_error_t) bool {
    return transformOne(msg, ret, err);
}

export fn exports_transform_transform_batch(msgs: *c.transform_list_message_t, ret: *c.transform_list_result_list_message_error_t) void {
    const n = msgs.len;
    ret.* = .{ .ptr = null, .len = n };
    if (n == 0) return;
    const results = malloc.alloc(c.transform_result_list_message_error_t, n) catch @panic("order-total: out of memory");
    for (results, msgs.ptr[0..n]) |*r, *m| {
        r.is_err = !transformOne(m, &r.val.ok, &r.val.err);
    }
    ret.ptr = results.ptr;
    // The messages were moved or freed one by one; only the array is left.
    std.c.free(msgs.ptr);
}
