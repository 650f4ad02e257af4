"""Keep a running TorchServe on the ready config of `imgbench tune` (``RUN_DIR/best/torchserve``):

    python -m imgbench.tune.apply --server-config /best --management-url http://torchserve:8081 \\
        --key-file /auth/key_file.json --watch-s 30

A ``.mar`` carries its own model config, which wins over config.properties' ``models``, so a tuned
batch size, max batch delay and worker count reach TorchServe only by registering the model again
through its management API (``imgbench.tune.torchserve_api``). This is the process that does it for
compose (``torchserve-tuned`` in deploy/compose/tuned.yml) and Kubernetes (the sidecar of
deploy/k8s/components/tuned-config): it waits for TorchServe, registers each model that differs from
its ``<model>.model-config.yaml``, and with ``--watch-s`` checks again every so often, so a restarted
TorchServe (which loads the archive's settings) is put back on the tuned ones. Natively, `imgbench
stack up --server-config` does the same once at start.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.error
from pathlib import Path

from imgbench.errors import ImgbenchError
from imgbench.tune.configs import torchserve_ready
from imgbench.tune.search import KnobRejected
from imgbench.tune.torchserve_api import describe_torchserve, differences, reconfigure_torchserve

log = logging.getLogger("imgbench.tune.apply")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--server-config", type=Path, required=True, help="the ready-config folder (RUN_DIR/best)"
    )
    parser.add_argument(
        "--management-url", required=True, help="TorchServe's management API, e.g. http://torchserve:8081"
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        help="TorchServe's key_file.json when token authorization is on (default: no key sent)",
    )
    parser.add_argument(
        "--watch-s",
        type=float,
        default=0.0,
        help="check again every this many seconds and re-apply if TorchServe lost the settings; "
        "0: apply once and exit (default 0)",
    )
    parser.add_argument(
        "--wait-s", type=float, default=600.0, help="how long to wait for TorchServe (default 600)"
    )
    return parser


def management_headers(key_file: Path | None) -> dict[str, str]:
    """The bearer header with TorchServe's current management key (re-read: keyguard renews it)."""
    if key_file is None:
        return {}
    try:
        key = json.loads(key_file.read_text())["management"]["key"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImgbenchError(f"{key_file}: no management key ({exc!r}); is TorchServe up?") from None
    return {"Authorization": f"Bearer {key}"}


def apply_once(args: argparse.Namespace) -> list[str]:
    """Register again each model whose running settings differ from its ready config; returns them."""
    _, models = torchserve_ready(args.server_config)
    if not models:
        raise ImgbenchError(f"{args.server_config / 'torchserve'} has no <model>.model-config.yaml")
    changed = []
    for model, config in models.items():
        headers = management_headers(args.key_file)
        differs = differences(describe_torchserve(args.management_url, model, headers), config)
        if differs:
            log.info("%s runs with %s; registering it again with %s", model, differs, config)
            reconfigure_torchserve(args.management_url, model, config, headers)
            changed.append(model)
    return changed


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="[tune.apply] %(message)s", stream=sys.stdout)
    try:  # a folder without ready files is a mistake to name now, not a server to wait for
        if not torchserve_ready(args.server_config)[1]:
            raise ImgbenchError(f"{args.server_config / 'torchserve'} has no <model>.model-config.yaml")
    except ImgbenchError as exc:
        log.error("%s", exc)
        return 2
    deadline = time.monotonic() + args.wait_s
    while True:
        try:
            changed = apply_once(args)
            log.info("TorchServe runs the ready config (%s)", ", ".join(changed) or "nothing to change")
            if args.watch_s <= 0:
                return 0
            deadline = time.monotonic() + args.wait_s
        except (urllib.error.URLError, OSError, KnobRejected, ImgbenchError) as exc:
            if time.monotonic() > deadline:
                log.error("gave up after %.0f s: %s", args.wait_s, exc)
                return 1
            log.info("not yet: %s", exc)
        time.sleep(args.watch_s if args.watch_s > 0 else 5.0)


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
