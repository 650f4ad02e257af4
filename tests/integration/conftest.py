"""Registers the serving fixtures. They live in serving_support.py so that test modules can import its
classes by a unique name: several suites' conftest.py files share the module name `conftest`."""

from serving_support import eval_sets, references, serving  # noqa: F401
