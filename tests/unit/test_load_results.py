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
    assert again == result
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
    newer = {**_document(), "schema_version": 2}
    with pytest.raises(LoadResultError, match="schema_version 2 is not 1"):
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
