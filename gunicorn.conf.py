"""gunicorn settings that belong with the code: `gunicorn -c gunicorn.conf.py voltaxe.wsgi ...` (README, Production).

A worker gives memory back after a large request, and is replaced when it holds too much anyway.
Measured (benchmarks/body_limits.py): a parsed request body hangs off the request's reference cycles
(Django's message storage and request, DRF's Request and its view, an exception's traceback and its
frames). Those wait for CPython's full collection, which is triggered by counts of container objects,
not bytes, and parsed JSON is mostly strings and dicts of strings that it does not count: the worker
grew by ~800 MB with every rejected 32 MiB body, to 16 GB after 20. One gc.collect() after the answer
gives all of it back, once voltaxe.bodylimit has cut the rendered response's link to DRF's Request.
"""
import ctypes
import ctypes.util
import gc
import os

import psutil

# A worker whose resident memory is above this after a request finishes it and is replaced (0 = never).
WORKER_MAX_RSS_MB = int(os.environ.get("WORKER_MAX_RSS_MB", "1024"))
# Bodies from this size on are collected after their answer: 0.03 to 0.25 s of the worker's time, not the client's.
GC_AFTER_BODY_BYTES = 256 * 1024
# glibc keeps freed memory in its heaps: after six 5000-process snapshots malloc_trim gave back 44 of the 67 MB
# the worker had grown by (gc.collect alone: 0). Elsewhere (musl, macOS) there is no such call.
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
malloc_trim = getattr(_libc, "malloc_trim", None)


def post_request(worker, req, environ, resp):
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)  # set by voltaxe.bodylimit for a chunked body too
    except ValueError:
        size = 0
    if size >= GC_AFTER_BODY_BYTES and environ.get("voltaxe.body_read"):
        gc.collect()
        if malloc_trim is not None:
            malloc_trim(0)
    rss_mb = psutil.Process().memory_info().rss / 2**20
    if WORKER_MAX_RSS_MB and rss_mb > WORKER_MAX_RSS_MB:
        worker.log.warning("Worker %s holds %.0f MB (WORKER_MAX_RSS_MB=%s): replacing it after this request",
                           worker.pid, rss_mb, WORKER_MAX_RSS_MB)
        worker.alive = False  # the arbiter starts a new worker; this one finishes what it has in hand
