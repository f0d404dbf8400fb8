"""Verify the DKIM signatures of .eml files with dkimpy, an independent
implementation, answering the DNS query for the public key from a file so
no network is used.

Usage: verify_dkim.py DNS_TXT_FILE FILE.eml...
Prints one JSON object per file: {"file": ..., "valid": bool, "signed_headers": [...]}.
"""
import email
import json
import sys

import dkim

txt = open(sys.argv[1], "rb").read().strip()


def dnsfunc(name, timeout=5):
    return txt


for path in sys.argv[2:]:
    raw = open(path, "rb").read()
    # DKIM(...).verify rather than dkim.verify: the latter turns a missing
    # dependency (PyNaCl for Ed25519) into a quiet "invalid".
    try:
        valid = dkim.DKIM(raw).verify(dnsfunc=dnsfunc)
    except dkim.NaClNotFoundError:
        raise
    except dkim.DKIMException as e:
        print(f"{path}: {e}", file=sys.stderr)
        valid = False
    try:
        msg = email.message_from_bytes(raw)
        tags = dkim.util.parse_tag_value(msg["DKIM-Signature"].encode().replace(b"\r\n", b"").replace(b"\n", b""))
        headers = [h.strip().decode().lower() for h in tags[b"h"].split(b":")]
        algo = tags[b"a"].decode()
    except Exception as e:  # reported, not hidden
        headers, algo = [f"cannot read DKIM-Signature: {e}"], None
    print(json.dumps({"file": path, "valid": bool(valid), "signed_headers": headers, "algorithm": algo}))
