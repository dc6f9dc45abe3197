"""The token client against a real control plane that stops answering (SIGSTOP): three timeouts in
a row make global limits avoid the token service for 1 s; an answer in between resets the count.

docs/flow-control.md, "Failure modes": "After three timeouts in a row the service is avoided for
1 s (a single late answer on a busy host only sends that one call to the local share)".
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import yaml

from opensergo.client.tokens import TokenClient
from opensergo.governance import Engine, load_rules
from opensergo.proto.flowcontrol.v1 import token_pb2 as tk
from tests.helpers import ControlPlaneProcess, put_object, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

APP = "token-timeouts"
RESOURCE = "GET:/t"
FT = "fault-tolerance.opensergo.io/v1alpha1"
STRATEGY = {
    "apiVersion": FT,
    "kind": "ConcurrencyLimitStrategy",
    "metadata": {"name": "global-50", "namespace": "default", "labels": {"app": APP}},
    "spec": {"maxConcurrency": 50, "limitMode": "Global"},
}
RULE = {
    "apiVersion": FT,
    "kind": "FaultToleranceRule",
    "metadata": {"name": "rule", "namespace": "default", "labels": {"app": APP}},
    "spec": {
        "targets": [{"targetResourceName": RESOURCE}],
        "strategies": [{"name": "global-50", "kind": "ConcurrencyLimitStrategy"}],
    },
}
# Generous, so that an answering control plane on a loaded host is never taken for a timeout.
TIMEOUT = 0.5


@pytest.fixture
def governed(control_plane: ControlPlaneProcess) -> Iterator[tuple[Engine, TokenClient]]:
    for body in (STRATEGY, RULE):
        response = put_object(control_plane, body)
        assert response.status_code in (200, 201), response.text
    tokens = TokenClient([control_plane.grpc_address], client_id="timeouts-test", timeout=TIMEOUT).start()
    engine = Engine()
    try:
        wait_until(lambda: tokens.usable, timeout=20, what="token service connected")
        # The service knows the limit once it grants a permit (else NO_RULE: limited locally).
        wait_until(lambda: _granted(tokens), timeout=20, what="the Global limit on the token service")
        result = load_rules(yaml.safe_dump_all([STRATEGY, RULE]), app=APP, engine=engine)
        assert not result.problems, result.problems
        engine.set_token_source(tokens)
        yield engine, tokens
    finally:
        assert control_plane.proc is not None
        control_plane.proc.send_signal(signal.SIGCONT)
        tokens.stop()
        engine.close()


def _granted(tokens: TokenClient) -> bool:
    key = ("default", APP, RESOURCE, "global-50")
    answer = tokens.request(key, "acquire", 1).result(timeout=10)
    if answer.code != tk.TokenResponse.OK or answer.granted != 1:
        return False
    tokens.request(key, "release", 1).result(timeout=10)
    return True


def call(engine: Engine) -> float:
    """One guarded call (admitted: the limit is far away); how long its entry took."""
    started = time.monotonic()
    engine.entry(RESOURCE).exit()
    return time.monotonic() - started


def test_three_consecutive_timeouts_avoid_the_token_service_for_one_second(
    control_plane: ControlPlaneProcess, governed: tuple[Engine, TokenClient]
) -> None:
    engine, tokens = governed
    assert control_plane.proc is not None
    pid = control_plane.proc
    assert call(engine) < TIMEOUT and tokens.usable  # answered: a permit from the service

    pid.send_signal(signal.SIGSTOP)  # the stream stays up; nothing is answered
    assert [call(engine) >= TIMEOUT for _ in range(2)] == [True, True]  # each waited, then local
    assert tokens.usable  # two timeouts are not three
    pid.send_signal(signal.SIGCONT)
    wait_until(lambda: call(engine) < TIMEOUT, timeout=10, what="an answer again")  # resets the count

    pid.send_signal(signal.SIGSTOP)
    assert [call(engine) >= TIMEOUT for _ in range(2)] == [True, True]
    assert tokens.usable  # 2 + 2 timeouts, but not 3 in a row
    assert call(engine) >= TIMEOUT  # the third in a row
    avoided_from = time.monotonic()
    assert not tokens.usable
    # While avoided, calls go straight to the local share: no wait on the (still silent) service.
    assert call(engine) < TIMEOUT / 2
    assert not tokens.usable
    wait_until(lambda: tokens.usable, timeout=10, interval=0.01, what="the service tried again")
    avoided = time.monotonic() - avoided_from
    print(f"\ntoken service avoided for {avoided * 1000:.0f} ms after 3 timeouts in a row")
    assert 0.8 <= avoided < 5  # 1 s (the upper bound only catches a hang)
    pid.send_signal(signal.SIGCONT)
    wait_until(lambda: call(engine) < TIMEOUT and tokens.usable, timeout=10, what="global again")
