"""A 1 ms ticker task for the asyncio peers (stdlib only): the longest gap
between two of its wake-ups while the client streams is the event loop's
max stall ("stall_ms="), the figure bench.py reports for every async
client. The loop is asyncio's own (uvloop with loop=uvloop)."""
import asyncio
import time


class Ticker:
    def __init__(self):
        self.max_gap = 0.0
        self.ticks = 0
        self._task = None

    async def _run(self):
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            if now - last > self.max_gap:
                self.max_gap = now - last
            self.ticks += 1
            last = now

    def start(self):
        self._task = asyncio.ensure_future(self._run())

    def stop(self):
        self._task.cancel()

    def fields(self):
        return f"stall_ms={self.max_gap * 1000:.1f} ticks={self.ticks}"


def run(main, opts):
    """asyncio.run(main()), or on uvloop with loop=uvloop."""
    if opts.get("loop") == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()
    return asyncio.run(main())
