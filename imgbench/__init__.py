"""imgbench core: the contracts every service shares (manifest, paths, ports, catalog),
dataset tools, the native stack runner and the report.

The core imports no service and no ML framework, so every service venv can install it.
"""

__version__ = "0.1.0"
