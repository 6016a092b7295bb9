//! The order arithmetic of `order-total`, free of any binding code so that
//! `zig test src/order.zig` checks it natively.
//!
//! `total` parses an order payload with `std.json` (numbers kept as their
//! source text, so nothing passes through a float), adds up `qty * price`
//! over `items` exactly in units of 10^-18, rounds the sum half away from
//! zero to cents, and writes the payload back with two more fields: the
//! total (under the name the caller gives) and `item_count`.

const std = @import("std");
const json = std.json;
const Allocator = std.mem.Allocator;

/// Prices may have at most this many decimal places.
const max_scale = 18;
/// Payloads nested deeper than this are refused (serializing is recursive).
pub const max_depth = 128;

pub const items_error = "items must be an array of {qty, price}";

/// What `total` gives: the new payload or the text of a fatal error, both
/// allocated with the caller's allocator.
pub const Outcome = union(enum) {
    payload: []u8,
    fatal: []u8,
};

/// Compute the total of the order in `payload` and return the payload with
/// the fields `field` (the total in cents) and `item_count` set. `scratch`
/// holds the parsed document (an arena is best); `out` allocates the result.
pub fn total(scratch: Allocator, out: Allocator, payload: []const u8, field: []const u8) Allocator.Error!Outcome {
    if (std.mem.eql(u8, field, "item_count")) return fatal(out, "param `field` must not be `item_count` (that field holds the item count)", .{});
    const doc = json.parseFromSliceLeaky(json.Value, scratch, payload, .{
        .parse_numbers = false,
        .duplicate_field_behavior = .use_last,
    }) catch |e| switch (e) {
        error.OutOfMemory => return error.OutOfMemory,
        else => return fatal(out, "payload is not valid JSON", .{}),
    };
    if (depth(payload) > max_depth) return fatal(out, "payload is nested deeper than {d} levels", .{max_depth});
    if (doc != .object) return fatal(out, "payload is not a JSON object", .{});
    var order = doc.object;

    const items = order.get("items") orelse return fatal(out, "{s}: the order has no `items`", .{items_error});
    if (items != .array) return fatal(out, "{s}: `items` is not an array", .{items_error});

    var sum: i128 = 0; // units of 10^-18
    for (items.array.items, 0..) |item, i| {
        if (item != .object) return fatal(out, "{s}: item {d} is not an object", .{ items_error, i });
        const qty = integer(item.object.get("qty")) orelse return fatal(out, "{s}: item {d} has no integer `qty`", .{ items_error, i });
        const price = decimal(item.object.get("price")) orelse return fatal(out, "{s}: item {d} has no numeric `price` (at most {d} decimal places)", .{ items_error, i, max_scale });
        const line = std.math.mul(i128, qty, price) catch return fatal(out, "{s}: item {d}: qty * price is out of range", .{ items_error, i });
        sum = std.math.add(i128, sum, line) catch return fatal(out, "{s}: item {d}: the total is out of range", .{ items_error, i });
    }

    const cents = roundToCents(sum);
    try order.put(field, .{ .number_string = try std.fmt.allocPrint(scratch, "{d}", .{cents}) });
    try order.put("item_count", .{ .integer = @intCast(items.array.items.len) });
    return .{ .payload = try json.Stringify.valueAlloc(out, json.Value{ .object = order }, .{}) };
}

fn fatal(out: Allocator, comptime format: []const u8, args: anytype) Allocator.Error!Outcome {
    return .{ .fatal = try std.fmt.allocPrint(out, format, args) };
}

/// A JSON integer (`2`, `-3`; not `2.0` or `2e0`) that fits an i64.
fn integer(value: ?json.Value) ?i64 {
    const v = value orelse return null;
    return switch (v) {
        .integer => |n| n,
        .number_string => |s| if (json.isNumberFormattedLikeAnInteger(s)) std.fmt.parseInt(i64, s, 10) catch null else null,
        else => null,
    };
}

/// A JSON number as an exact multiple of 10^-18, or null if it is not a
/// number, has more decimal places than that, or is out of range.
fn decimal(value: ?json.Value) ?i128 {
    const v = value orelse return null;
    const s = switch (v) {
        .integer => |n| return std.math.mul(i128, n, pow10(max_scale)) catch null,
        .number_string => |s| s,
        else => return null,
    };
    // JSON grammar (already checked by the parser): -?digits(.digits)?([eE][+-]?digits)?
    var i: usize = 0;
    const negative = s[0] == '-';
    if (negative) i += 1;
    var mantissa: i128 = 0;
    var scale: i64 = 0; // value = mantissa * 10^-scale
    var in_fraction = false;
    while (i < s.len) : (i += 1) {
        const ch = s[i];
        switch (ch) {
            '0'...'9' => {
                mantissa = std.math.mul(i128, mantissa, 10) catch return null;
                mantissa += ch - '0';
                if (in_fraction) scale += 1;
            },
            '.' => in_fraction = true,
            'e', 'E' => break,
            else => return null,
        }
    }
    if (i < s.len) {
        const exponent = std.fmt.parseInt(i64, s[i + 1 ..], 10) catch return null;
        scale = std.math.sub(i64, scale, exponent) catch return null;
    }
    // Drop trailing zeros beyond the scale we keep (1.500000000000000000000).
    while (scale > max_scale and @rem(mantissa, 10) == 0) {
        mantissa = @divExact(mantissa, 10);
        scale -= 1;
    }
    if (scale > max_scale) return null;
    if (scale < 0 and mantissa == 0) scale = 0;
    if (scale < -38) return null;
    const shift: u32 = @intCast(max_scale - scale);
    if (shift > 38) return null;
    const scaled = std.math.mul(i128, mantissa, pow10(shift)) catch return null;
    return if (negative) -scaled else scaled;
}

fn pow10(n: u32) i128 {
    var p: i128 = 1;
    for (0..n) |_| p *= 10;
    return p;
}

/// Round a multiple of 10^-18 to cents, half away from zero.
fn roundToCents(units: i128) i128 {
    const per_cent = pow10(max_scale - 2);
    const magnitude = if (units < 0) -units else units;
    const cents = @divTrunc(magnitude + @divTrunc(per_cent, 2), per_cent);
    return if (units < 0) -cents else cents;
}

/// The deepest nesting of `[` and `{` in a valid JSON text.
fn depth(text: []const u8) usize {
    var level: usize = 0;
    var deepest: usize = 0;
    var in_string = false;
    var escaped = false;
    for (text) |ch| {
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (ch == '\\') {
                escaped = true;
            } else if (ch == '"') {
                in_string = false;
            }
            continue;
        }
        switch (ch) {
            '"' => in_string = true,
            '[', '{' => {
                level += 1;
                deepest = @max(deepest, level);
            },
            ']', '}' => level -|= 1,
            else => {},
        }
    }
    return deepest;
}

fn expectTotal(payload: []const u8, want: []const u8) !void {
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    const got = try total(arena.allocator(), arena.allocator(), payload, "total_cents");
    switch (got) {
        .payload => |p| try std.testing.expectEqualStrings(want, p),
        .fatal => |f| {
            std.debug.print("fatal: {s}\n", .{f});
            return error.TestUnexpectedResult;
        },
    }
}

fn expectFatal(payload: []const u8, want: []const u8) !void {
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    const got = try total(arena.allocator(), arena.allocator(), payload, "total_cents");
    switch (got) {
        .payload => |p| {
            std.debug.print("payload: {s}\n", .{p});
            return error.TestUnexpectedResult;
        },
        .fatal => |f| try std.testing.expectEqualStrings(want, f),
    }
}

test "sums qty * price exactly and rounds once" {
    try expectTotal(
        \\{"id":"o-1","items":[{"qty":2,"price":19.99},{"qty":3,"price":0.1}]}
    ,
        \\{"id":"o-1","items":[{"qty":2,"price":19.99},{"qty":3,"price":0.1}],"total_cents":4028,"item_count":2}
    );
    // 3 * 0.335 = 1.005 -> 101 (half away from zero); a float would give 100.
    try expectTotal("{\"items\":[{\"qty\":3,\"price\":0.335}]}", "{\"items\":[{\"qty\":3,\"price\":0.335}],\"total_cents\":101,\"item_count\":1}");
    try expectTotal("{\"items\":[{\"qty\":1,\"price\":-0.005}]}", "{\"items\":[{\"qty\":1,\"price\":-0.005}],\"total_cents\":-1,\"item_count\":1}");
    try expectTotal("{\"items\":[{\"qty\":1,\"price\":1.5e2}]}", "{\"items\":[{\"qty\":1,\"price\":1.5e2}],\"total_cents\":15000,\"item_count\":1}");
    try expectTotal("{\"items\":[],\"total_cents\":7}", "{\"items\":[],\"total_cents\":0,\"item_count\":0}");
    try expectTotal("{\"items\":[{\"qty\":1,\"price\":0.1000000000000000000000}]}", "{\"items\":[{\"qty\":1,\"price\":0.1000000000000000000000}],\"total_cents\":10,\"item_count\":1}");
}

test "refuses what is not an order" {
    try expectFatal("nope", "payload is not valid JSON");
    try expectFatal("", "payload is not valid JSON");
    try expectFatal("[1]", "payload is not a JSON object");
    try expectFatal("{}", "items must be an array of {qty, price}: the order has no `items`");
    try expectFatal("{\"items\":{}}", "items must be an array of {qty, price}: `items` is not an array");
    try expectFatal("{\"items\":[{\"qty\":1,\"price\":1},3]}", "items must be an array of {qty, price}: item 1 is not an object");
    try expectFatal("{\"items\":[{\"qty\":1.5,\"price\":1}]}", "items must be an array of {qty, price}: item 0 has no integer `qty`");
    try expectFatal("{\"items\":[{\"qty\":1,\"price\":\"1\"}]}", "items must be an array of {qty, price}: item 0 has no numeric `price` (at most 18 decimal places)");
    try expectFatal("{\"items\":[{\"qty\":1,\"price\":1e30}]}", "items must be an array of {qty, price}: item 0 has no numeric `price` (at most 18 decimal places)");
    try expectFatal("[" ** 129 ++ "]" ** 129, "payload is nested deeper than 128 levels");
}
