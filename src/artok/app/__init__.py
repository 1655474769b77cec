"""A local web demo of a saved generator (``artok app``): one page, served by the standard library.

`DemoService` holds a loaded generator/tokenizer pair, checks every request field and samples one
request at a time; `make_server` wraps it in a `ThreadingHTTPServer` with three endpoints:
``GET /`` (the page, `artok.app.page.PAGE`), ``GET /api/info`` and ``POST /api/sample``. The page
has no external assets, so the demo works offline and nothing leaves the machine.
"""

from artok.app.server import DemoServer, make_server, server_url
from artok.app.service import MAX_COUNT, DemoService, RequestError

__all__ = ["MAX_COUNT", "DemoServer", "DemoService", "RequestError", "make_server", "server_url"]
