"""trainer-pt: the PyTorch training service (train, export, bench) of imgbench.

Run it as a module with ``services/trainer-pt`` on ``PYTHONPATH`` (the container does the same)::

    PYTHONPATH=services/trainer-pt .venv/pt/bin/python -m trainer_pt train --data-path data/digits
"""

__version__ = "0.1.0"
