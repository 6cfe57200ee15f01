"""Contract section 9 through the client and through a generic LRO poller (azure-core's
``LROPoller`` with ``OperationResourcePolling``, unchanged from PyPI)."""

from __future__ import annotations

from typing import Any

import pytest
from acceptd_client import Client, QueueTimedOut
from azure.core import PipelineClient
from azure.core.pipeline import PipelineResponse
from azure.core.polling import LROPoller
from azure.core.polling.base_polling import LROBasePolling, OperationResourcePolling
from azure.core.rest import HttpRequest

from tests.client.conftest import Serve


def _deserialize(response: PipelineResponse[Any, Any]) -> Any:
    return response.http_response.json()


def _polling() -> Any:
    return LROBasePolling(timeout=0.2, lro_algorithms=[OperationResourcePolling()])


def test_azure_lro_poller_gets_the_result_and_resumes_from_a_token(serve: Serve) -> None:
    service = serve()
    client: PipelineClient[HttpRequest, Any]
    with PipelineClient(base_url=service.url) as client:
        submit = HttpRequest(
            "POST", f"{service.url}/v1/echo", json={"lro": 1}, headers={"Prefer": "respond-async"}
        )
        pipeline: Any = client._pipeline  # the initial call, as generated SDKs make it
        first: PipelineResponse[HttpRequest, Any] = pipeline.run(submit)
        assert first.http_response.status_code == 202
        poller = LROPoller(client, first, _deserialize, _polling())
        token = poller.continuation_token()
        assert poller.result(timeout=15) == {"lro": 1}
        resumed: LROPoller[Any] = LROPoller.from_continuation_token(
            polling_method=_polling(),
            continuation_token=token,
            client=client,
            deserialization_callback=_deserialize,
        )
        assert resumed.result(timeout=15) == {"lro": 1}


def test_queue_timeout_fails_a_request_that_did_not_start(serve: Serve) -> None:
    service = serve(worker=False)
    with Client(service.url) as client:
        request = client.submit("echo", 1, queue_timeout=0.3)
        with pytest.raises(QueueTimedOut) as timed_out:
            request.result(timeout=3)
    assert timed_out.value.problem["type"] == "urn:acceptd:problem:queue-timeout"
    assert request.status == "failed"
