"""``artok app``: a local web page to sample a saved generator interactively (thin: load, serve, print).

The server is `artok.app`: standard library only, bound to 127.0.0.1 unless told otherwise, so the
demo runs offline and is not exposed to the network by accident.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must lie in [0, 65535], got {port}")
    return port


def add_parser(subparsers) -> str:
    parser = subparsers.add_parser(
        "app",
        help="serve a web page to sample a saved generator (class, CFG, temperature, top-k/p, seed)",
        description="Load a saved generator and its tokenizer and serve a small local web page: pick a class, the "
        "guidance scale, temperature, top-k, top-p, seed and number of images, press Generate and see the PNG "
        "grid and the time taken. Standard library only (no Gradio); Ctrl-C stops it.",
    )
    parser.add_argument("--generator", required=True, help="saved generator folder")
    parser.add_argument("--tokenizer", help="saved tokenizer folder (default: the one recorded with the generator)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 exposes the demo)")
    parser.add_argument("--port", type=_port, default=7860, help="TCP port (default: 7860; 0 picks a free one)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request on stderr")
    return "app"


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_stops():
    """SIGTERM (``kill``, ``docker stop``) stops the server as Ctrl-C does, and Ctrl-C stops it even
    when the parent started it with SIGINT ignored (Python then installs no handler of its own);
    signals can only be set from the main thread, so elsewhere (tests) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler)
                for number, handler in ((signal.SIGTERM, _interrupt), (signal.SIGINT, signal.default_int_handler))}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def run(args) -> int:
    from artok.app import DemoService, make_server, server_url
    from artok.cli.common import check_device

    check_device(args.device)
    service = DemoService.load(args.generator, args.tokenizer, args.device)
    server = make_server(service, args.host, args.port, log_requests=not args.quiet)
    print(f"artok app: {service.kind} generator {args.generator} on {args.device}, "
          f"open {server_url(server)} (Ctrl-C stops)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"artok app: listening on {args.host}: other machines can reach this demo", flush=True)
    try:
        with _sigterm_stops():
            server.serve_forever()
    except KeyboardInterrupt:
        print("artok app: stopped", flush=True)
    finally:
        server.server_close()
    return 0
