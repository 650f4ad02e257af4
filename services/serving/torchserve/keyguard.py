"""Run TorchServe with token authorization on, and keep its keys from expiring.

    python keyguard.py -- torchserve --start --foreground --ncs --ts-config=config.properties ...
    python keyguard.py check            # the container's healthcheck: /ping with the current key

TorchServe 0.12 writes ``key_file.json`` (inference, management and API keys) into its working directory
and rejects every inference and management call once a key is older than ``token_expiration_min``
(60 minutes by default), health checks included. The API key never expires: this guard uses it to ask
TorchServe for a new inference and management key when half of a key's lifetime is gone. TorchServe
rewrites ``key_file.json`` itself; clients that read the key from that file (the load generator) pick
the new one up on their next authorization failure. Standard library only: it runs in TorchServe's image.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import threading
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("keyguard")
KEY_FILE = Path("key_file.json")
RENEWED_KINDS = ("inference", "management")
# A key is renewed once this share of its lifetime has passed.
RENEW_AT = 0.5


def config_value(config: Path | None, key: str, default: str) -> str:
    """One ``key=value`` of a TorchServe config.properties (TS_* variables are not looked at)."""
    if config is None or not config.is_file():
        return default
    for line in config.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return default


def address_port(address: str, default: int) -> int:
    """``http://0.0.0.0:8081`` -> 8081."""
    _, _, port = address.rpartition(":")
    return int(port) if port.isdigit() else default


def read_keys(path: Path = KEY_FILE) -> dict[str, dict[str, str]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # not written yet, or being rewritten by TorchServe


def expires_at(entry: dict[str, str]) -> datetime | None:
    text = entry.get("expiration time")
    return datetime.fromisoformat(text) if text else None


def needs_renewal(entry: dict[str, str], lifetime_s: float, now: datetime) -> bool:
    expiry = expires_at(entry)
    return expiry is not None and (expiry - now).total_seconds() <= lifetime_s * (1 - RENEW_AT)


def renew(kind: str, api_key: str, management_port: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{management_port}/token?type={kind}",
        headers={"Authorization": f"Bearer {api_key}"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        answer.read()


def guard(lifetime_s: float, management_port: int, stop: threading.Event) -> None:
    """Renew each key at RENEW_AT of its lifetime until ``stop`` is set; failures are retried."""
    interval = max(1.0, min(30.0, lifetime_s / 10))
    while not stop.wait(interval):
        keys = read_keys()
        api_key = keys.get("API", {}).get("key")
        if not api_key:
            continue
        now = datetime.now(UTC)
        for kind in RENEWED_KINDS:
            if kind in keys and needs_renewal(keys[kind], lifetime_s, now):
                try:
                    renew(kind, api_key, management_port)
                    log.info("renewed the %s key (lifetime %.0f s)", kind, lifetime_s)
                except OSError as exc:
                    log.warning("could not renew the %s key, will retry: %s", kind, exc)


def run(command: list[str]) -> int:
    config_arg = next((a.split("=", 1)[1] for a in command if a.startswith("--ts-config=")), None)
    config = Path(config_arg) if config_arg else None
    lifetime_s = float(config_value(config, "token_expiration_min", "60")) * 60
    management_port = address_port(config_value(config, "management_address", ""), 8081)
    server = subprocess.Popen(command)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: server.send_signal(received))
    stop = threading.Event()
    renewer = threading.Thread(target=guard, args=(lifetime_s, management_port, stop), daemon=True)
    renewer.start()
    code = server.wait()
    stop.set()
    return code


def check(url: str) -> int:
    """0 when TorchServe answers /ping as Healthy with the current inference key."""
    key = read_keys().get("inference", {}).get("key", "")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=4) as answer:
            status = json.loads(answer.read() or b"{}").get("status")
    except (OSError, ValueError) as exc:
        print(f"TorchServe is not healthy at {url}: {exc}", file=sys.stderr)
        return 1
    if status != "Healthy":
        print(f"TorchServe at {url} answered status {status!r}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[keyguard] %(message)s", stream=sys.stdout)
    if argv[:1] == ["check"]:
        parser = argparse.ArgumentParser(prog="keyguard.py check")
        parser.add_argument("--url", default="http://127.0.0.1:8080/ping", help="default %(default)s")
        return check(parser.parse_args(argv[1:]).url)
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        print("usage: keyguard.py -- torchserve ARGS... | keyguard.py check [--url URL]", file=sys.stderr)
        return 2
    return run(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
