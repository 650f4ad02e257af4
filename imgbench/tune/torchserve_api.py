"""TorchServe's management API, for what its config files cannot set at start: a model registered again
with a configuration's batch size, max batch delay and workers (a ``.mar`` brings its own
``model-config.yaml``; registering again is what probes are tested to apply). Used by `imgbench tune`'s
probes and by the native stack when it starts TorchServe with a ready config (``--server-config``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

from imgbench.load_results import ConfigValue
from imgbench.tune.search import KnobRejected


def _management(
    method: str, url: str, timeout_s: float = 300.0, headers: Mapping[str, str] | None = None
) -> object:
    request = urllib.request.Request(url, method=method, headers=dict(headers or {}))
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read() or b"null")


def differences(entry: object, config: Mapping[str, ConfigValue]) -> dict[str, object]:
    """What a ``GET /models/<model>`` answer reports unlike ``config`` (batch size, delay, workers)."""
    described = entry[0] if isinstance(entry, list) and entry else entry
    described = described if isinstance(described, dict) else {}
    wanted = {"batchSize": int(config["batch_size"]), "maxBatchDelay": int(config["max_batch_delay_ms"])}
    differs: dict[str, object] = {k: described.get(k) for k, v in wanted.items() if described.get(k) != v}
    running = len(described.get("workers") or [])
    if running != int(config["workers"]):
        differs["workers"] = running
    return differs


def describe_torchserve(management_url: str, model: str, headers: Mapping[str, str] | None = None) -> object:
    return _management("GET", f"{management_url}/models/{model}", 30.0, headers)


def reconfigure_torchserve(
    management_url: str,
    model: str,
    config: Mapping[str, ConfigValue],
    headers: Mapping[str, str] | None = None,
) -> None:
    """Register ``model`` again with the configuration's batching and workers (synchronously: it returns
    once the workers are up), then check TorchServe kept them: a refusal, or settings it replaced by
    the archive's own, raise ``KnobRejected``."""
    batch, delay, workers = (int(config[k]) for k in ("batch_size", "max_batch_delay_ms", "workers"))
    query = urllib.parse.urlencode(
        {
            "url": f"{model}.mar",
            "model_name": model,
            "batch_size": batch,
            "max_batch_delay": delay,
            "initial_workers": workers,
            "synchronous": "true",
        }
    )
    try:
        _management("DELETE", f"{management_url}/models/{model}", headers=headers)
        _management("POST", f"{management_url}/models?{query}", headers=headers)
        # The archive's maxWorkers caps initial_workers (a trainer-pt .mar says 1): scale explicitly.
        scale = urllib.parse.urlencode({"min_worker": workers, "max_worker": workers, "synchronous": "true"})
        _management("PUT", f"{management_url}/models/{model}?{scale}", headers=headers)
        described = _management("GET", f"{management_url}/models/{model}", headers=headers)
    except urllib.error.HTTPError as exc:
        raise KnobRejected(f"TorchServe refused {config}: HTTP {exc.code} {exc.read()[:300]!r}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise KnobRejected(f"TorchServe's management API failed for {config}: {exc}") from None
    if differs := differences(described, config):
        raise KnobRejected(f"TorchServe did not apply {config}: it reports {differs}")
