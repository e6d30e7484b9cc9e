"""moto server with requests handled one at a time.

moto's threaded server applies DynamoDB conditional writes and transactions
without a lock, so two racing requests can both pass a condition that real
DynamoDB would let only one pass. Our concurrency tests (20 racing creates,
10 racing uses of one emergency code) exist to catch exactly that, so they
need an emulator that is atomic per request, as DynamoDB is. Serialising the
WSGI app gives that without changing anything else.
"""

import sys
import threading

from moto import server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_lock = threading.Lock()
_call = DomainDispatcherApplication.__call__


def _serialised(self, environ, start_response):
    with _lock:
        # Materialise the body inside the lock: the response may be a lazy iterable.
        return list(_call(self, environ, start_response))


DomainDispatcherApplication.__call__ = _serialised

if __name__ == "__main__":
    sys.exit(server.main(sys.argv[1:]))
