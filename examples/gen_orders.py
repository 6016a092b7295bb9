#!/usr/bin/env python3
"""Writes examples/orders.jsonl: 10,000 sample order records, one JSON per line.

    python3 examples/gen_orders.py [--out PATH]

The output is deterministic (fixed seed, stdlib only), so the counts printed at
the end are the expected results of the quickstart pipeline and can be
asserted on:

* 9,800 lines are well-formed orders:
  {"id","customer_id","country","currency","amount","card","items":[{"sku","qty","price"}]}
  with countries DE, FR, NL (EUR) and US (USD), CA (CAD), amounts from 1.00
  to 1000.00 (the sum of the items' qty * price, in whole cents; a few orders
  have no items), and well-known test card numbers.
* 100 lines are not valid JSON at all (a well-formed line cut short).
* 100 lines are valid JSON whose `amount` is missing (50) or a string (50).

None of the lines contains the trigger words of the test plugins (`loop`,
`hog`, `panic`, `fatal`).
"""

import argparse
import json
import os
import random
from collections import Counter

SEED = 20240501
LINES = 10_000
BAD_JSON = 100
BAD_AMOUNT = 100  # half missing, half a string
THRESHOLD = 100.0  # the quickstart filter: amount >= 100

COUNTRIES = {"DE": "EUR", "FR": "EUR", "NL": "EUR", "US": "USD", "CA": "CAD"}
COUNTRY_WEIGHTS = [30, 20, 10, 30, 10]
REGIONS = {"DE": "europe", "FR": "europe", "NL": "europe", "US": "americas", "CA": "americas"}
# Published test card numbers of the card networks, never real ones.
CARDS = [
    "4111111111111111",
    "4242424242424242",
    "5555555555554444",
    "5105105105105100",
    "378282246310005",
    "6011111111111117",
]
TRIGGERS = ("loop", "hog", "panic", "fatal")


def make_order(rng, n):
    country = rng.choices(list(COUNTRIES), weights=COUNTRY_WEIGHTS)[0]
    target_cents = rng.randint(100, 100_000)  # 1.00 .. 1000.00
    if rng.random() < 0.03:
        items = []  # an order with no items (a fee, a gift card...)
    else:
        count = 1 if target_cents < 2_000 else rng.randint(1, 4)
        weights = [rng.random() + 0.1 for _ in range(count)]
        total_weight = sum(weights)
        items = []
        rest = target_cents
        for i, w in enumerate(weights):
            if i == count - 1:
                # The last item takes what is left, so the items add up to
                # the amount exactly (its share is far above the rounding).
                qty, price_cents = 1, rest
            else:
                qty = rng.randint(1, 3)
                price_cents = max(1, round(target_cents * w / total_weight / qty))
            rest -= qty * price_cents
            items.append(
                {"sku": "SKU-%05d" % rng.randint(1, 99_999), "qty": qty, "price": price_cents / 100}
            )
        assert rest == 0 and items[-1]["price"] > 0, (target_cents, items)
    amount_cents = target_cents
    order = {
        "id": "o-%06d" % n,
        "customer_id": "c-%04d" % rng.randint(1, 2_000),
        "country": country,
        "currency": COUNTRIES[country],
        "amount": amount_cents / 100,
        "card": rng.choice(CARDS),
        "items": items,
    }
    return order


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "orders.jsonl"))
    args = parser.parse_args()

    rng = random.Random(SEED)
    broken = rng.sample(range(1, LINES + 1), BAD_JSON + BAD_AMOUNT)
    bad_json = set(broken[:BAD_JSON])
    bad_amount = broken[BAD_JSON:]
    amount_missing = set(bad_amount[: BAD_AMOUNT // 2])
    amount_string = set(bad_amount[BAD_AMOUNT // 2 :])

    stats = Counter()
    by_country = Counter()
    kept_by_country = Counter()
    kept_items = 0
    lines = []
    for n in range(1, LINES + 1):
        order = make_order(rng, n)
        if n in bad_json:
            text = dumps(order)
            # Cut the line short: half of them right after `"amount":`, the
            # others at a random point. A strict prefix of an object is never
            # valid JSON.
            if n % 2:
                cut = text.index('"amount":') + len('"amount":')
            else:
                cut = rng.randint(1, len(text) - 1)
            line = text[:cut]
            stats["invalid_json"] += 1
        elif n in amount_missing:
            del order["amount"]
            line = dumps(order)
            stats["amount_missing"] += 1
        elif n in amount_string:
            order["amount"] = "%.2f" % order["amount"]
            line = dumps(order)
            stats["amount_string"] += 1
        else:
            line = dumps(order)
            stats["valid"] += 1
            by_country[order["country"]] += 1
            if not 1.0 <= order["amount"] <= 1000.0:
                raise SystemExit("amount out of range: %s" % line)
            if order["amount"] >= THRESHOLD:
                stats["kept"] += 1
                kept_by_country[order["country"]] += 1
                kept_items += len(order["items"])
                if not order["items"]:
                    stats["kept_no_items"] += 1
            else:
                stats["dropped"] += 1
        if any(t in line for t in TRIGGERS):
            raise SystemExit("line %d contains a test trigger word: %s" % (n, line))
        lines.append(line)

    # Self-checks: the classes are exactly what the docstring promises.
    invalid = 0
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            invalid += 1
    assert len(lines) == LINES
    assert invalid == stats["invalid_json"] == BAD_JSON, invalid
    assert stats["amount_missing"] + stats["amount_string"] == BAD_AMOUNT

    with open(args.out, "w", encoding="ascii", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")

    kept_by_region = Counter()
    for country, count in kept_by_country.items():
        kept_by_region[REGIONS[country]] += count

    print("wrote %d lines to %s (seed %d)" % (len(lines), args.out, SEED))
    print("  valid orders:               %5d" % stats["valid"])
    print("  not valid JSON:             %5d" % stats["invalid_json"])
    print("  valid JSON, amount missing: %5d" % stats["amount_missing"])
    print("  valid JSON, amount string:  %5d" % stats["amount_string"])
    print("valid orders by country:      %s" % ", ".join("%s %d" % (c, by_country[c]) for c in COUNTRIES))
    print("amount >= %g (kept):          %5d" % (THRESHOLD, stats["kept"]))
    print("amount <  %g (dropped):       %5d" % (THRESHOLD, stats["dropped"]))
    print("kept by country:              %s" % ", ".join("%s %d" % (c, kept_by_country[c]) for c in COUNTRIES))
    print("kept by region:               europe (DE,FR,NL) %d, americas (US,CA) %d"
          % (kept_by_region["europe"], kept_by_region["americas"]))
    print("kept orders: %d items in all, %d orders with no items" % (kept_items, stats["kept_no_items"]))
    summary = {
        "lines": len(lines),
        "valid": stats["valid"],
        "invalid_json": stats["invalid_json"],
        "amount_missing": stats["amount_missing"],
        "amount_string": stats["amount_string"],
        "dead_letter_at_filter": stats["invalid_json"] + stats["amount_missing"] + stats["amount_string"],
        "kept": stats["kept"],
        "dropped": stats["dropped"],
        "by_country": {c: by_country[c] for c in COUNTRIES},
        "kept_by_country": {c: kept_by_country[c] for c in COUNTRIES},
        "kept_by_region": {r: kept_by_region[r] for r in ("europe", "americas")},
        "kept_items": kept_items,
        "kept_no_items": stats["kept_no_items"],
    }
    print("summary: " + json.dumps(summary, sort_keys=False))


if __name__ == "__main__":
    main()
