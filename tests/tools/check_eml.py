"""Parse .eml files with Python's own email package (policy=default), an
independent implementation of RFC 5322/MIME, and report what a mail program
would see. Prints one JSON object per file on stdout. The HTML may come
inside a multipart/related with the images it shows (`related`, each with
its Content-ID and base64 data).

Usage: check_eml.py FILE.eml...
"""
import base64
import email
import json
import sys
from email import policy

REQUIRED = [
    "From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
    "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
]


def check(path):
    raw = open(path, "rb").read()
    problems = []
    if raw.replace(b"\r\n", b"").count(b"\n") or raw.replace(b"\r\n", b"").count(b"\r"):
        problems.append("a line ends without CRLF")
    longest = max(len(line) for line in raw.split(b"\r\n"))
    if longest > 998:
        problems.append(f"a line is {longest} bytes, over 998")
    msg = email.message_from_bytes(raw, policy=policy.default)
    for part in msg.walk():
        for d in part.defects:
            problems.append(f"defect in {part.get_content_type()}: {d!r}")
    for h in REQUIRED:
        if msg[h] is None:
            problems.append(f"missing header {h}")
    parts = []
    text = html = None
    images = []
    structure = []  # the content types under multipart/alternative
    if msg.get_content_type() != "multipart/alternative":
        problems.append(f"top level is {msg.get_content_type()}, not multipart/alternative")
    else:
        for p in msg.iter_parts():
            parts.append(p.get_content_type())
            structure.append(p.get_content_type())
            if p.get_content_type() == "multipart/related":
                # RFC 2387: the root (the HTML) first, then what it refers to.
                if p.get_param("type") != "text/html":
                    problems.append(f"multipart/related has type={p.get_param('type')!r}, not text/html")
                inner = list(p.iter_parts())
                if not inner or inner[0].get_content_type() != "text/html":
                    problems.append("multipart/related does not start with the HTML")
                    continue
                html_part, rest = inner[0], inner[1:]
                if html_part.get_content_charset() != "utf-8":
                    problems.append(f"text/html charset is {html_part.get_content_charset()}")
                html = html_part.get_content()
                parts[-1] = "text/html"
                for img in rest:
                    cid = img["Content-ID"]
                    images.append({
                        "content_type": img.get_content_type(),
                        "content_id": str(cid).strip().strip("<>") if cid else None,
                        "disposition": img.get_content_disposition(),
                        "filename": img.get_filename(),
                        "transfer_encoding": str(img["Content-Transfer-Encoding"]),
                        "data": base64.b64encode(img.get_content()).decode(),
                    })
                continue
            if p.get_content_charset() != "utf-8":
                problems.append(f"{p.get_content_type()} charset is {p.get_content_charset()}")
            if p.get_content_type() == "text/plain":
                text = p.get_content()
            elif p.get_content_type() == "text/html":
                html = p.get_content()
    if parts != ["text/plain", "text/html"]:
        problems.append(f"parts are {parts}, not text/plain then text/html")
    headers = {}
    for k, v in msg.items():
        headers.setdefault(k.lower(), []).append(str(v))
    return {
        "file": path,
        "problems": problems,
        "headers": headers,
        "to_address": msg["To"].addresses[0].addr_spec if msg["To"] else None,
        "to_name": msg["To"].addresses[0].display_name if msg["To"] else None,
        "text": text,
        "html": html,
        # Parts of a multipart/related beside the HTML (inline images).
        "related": images,
        "structure": structure,
    }


for path in sys.argv[1:]:
    print(json.dumps(check(path)))
