"""A small SMTP server for herald's delivery tests, built on aiosmtpd, that
can misbehave on purpose. It listens on 127.0.0.1 only and stops by itself.

Every accepted message (answered 250) is logged as one JSON line:
{"rcpt": "...", "time": <unix time when DATA ended>, "message_id": "..."}.
Refused attempts are logged with "refused": "<reply>".

Options:
  --port P                 port on 127.0.0.1
  --log FILE               where to log
  --fail451 ADDR=N         answer RCPT TO:<ADDR> with 451 the first N times
  --fail550 ADDR           always answer RCPT TO:<ADDR> with 550
  --drop-data ADDR=N       close the connection instead of answering DATA, the first N times
  --slowdown N             answer the first N RCPTs with "451 4.7.1 rate limit, slow down"
  --all421                 answer every RCPT with "421 4.3.2 Service not available"
  --die-after N            exit at once (no goodbye) after accepting N messages
  --smtputf8               offer SMTPUTF8 (RFC 6531)
  --delay SECONDS          wait this long before answering DATA
  --save DIR               write each accepted message, as received, to
                           DIR/<n>-<recipient>.eml
  --max-seconds S          exit after S seconds (default 120)
  --tls implicit|starttls  TLS from the start, or STARTTLS (required), with
  --cert FILE --key FILE   this certificate and key
"""
import argparse
import asyncio
import json
import os
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--log", required=True)
p.add_argument("--fail451", action="append", default=[])
p.add_argument("--fail550", action="append", default=[])
p.add_argument("--drop-data", action="append", default=[])
p.add_argument("--slowdown", type=int, default=0)
p.add_argument("--delay", type=float, default=0.0)
p.add_argument("--save")
p.add_argument("--all421", action="store_true")
p.add_argument("--die-after", type=int, default=0)
p.add_argument("--smtputf8", action="store_true")
p.add_argument("--max-seconds", type=float, default=120.0)
p.add_argument("--tls", choices=["implicit", "starttls"])
p.add_argument("--cert")
p.add_argument("--key")
# Advertise PIPELINING (RFC 2920); MAIL is then logged with whether RCPT TO
# had already arrived behind it, i.e. whether the client batched them.
p.add_argument("--pipelining", action="store_true")
args = p.parse_args()


def counts(items):
    out = {}
    for item in items:
        addr, n = item.rsplit("=", 1)
        out[addr.lower()] = int(n)
    return out


fail451 = counts(args.fail451)
drop_data = counts(args.drop_data)
fail550 = {a.lower() for a in args.fail550}
lock = threading.Lock()
log = open(args.log, "a", buffering=1)
slowdown_left = [args.slowdown]
accepted = [0]
accepted_saved = [0]


def write(entry):
    with lock:
        log.write(json.dumps(entry) + "\n")


class Handler:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if not args.smtputf8:
            # aiosmtpd offers SMTPUTF8 on its own; a relay that does not is
            # what the tests need by default.
            responses[:] = [r for r in responses if "SMTPUTF8" not in r]
        if args.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if args.pipelining:
            waiting = bytes(getattr(server._reader, "_buffer", b""))
            write({"mail": address, "time": time.time(), "pipelined": b"RCPT TO" in waiting.upper()})
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        addr = address.lower()
        with lock:
            if args.all421:
                reply = "421 4.3.2 Service not available, closing transmission channel"
            elif slowdown_left[0] > 0:
                slowdown_left[0] -= 1
                reply = "451 4.7.1 Rate limit exceeded, slow down"
            elif addr in fail550:
                reply = "550 5.1.1 No such user here"
            elif fail451.get(addr, 0) > 0:
                fail451[addr] -= 1
                reply = "451 4.3.0 Mailbox busy, try again later"
            else:
                reply = None
        if reply:
            write({"rcpt": addr, "time": time.time(), "refused": reply})
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if args.delay:
            await asyncio.sleep(args.delay)
        rcpt = envelope.rcpt_tos[0].lower() if envelope.rcpt_tos else ""
        with lock:
            drop = drop_data.get(rcpt, 0) > 0
            if drop:
                drop_data[rcpt] -= 1
        if drop:
            write({"rcpt": rcpt, "time": time.time(), "refused": "connection dropped during DATA"})
            server.transport.close()
            return "421 closing"
        message_id = ""
        for line in envelope.content.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                message_id = line.split(b":", 1)[1].strip().decode()
                break
            if not line:
                break
        if args.save:
            with lock:
                accepted_saved[0] += 1
                name = f"{accepted_saved[0]:07}-{rcpt}.eml"
            with open(os.path.join(args.save, name), "wb") as f:
                f.write(envelope.original_content or envelope.content)
        for r in envelope.rcpt_tos:
            write({"rcpt": r.lower(), "time": time.time(), "message_id": message_id})
        if args.die_after:
            with lock:
                accepted[0] += 1
                if accepted[0] >= args.die_after:
                    log.flush()
                    os._exit(0)
        return "250 2.0.0 Message accepted"


class LoggingSMTP(SMTP):
    """Logs the DATA command as it arrives, before the message: a client
    killed after that point may have a recipient of unknown outcome whose
    message never completed."""

    async def smtp_DATA(self, arg):
        if self.envelope is not None:
            for r in self.envelope.rcpt_tos:
                write({"data_started": r.lower(), "time": time.time()})
        return await super().smtp_DATA(arg)


class LoggingController(Controller):
    def factory(self):
        return LoggingSMTP(self.handler, **self.SMTP_kwargs)


kwargs = {}
if args.tls:
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    if args.tls == "implicit":
        kwargs["ssl_context"] = ctx
    else:
        kwargs["tls_context"] = ctx
        kwargs["require_starttls"] = True
kwargs["enable_SMTPUTF8"] = args.smtputf8
controller = LoggingController(Handler(), hostname="127.0.0.1", port=args.port, decode_data=False, **kwargs)
controller.start()
print("READY", flush=True)
deadline = time.time() + args.max_seconds
try:
    while time.time() < deadline:
        time.sleep(0.2)
finally:
    controller.stop()
