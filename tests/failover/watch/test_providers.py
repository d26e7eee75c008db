"""check_api against a lab of its own: EC2 in moto with IAM enforced, and the fake hcloud.

One lab for the module, on subnet 127.97. Every fault a test injects (a
frozen part, a revoked key, a blocked project, a killed server) is undone
before the test ends, so the order of the tests does not matter.
"""

from __future__ import annotations

import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from failover.aws import load_credentials
from failover.config import CONFIG_FILE_NAME, FailoverConfig, load_config
from failover.processes import is_alive, signal_tree
from failover.secretfiles import write_private
from failover.waiting import wait_for
from failover.watch.providers import ApiAnswer, Ec2ApiConfig, HcloudApiConfig, check_api
from infra.lab.layout import EC2_PART, HCLOUD_PART
from infra.lab.secrets import ec2_credentials_file
from infra.lab.status import lab_status
from infra.providers.lab_faults import LabFaults
from tests.conftest import RunningLab, own_lab

pytestmark = pytest.mark.lab  # every test here asks a lab's moto EC2 or hcloud fake

SUBNET = "127.97"
FROZEN_TIMEOUT = 0.5  # how long a look at a frozen part waits: short, the test pays it


lab = own_lab(SUBNET, "failover-test-providers-")  # its own: it kills and freezes parts


@pytest.fixture(scope="module")
def config(lab: RunningLab) -> FailoverConfig:
    return load_config(lab.lab.paths.root / CONFIG_FILE_NAME)


@pytest.fixture(scope="module")
def faults(lab: RunningLab) -> LabFaults:
    return LabFaults(lab.lab.paths.root)


def ec2(config: FailoverConfig) -> Ec2ApiConfig:
    api = config.sites["aws"].api
    assert isinstance(api, Ec2ApiConfig)
    return api


def hcloud(config: FailoverConfig) -> HcloudApiConfig:
    api = config.sites["hetzner"].api
    assert isinstance(api, HcloudApiConfig)
    return api


def look(api: Ec2ApiConfig | HcloudApiConfig, timeout: float = 2.0) -> ApiAnswer:
    return check_api(api, timeout)


def test_the_lab_config_points_the_controller_at_both_apis(
    lab: RunningLab, config: FailoverConfig
) -> None:
    assert ec2(config).endpoint_url == lab.layout.ec2_endpoint
    assert ec2(config).credentials_file == ec2_credentials_file(lab.lab.paths)
    assert hcloud(config).endpoint == f"http://{lab.layout.address('hetzner')}:5002/v1"
    assert config.watch.listen == f"{SUBNET}.0.1:8470"
    assert [str(v.source_address) for v in config.watch.vantage_points.values()] == [
        f"{SUBNET}.40.1", f"{SUBNET}.41.1",
    ]
    assert config.watch.accept_data_loss
    assert config.watch.webhook_secret_file is not None
    assert config.watch.webhook_secret_file.read_text().strip() == lab.secrets.webhook_secret
    text = (lab.lab.paths.root / CONFIG_FILE_NAME).read_text()
    for secret in (lab.secrets.hcloud_token, lab.secrets.hcloud_admin_token,
                   lab.secrets.webhook_secret):
        assert secret not in text


def test_both_apis_answer_up_with_the_sites_machines(config: FailoverConfig) -> None:
    assert look(ec2(config)) == ApiAnswer("up", "EC2 DescribeInstances: 1 instance", None)
    assert look(hcloud(config)) == ApiAnswer("up", "hcloud GET /servers: 1 server", None)


def test_looks_from_several_threads_at_once_all_answer(config: FailoverConfig) -> None:
    apis = [ec2(config), hcloud(config)] * 4
    with ThreadPoolExecutor(max_workers=len(apis)) as pool:
        answers = list(pool.map(look, apis))
    assert {a.status for a in answers} == {"up"}


@pytest.mark.parametrize("part, site", [(EC2_PART, "aws"), (HCLOUD_PART, "hetzner")])
def test_a_frozen_api_is_down_by_timeout_then_up_when_thawed(
    config: FailoverConfig, faults: LabFaults, part: str, site: str
) -> None:
    api = config.sites[site].api
    assert api is not None
    faults.freeze_process(part)
    try:
        answer = look(api, FROZEN_TIMEOUT)
    finally:
        faults.thaw_process(part)
    assert answer.status == "down"
    assert f"timed out after {FROZEN_TIMEOUT:g}s" in answer.detail
    assert wait_for(lambda: look(api).status == "up", timeout=10, what=f"{part} to answer",
                    retry_on=())


def test_freezing_the_site_freezes_its_api(config: FailoverConfig, faults: LabFaults) -> None:
    said = faults.freeze_site("hetzner")
    try:
        assert HCLOUD_PART in said
        answer = look(hcloud(config), FROZEN_TIMEOUT)
    finally:
        faults.thaw_site("hetzner")
    assert answer.status == "down"
    assert wait_for(lambda: look(hcloud(config)).status == "up", timeout=10, what="hcloud",
                    retry_on=())


def test_a_revoked_ec2_key_is_refused_and_a_new_one_restores(
    lab: RunningLab, config: FailoverConfig, faults: LabFaults
) -> None:
    before = load_credentials(ec2_credentials_file(lab.lab.paths))
    said = faults.revoke_api_credentials("aws")
    try:
        shown = before["aws_access_key_id"][-4:]
        assert said.startswith(f"{EC2_PART}: deleted access key …{shown} of IAM user")
        answer = look(ec2(config))
        assert answer == ApiAnswer(
            "refused", "EC2 DescribeInstances: AuthFailure (credentials refused)", "AuthFailure"
        )
        assert "no access key left" in faults.revoke_api_credentials("aws")
    finally:
        restored = faults.restore_api_credentials("aws")
    after = load_credentials(ec2_credentials_file(lab.lab.paths))
    assert after["aws_access_key_id"] != before["aws_access_key_id"]
    assert "new access key" in restored
    assert look(ec2(config)).status == "up"  # the file is read afresh at each look
    assert "still valid" in faults.restore_api_credentials("aws")
    for secret in (before["aws_secret_access_key"], after["aws_secret_access_key"]):
        assert secret not in said + restored


def test_a_blocked_hetzner_project_is_refused_until_unblocked(
    config: FailoverConfig, faults: LabFaults
) -> None:
    said = faults.revoke_api_credentials("hetzner")
    try:
        assert "blocked" in said
        answer = look(hcloud(config))
        assert (answer.status, answer.code) == ("refused", "forbidden")
        assert "credentials refused or account blocked" in answer.detail
    finally:
        faults.restore_api_credentials("hetzner")
    assert look(hcloud(config)).status == "up"


def test_lab_status_shows_the_apis_and_what_the_controller_would_get(
    lab: RunningLab, faults: LabFaults
) -> None:
    faults.revoke_api_credentials("hetzner")
    try:
        parts = {p["name"]: p for p in lab_status(lab.lab)["parts"]}
    finally:
        faults.restore_api_credentials("hetzner")
    assert parts[EC2_PART]["health"] == "ok"
    assert parts[EC2_PART]["detail"] == "1 instance"
    assert parts[HCLOUD_PART]["health"] == "ok"  # it answers; it is the account that refuses
    assert parts[HCLOUD_PART]["detail"].startswith("fake; forbidden")
    # The lab's own parts (every site's object store with TLS in front, the spare's
    # provider API, every site's etcd member), and each site's agent with the server
    # and app it runs.
    assert len(parts) == 20
    assert {f"{kind}@{site}" for kind in ("agent", "postgres", "app")
            for site in ("aws", "hetzner")} <= set(parts)
    assert {f"etcd@{site}" for site in ("aws", "hetzner", "spare")} <= set(parts)


def test_wrong_and_unreadable_credentials(
    lab: RunningLab, config: FailoverConfig, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.token"
    write_private(wrong, "not-the-token\n")
    answer = look(hcloud(config).model_copy(update={"token_file": wrong}))
    assert (answer.status, answer.code) == ("refused", "unauthorized")

    stranger = tmp_path / "stranger-credentials"
    write_private(stranger, "[default]\naws_access_key_id = AKIAUNKNOWN0000000\n"
                            "aws_secret_access_key = nope\n")
    answer = look(ec2(config).model_copy(update={"credentials_file": stranger}))
    assert (answer.status, answer.code) == ("refused", "AuthFailure")

    missing = look(ec2(config).model_copy(update={"credentials_file": tmp_path / "none"}))
    assert missing.status == "down"
    assert missing.detail.startswith("EC2 DescribeInstances: not asked: cannot read")
    open_to_all = tmp_path / "open.token"
    open_to_all.write_text(lab.secrets.hcloud_token)
    open_to_all.chmod(0o644)
    answer = look(hcloud(config).model_copy(update={"token_file": open_to_all}))
    assert answer.status == "down"
    assert "readable by others" in answer.detail
    assert lab.secrets.hcloud_token not in answer.detail


def test_nothing_listening_is_down(config: FailoverConfig) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, on our subnet
        sock.bind((f"{SUBNET}.3.1", 0))
        port = sock.getsockname()[1]
    answer = look(ec2(config).model_copy(update={"endpoint_url": f"http://{SUBNET}.3.1:{port}"}))
    assert answer.status == "down"
    assert "cannot connect" in answer.detail
    answer = look(hcloud(config).model_copy(
        update={"endpoint": f"http://{SUBNET}.3.1:{port}/v1"}))
    assert (answer.status, answer.code) == ("down", None)
    assert "cannot connect" in answer.detail


def test_a_killed_api_is_down_and_restore_site_brings_it_back_as_before(
    lab: RunningLab, config: FailoverConfig, faults: LabFaults
) -> None:
    state = lab.lab.state()
    assert state is not None
    old_key = load_credentials(ec2_credentials_file(lab.lab.paths))["aws_access_key_id"]
    for part in (EC2_PART, HCLOUD_PART):
        record = state.process(part)
        assert record is not None
        signal_tree(record, signal.SIGKILL)
        wait_for(lambda r=record: not is_alive(r), timeout=10, what=f"{part} to die",
                 retry_on=())
    assert look(ec2(config)).status == "down"
    assert look(hcloud(config)).status == "down"

    done = faults.restore_site("aws", "aws") + faults.restore_site("hetzner", "aws")
    assert any(line.startswith(f"{EC2_PART} started") for line in done), done
    assert any(line.startswith(f"{HCLOUD_PART} (fake) started") for line in done), done
    assert look(ec2(config)) == ApiAnswer("up", "EC2 DescribeInstances: 1 instance", None)
    assert look(hcloud(config)) == ApiAnswer("up", "hcloud GET /servers: 1 server", None)
    new_key = load_credentials(ec2_credentials_file(lab.lab.paths))["aws_access_key_id"]
    assert new_key != old_key  # a new account, a new key: the controller reads the file
    # The restarted EC2 enforces IAM as the first one did.
    assert "deleted access key" in faults.revoke_api_credentials("aws")
    try:
        assert look(ec2(config)).status == "refused"
    finally:
        faults.restore_api_credentials("aws")
    running = lab.lab.running_state()  # every part recorded runs: the new PIDs replaced the old
    assert {p.name for p in running.processes} >= {EC2_PART, HCLOUD_PART}
