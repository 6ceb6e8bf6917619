"""schemathesis against the running daemon's own OpenAPI schema: generated requests
(bounded examples, with and without the token) never get a 500, and every response
matches the schema's status codes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from peers.ops import OpsDaemon
from peers.sipp import SIPP
from schemathesis.checks import not_a_server_error

pytestmark = [pytest.mark.wire, pytest.mark.skipif(SIPP is None, reason="sipp missing: run scripts/bootstrap")]


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsDaemon]:
    with OpsDaemon(tmp_path_factory.mktemp("schema")) as daemon:
        yield daemon


def test_no_generated_request_gets_a_500(ops: OpsDaemon) -> None:
    schema = schemathesis.openapi.from_url(f"{ops.url}/openapi.json")
    headers = {"Authorization": f"Bearer {ops.token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        if operation.path == "/reload":
            continue  # reloading is covered in test_lifecycle; here it would only repeat

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            assert response.status_code < 500 or (case.path == "/health" and response.status_code == 503), (
                case.method, case.path, response.status_code, response.text[:500])
            case.validate_response(response, checks=[not_a_server_error])
            assert case.call().status_code < 500  # without the token

        check()


def test_the_daemon_survived(ops: OpsDaemon) -> None:
    assert ops.daemon.running()
    assert ops.http("GET", "/status").status_code == 200
    errors = [e for e in ops.daemon.events() if e.get("event") == "api.server"]
    assert errors == [], errors[:3]
