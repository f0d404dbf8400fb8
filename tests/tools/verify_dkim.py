"""Verify the DKIM signatures of .eml files with dkimpy, an independent
implementation, answering the DNS query for the public key from a file so
no network is used.

Usage: verify_dkim.py KEYS FILE.eml...

KEYS is either one TXT record (`v=DKIM1; k=rsa; p=...`), the answer to
every query, or lines `SELECTOR._domainkey.DOMAIN TXT-RECORD` (the format
of libopendkim's test key files, so both verifiers read the same file).

Prints one JSON object per file:
{"file": ..., "valid": bool, "signed_headers": [...], "algorithm": ...,
 "signatures": [{"selector", "algorithm", "valid", "signed_headers", "error"}]}
Every signature is verified on its own; "valid" is true when the message
has at least one and all of them verify. "signed_headers" and "algorithm"
are the first signature's.
"""
import json
import re
import sys

import dkim

text = open(sys.argv[1], "rb").read().strip()
records = {}
if not text.startswith(b"v=DKIM1"):
    for line in text.splitlines():
        if line.strip():
            name, record = line.split(None, 1)
            records[name.decode().lower().rstrip(".")] = record.strip()


def dnsfunc(name, timeout=5):
    if not records:
        return text
    if isinstance(name, bytes):
        name = name.decode()
    return records.get(name.lower().rstrip("."))


def tags(value):
    return dkim.util.parse_tag_value(re.sub(rb"\r?\n", b"", value))


for path in sys.argv[2:]:
    raw = open(path, "rb").read()
    d = dkim.DKIM(raw)
    sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
    results = []
    for idx, value in enumerate(sigs):
        error = None
        # DKIM(...).verify rather than dkim.verify: the latter turns a
        # missing dependency (PyNaCl for Ed25519) into a quiet "invalid".
        try:
            valid = dkim.DKIM(raw).verify(idx=idx, dnsfunc=dnsfunc)
        except dkim.NaClNotFoundError:
            raise
        except dkim.DKIMException as e:
            valid, error = False, str(e)
        try:
            t = tags(value)
            headers = [h.strip().decode().lower() for h in t[b"h"].split(b":")]
            selector, algo = t[b"s"].decode(), t[b"a"].decode()
        except Exception as e:  # reported, not hidden
            headers, selector, algo = [f"cannot read DKIM-Signature: {e}"], None, None
        results.append({"selector": selector, "algorithm": algo, "valid": bool(valid),
                        "signed_headers": headers, "error": error})
    first = results[0] if results else {"signed_headers": [], "algorithm": None}
    print(json.dumps({
        "file": path,
        "valid": bool(results) and all(r["valid"] for r in results),
        "signed_headers": first["signed_headers"],
        "algorithm": first["algorithm"],
        "signatures": results,
    }))
