#!/usr/bin/env python3
"""The oracle for tests/rpc_differential.rs: how Odoo 18 reads RPC bodies.

Batch mode: one case per stdin line, `<kind> <service> <hex body>` where kind
is `xml` (service from the path, the body read by xmlrpc.client.loads, as
odoo/addons/base/controllers/rpc.py does) or `json` (the body decoded as
werkzeug's get_data(as_text=True) does, json.loads, then
dict(jsonrequest.get('params', {})) as JsonRPCDispatcher does). One JSON
line out per case: {"call": false} when Odoo dispatches nothing, else
{"call": true, "service": s, "method": m, "login": l}, each a string or null
(JSON adds "model" and "plogin": params' own "model" and "login", as
call_kw and /web/session/authenticate take them).
Only the standard library: this is the reference, not a copy of Odoo.
"""
import json
import sys
import xmlrpc.client

LOGINS = ("login", "authenticate")


def text(v):
    return v if isinstance(v, str) else None


def login_of(service, method, args):
    if service != "common" or method not in LOGINS:
        return None
    try:
        items = list(args)
    except TypeError:
        return None
    return text(items[1]) if len(items) > 1 else None


def read_xml(service, body):
    try:
        params, method = xmlrpc.client.loads(body, use_datetime=True)
    except Exception:
        return {"call": False}
    return {"call": True, "service": service, "method": text(method),
            "login": login_of(service, method, params)}


def read_json(body):
    try:
        request = json.loads(body.decode("utf-8", "replace"))
        params = dict(request.get("params", {}))
    except Exception:
        return {"call": False}
    service, method = params.get("service"), params.get("method")
    return {"call": True, "service": text(service), "method": text(method),
            "login": login_of(service, method, params.get("args", ())),
            "model": text(params.get("model")),
            "plogin": text(params.get("login"))}


def main():
    sys.setrecursionlimit(10000)
    out = sys.stdout
    for line in sys.stdin:
        kind, service, hexbody = line.rstrip("\n").split(" ")
        body = bytes.fromhex(hexbody)
        r = read_xml(service, body) if kind == "xml" else read_json(body)
        out.write(json.dumps(r) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
