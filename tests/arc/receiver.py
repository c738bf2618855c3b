"""An alarm receiving centre's DC-09 receiver for tests/arc.rs: pysiaalarm's (PyPI 3.2.2), on
127.0.0.1, with one or more accounts, optionally with an AES key (the same for all).

    python receiver.py --port PORT --account ACCT [--account ACCT2 …] [--key KEY] [--udp]

Prints one JSON line per event: {"ready": port} once listening; {"line": ..., "response":
"ACK"|"NAK"|"DUH"|None} for every message received (what pysiaalarm answers); {"event": ...}
for every message it acknowledged, with its fields as pysiaalarm parsed them and "t", the
time it was received (ms since the Unix epoch). pysiaalarm takes the key's characters as the
key's bytes: the transmitter's hex key is this key's ASCII in hex.
"""
import argparse
import asyncio
import json
import sys
import time

from pysiaalarm import SIAAccount
from pysiaalarm.aio import CommunicationsProtocol, SIAClient
from pysiaalarm.aio.server import SIAServerUDP
from pysiaalarm.base_server import BaseSIAServer


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


_parse = BaseSIAServer.parse_and_check_event


def parse_and_log(self, data):
    event = _parse(self, data)
    if event is not None:
        response = getattr(event, "response", None)
        emit(
            {
                "line": data.decode("ascii", "replace").strip(),
                "response": response.value if response is not None else None,
                "t": int(time.time() * 1000),
            }
        )
    return event


BaseSIAServer.parse_and_check_event = parse_and_log


def udp_connection_made(self, transport):
    # pysiaalarm 3.2.2 asserts that the transport is an asyncio.DatagramTransport, which the
    # selector event loop's is not on Python 3.11: the assertion fails, the transport is never
    # kept and no datagram is ever answered. Kept here without the assertion.
    self.transport = transport


SIAServerUDP.connection_made = udp_connection_made


async def on_event(event):
    xdata = {}
    for x in event.extended_data or []:
        xdata[x.identifier] = x.value
    emit(
        {
            "event": {
                "type": event.message_type.value if event.message_type else None,
                "code": event.code,
                "account": event.account,
                "ri": event.ri,
                "message": event.message,
                "event_qualifier": event.event_qualifier,
                "event_type": event.event_type,
                "partition": event.partition,
                "zone_cid": event.ri if event.event_type else None,
                "xdata": xdata,
                "encrypted": bool(event.encrypted),
                "sequence": event.sequence,
                "receiver": event.receiver,
                "line": event.line,
                "timestamp": event.timestamp.isoformat() if event.timestamp else None,
                "valid_crc": event.valid_message,
            },
            "t": int(time.time() * 1000),
        }
    )


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--account", required=True, action="append")
    parser.add_argument("--key", default=None)
    parser.add_argument("--udp", action="store_true")
    args = parser.parse_args()
    protocol = CommunicationsProtocol.UDP if args.udp else CommunicationsProtocol.TCP
    accounts = [SIAAccount(a, args.key) for a in args.account]
    client = SIAClient("127.0.0.1", args.port, accounts, on_event, protocol=protocol)
    await client.async_start()
    port = args.port
    if not args.udp and client.server is not None:
        port = client.server.sockets[0].getsockname()[1]
    elif args.udp and client.transport is not None:
        port = client.transport.get_extra_info("sockname")[1]
    emit({"ready": port})
    while True:
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
