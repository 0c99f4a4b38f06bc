"""Concurrent requests from aiocoap's own client library (the peer's copy):

    PYTHONPATH=../shared/peers python3 aiocoap_load.py coap+ws://127.0.0.1:PORT N

Sends N GET /slow?ms=... requests at once on one connection and prints
"matched N of N" when every response carries its own request's number.
Exits 1 otherwise.
"""

import asyncio
import sys

import aiocoap


async def main(base, count):
    context = await aiocoap.Context.create_client_context(transports=["ws"])
    try:
        requests = [
            context.request(
                aiocoap.Message(code=aiocoap.GET, uri=f"{base}/slow?ms={(i * 7) % 50}")
            ).response
            for i in range(count)
        ]
        responses = await asyncio.gather(*requests)
        matched = sum(
            1
            for i, r in enumerate(responses)
            if r.payload.decode() == f"slept {(i * 7) % 50}"
        )
        print(f"matched {matched} of {count}")
        return 0 if matched == count else 1
    finally:
        await context.shutdown()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]))))
