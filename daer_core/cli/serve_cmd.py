"""``daer serve RUN_DIR [--index DIR]``: the search service and its web page (local only)."""
from __future__ import annotations

import argparse
import logging
import math
import tempfile
from pathlib import Path

from .exit_codes import EXIT_OK

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="search service with a web page (FastAPI, local)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--index", type=Path, default=None,
                   help="a gallery index from `daer index`; without it the run's test split is"
                        " embedded at start-up and scored exhaustively")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto",
                   help="where to run: auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--max-upload-mb", type=float, default=10.0,
                   help="largest accepted image upload in MiB (default 10)")
    p.set_defaults(func=run)


def build_service(run_dir: Path, index_dir: Path | None, *, device: str = "auto",
                  max_upload_mb: float = 10.0, workdir: Path | None = None):
    """The app for a run (and index). Without an index the run's test split is indexed into
    ``workdir`` (a temporary folder the caller owns) and every query scores all of it."""
    from ..search import GalleryIndex, GallerySearcher, index_gallery, resolve_gallery
    from ..service import create_app, model_card
    from ..training.run_loading import load_run
    from ..training.runtime import pick_device

    dev = pick_device(device, key="--device")
    loaded = load_run(run_dir)
    loaded.model.to(dev)
    if index_dir is not None:
        index = GalleryIndex.open(index_dir, loaded.model, run_dir=loaded.run_dir)
        exhaustive = False
    else:
        if workdir is None:
            raise ValueError("build_service without an index needs a workdir")
        source = resolve_gallery("test", loaded.config)
        # the test split is small: every query scores all of it, so the first stage only
        # needs to exist (halves needs no fitting; models that do not split use distilled)
        from ..search.scoring import PairScorer
        method = "halves" if PairScorer(loaded.model).splits else "distilled"
        index, _ = index_gallery(loaded, source, Path(workdir) / "index", first_stage=method,
                                 device=dev, show_progress=False)
        exhaustive = True
    searcher = GallerySearcher(loaded.model, loaded.preprocess, index, device=dev,
                               rerank_k=loaded.config.evaluate.rerank_k,
                               bf16=loaded.config.evaluate.bf16)
    card = model_card(searcher, loaded.run_dir, loaded.config)
    return create_app(searcher, card=card, max_upload_bytes=int(max_upload_mb * 2 ** 20),
                      exhaustive=exhaustive)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port}: must be between 1 and 65535")
    if not math.isfinite(args.max_upload_mb) or args.max_upload_mb <= 0:
        raise ConfigError(f"--max-upload-mb {args.max_upload_mb}: must be a positive number")
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("daer serve needs the search extra: pip install -e '.[search]'") from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding to %s: the service is reachable from other machines and has no"
                    " authentication", args.host)
    _check_port_free(args.host, args.port)  # before minutes of loading, not after
    with tempfile.TemporaryDirectory(prefix="daer-serve-") as tmp:
        app = build_service(args.run_dir, args.index, device=args.device,
                            max_upload_mb=args.max_upload_mb, workdir=Path(tmp))
        print(f"daer serve: http://{args.host}:{args.port}/  (Ctrl-C stops)", flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def _check_port_free(host: str, port: int) -> None:
    """A port in use is a clear error (exit 1) before uvicorn starts: uvicorn itself logs
    the bind error and exits with status 3, a code daer does not document."""
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            from ..errors import DaerError
            raise DaerError(f"--port {port}: cannot listen on {host}:{port}"
                            f" ({exc.strerror or exc}); is another server using it? Choose"
                            f" another --port") from None
