"""A CRAN-like repository on 127.0.0.1 for tests, standing in for Posit Package Manager.

Serves a directory made by xtask/r/local_repo.R (src/contrib with binary packages) as every
repository and snapshot of a package manager (`/<repo>/__linux__/<codename>/<snapshot>/src/...`
and `/<repo>/<snapshot>/src/...` are the directory's `src/...`), and the one package-manager API
the environment restore uses, system requirements:

    GET /__api__/repos/<repo>/sysreqs?all=false&distribution=debian&release=12&pkgname=a&pkgname=b
    -> {"requirements": [{"name": "a", "requirements": {"packages": ["libfoo1"]}}]}

answered from a JSON file {"<package>": ["<deb>", ...]} (`--sysreqs`). Every request is logged
to stderr. Prints `listening on <port>` once bound (port 0 picks a free one) and exits when its
stdin closes, so it never outlives the process that started it.

Usage: repo_server.py --dir DIR [--sysreqs FILE] [--port 0]
"""

import argparse
import functools
import json
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(SimpleHTTPRequestHandler):
    sysreqs: dict[str, list[str]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["__api__", "repos"] and parts[3] == "sysreqs":
            query = parse_qs(url.query)
            names = query.get("pkgname", [])
            body = {
                "requirements": [
                    {"name": n, "requirements": {"packages": self.sysreqs[n]}} for n in names if n in self.sysreqs
                ]
            }
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if "src" in parts:
            # /<repo>/[__linux__/<codename>/]<snapshot>/src/contrib/... -> src/contrib/...
            self.path = "/" + "/".join(parts[parts.index("src") :])
        super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802
        parts = urlparse(self.path).path.strip("/").split("/")
        if "src" in parts:
            self.path = "/" + "/".join(parts[parts.index("src") :])
        super().do_HEAD()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--sysreqs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    if args.sysreqs:
        with open(args.sysreqs) as f:
            Handler.sysreqs = json.load(f)
    server = ThreadingHTTPServer((args.host, args.port), functools.partial(Handler, directory=args.dir))
    server.daemon_threads = True
    print(f"listening on {server.server_port}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the parent closes it (or dies)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
