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


def _management(method: str, url: str, timeout_s: float = 300.0) -> object:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read() or b"null")


def reconfigure_torchserve(management_url: str, model: str, config: Mapping[str, ConfigValue]) -> None:
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
        _management("DELETE", f"{management_url}/models/{model}")
        _management("POST", f"{management_url}/models?{query}")
        described = _management("GET", f"{management_url}/models/{model}")
    except urllib.error.HTTPError as exc:
        raise KnobRejected(f"TorchServe refused {config}: HTTP {exc.code} {exc.read()[:300]!r}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise KnobRejected(f"TorchServe's management API failed for {config}: {exc}") from None
    entry = described[0] if isinstance(described, list) and described else {}
    kept = {"batchSize": batch, "maxBatchDelay": delay}
    differs = {k: entry.get(k) for k, v in kept.items() if isinstance(entry, dict) and entry.get(k) != v}
    running = len(entry.get("workers") or []) if isinstance(entry, dict) else 0
    if running != workers:
        differs["workers"] = running
    if differs:
        raise KnobRejected(f"TorchServe did not apply {config}: it reports {differs}")
