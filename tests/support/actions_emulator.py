"""A local Auto Scaling and CloudFormation for the calls bosky makes on a verdict.

moto implements neither CompleteLifecycleAction / RecordLifecycleActionHeartbeat
nor SignalResource, so this small server speaks both Query APIs over real HTTP
on loopback. It is strict where a real endpoint is strict, so a request that
would fail against AWS fails here too:

- every request must carry a SigV4 ``Authorization`` header whose credential
  scope names the service (``autoscaling`` or ``cloudformation``): that is
  also how the one server tells the two APIs apart;
- the operation, its required parameters, unknown parameters and each value's
  type and length are checked against botocore's own service model (loaded
  with ``botocore.loaders``), not against a hand-written list;
- a lifecycle action goes Pending:Wait -> Pending:Proceed on CONTINUE or
  Terminating on ABANDON; once completed, or when its heartbeat timeout has
  passed, a completion or heartbeat answers HTTP 400 ValidationError
  "No active Lifecycle Action found with instance ID ...", as AWS does;
- stack signals are recorded as received.

Tests read :attr:`completions`, :attr:`signals` and :attr:`requests`.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import botocore.loaders
import botocore.model

SERVICES = ("autoscaling", "cloudformation")
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")


class Refused(Exception):
    """An answer of HTTP ``status`` with an AWS Query error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclasses.dataclass
class Hook:
    name: str
    transition: str = "autoscaling:EC2_INSTANCE_LAUNCHING"
    heartbeat_timeout: float = 3600.0
    default_result: str = "ABANDON"


@dataclasses.dataclass
class Action:
    """One pending lifecycle action of one instance."""

    group: str
    hook: str
    instance_id: str
    token: str
    expires: float
    done: bool = False


@dataclasses.dataclass
class Request:
    service: str
    operation: str
    params: Dict[str, str]
    status: int = 200
    error: Optional[str] = None
    at: float = dataclasses.field(default_factory=time.time)  # when it arrived (epoch)


@dataclasses.dataclass
class Instance:
    group: str
    zone: str
    state: str = "Pending"


class _Models:
    """botocore's service models, loaded once per process."""

    _lock = threading.Lock()
    _cache: Dict[str, botocore.model.ServiceModel] = {}

    @classmethod
    def get(cls, service: str) -> botocore.model.ServiceModel:
        with cls._lock:
            if service not in cls._cache:
                loader = botocore.loaders.Loader()
                raw = loader.load_service_model(service, "service-2")
                cls._cache[service] = botocore.model.ServiceModel(raw, service_name=service)
            return cls._cache[service]


def validate(service: str, params: Mapping[str, str]) -> botocore.model.OperationModel:
    """The operation ``params`` call, checked against botocore's model of ``service``.

    Raises :class:`Refused` as AWS would: unknown action, wrong API version,
    a missing required parameter, an unknown one, a value of the wrong type
    or length.
    """
    model = _Models.get(service)
    name = params.get("Action", "")
    if name not in model.operation_names:
        raise Refused(400, "InvalidAction", f"Could not find operation {name} for version "
                      f"{params.get('Version')}")
    if params.get("Version") != model.api_version:
        raise Refused(400, "InvalidParameterValue",
                      f"Version {params.get('Version')} is not {model.api_version}")
    operation = model.operation_model(name)
    given = {k: v for k, v in params.items() if k not in ("Action", "Version")}
    shape = operation.input_shape
    members = shape.members if shape is not None else {}
    required = list(shape.required_members) if shape is not None else []
    for key in required:
        if not any(k == key or k.startswith(key + ".") for k in given):
            raise Refused(400, "ValidationError", f"1 validation error detected: Value null at "
                          f"'{key}' failed to satisfy constraint: Member must not be null")
    for key, value in given.items():
        top = key.split(".", 1)[0]
        if top not in members:
            raise Refused(400, "InvalidParameterValue", f"Unknown parameter {key}")
        _check_value(members[top], key, value)
    return operation


def _check_value(shape: botocore.model.Shape, key: str, value: str) -> None:
    kind = shape.type_name
    if kind in ("list", "structure", "map"):
        if kind == "list" and not re.fullmatch(rf"{re.escape(key.split('.', 1)[0])}\.member\.\d+",
                                               key):
            raise Refused(400, "InvalidParameterValue", f"{key}: not a list member")
        return  # members of a list: their own element shape is a string in every call here
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        raise Refused(400, "InvalidParameterValue", f"{key}: {value!r} is not an integer")
    if kind == "boolean" and value not in ("true", "false"):
        raise Refused(400, "InvalidParameterValue", f"{key}: {value!r} is not a boolean")
    if kind == "string":
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if (low is not None and len(value) < low) or (high is not None and len(value) > high):
            raise Refused(400, "ValidationError", f"1 validation error detected: Value at "
                          f"'{key}' failed to satisfy constraint: Member must have length "
                          f"between {low} and {high}")
        pattern = _python_pattern(shape.metadata.get("pattern"))
        if pattern and not re.fullmatch(pattern, value):
            raise Refused(400, "ValidationError", f"{key}: {value!r} does not match {pattern}")
        enum = shape.metadata.get("enum")
        if enum and value not in enum:
            raise Refused(400, "ValidationError", f"{key}: {value!r} is not one of {enum}")


def _python_pattern(pattern: Optional[str]) -> Optional[str]:
    """A model's Java-style pattern for Python: its surrogate-pair range means
    "any character beyond the BMP"."""
    if not pattern:
        return None
    return pattern.replace("\\uD800\\uDC00-\\uDBFF\\uDFFF", "\\U00010000-\\U0010FFFF")


class ActionsEmulator:
    """Auto Scaling groups with lifecycle hooks, and stacks that take signals."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._lock = threading.Lock()
        self.hooks: Dict[str, Dict[str, Hook]] = {}
        self.instances: Dict[str, Instance] = {}
        self.actions: List[Action] = []
        self.completions: List[Dict[str, str]] = []
        self.heartbeats: List[Dict[str, str]] = []
        self.signals: List[Dict[str, str]] = []
        self.stacks: Dict[str, List[str]] = {}
        self.requests: List[Request] = []
        self.denied: set[str] = set()  # operations answered AccessDenied (no IAM permission)
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- set-up ------------------------------------------------------------

    def add_group(self, name: str, hooks: Sequence[Hook] = ()) -> None:
        with self._lock:
            self.hooks[name] = {h.name: h for h in hooks}

    def launch(self, instance_id: str, group: str, zone: str = "us-east-1a") -> List[Action]:
        """The instance joins ``group``: one pending action per launch hook (Pending:Wait)."""
        with self._lock:
            hooks = [h for h in self.hooks[group].values()
                     if h.transition == "autoscaling:EC2_INSTANCE_LAUNCHING"]
            self.instances[instance_id] = Instance(group, zone,
                                                   "Pending:Wait" if hooks else "InService")
            made = [Action(group, h.name, instance_id, str(uuid.uuid4()),
                           time.monotonic() + h.heartbeat_timeout) for h in hooks]
            self.actions += made
            return made

    def add_stack(self, name: str, resources: Sequence[str]) -> None:
        with self._lock:
            self.stacks[name] = list(resources)

    def state(self, instance_id: str) -> str:
        with self._lock:
            self._expire()
            return self.instances[instance_id].state

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> ActionsEmulator:
        server = ThreadingHTTPServer((self.host, 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="actions-emulator",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ActionsEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def ops(self, operation: str) -> List[Request]:
        with self._lock:
            return [r for r in self.requests if r.operation == operation]

    # -- serving -------------------------------------------------------------

    def answer(self, headers: Mapping[str, str], body: bytes) -> Tuple[int, str, str]:
        """(HTTP status, service, XML body) for one request."""
        scope = _SCOPE.search(headers.get("Authorization", ""))
        service = scope.group(2) if scope else ""
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        record = Request(service, params.get("Action", ""), params)
        with self._lock:
            self.requests.append(record)
        try:
            if not scope or ("X-Amz-Date" not in headers and "x-amz-date" not in headers):
                raise Refused(403, "MissingAuthenticationToken",
                              "Request is missing Authentication Token")
            if service not in SERVICES:
                raise Refused(403, "InvalidClientTokenId", f"no such service {service!r}")
            validate(service, params)
            if record.operation in self.denied:
                raise Refused(403, "AccessDenied", f"User is not authorized to perform: "
                              f"{service}:{record.operation}")
            with self._lock:
                result = getattr(self, "_op_" + record.operation)(params)
        except Refused as exc:
            record.status, record.error = exc.status, f"{exc.code}: {exc.message}"
            return exc.status, service, _error_xml(service, exc)
        except AttributeError:
            exc = Refused(400, "InvalidAction", f"{record.operation} is not emulated")
            record.status, record.error = exc.status, f"{exc.code}: {exc.message}"
            return exc.status, service, _error_xml(service, exc)
        return 200, service, _result_xml(service, record.operation, result)

    def _expire(self) -> None:
        now = time.monotonic()
        for action in self.actions:
            if not action.done and now >= action.expires:
                action.done = True
                hook = self.hooks[action.group][action.hook]
                self._apply(action, hook.default_result)

    def _apply(self, action: Action, result: str) -> None:
        instance = self.instances[action.instance_id]
        pending = [a for a in self.actions if a.instance_id == action.instance_id and not a.done]
        if result == "ABANDON":
            instance.state = "Terminating"
        elif not pending:
            instance.state = "Pending:Proceed"

    def _active(self, params: Mapping[str, str]) -> Action:
        self._expire()
        group, hook = params["AutoScalingGroupName"], params["LifecycleHookName"]
        wanted_id, token = params.get("InstanceId"), params.get("LifecycleActionToken")
        for action in self.actions:
            if (not action.done and action.group == group and action.hook == hook
                    and (action.instance_id == wanted_id or action.token == token)):
                return action
        raise Refused(400, "ValidationError", "No active Lifecycle Action found with instance "
                      f"ID {wanted_id or token}")

    def _op_CompleteLifecycleAction(self, params: Mapping[str, str]) -> Dict[str, Any]:
        action = self._active(params)
        action.done = True
        self.completions.append(dict(params))
        self._apply(action, params["LifecycleActionResult"])
        return {}

    def _op_RecordLifecycleActionHeartbeat(self, params: Mapping[str, str]) -> Dict[str, Any]:
        action = self._active(params)
        action.expires = time.monotonic() + self.hooks[action.group][action.hook].heartbeat_timeout
        self.heartbeats.append(dict(params))
        return {}

    def _op_DescribeAutoScalingInstances(self, params: Mapping[str, str]) -> Dict[str, Any]:
        self._expire()
        wanted = [v for k, v in params.items() if k.startswith("InstanceIds.member.")]
        found = []
        for instance_id in wanted:
            inst = self.instances.get(instance_id)
            if inst is not None:
                found.append({"InstanceId": instance_id, "AutoScalingGroupName": inst.group,
                              "AvailabilityZone": inst.zone, "LifecycleState": inst.state,
                              "HealthStatus": "HEALTHY", "ProtectedFromScaleIn": "false"})
        return {"AutoScalingInstances": found}

    def _op_DescribeLifecycleHooks(self, params: Mapping[str, str]) -> Dict[str, Any]:
        group = params["AutoScalingGroupName"]
        if group not in self.hooks:
            raise Refused(400, "ValidationError", f"Group {group} not found")
        return {"LifecycleHooks": [
            {"LifecycleHookName": h.name, "AutoScalingGroupName": group,
             "LifecycleTransition": h.transition, "HeartbeatTimeout": str(int(h.heartbeat_timeout)),
             "DefaultResult": h.default_result} for h in self.hooks[group].values()]}

    def _op_SignalResource(self, params: Mapping[str, str]) -> Dict[str, Any]:
        stack = params["StackName"]
        if stack not in self.stacks:
            raise Refused(400, "ValidationError", f"Stack {stack} does not exist")
        if params["LogicalResourceId"] not in self.stacks[stack]:
            raise Refused(400, "ValidationError", f"Resource {params['LogicalResourceId']} "
                          f"does not exist in stack {stack}")
        self.signals.append(dict(params))
        return {}

    def _op_DescribeStackResource(self, params: Mapping[str, str]) -> Dict[str, Any]:
        stack, logical = params["StackName"], params["LogicalResourceId"]
        if stack not in self.stacks or logical not in self.stacks[stack]:
            raise Refused(400, "ValidationError", f"Resource {logical} does not exist for "
                          f"stack {stack}")
        return {"StackResourceDetail": {
            "StackName": stack, "LogicalResourceId": logical, "ResourceType":
            "AWS::AutoScaling::AutoScalingGroup", "LastUpdatedTimestamp": "2026-01-01T00:00:00Z",
            "ResourceStatus": "CREATE_IN_PROGRESS"}}


_NAMESPACES = {"autoscaling": "http://autoscaling.amazonaws.com/doc/2011-01-01/",
               "cloudformation": "http://cloudformation.amazonaws.com/doc/2010-05-15/"}


def _xml(value: Any) -> str:
    if isinstance(value, list):
        return "".join(f"<member>{_xml(v)}</member>" for v in value)
    if isinstance(value, dict):
        return "".join(f"<{k}>{_xml(v)}</{k}>" for k, v in value.items())
    return escape(str(value))


def _result_xml(service: str, operation: str, result: Mapping[str, Any]) -> str:
    return (f'<{operation}Response xmlns="{_NAMESPACES[service]}"><{operation}Result>'
            f"{_xml(result)}</{operation}Result><ResponseMetadata><RequestId>{uuid.uuid4()}"
            f"</RequestId></ResponseMetadata></{operation}Response>")


def _error_xml(service: str, exc: Refused) -> str:
    kind = "Receiver" if exc.status >= 500 else "Sender"
    return (f'<ErrorResponse xmlns="{_NAMESPACES.get(service, "")}"><Error><Type>{kind}</Type>'
            f"<Code>{escape(exc.code)}</Code><Message>{escape(exc.message)}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")


def _handler_for(emulator: ActionsEmulator) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, _, payload = emulator.answer(dict(self.headers.items()), body)
            data = payload.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
