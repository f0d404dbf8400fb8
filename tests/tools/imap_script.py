"""A scripted IMAP server for `herald bounces --imap` tests: just enough
IMAP4rev1 (greeting, LOGIN, SELECT, UID SEARCH, UID FETCH, UID STORE,
LOGOUT) to serve the messages given, and ways to misbehave on purpose.
It listens on 127.0.0.1 only, serves one connection at a time and stops
by itself after --max-seconds.

Options:
  --port P             port on 127.0.0.1
  --log FILE           every command received, one per line
  --message FILE       a message to serve (UID 1, 2, ... in order; unseen)
  --mode MODE          normal | garbage-greeting (about 15 KB of binary
                       bytes instead of "* OK") | hang-store (never answers
                       UID STORE: "mark as read") | lying-size (message 1's
                       RFC822.SIZE is its real size, but its content
                       comes with --pad-mib MiB more) | endless (message 1's
                       content is followed by a quoted string of --pad-mib
                       MiB that never ends)
  --pad-mib N          for lying-size and endless (default 64)
  --max-seconds S      exit after S seconds (default 60)
"""
import argparse
import os
import socket
import sys
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--message", action="append", default=[])
    ap.add_argument("--mode", default="normal")
    ap.add_argument("--max-seconds", type=float, default=60)
    ap.add_argument("--pad-mib", type=int, default=64)
    a = ap.parse_args()
    messages = [open(p, "rb").read() for p in a.message]
    log = open(a.log, "a", buffering=1)
    threading.Timer(a.max_seconds, lambda: os._exit(0)).start()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", a.port))
    srv.listen(8)
    while True:
        conn, _ = srv.accept()
        try:
            serve(conn, a.mode, messages, log, a.pad_mib)
        except OSError:
            pass
        finally:
            conn.close()


def send_padding(send, mib, first=b"", lines=True):
    """`first`, then `mib` MiB of "y" (in lines, or not), a MiB at a time."""
    chunk = (b"y" * 1023 + b"\n") * 1024 if lines else b"y" * (1024 * 1024)
    send(first)
    for _ in range(mib):
        send(chunk)


def serve(conn, mode, messages, log, pad_mib):
    f = conn.makefile("rb")
    send = conn.sendall
    if mode == "garbage-greeting":
        send(bytes((i * 37 + 11) % 256 for i in range(15000)) + b"\r\n")
        # Keep the line open: a client must give up on its own.
        f.readline()
        return
    send(b"* OK [CAPABILITY IMAP4rev1] scripted server ready\r\n")
    while True:
        line = f.readline()
        if not line:
            return
        log.write(line.decode("latin-1").rstrip("\r\n") + "\n")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        tag, cmd = parts[0], " ".join(parts[1:]).upper()
        if cmd.startswith("LOGIN"):
            send(tag.encode() + b" OK LOGIN done\r\n")
        elif cmd.startswith("CAPABILITY"):
            send(b"* CAPABILITY IMAP4rev1\r\n" + tag.encode() + b" OK done\r\n")
        elif cmd.startswith("SELECT") or cmd.startswith("EXAMINE"):
            send(
                b"* %d EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen)\r\n%s OK [READ-WRITE] done\r\n"
                % (len(messages), tag.encode())
            )
        elif cmd.startswith("UID SEARCH"):
            uids = " ".join(str(i + 1) for i in range(len(messages)))
            send(b"* SEARCH " + uids.encode() + b"\r\n" + tag.encode() + b" OK done\r\n")
        elif cmd.startswith("UID FETCH"):
            uid = int(parts[3])
            body = messages[uid - 1]
            pad = pad_mib * 1024 * 1024
            if "RFC822.SIZE" in cmd:
                send(b"* %d FETCH (UID %d RFC822.SIZE %d)\r\n" % (uid, uid, len(body)))
            elif uid == 1 and mode == "lying-size":
                # Announces (in the literal) and sends more than it said.
                send_padding(send, pad_mib, b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (uid, uid, len(body) + pad) + body)
                send(b")\r\n")
            elif uid == 1 and mode == "endless":
                # The content as announced, then a string that never ends.
                send_padding(send, pad_mib, b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (uid, uid, len(body)) + body + b' X-ENDLESS "', lines=False)
                send(b'")\r\n')
            else:
                send(b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (uid, uid, len(body)) + body + b")\r\n")
            send(tag.encode() + b" OK done\r\n")
        elif cmd.startswith("UID STORE"):
            if mode == "hang-store":
                # Never answers; the connection stays open.
                continue
            uid = int(parts[3])
            send(b"* %d FETCH (UID %d FLAGS (\\Seen))\r\n%s OK done\r\n" % (uid, uid, tag.encode()))
        elif cmd.startswith("LOGOUT"):
            send(b"* BYE\r\n" + tag.encode() + b" OK done\r\n")
            return
        elif cmd.startswith("NOOP"):
            send(tag.encode() + b" OK done\r\n")
        else:
            send(tag.encode() + b" BAD unknown\r\n")


if __name__ == "__main__":
    sys.exit(main())
