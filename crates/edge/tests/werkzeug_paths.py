"""Oracle for tests/paths_werkzeug.rs: what Odoo's werkzeug makes of a
request-target.

Reads one request-target per line on stdin (the bytes Rampart forwards to
Odoo) and writes one JSON object per line on stdout:

  path      request.path as Odoo sees it: werkzeug's own WSGIRequestHandler
            builds the environ from the raw target (make_environ, the code
            Odoo's HTTP workers run), then werkzeug's Request reads it;
  endpoint  what a werkzeug Map with Odoo's options (strict_slashes=False)
            and Odoo's sensitive rules matches for that path, after following
            a RequestRedirect (merge_slashes) the way a client would:
            "db", "xmlrpc:<service>", "jsonrpc", "login", "websocket",
            "static:<module>:<path>", or null;
  redirect  true when werkzeug answered with a redirect first;
  error     set (and nothing else) when werkzeug's handler cannot build the
            environ at all (the request fails before Odoo runs anything).

Run with Debian's /usr/bin/python3 and python3-werkzeug (Odoo's packaged
werkzeug).
"""

import io
import json
import sys
from http.client import HTTPMessage

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.serving import WSGIRequestHandler
from werkzeug.urls import url_parse
from werkzeug.wrappers import Request

RULES = Map(
    [
        Rule("/web/database/<path:rest>", endpoint="db"),
        Rule("/xmlrpc/2/<service>", endpoint="xmlrpc"),
        Rule("/xmlrpc/<service>", endpoint="xmlrpc"),
        Rule("/jsonrpc", endpoint="jsonrpc"),
        Rule("/web/login", endpoint="login"),
        Rule("/websocket", endpoint="websocket"),
        Rule("/<module>/static/<path:rest>", endpoint="static"),
    ],
    strict_slashes=False,
)


class Server:
    ssl_context = None
    multithread = False
    multiprocess = True
    server_address = ("127.0.0.1", 8069)


def environ_for(target):
    h = WSGIRequestHandler.__new__(WSGIRequestHandler)
    h.path = target
    h.command = "GET"
    h.request_version = "HTTP/1.1"
    h.server = Server()
    h.client_address = ("127.0.0.1", 40000)
    h.rfile = io.BytesIO()
    h.connection = None
    headers = HTTPMessage()
    headers["Host"] = "erp.example.com"
    h.headers = headers
    return h.make_environ()


def name(endpoint, args):
    if endpoint == "xmlrpc":
        return "xmlrpc:" + args["service"]
    if endpoint == "static":
        return "static:%s:%s" % (args["module"], args["rest"])
    return endpoint


def match(environ, path):
    """(endpoint name or None, redirected)."""
    adapter = RULES.bind_to_environ(environ)
    redirected = False
    for _ in range(5):
        try:
            rule, args = adapter.match(path_info=path, return_rule=True)
            return name(rule.endpoint, args), redirected
        except RequestRedirect as r:
            redirected = True
            path = url_parse(r.new_url).path
            # The client follows with the new, already encoded URL.
            path = Request(environ_for(path)).path
        except HTTPException:
            return None, redirected
    return None, redirected


def main():
    out = sys.stdout
    for line in sys.stdin:
        target = line.rstrip("\n")
        try:
            environ = environ_for(target)
        except ValueError as e:
            out.write(json.dumps({"error": str(e)}) + "\n")
            continue
        path = Request(environ).path
        endpoint, redirected = match(environ, path)
        out.write(
            json.dumps({"path": path, "endpoint": endpoint, "redirect": redirected})
            + "\n"
        )
    out.flush()


if __name__ == "__main__":
    main()
