"""Oracle for tests/session_differential.rs: what Odoo 18 (werkzeug 2.2 on
Debian 12, 3.0 on Ubuntu 24.04; both APIs work here) reads from the same
bytes. One JSON request per line on stdin, one JSON
answer per line on stdout.

  {"cookie": "<latin-1 text>"}  ->  {"sid": <request.cookies.get('session_id')> | null}
  {"query": "...", "ctype": "...", "body": "<latin-1 text>"}
                                ->  {"login": <{**args, **form}.get('login')> | null}
"""
import json
import sys

from werkzeug.http import parse_cookie
from werkzeug.test import EnvironBuilder

for line in sys.stdin:
    req = json.loads(line)
    if "cookie" in req:
        sid = parse_cookie(req["cookie"]).get("session_id")
        out = {"sid": sid}
    else:
        b = EnvironBuilder(
            method="POST",
            query_string=req["query"],
            data=req["body"].encode("latin-1"),
            content_type=req["ctype"],
        )
        r = b.get_request()
        params = {**r.args, **r.form, **r.files}
        login = params.get("login")
        out = {"login": login if isinstance(login, str) else None}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
