"""``daer config validate|show``: check a run config before training, or print it resolved.

``validate`` does everything a run does up to the first batch: it reads the file, merges the
preset and ``--set`` overrides, checks every key and component name/params against the
registry, and assembles the pipeline so that width mismatches between connected components
surface now rather than after an hour of training. Config problems exit with code 2 and a
message naming the file and the key path.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ConfigError, DaerError, DimensionMismatchError, PipelineError
from .exit_codes import EXIT_OK, EXIT_USAGE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config", help="validate a run config or print it fully resolved",
        description="Check or print run configs (YAML/TOML/JSON). Resolution order, later "
                    "wins: preset -> file -> --set overrides.")
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)

    val = actions.add_parser(
        "validate", help="check keys, component names, params and pipeline widths",
        description="Load the config, resolve it against the registry and assemble the "
                    "pipeline (no data is read). Exit 0 if usable, 2 on a config error.")
    _add_source_args(val)
    val.add_argument("--no-build", action="store_true",
                     help="only check keys, names and params; skip assembling the pipeline")
    val.set_defaults(func=run_validate)

    show = actions.add_parser(
        "show", help="print the fully resolved config (all defaults filled in)",
        description="Print the config a run would use: preset merged, overrides applied and "
                    "every component's params completed with their defaults.")
    _add_source_args(show)
    show.add_argument("--json", action="store_true",
                      help="print JSON instead of YAML (either can be fed back as a config)")
    show.set_defaults(func=run_show)


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="config file (.yaml, .yml, .toml or .json); optional with --preset")
    p.add_argument("--preset", metavar="NAME",
                   help="base preset (overrides the file's own `preset:` key)")
    p.add_argument("--dataset", metavar="NAME",
                   help="dataset component to use (keeps --set dataset.params.* given for it)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key by its full path, e.g. "
                        "pipeline.image.encoder.params.size=96 (repeatable; VALUE is YAML)")


def _load(args: argparse.Namespace):
    """Resolve the config named by the arguments against the process-wide registry."""
    import registry

    from ..config import load_run_config

    if args.file is None and args.preset is None:
        raise _UsageError("give a config FILE, a --preset NAME, or both")
    reg = registry.get_registry()
    cfg = load_run_config(args.file, overrides=args.overrides, preset=args.preset,
                          dataset=args.dataset, registry=reg)
    label = args.file or f"preset {args.preset}"
    return cfg, reg, label


class _UsageError(Exception):
    """Arguments that are well-formed for argparse but not usable together."""


def build_checked(cfg, reg, label: str):
    """Assemble the pipeline; turn any failure into an error naming the config."""
    from ..pipeline import build_pipeline

    try:
        return build_pipeline(cfg, reg)
    except DimensionMismatchError as exc:
        raise DimensionMismatchError(f"{label}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    except PipelineError as exc:
        raise PipelineError(f"{label}: {exc}") from exc
    except DaerError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's factory failed in some other way
        raise PipelineError(f"{label}: assembling the pipeline failed:"
                            f" {type(exc).__name__}: {exc} (rerun with -v for the traceback)"
                            ) from exc


def summary_lines(cfg, model=None) -> list[str]:
    """The short human summary printed by ``validate``."""
    pipe = cfg.pipeline
    lines: list[str] = []
    dims: dict[str, Any] = {}
    if model is not None:
        dims = {"text": model.text_encoder.out_dim, "image": model.image_encoder.out_dim}
        if model.fusion is not None:
            dims["fusion"] = model.fusion.out_dim

    def w(key: str) -> str:
        return f" ({dims[key]})" if key in dims else ""

    lines.append(f"  text:     {pipe.text.tokenizer.name} -> {pipe.text.encoder.name}{w('text')}"
                 + (f" + attention {pipe.text.attention.name}" if pipe.text.attention else ""))
    lines.append(f"  image:    {pipe.image.encoder.name}{w('image')}"
                 + (f" + attention {pipe.image.attention.name}" if pipe.image.attention else ""))
    if model is not None and model.two_tower:
        lines.append(f"  relation: {pipe.relation.name} (two-tower; fusion/enhancement unused)")
    else:
        lines.append(f"  relation: fusion {pipe.fusion.name}{w('fusion')} -> enhancement"
                     f" {pipe.enhancement.name} -> {pipe.relation.name}")
    lines.append(f"  loss:     {pipe.loss.name}")
    lines.append(f"  dataset:  {cfg.dataset.name if cfg.dataset else '(none; give one at run time)'}")
    if model is not None:
        from torch.nn.parameter import UninitializedParameter
        params = list(model.parameters())
        sized = [p for p in params if not isinstance(p, UninitializedParameter)]
        total = sum(p.numel() for p in sized)
        trainable = sum(p.numel() for p in sized if p.requires_grad)
        lazy = len(params) - len(sized)
        # feature encoders learn their input width from the data: counted once it is seen
        lines.append(f"  parameters: {total:,} ({trainable:,} trainable)"
                     + (f" + {lazy} tensors sized by the data's widths at run time"
                        if lazy else ""))
    return lines


def _load_for(action: str, args: argparse.Namespace):
    """``_load(args)``, or None after printing the usage error as ``daer config ACTION``."""
    try:
        return _load(args)
    except _UsageError as exc:
        print(f"daer config {action}: {exc}", file=sys.stderr)
        return None


def run_validate(args: argparse.Namespace) -> int:
    loaded = _load_for("validate", args)
    if loaded is None:
        return EXIT_USAGE
    cfg, reg, label = loaded
    model = None if args.no_build else build_checked(cfg, reg, label)[0]
    what = "keys, names and params" if args.no_build else "keys, names, params and widths"
    print(f"OK: {label} ({what} checked)")
    print("\n".join(summary_lines(cfg, model)))
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    from ..config import dump_config

    loaded = _load_for("show", args)
    if loaded is None:
        return EXIT_USAGE
    sys.stdout.write(dump_config(loaded[0], "json" if args.json else "yaml").rstrip("\n") + "\n")
    return EXIT_OK
