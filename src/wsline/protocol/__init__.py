"""The sans-I/O protocol core: no sockets, no asyncio, no clocks."""
