#!/usr/bin/env python3
"""A small customer-tier service for examples/enrich.toml, on 127.0.0.1 only.

    python3 examples/tier-service.py [--port 8787]

GET /tier/CUSTOMER answers the customer's tier as plain text: `gold`,
`silver`, `bronze` or `new`, from the digits of the id (c-0090 -> gold: the
last digit 0; 1-3 silver; 4-6 bronze; 7-9 new). GET /stats answers
{"lookups": N, "customers": M}: how many tier lookups it served, for how
many customers (the enrichment plugin caches tiers, so N = M when the cache
works). Anything else is 404. Standard library only.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TIERS = {0: "gold", 1: "silver", 2: "silver", 3: "silver", 4: "bronze", 5: "bronze", 6: "bronze"}
lock = threading.Lock()
lookups = 0
customers = set()


def tier(customer):
    digits = "".join(c for c in customer if c.isdigit())
    return TIERS.get(int(digits[-1]) if digits else 9, "new")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        global lookups
        if self.path.startswith("/tier/") and len(self.path) > len("/tier/"):
            customer = self.path[len("/tier/"):]
            with lock:
                lookups += 1
                customers.add(customer)
            self.answer(200, "text/plain", tier(customer))
        elif self.path == "/stats":
            with lock:
                body = json.dumps({"lookups": lookups, "customers": len(customers)})
            self.answer(200, "application/json", body)
        else:
            self.answer(404, "text/plain", "not found")

    def answer(self, status, kind, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8787)
    port = parser.parse_args().port
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"tier service on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
