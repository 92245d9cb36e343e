"""The example's application: a tiny HTTP service.

Built into one file (`dist/app.pyz`, a zipapp) by the pipeline's `build`
step, with the commit it was built from in VERSION. A build broken on purpose
(a BROKEN file in the inputs) still answers `/health` — the bug a health
check cannot see — but prices without tax, which the smoke test catches:
that is how the example shows a failed smoke test and its rollback.
"""

import argparse
import http.server
import pkgutil

from app import pricing



def _data(name: str) -> bytes | None:
    try:
        return pkgutil.get_data("app", name)
    except OSError:
        return None


VERSION = (_data("VERSION") or b"unknown").decode().strip()
BROKEN = _data("BROKEN") is not None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path == "/version":
            self.reply(200, VERSION)
        elif self.path == "/health":
            self.reply(200, "ok")
        elif self.path.startswith("/price/"):
            cents = int(self.path.rsplit("/", 1)[1])
            self.reply(200, str(cents if BROKEN else pricing.with_tax(cents)))
        else:
            self.reply(404, "not found")

    def reply(self, status: int, body: str) -> None:
        data = (body + "\n").encode()
        self.send_response(status)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    main()
