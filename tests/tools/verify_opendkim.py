"""Verify the DKIM signatures of .eml files with OpenDKIM's library
(libopendkim, the code behind the opendkim milter and opendkim-testmsg),
reading the public keys from a file instead of DNS.

opendkim-testmsg itself always asks DNS and has no option to do otherwise,
so this calls the same library functions it calls (dkim_verify,
dkim_chunk, dkim_eom), with the library's own test-file query method
(DKIM_QUERY_FILE) set first, and reports every signature separately.

Usage: verify_opendkim.py KEYS FILE.eml...
KEYS: lines `SELECTOR._domainkey.DOMAIN TXT-RECORD`.
Prints one JSON object per file:
{"file": ..., "status": "<dkim_eom result>", "valid": bool,
 "signatures": [{"selector", "domain", "valid", "error"}]}
"valid" is true when the message has at least one signature and all verify.
"""
import ctypes
import json
import sys
from ctypes import POINTER, byref, c_char_p, c_int, c_size_t, c_uint, c_void_p

# From <opendkim/dkim.h> of OpenDKIM 2.11.
DKIM_OP_SETOPT = 1
DKIM_OPTS_QUERYMETHOD = 6
DKIM_OPTS_QUERYINFO = 7
DKIM_QUERY_FILE = 1
DKIM_SIGFLAG_PASSED = 0x04
DKIM_SIGBH_MATCH = 0

lib = ctypes.CDLL("libopendkim.so.11")
lib.dkim_init.restype = c_void_p
lib.dkim_init.argtypes = [c_void_p, c_void_p]
lib.dkim_options.restype = c_int
lib.dkim_options.argtypes = [c_void_p, c_int, c_int, c_void_p, c_size_t]
lib.dkim_verify.restype = c_void_p
lib.dkim_verify.argtypes = [c_void_p, c_char_p, c_void_p, POINTER(c_int)]
lib.dkim_chunk.restype = c_int
lib.dkim_chunk.argtypes = [c_void_p, c_char_p, c_size_t]
lib.dkim_eom.restype = c_int
lib.dkim_eom.argtypes = [c_void_p, c_void_p]
lib.dkim_getsiglist.restype = c_int
lib.dkim_getsiglist.argtypes = [c_void_p, POINTER(POINTER(c_void_p)), POINTER(c_int)]
lib.dkim_sig_getflags.restype = c_uint
lib.dkim_sig_getflags.argtypes = [c_void_p]
lib.dkim_sig_getbh.restype = c_int
lib.dkim_sig_getbh.argtypes = [c_void_p]
lib.dkim_sig_geterror.restype = c_int
lib.dkim_sig_geterror.argtypes = [c_void_p]
lib.dkim_sig_geterrorstr.restype = c_char_p
lib.dkim_sig_geterrorstr.argtypes = [c_int]
lib.dkim_sig_getselector.restype = c_char_p
lib.dkim_sig_getselector.argtypes = [c_void_p]
lib.dkim_sig_getdomain.restype = c_char_p
lib.dkim_sig_getdomain.argtypes = [c_void_p]
lib.dkim_getresultstr.restype = c_char_p
lib.dkim_getresultstr.argtypes = [c_int]
lib.dkim_free.argtypes = [c_void_p]
lib.dkim_close.argtypes = [c_void_p]

handle = lib.dkim_init(None, None)
method = c_int(DKIM_QUERY_FILE)
assert lib.dkim_options(handle, DKIM_OP_SETOPT, DKIM_OPTS_QUERYMETHOD, byref(method), ctypes.sizeof(method)) == 0
keys = sys.argv[1].encode()
assert lib.dkim_options(handle, DKIM_OP_SETOPT, DKIM_OPTS_QUERYINFO, c_char_p(keys), len(keys)) == 0

for path in sys.argv[2:]:
    raw = open(path, "rb").read()
    status = c_int(0)
    d = lib.dkim_verify(handle, b"verify_opendkim", None, byref(status))
    assert d and status.value == 0, f"dkim_verify: {status.value}"
    lib.dkim_chunk(d, raw, len(raw))
    lib.dkim_chunk(d, None, 0)
    eom = lib.dkim_eom(d, None)
    sigs = POINTER(c_void_p)()
    n = c_int(0)
    results = []
    if lib.dkim_getsiglist(d, byref(sigs), byref(n)) == 0:
        for i in range(n.value):
            s = sigs[i]
            passed = bool(lib.dkim_sig_getflags(s) & DKIM_SIGFLAG_PASSED)
            bh = lib.dkim_sig_getbh(s) == DKIM_SIGBH_MATCH
            err = lib.dkim_sig_geterror(s)
            results.append({
                "selector": (lib.dkim_sig_getselector(s) or b"").decode(),
                "domain": (lib.dkim_sig_getdomain(s) or b"").decode(),
                "valid": passed and bh,
                "error": None if err == 0 else (lib.dkim_sig_geterrorstr(err) or b"?").decode(),
            })
    print(json.dumps({
        "file": path,
        "status": (lib.dkim_getresultstr(eom) or b"?").decode(),
        "valid": bool(results) and all(r["valid"] for r in results),
        "signatures": results,
    }))
    lib.dkim_free(d)

lib.dkim_close(handle)
