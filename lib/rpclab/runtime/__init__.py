"""How servers live in a kernel: background threads, the asyncio loop, and what this process
runs.

Every notebook (00-15) starts its servers through it.
"""
