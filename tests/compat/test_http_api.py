"""Dapr's workflow HTTP API, driven the way the Dapr docs drive it with curl, against a
workflow that runs in the real Python SDK worker.

The docs' sequence: start `OrderProcessingWorkflow` with instanceID=12345678 and a JSON
body, read it, pause, resume, raise the approval event, then terminate and purge. Every
call goes over plain HTTP (urllib); the worker is the module's `WorkflowRuntime`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from dapr.ext.workflow import DaprWorkflowContext, WorkflowActivityContext, WorkflowRuntime

from compat_helpers import WAIT_S

ORDER = {"Name": "Paperclips", "TotalCost": 99.95, "Quantity": 1}
WAITING = "waiting for approval"


def process_payment(ctx: WorkflowActivityContext, order: dict) -> str:
    return f"charged {order['TotalCost']} for {order['Quantity']} x {order['Name']}"


def order_processing_workflow(ctx: DaprWorkflowContext, order: dict):
    ctx.set_custom_status(WAITING)
    approval = yield ctx.wait_for_external_event("ApprovalEvent")
    if not approval.get("approval"):
        return {"status": "rejected"}
    receipt = yield ctx.call_activity(process_payment, input=order)
    ctx.set_custom_status("approved")
    return {"status": "approved", "receipt": receipt}


def register(runtime: WorkflowRuntime) -> None:
    runtime.register_workflow(order_processing_workflow, name="OrderProcessingWorkflow")
    runtime.register_activity(process_payment)


# ---- a tiny HTTP client ---------------------------------------------------------------


class Reply:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        assert self.headers.get("Content-Type") == "application/json", (self.status, dict(self.headers))
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:500]!r})"


def call(server, method: str, path: str, body: bytes | None = None) -> Reply:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}{path}", data=body, method=method
    )
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, error.read())


def post(server, path: str, body: bytes | None = None) -> Reply:
    return call(server, "POST", path, body)


def get_state(server, instance_id: str) -> dict:
    reply = call(server, "GET", f"/v1.0/workflows/dapr/{instance_id}")
    assert reply.status == 200, reply
    return reply.json()


def wait_for_status(server, instance_id: str, status: str) -> dict:
    deadline = time.monotonic() + WAIT_S
    while True:
        state = get_state(server, instance_id)
        if state["runtimeStatus"] == status:
            return state
        assert time.monotonic() < deadline, f"{instance_id} never became {status}: {state}"
        time.sleep(0.1)


def assert_accepted(reply: Reply) -> None:
    assert reply.status == 202, reply
    assert reply.json() == {}


def assert_not_found(reply: Reply, instance_id: str) -> None:
    assert reply.status == 404, reply
    assert reply.json() == {
        "errorCode": "ERR_INSTANCE_ID_NOT_FOUND",
        "message": f"unable to find workflow with the provided instance ID: {instance_id}",
    }


# ---- the docs' sequence -------------------------------------------------------------------


def test_start_pause_resume_raise_event_complete_and_purge(endure_server, runtime):
    server = endure_server
    started = post(
        server,
        "/v1.0/workflows/dapr/OrderProcessingWorkflow/start?instanceID=12345678",
        json.dumps(ORDER).encode(),
    )
    assert started.status == 202, started
    assert started.json() == {"instanceID": "12345678"}

    running = wait_for_status(server, "12345678", "RUNNING")
    assert running["instanceID"] == "12345678"
    assert running["workflowName"] == "OrderProcessingWorkflow"
    assert json.loads(running["properties"]["dapr.workflow.input"]) == ORDER
    assert running["properties"]["dapr.workflow.custom_status"] == WAITING
    assert "dapr.workflow.output" not in running["properties"]
    assert running["createdAt"].endswith("Z") and running["lastUpdatedAt"].endswith("Z")

    assert_accepted(post(server, "/v1.0/workflows/dapr/12345678/pause"))
    assert get_state(server, "12345678")["runtimeStatus"] == "SUSPENDED"
    assert_accepted(post(server, "/v1.0/workflows/dapr/12345678/resume"))
    assert get_state(server, "12345678")["runtimeStatus"] == "RUNNING"

    raised = post(
        server,
        "/v1.0/workflows/dapr/12345678/raiseEvent/ApprovalEvent",
        json.dumps({"approval": True}).encode(),
    )
    assert_accepted(raised)
    done = wait_for_status(server, "12345678", "COMPLETED")
    assert json.loads(done["properties"]["dapr.workflow.output"]) == {
        "status": "approved",
        "receipt": "charged 99.95 for 1 x Paperclips",
    }
    assert done["properties"]["dapr.workflow.custom_status"] == "approved"
    assert not any(key.startswith("dapr.workflow.failure.") for key in done["properties"])

    assert_accepted(post(server, "/v1.0/workflows/dapr/12345678/purge"))
    assert_not_found(call(server, "GET", "/v1.0/workflows/dapr/12345678"), "12345678")


def test_terminate_then_purge(endure_server, runtime):
    server = endure_server
    # The JS SDK speaks v1.0-beta1; both versions reach the same instances.
    started = post(
        server,
        "/v1.0-beta1/workflows/dapr/OrderProcessingWorkflow/start?instanceID=87654321",
        json.dumps(ORDER).encode(),
    )
    assert started.status == 202, started
    wait_for_status(server, "87654321", "RUNNING")

    purge_running = post(server, "/v1.0/workflows/dapr/87654321/purge")
    assert purge_running.status == 500, purge_running
    assert purge_running.json()["errorCode"] == "ERR_PURGE_WORKFLOW"

    assert_accepted(post(server, "/v1.0-beta1/workflows/dapr/87654321/terminate"))
    terminated = get_state(server, "87654321")
    assert terminated["runtimeStatus"] == "TERMINATED"
    assert "dapr.workflow.failure.error_type" not in terminated.get("properties", {})

    # A late approval must not revive a terminated instance.
    assert_accepted(
        post(server, "/v1.0/workflows/dapr/87654321/raiseEvent/ApprovalEvent", b'{"approval": true}')
    )
    time.sleep(1)
    assert get_state(server, "87654321")["runtimeStatus"] == "TERMINATED"

    assert_accepted(post(server, "/v1.0-beta1/workflows/dapr/87654321/purge"))
    assert_not_found(call(server, "GET", "/v1.0-beta1/workflows/dapr/87654321"), "87654321")
    assert_not_found(post(server, "/v1.0/workflows/dapr/87654321/terminate"), "87654321")


def test_instance_ids_are_checked_and_duplicates_refused(endure_server, runtime):
    server = endure_server
    bad = post(server, "/v1.0/workflows/dapr/OrderProcessingWorkflow/start?instanceID=not.valid", b"{}")
    assert bad.status == 400, bad
    assert bad.json() == {
        "errorCode": "ERR_INSTANCE_ID_INVALID",
        "message": "workflow instance ID 'not.valid' is invalid: "
        "only alphanumeric and underscore characters are allowed",
    }
    first = post(
        server,
        "/v1.0/workflows/dapr/OrderProcessingWorkflow/start?instanceID=dup-1",
        json.dumps(ORDER).encode(),
    )
    assert first.status == 202, first
    wait_for_status(server, "dup-1", "RUNNING")
    again = post(server, "/v1.0/workflows/dapr/OrderProcessingWorkflow/start?instanceID=dup-1", b"{}")
    assert again.status == 500, again
    body = again.json()
    assert body["errorCode"] == "ERR_START_WORKFLOW"
    assert body["message"].startswith("error starting workflow 'OrderProcessingWorkflow': "), body
    assert_accepted(
        post(server, "/v1.0/workflows/dapr/dup-1/raiseEvent/ApprovalEvent", b'{"approval": false}')
    )
    done = wait_for_status(server, "dup-1", "COMPLETED")
    assert json.loads(done["properties"]["dapr.workflow.output"]) == {"status": "rejected"}
