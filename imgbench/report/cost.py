"""Cost section: cost per epoch and per million inferences from measured times and an editable
price table (the seed's "$1.82 vs $2.14 per epoch" row, for this hardware)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from imgbench.errors import ImgbenchError
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import table
from imgbench.report.serving import best_throughput_by_backend
from imgbench.report.training import FRAMEWORK_LABEL, epoch_seconds

DEFAULT_PRICES = Path(__file__).with_name("prices.yaml")


@dataclass(frozen=True)
class PriceTable:
    currency: str
    machine: str
    per_hour: float
    source: Path


def load_prices(path: Path | None = None) -> PriceTable:
    path = Path(path or DEFAULT_PRICES)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        machine = data["machine"]
        return PriceTable(data.get("currency", "USD"), machine, float(data["per_hour"][machine]), path)
    except FileNotFoundError:
        raise ImgbenchError(f"price table {path} does not exist") from None
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise ImgbenchError(
            f"price table {path} needs 'machine: NAME' and 'per_hour: {{NAME: price}}' ({exc})"
        ) from None


def cost_section(inputs: ReportInputs, prices: PriceTable) -> str:
    per_second = prices.per_hour / 3600.0
    rows = []
    for architecture, frameworks in inputs.by_architecture().items():
        for framework, manifest in sorted(frameworks.items()):
            seconds = epoch_seconds(manifest)
            if seconds:
                rows.append(
                    [
                        f"{FRAMEWORK_LABEL[framework]} {architecture}",
                        "per epoch",
                        f"{seconds.mean * per_second:.5f}",
                    ]
                )
    for (backend, model), images_per_second in sorted(best_throughput_by_backend(inputs).items()):
        if images_per_second > 0:
            rows.append(
                [
                    f"{backend} {model}",
                    "per million images served",
                    f"{1e6 / images_per_second * per_second:.4f}",
                ]
            )
    parts = [
        "## Cost",
        "",
        f"At {prices.per_hour:.2f} {prices.currency}/hour for `{prices.machine}` (from {prices.source.name}; "
        "placeholders unless you edited it). Serving cost uses the highest measured throughput "
        "of each backend.",
        "",
        table(["what", "unit", f"cost ({prices.currency})"], rows) if rows else "Nothing measured to price.",
    ]
    return "\n".join(parts) + "\n"
