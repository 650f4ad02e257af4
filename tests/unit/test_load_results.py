"""The load result schema (imgbench.load_results): round trip, rejection of malformed files with the
file and the field named, and report labels that come from the data, not from a table of names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import SERVER_IDENTITIES, load_document, load_point

from imgbench.errors import LoadResultError
from imgbench.load_results import (
    SCHEMA_VERSION,
    ClientLoad,
    LoadPoint,
    LoadResult,
    ServerIdentity,
    load_load_result,
    parse_load_result,
    write_load_result,
)
from imgbench.report.inputs import read_inputs
from imgbench.report.serving import serving_section


def _document() -> dict:
    return load_document(
        [
            load_point("triton", 1, 8.0),
            load_point("tfserving", 1, 12.0, mode="open", target_rate=50.0, point="rate=50"),
        ],
        slo_search=[
            {"backend": "triton", "model": "pt_resnet18", "slo_ms": 100, "max_rate": 250.0, "step_s": 20}
        ],
        hardware={"cpu": "test CPU", "cores": 2},
    )


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    result = parse_load_result(_document(), "test")
    path = write_load_result(tmp_path / "run.json", result)
    again = load_load_result(path)
    # A version-1 document reads (the client fields None) and is written as the current version.
    assert result.schema_version == 1 and result.points[0].client_bound is None
    assert again == result.model_copy(update={"schema_version": SCHEMA_VERSION})
    assert again.schema_version == SCHEMA_VERSION
    assert again.points[1].load_label == "open 50/s"
    assert again.points[0].images_per_s == pytest.approx(100.0)
    # Reserved fields are optional now and survive a round trip when written.
    point = again.points[0].model_copy(
        update={
            "client_cpu_ms_per_request": 0.4,
            "client_bound": False,
            "server_config": {"max_batch_size": 8},
        }
    )
    dumped = LoadResult(run_id="r", points=[point]).model_dump_json()
    assert LoadResult.model_validate_json(dumped).points[0].server_config == {"max_batch_size": 8}


def test_client_load_fields_round_trip(tmp_path: Path) -> None:
    client = ClientLoad(
        processes=3, cpu_s=4.2, utilisation=1.4, max_process_utilisation=0.97, host_utilisation=0.99,
        threshold=0.9, late_sends=120, late_share=0.08, late_after_ms=1.0, late_share_threshold=0.05,
        lateness_ms={"50": 0.2, "99": 7.5}, reasons=["process at 97% of a core"], advice="add processes",
    )  # fmt: skip
    base = parse_load_result(_document(), "test").points[1]
    update = {"client_cpu_ms_per_request": 0.35, "client_bound": True, "client": client}
    point = base.model_copy(update=update)
    path = write_load_result(tmp_path / "run.json", LoadResult(run_id="r", points=[point]))
    again = load_load_result(path)
    assert again.schema_version == SCHEMA_VERSION == 2
    assert again.points[0] == point and again.points[0].client == client
    assert again.points[0].client_bound is True and again.points[0].client_cpu_ms_per_request == 0.35
    # Out-of-range facts are refused naming the field.
    bad = json.loads(path.read_text())
    bad["points"][0]["client"]["late_share"] = 1.5
    with pytest.raises(LoadResultError, match=r"points\.0\.client\.late_share"):
        parse_load_result(bad, "bad.json")


def test_labels_come_from_how_the_server_identified_itself() -> None:
    assert ServerIdentity(**SERVER_IDENTITIES["triton"]).label == "Triton 2.51.0 (python backend)"
    assert ServerIdentity(**SERVER_IDENTITIES["tfserving"]).label == "TF Serving stand-in (TensorFlow 2.21.0)"
    assert ServerIdentity(backend="x", implementation="Other", stand_in=True).label == "Other (stand-in)"


def test_a_real_tf_serving_is_not_called_a_stand_in(tmp_path: Path) -> None:
    """A container run against the real TF Serving: the report says what answered, from the data."""
    real = {"backend": "tfserving", "implementation": "TF Serving", "version": "2.19.0", "stand_in": False}
    point = load_point("tfserving", 1, 5.0, server=real, deployment="compose", model="tf_resnet18")
    (tmp_path / "load").mkdir()
    (tmp_path / "load" / "real.json").write_text(json.dumps(load_document([point])))
    section = serving_section(read_inputs(tmp_path))
    assert "| TF Serving 2.19.0 | tf_resnet18 |" in section
    assert "stand-in" not in section


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["points"][0].pop("server"), "points.0.server"),
        (lambda d: d["points"][0].update(surprise=1), "points.0.surprise"),
        (lambda d: d["points"][0].update(n="many"), "points.0.n"),
        (lambda d: d["points"][0].update(batch_size=0), "points.0.batch_size"),
        (lambda d: d["points"][0]["server"].pop("stand_in"), "points.0.server.stand_in"),
        (lambda d: d["points"][1].update(target_rate=None), "rate=50"),
        (lambda d: d["slo_search"][0].pop("slo_ms"), "slo_search.0.slo_ms"),
        (lambda d: d.update(kind="weekly"), "kind"),
    ],
)
def test_malformed_results_name_the_file_and_the_field(tmp_path: Path, change, field: str) -> None:
    document = _document()
    change(document)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(LoadResultError) as info:
        load_load_result(path)
    assert str(path) in str(info.value) and field in str(info.value), str(info.value)


def test_versions_and_unreadable_files_are_said(tmp_path: Path) -> None:
    newer = {**_document(), "schema_version": 3}
    with pytest.raises(LoadResultError, match=r"schema_version 3 is not one of \(1, 2\)"):
        parse_load_result(newer, "newer.json")
    legacy = {"points": [load_point("triton", 1, 8.0)]}
    with pytest.raises(LoadResultError, match=r"legacy\.json: no schema_version"):
        parse_load_result(legacy, "legacy.json")
    (tmp_path / "cut.json").write_text('{"schema_version": 1, "run_id"')
    with pytest.raises(LoadResultError, match=r"cut\.json is unreadable"):
        load_load_result(tmp_path / "cut.json")
    with pytest.raises(LoadResultError, match="does not exist"):
        load_load_result(tmp_path / "missing.json")


def test_the_report_lists_a_malformed_result_as_a_problem(tmp_path: Path) -> None:
    (tmp_path / "load").mkdir()
    bad = _document()
    bad["points"][0]["p99_ms"] = -1
    (tmp_path / "load" / "bad.json").write_text(json.dumps(bad))
    inputs = read_inputs(tmp_path)
    assert inputs.load_results == []
    assert any("bad.json" in p and "points.0.p99_ms" in p for p in inputs.problems), inputs.problems


def test_closed_points_need_users() -> None:
    data = load_point("triton", 1, 8.0)
    data["users"] = None
    with pytest.raises(ValueError, match="closed-loop point 'users=1' has no users"):
        LoadPoint.model_validate(data)


def test_tf_serving_metadata_says_whether_the_stand_in_answered() -> None:
    from google.protobuf import wrappers_pb2

    try:
        from imgbench.clients.tfserving import metadata_pb2, server_identity
    except ImportError as exc:  # the generated stubs come from `scripts/setup.sh core`
        pytest.skip(str(exc))

    real = metadata_pb2.GetModelMetadataResponse()
    assert server_identity(real) == ServerIdentity(
        backend="tfserving", implementation="TF Serving", stand_in=False
    )
    stand_in = metadata_pb2.GetModelMetadataResponse()
    stand_in.metadata["server"].Pack(
        wrappers_pb2.StringValue(value="TF Serving stand-in (TensorFlow 2.21.0)")
    )
    identity = server_identity(stand_in)
    assert (identity.implementation, identity.runtime, identity.stand_in) == (
        "TF Serving stand-in",
        "TensorFlow 2.21.0",
        True,
    )


def test_the_report_flags_client_bound_points_and_says_what_to_do(tmp_path: Path) -> None:
    client = {
        "processes": 1, "cpu_s": 9.5, "utilisation": 0.95, "max_process_utilisation": 0.95,
        "threshold": 0.9, "reasons": ["a load process used 95% of a core"], "advice": "run more processes",
    }  # fmt: skip
    bound = load_point(
        "triton", 16, 9.0, client_bound=True, client_cpu_ms_per_request=0.31, client=client, run_id="a"
    )
    fine = load_point("triton", 1, 4.0, client_bound=False, client_cpu_ms_per_request=0.25, run_id="a")
    old = load_point("tfserving", 1, 5.0)  # a version-1 point: never measured itself
    (tmp_path / "load").mkdir()
    (tmp_path / "load" / "a.json").write_text(json.dumps(load_document([bound, fine, old])))
    section = serving_section(read_inputs(tmp_path))
    assert "| **CLIENT-BOUND**, 310 µs/req |" in section and "| ok, 250 µs/req |" in section
    assert "| not measured |" in section
    assert "a load process used 95% of a core. What to do: run more processes." in section
    assert "1 point(s) were limited by the load generator" in section
    assert "1 point(s) come from a load generator that did not measure itself" in section
