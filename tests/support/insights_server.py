"""Logs Insights' API over loopback HTTP, answered by tests/support/logs_insights.py.

The log events come from the real log group in moto (FilterLogEvents), where
the consumer stack's rule delivered them; only the query language is this
repository's. It speaks the CloudWatch Logs JSON protocol for StartQuery,
GetQueryResults and StopQuery, as botocore sends them:

- StartQuery refuses a group that does not exist (ResourceNotFoundException)
  and a query :func:`~tests.support.logs_insights.parse` refuses
  (MalformedQueryException), and takes the window in epoch seconds;
- a query is ``Scheduled``, then ``Running`` for ``running_polls``
  GetQueryResults calls, then ends ``final_status`` (``Complete`` unless a
  test says otherwise), its results and ``statistics`` in their documented
  shape;
- StopQuery cancels a query (the ids stopped are kept in ``stopped``).
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Tuple

from tests.support import logs_insights


class InsightsServer:
    def __init__(self, logs_client: Any, running_polls: int = 1,
                 final_status: str = "Complete") -> None:
        self.logs, self.running_polls, self.final_status = logs_client, running_polls, final_status
        self.queries: Dict[str, Dict[str, Any]] = {}
        self.started: List[Tuple[str, str]] = []  # (query id, query text)
        self.stopped: List[str] = []
        self.calls: List[str] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> InsightsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def events(self, group: str, start_s: int, end_s: int) -> List[Tuple[int, str]]:
        out = []
        paginator = self.logs.get_paginator("filter_log_events")
        for page in paginator.paginate(logGroupName=group, startTime=start_s * 1000,
                                       endTime=end_s * 1000 + 999):
            out += [(int(e["timestamp"]), str(e["message"])) for e in page.get("events", ())]
        return out

    def handle(self, action: str, body: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        with self.lock:
            self.calls.append(action)
        if action == "StartQuery":
            group = body.get("logGroupName", "")
            found = self.logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
            if group not in [g["logGroupName"] for g in found]:
                return 400, {"__type": "ResourceNotFoundException",
                             "message": "The specified log group does not exist."}
            try:
                commands = logs_insights.parse(body["queryString"])
            except logs_insights.QuerySyntaxError as exc:
                return 400, {"__type": "MalformedQueryException", "message": str(exc)}
            answer = logs_insights.evaluate(
                commands, self.events(group, int(body["startTime"]), int(body["endTime"])))
            query_id = str(uuid.uuid4())
            with self.lock:
                self.queries[query_id] = {"answer": answer, "polls": 0, "status": "Scheduled"}
                self.started.append((query_id, body["queryString"]))
            return 200, {"queryId": query_id}
        if action == "GetQueryResults":
            query = self.queries.get(body.get("queryId", ""))
            if query is None:
                return 400, {"__type": "ResourceNotFoundException", "message": "no such query"}
            with self.lock:
                query["polls"] += 1
                if query["status"] not in ("Cancelled",):
                    query["status"] = ("Running" if query["polls"] <= self.running_polls
                                       else self.final_status)
                status = query["status"]
            stats = query["answer"]["statistics"]
            if status != "Complete":
                return 200, {"status": status, "results": [],
                             "statistics": {k: 0.0 for k in stats}}
            return 200, {"status": status, **query["answer"]}
        if action == "StopQuery":
            query_id = body.get("queryId", "")
            with self.lock:
                self.stopped.append(query_id)
                if query_id in self.queries:
                    self.queries[query_id]["status"] = "Cancelled"
            return 200, {"success": True}
        return 400, {"__type": "UnknownOperationException", "message": action}

    def _handler(self) -> type:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                action = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
                status, answer = server.handle(action, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


__all__ = ["InsightsServer"]
