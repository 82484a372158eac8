#!/usr/bin/env python3
"""Stands in for Docker Hub's callback endpoint during the webhook scenario.

Every Docker Hub delivery carries a `callback_url`, and rollbridge posts the outcome there after
the package is registered. Without a reachable endpoint the benchmark would measure callbacks
failing on DNS and being dropped, which is not what a server does against Docker Hub. This sink
answers every request with 200 and an empty JSON object (keep-alive, HTTP/1.1), and counts them.

Usage: callback_sink.py PORT_FILE COUNT_FILE
  Writes the port it listens on (127.0.0.1, chosen by the OS) to PORT_FILE, and the number of
  callbacks received so far to COUNT_FILE (every 200 ms, and when it gets SIGTERM).
"""
import asyncio
import os
import signal
import sys

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)
received = 0


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global received
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or b"0")
            if length:
                await reader.readexactly(length)
            received += 1
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port_file: str, count_file: str) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(port_file, "w") as f:
        f.write(f"{port}\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        while not stop.is_set():
            write_count(count_file)
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
    write_count(count_file)


def write_count(path: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(f"{received}\n")
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
