"""boto3 sessions sharing botocore's data, and clients cut to the operations they call."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.stub import Stubber

from failover import awssession
from failover.awssession import cut_elsewhere, only_operations, session

KEYS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret",
        "region_name": "eu-central-1"}
ENDPOINT = "http://127.0.0.1:9"  # nothing is sent: the stubber answers


def test_only_the_operations_and_every_shape_they_reach_are_kept() -> None:
    model: dict[str, Any] = {
        "version": "2.0", "metadata": {"protocol": "ec2", "endpointPrefix": "ec2"},
        "operations": {
            "Look": {"input": {"shape": "LookIn"}, "output": {"shape": "LookOut"},
                     "errors": [{"shape": "Refused"}]},
            "Change": {"input": {"shape": "ChangeIn"}},
        },
        "shapes": {
            "LookIn": {"type": "structure", "members": {"Ids": {"shape": "IdList"}}},
            "IdList": {"type": "list", "member": {"shape": "Id"}},
            "Id": {"type": "string"},
            "LookOut": {"type": "structure", "members": {"Tags": {"shape": "TagMap"}}},
            "TagMap": {"type": "map", "key": {"shape": "Id"}, "value": {"shape": "Value"}},
            "Value": {"type": "string"},
            "Refused": {"type": "structure", "members": {}},
            "ChangeIn": {"type": "structure", "members": {"Id": {"shape": "Id"},
                                                          "Why": {"shape": "Reason"}}},
            "Reason": {"type": "string"},
        },
    }
    cut = json.loads(only_operations(model, {"Look"}))
    assert list(cut["operations"]) == ["Look"]
    assert set(cut["shapes"]) == {"LookIn", "IdList", "Id", "LookOut", "TagMap", "Value",
                                  "Refused"}
    assert cut["metadata"] == model["metadata"] and cut["version"] == "2.0"
    assert cut["shapes"]["TagMap"] == model["shapes"]["TagMap"]


def test_a_client_cut_to_one_operation_calls_it_as_the_whole_model_would() -> None:
    slim = session(("DescribeInstances",), **KEYS).client("ec2", endpoint_url=ENDPOINT)
    whole = session(**KEYS).client("ec2", endpoint_url=ENDPOINT)
    assert slim.meta.service_model.operation_names == ["DescribeInstances"]
    assert not hasattr(slim, "run_instances") and hasattr(whole, "run_instances")
    answer = {"Reservations": [{"ReservationId": "r-1", "Instances": [
        {"InstanceId": "i-1", "State": {"Code": 16, "Name": "running"},
         "Tags": [{"Key": "Name", "Value": "aws-app"}]}]}]}
    for client in (slim, whole):  # the stubber checks parameters and answer against the model
        with Stubber(client) as stub:
            stub.add_response("describe_instances", answer, {"MaxResults": 5})
            assert client.describe_instances(MaxResults=5)["Reservations"][0]["Instances"][0][
                "Tags"] == [{"Key": "Name", "Value": "aws-app"}]


def test_sessions_share_one_loader_and_keep_no_whole_model_for_a_cut_client() -> None:
    first = session(("DescribeInstances",), **KEYS)
    first.client("ec2", endpoint_url=ENDPOINT)
    again = session(("DescribeInstances",), **{**KEYS, "aws_access_key_id": "AKIDOTHER"})
    again.client("ec2", endpoint_url=ENDPOINT)
    plain = session(**KEYS)
    assert first._loader is again._loader  # the cut models, made once
    assert first._loader._loader is plain._loader  # endpoints and the rest: one copy
    assert plain._loader.search_paths == list(dict.fromkeys(plain._loader.search_paths))


def _forget_ec2(shared: Any) -> None:
    """As if no client of EC2 had been made in this process yet."""
    for key in [k for k in shared._cache if any(str(part).startswith("ec2") for part in k)]:
        del shared._cache[key]
    awssession._some.clear()


def _whole_ec2_kept(shared: Any) -> list[Any]:
    return [k for k in shared._cache if k[:3] == ("load_service_model", "ec2", "service-2")
            or k[:2] == ("load_data_with_path", "ec2/2016-11-15/service-2")]


def test_the_model_is_cut_by_a_child_and_never_read_whole_here() -> None:
    shared = session(**KEYS)._loader
    _forget_ec2(shared)
    client = session(("DescribeInstances",), **KEYS).client("ec2", endpoint_url=ENDPOINT)
    assert client.meta.service_model.operation_names == ["DescribeInstances"]
    assert _whole_ec2_kept(shared) == []
    version = shared.determine_latest_version("ec2", "service-2")
    here = only_operations(shared.load_service_model("ec2", "service-2", version),
                           {"DescribeInstances"})
    assert cut_elsewhere(shared.search_paths, "ec2", version, {"DescribeInstances"}) == here


def test_without_the_child_the_model_is_cut_here_and_the_whole_one_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    shared = session(**KEYS)._loader
    _forget_ec2(shared)
    monkeypatch.setattr(awssession, "cut_elsewhere", lambda *args: None)
    client = session(("DescribeInstances",), **KEYS).client("ec2", endpoint_url=ENDPOINT)
    assert client.meta.service_model.operation_names == ["DescribeInstances"]
    assert _whole_ec2_kept(shared) == []


@pytest.fixture(autouse=True)
def _no_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
