"""wstest with every listening socket on 127.0.0.1 (Python 2.7; installed by install.sh).

Stock wstest listens on all interfaces (interface ''), in fuzzingserver mode and for
its embedded web server. This is a test tool on an unmaintained Python and OpenSSL: here
it listens on loopback only. Set WSTEST_LISTEN_ADDRESS to bind elsewhere.
Arguments are wstest's own (wstest --help).
"""
import os
import sys

# wstest picks and installs its reactor when it is imported: import it first.
from autobahntestsuite import wstest
from twisted.internet import reactor

ADDRESS = os.environ.get("WSTEST_LISTEN_ADDRESS", "127.0.0.1")


def on_address(listen, position):
    """listen() with interface '' (all) made ADDRESS; position: that of interface in its arguments."""
    def wrapper(*args, **kwargs):
        args = list(args)
        if len(args) > position:
            args[position] = args[position] or ADDRESS
        else:
            kwargs["interface"] = kwargs.get("interface") or ADDRESS
        return listen(*args, **kwargs)
    return wrapper


# listenTCP(port, factory, backlog, interface), listenSSL(port, factory, contextFactory, backlog, interface)
reactor.listenTCP = on_address(reactor.listenTCP, 3)
reactor.listenSSL = on_address(reactor.listenSSL, 4)

if __name__ == "__main__":
    sys.argv[0] = "wstest"
    sys.exit(wstest.run())
