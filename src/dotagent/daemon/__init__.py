"""The daemon: the asyncio loop (loop.py) and the scheduling step it shares with `tick`."""
