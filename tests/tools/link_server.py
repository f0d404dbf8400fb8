"""A small web server for `herald check --links` tests, on 127.0.0.1 at a
free port, printed on the first line of stdout. Paths:
/ok 200, /moved 301 to /ok, /gone 404, /error 500, /slow answers after 15 s,
/loop-a and /loop-b redirect to each other, /nohead refuses HEAD (405) but
answers GET, /away redirects to the same server under the name localhost
(another site). Every request is logged to stderr as METHOD PATH."""

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def answer(self, code, location=None):
        self.send_response(code)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route(self):
        port = self.server.server_address[1]
        sys.stderr.write(f"{self.command} {self.path} {self.headers.get('User-Agent')}\n")
        p = self.path
        if p == "/ok":
            self.answer(200)
        elif p == "/moved":
            self.answer(301, "/ok")
        elif p == "/gone":
            self.answer(404)
        elif p == "/error":
            self.answer(500)
        elif p == "/slow":
            time.sleep(15)
            self.answer(200)
        elif p == "/loop-a":
            self.answer(302, "/loop-b")
        elif p == "/loop-b":
            self.answer(302, "/loop-a")
        elif p == "/nohead":
            self.answer(405 if self.command == "HEAD" else 200)
        elif p == "/away":
            self.answer(301, f"http://localhost:{port}/ok")
        else:
            self.answer(404)

    do_HEAD = route
    do_GET = route

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
