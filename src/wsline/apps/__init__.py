"""Applications on wsline: the chat demo, the relay, the echo server, the ``connect`` client.

They run as ``python -m wsline chat|relay|echo|connect``; :mod:`wsline.apps.runner`
holds what they share (the signal wait, worker processes, the worker options).
"""
