"""The gateway health verdict (voicegw/sip/gateway_health.py): up after ``up_after``
answers in a row, down after ``down_after`` misses in a row, a 503 counts as a miss,
a broken run starts again; and, with hypothesis, that the verdict always equals the
last complete run of pings in the input sequence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from voicegw.sip.gateway_health import Changed, GatewayHealth, Health, HealthSettings

SETTINGS = HealthSettings(interval=1, timeout=1, down_after=3, up_after=2)


def test_up_then_down_then_up_with_the_thresholds() -> None:
    gateway = GatewayHealth(SETTINGS)
    assert gateway.state is Health.UNKNOWN and gateway.usable
    assert gateway.answered(200, 1.5) is None
    assert gateway.answered(404, 1.0) == Changed(Health.UNKNOWN, Health.UP)  # any answer is alive
    assert gateway.missed("timeout") is None and gateway.missed("timeout") is None
    assert gateway.answered(200, 1.0) is None  # the run of misses is broken
    for _ in range(2):
        assert gateway.missed("transport") is None
    assert gateway.answered(503, 2.0) == Changed(Health.UP, Health.DOWN)  # 503: cannot take calls
    assert not gateway.usable and (gateway.last_status, gateway.last_rtt_ms) == (503, 2.0)
    assert gateway.answered(200, 1.0) is None
    assert gateway.answered(200, 1.0) == Changed(Health.DOWN, Health.UP)
    assert gateway.pings == 10


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 4), st.integers(1, 4))
def test_the_verdict_is_the_last_run_long_enough(pings: list[bool], down_after: int, up_after: int) -> None:
    gateway = GatewayHealth(HealthSettings(down_after=down_after, up_after=up_after))
    expected = Health.UNKNOWN
    run, last = 0, None
    for answered in pings:
        if answered:
            gateway.answered(200, 1.0)
        else:
            gateway.missed("timeout")
        run = run + 1 if answered == last else 1
        last = answered
        if answered and run >= up_after:
            expected = Health.UP
        if not answered and run >= down_after:
            expected = Health.DOWN
        assert gateway.state is expected
