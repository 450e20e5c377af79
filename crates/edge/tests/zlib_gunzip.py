"""Oracle for src/deflate_fixed/tests.rs: what Python's zlib (the reference
inflater) makes of a gzip stream.

Reads one gzip stream per line on stdin, as hex, and writes one JSON object
per line on stdout:

  len     the length of what it inflates to;
  sha256  the SHA-256 of that, hex;
  error   set (and nothing else) when zlib refuses the stream, or the
          stream does not end exactly where the gzip member ends.

zlib checks the header, every code and distance, the CRC-32 and the length
in the trailer.
"""

import hashlib
import json
import sys
import zlib

for line in sys.stdin:
    data = bytes.fromhex(line.strip())
    try:
        d = zlib.decompressobj(wbits=31)
        out = d.decompress(data) + d.flush()
        if not d.eof:
            raise ValueError("the stream ends before its last block")
        if d.unused_data:
            raise ValueError(f"{len(d.unused_data)} bytes after the gzip member")
        answer = {"len": len(out), "sha256": hashlib.sha256(out).hexdigest()}
    except (zlib.error, ValueError) as e:
        answer = {"error": str(e)}
    print(json.dumps(answer), flush=False)
sys.stdout.flush()
