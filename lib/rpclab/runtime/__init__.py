"""How servers live in a kernel: background threads, the asyncio loop, and what this process
runs."""
