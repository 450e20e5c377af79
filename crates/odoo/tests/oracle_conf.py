#!/usr/bin/env python3
"""The oracle for tests/conf_differential.rs: odoo.conf as Odoo reads it
(configparser.RawConfigParser, then items('options'), as odoo/tools/config.py
does). Batch mode: one hex-encoded file per stdin line; one JSON line out:
{"ok": false} when configparser raises, else {"ok": true, "options": [[k, v], ...]}
(an absent [options] section reads as no options, as Odoo catches it).
"""
import configparser
import json
import sys

for line in sys.stdin:
    text = bytes.fromhex(line.strip()).decode("utf-8")
    p = configparser.RawConfigParser()
    try:
        p.read_string(text)
        try:
            items = p.items("options")
        except configparser.NoSectionError:
            items = []
        out = {"ok": True, "options": [[k, v] for k, v in items]}
    except configparser.Error:
        out = {"ok": False}
    sys.stdout.write(json.dumps(out) + "\n")
sys.stdout.flush()
