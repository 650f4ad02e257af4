"""Parallelism as data (issue 14): every server's deployed configuration carries the thread settings
of imgbench/parallelism.py, equal across servers (compose, Kubernetes, TorchServe's properties)."""

from __future__ import annotations

from deploy_support import ROOT

from imgbench.parallelism import DEFAULT_THREADS, tfserving_thread_flags


def test_compose_tfserving_sets_its_threads(compose: dict) -> None:
    command = compose["services"]["tfserving"]["command"]
    assert set(tfserving_thread_flags()) <= set(command), command


def test_k8s_tfserving_sets_its_threads(k8s_cpu: list[dict]) -> None:
    (deployment,) = [d for d in k8s_cpu if d["kind"] == "Deployment" and d["metadata"]["name"] == "tfserving"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert set(tfserving_thread_flags()) <= set(args), args


def test_torchserve_workers_are_the_default() -> None:
    properties = (ROOT / "services" / "serving" / "torchserve" / "config.properties").read_text()
    assert f"default_workers_per_model={DEFAULT_THREADS.workers}" in properties.splitlines()
