"""Serve one file over HTTPS, for the ceiling of the API server's proxy (bench/logs.py).

    python -m bench.static_file_server FILE CERT KEY PORT

Prints "ready" once listening. A GET of any path answers with the whole file (held in memory);
nothing is parsed, so a `pods/log` fetch of a pod bound to a node pointing here measures the
API server's proxy (and TLS on both legs) alone.
Runs in its own process so that it does not share an event loop with the benchmark's client.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path

from aiohttp import web

_CHUNK = 1 << 20


def main(argv: list[str]) -> None:
    path, cert, key, port = Path(argv[0]), argv[1], argv[2], int(argv[3])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    body = memoryview(path.read_bytes())  # from memory: the disk is not what is measured

    async def static(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.content_length = len(body)
        await response.prepare(request)
        for start in range(0, len(body), _CHUNK):
            await response.write(body[start : start + _CHUNK])
        await response.write_eof()
        return response

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/{path:.*}", static)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        print("ready", flush=True)
        await asyncio.Event().wait()  # until killed

    asyncio.run(serve())


if __name__ == "__main__":
    main(sys.argv[1:])
