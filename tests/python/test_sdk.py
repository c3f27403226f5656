"""Herald driven by the official Python SDK (`svix` 2.9.1, pinned in requirements.txt).

Each test calls Herald only through the SDK's own methods, so a field name, a status code or a
response shape that the SDK cannot read fails here. One Herald process (the binary in
`$HERALD_BIN`, on 127.0.0.1:0 with a temporary data directory) serves the whole module; every
test makes its own application. Deliveries go to a receiver on 127.0.0.1 in this process.

Run by tests/python_sdk.rs; by hand: `HERALD_BIN=target/debug/herald
tests/python/.venv/bin/python -m unittest -v test_sdk` from tests/python.
"""

import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from svix.api import (
    ApplicationIn,
    ApplicationListOptions,
    ApplicationPatch,
    AppPortalAccessIn,
    ApplicationTokenExpireIn,
    BackgroundTaskListOptions,
    BulkExpungeContentsIn,
    BulkReplayIn,
    EndpointHeadersIn,
    EndpointHeadersPatchIn,
    EndpointIn,
    EndpointPatch,
    EndpointSecretRotateIn,
    EndpointUpsertIn,
    EnvironmentIn,
    EventExampleIn,
    EventTypeImportOpenApiIn,
    EventTypeIn,
    EventTypeListOptions,
    MessageAttemptListAttemptedMessagesOptions,
    MessageAttemptListByEndpointOptions,
    MessageAttemptListByMsgOptions,
    MessageGetOptions,
    MessageIn,
    MessageListOptions,
    MessagePrecheckIn,
    OperationalWebhookEndpointIn,
    RecoverIn,
    ReplayIn,
    Svix,
    SvixOptions,
)
from svix.api.errors.http_error import HttpError
from svix.api.errors.http_validation_error import HTTPValidationError
from svix.models import (
    AppUsageStatsIn,
    BackgroundTaskStatus,
    BackgroundTaskType,
    BulkExpungeStatus,
    MessageStatus,
)
from svix.webhooks import Webhook, WebhookVerificationError

TOKEN = "python-sdk-test-admin-token-0123456789abcdefghijklmnop"
# Every wait is bounded; this is generous for a shared, busy 2-core machine.
WAIT = 30.0


class Receiver:
    """An HTTP server on 127.0.0.1:0 that records every request and answers the status scripted
    for its path (200 by default)."""

    def __init__(self):
        self.requests = []
        self.status = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with outer.lock:
                    outer.requests.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                    status = outer.status.get(self.path, 200)
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]

    def url(self, name):
        return "%s/%s" % (self.base, name)

    def answer(self, name, status):
        with self.lock:
            self.status["/" + name] = status

    def at(self, name):
        with self.lock:
            return [r for r in self.requests if r["path"] == "/" + name]

    def wait_for(self, name, count):
        return eventually(
            "%d requests at /%s" % (count, name),
            lambda: (lambda got: got if len(got) >= count else None)(self.at(name)),
        )

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def eventually(what, check, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.1)


class Herald:
    """The real binary, started like tests/ui/harness.mjs does."""

    def __init__(self):
        binary = os.environ.get("HERALD_BIN") or os.path.join(
            os.path.dirname(__file__), "..", "..", "target", "debug", "herald"
        )
        self.data_dir = tempfile.mkdtemp(prefix="herald-pysdk-")
        env = dict(os.environ)
        env.update(
            {
                "RUST_LOG": "",
                "HERALD_LOG": "info",
                "HERALD_ADMIN_TOKEN": TOKEN,
                # The receiver is on loopback, which the SSRF guard refuses unless allowed.
                "HERALD_DELIVERY__ALLOWED_CIDRS": "127.0.0.0/8",
                # Retries within seconds, so a failing delivery settles while a test waits.
                "HERALD_DELIVERY__RETRY_SCHEDULE": "0.2,0.4",
                "HERALD_DELIVERY__REQUEST_TIMEOUT": "2",
            }
        )
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = []
        found = queue.Queue()

        def read_stderr():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
                if m:
                    found.put(m.group(1))
            found.put(None)

        threading.Thread(target=read_stderr, daemon=True).start()
        try:
            self.url = found.get(timeout=WAIT)
        except queue.Empty:
            self.url = None
        if self.url is None:
            self.stop()
            raise RuntimeError("herald did not start:\n" + "".join(self.log))

    def client(self, token=TOKEN):
        # No client-side retries: a 5xx must show up as the error it is.
        return Svix(token, SvixOptions(server_url=self.url, retry_schedule=[]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


WITH_CONTENT = MessageGetOptions(with_content=True)
# What Svix (and Herald) answer for a payload that is gone.
EXPUNGED = {"expired": True}
HERALD = None
RECEIVER = None


def setUpModule():
    global HERALD, RECEIVER
    RECEIVER = Receiver()
    HERALD = Herald()


def tearDownModule():
    if HERALD is not None:
        HERALD.stop()
    if RECEIVER is not None:
        RECEIVER.stop()


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def walk(page_of):
    """Every item of a paginated list, following `iterator` until `done`; also the page count."""
    items, iterator, pages = [], None, 0
    while True:
        page = page_of(iterator)
        pages += 1
        items.extend(page.data)
        if page.done:
            return items, pages
        assert page.iterator, "a page that is not done has an iterator"
        iterator = page.iterator
        assert pages < 100, "pagination does not end"


class SdkTest(unittest.TestCase):
    def setUp(self):
        # The SDK's synchronous client has no close(): its pooled sockets are left to the GC.
        warnings.simplefilter("ignore", ResourceWarning)
        self.svix = HERALD.client()

    def app(self, **kw):
        return self.svix.application.create(ApplicationIn(name=unique("app"), **kw))

    def endpoint(self, app_id, name, **kw):
        ep = self.svix.endpoint.create(app_id, EndpointIn(url=RECEIVER.url(name), **kw))
        return ep, self.svix.endpoint.get_secret(app_id, ep.id).key

    def assert_http_error(self, status, code, call):
        with self.assertRaises(HttpError) as cm:
            call()
        self.assertEqual(cm.exception.status_code, status, str(cm.exception))
        self.assertEqual(cm.exception.code, code)
        self.assertTrue(cm.exception.detail, "an error has a detail")
        return cm.exception

    def assert_validation_error(self, call):
        with self.assertRaises(HTTPValidationError) as cm:
            call()
        self.assertEqual(cm.exception.status_code, 422)
        self.assertTrue(cm.exception.detail, "a 422 lists what is wrong")
        for item in cm.exception.detail:
            self.assertTrue(item.loc and item.msg and item.type, item)
        return cm.exception

    def verified(self, secret, request):
        """The delivery's body, after the SDK's own verifier accepted its signature."""
        Webhook(secret).verify(request["body"], request["headers"])
        return json.loads(request["body"])

    def wait_task(self, task_id):
        return eventually(
            "background task %s to end" % task_id,
            lambda: (lambda t: t if t.status != BackgroundTaskStatus.RUNNING else None)(
                self.svix.background_task.get(task_id)
            ),
        )


class Applications(SdkTest):
    def test_create_get_list_update_delete(self):
        uid = unique("uid")
        app = self.svix.application.create(
            ApplicationIn(name="Acme", uid=uid, metadata={"tier": "gold"}, throttle_rate=50)
        )
        self.assertTrue(app.id.startswith("app_"))
        self.assertEqual((app.name, app.uid, app.metadata), ("Acme", uid, {"tier": "gold"}))
        self.assertEqual(self.svix.application.get(uid).id, app.id, "get by uid")
        self.assertEqual(self.svix.application.get(app.id).uid, uid, "get by id")

        patched = self.svix.application.patch(app.id, ApplicationPatch(name="Acme 2"))
        self.assertEqual((patched.name, patched.metadata), ("Acme 2", {"tier": "gold"}))
        self.assertGreaterEqual(patched.updated_at, app.updated_at)
        put = self.svix.application.upsert(app.id, ApplicationIn(name="Acme 3", uid=uid))
        self.assertEqual((put.id, put.name), (app.id, "Acme 3"))
        self.assertEqual(self.svix.application.get(uid).name, "Acme 3")

        same = self.svix.application.get_or_create(ApplicationIn(name="ignored", uid=uid))
        self.assertEqual((same.id, same.name), (app.id, "Acme 3"), "get_or_create finds it")
        new_uid = unique("uid")
        made = self.svix.application.get_or_create(ApplicationIn(name="New", uid=new_uid))
        self.assertEqual(made.uid, new_uid)
        self.assertEqual(
            self.svix.application.get_or_create(ApplicationIn(name="x", uid=new_uid)).id,
            made.id,
        )

        self.svix.application.delete(app.id)
        self.assert_http_error(404, "not_found", lambda: self.svix.application.get(app.id))
        self.assert_http_error(404, "not_found", lambda: self.svix.application.delete(app.id))

    def test_list_pagination_walks_every_app(self):
        made = {self.app().id for _ in range(5)}
        apps, pages = walk(
            lambda it: self.svix.application.list(ApplicationListOptions(limit=2, iterator=it))
        )
        ids = [a.id for a in apps]
        self.assertEqual(len(ids), len(set(ids)), "no app twice")
        self.assertTrue(made <= set(ids), "every app is listed")
        self.assertGreaterEqual(pages, 3)

    def test_conflict_and_validation_errors_are_typed(self):
        uid = unique("uid")
        self.svix.application.create(ApplicationIn(name="a", uid=uid))
        self.assert_http_error(
            409, "conflict", lambda: self.svix.application.create(ApplicationIn(name="b", uid=uid))
        )
        err = self.assert_validation_error(
            lambda: self.svix.application.create(ApplicationIn(name="a", uid="not a valid uid!"))
        )
        self.assertIn("uid", [str(p) for p in err.detail[0].loc])


class EventTypes(SdkTest):
    def test_create_list_and_import_openapi(self):
        name = unique("user") + ".created"
        et = self.svix.event_type.create(
            EventTypeIn(
                name=name,
                description="A user",
                group_name="users",
                feature_flags=["beta"],
                schemas={"1": {"type": "object", "examples": [{"id": "u1"}]}},
            )
        )
        self.assertEqual((et.name, et.group_name, et.feature_flags), (name, "users", ["beta"]))
        got = self.svix.event_type.get(name)
        self.assertEqual(got.schemas["1"]["type"], "object")
        listed, _ = walk(
            lambda it: self.svix.event_type.list(
                EventTypeListOptions(limit=1, iterator=it, with_content=True)
            )
        )
        self.assertIn(name, [e.name for e in listed])

        paid = unique("invoice") + ".paid"
        spec = {
            "openapi": "3.1.0",
            "info": {"title": "x", "version": "1"},
            "webhooks": {
                paid: {
                    "post": {
                        "description": "An invoice was paid",
                        "x-svix-group-name": "billing",
                        "requestBody": {
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"id": {"type": "string"}},
                                    }
                                }
                            }
                        },
                    }
                }
            },
        }
        dry = self.svix.event_type.import_openapi(EventTypeImportOpenApiIn(spec=spec, dry_run=True))
        self.assertEqual(dry.data.modified, [])
        self.assertEqual([e.name for e in dry.data.to_modify], [paid])
        self.assert_http_error(404, "not_found", lambda: self.svix.event_type.get(paid))
        out = self.svix.event_type.import_openapi(
            EventTypeImportOpenApiIn(spec_raw=json.dumps(spec))
        )
        self.assertEqual(out.data.modified, [paid])
        imported = self.svix.event_type.get(paid)
        self.assertEqual(
            (imported.description, imported.group_name), ("An invoice was paid", "billing")
        )
        self.assertEqual(imported.schemas["1"]["properties"]["id"]["type"], "string")


class Endpoints(SdkTest):
    def test_create_get_update_patch_secret_headers(self):
        app = self.app()
        ep = self.svix.endpoint.create(
            app.id,
            EndpointIn(
                url=RECEIVER.url(unique("ep")),
                description="orders",
                uid=unique("ep"),
                throttle_rate=7,
                channels=["eu"],
                event_types=["order.created"],
                headers={"X-Tenant": "acme"},
                metadata={"k": "v"},
            ),
        )
        self.assertTrue(ep.id.startswith("ep_"))
        got = self.svix.endpoint.get(app.id, ep.uid)
        self.assertEqual(
            (got.id, got.throttle_rate, got.channels, got.event_types, got.metadata),
            (ep.id, 7, ["eu"], ["order.created"], {"k": "v"}),
        )
        self.assertEqual(
            self.svix.endpoint.get_headers(app.id, ep.id).headers, {"X-Tenant": "acme"}
        )

        put = self.svix.endpoint.upsert(
            app.id, ep.id, EndpointUpsertIn(url=ep.url, description="orders v2", throttle_rate=9)
        )
        self.assertEqual((put.description, put.throttle_rate), ("orders v2", 9))
        self.assertFalse(put.channels, "PUT replaces: channels left out are cleared")
        patched = self.svix.endpoint.patch(
            app.id, ep.id, EndpointPatch(disabled=True, channels=["us"])
        )
        self.assertEqual(
            (patched.disabled, patched.channels, patched.description), (True, ["us"], "orders v2")
        )
        listed = self.svix.endpoint.list(app.id)
        self.assertEqual([e.id for e in listed.data], [ep.id])
        self.assertTrue(listed.done)

        first = self.svix.endpoint.get_secret(app.id, ep.id).key
        self.assertTrue(first.startswith("whsec_"))
        self.svix.endpoint.rotate_secret(app.id, ep.id, EndpointSecretRotateIn())
        second = self.svix.endpoint.get_secret(app.id, ep.id).key
        self.assertNotEqual(first, second)
        chosen = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        self.svix.endpoint.rotate_secret(app.id, ep.id, EndpointSecretRotateIn(key=chosen))
        self.assertEqual(self.svix.endpoint.get_secret(app.id, ep.id).key, chosen)

        self.svix.endpoint.set_headers(
            app.id, ep.id, EndpointHeadersIn(headers={"X-A": "1", "X-B": "2"})
        )
        self.svix.endpoint.patch_headers(
            app.id, ep.id, EndpointHeadersPatchIn(headers={"X-C": "3"}, delete_headers=["X-A"])
        )
        self.assertEqual(
            self.svix.endpoint.get_headers(app.id, ep.id).headers, {"X-B": "2", "X-C": "3"}
        )

        self.svix.endpoint.delete(app.id, ep.id)
        self.assert_http_error(404, "not_found", lambda: self.svix.endpoint.get(app.id, ep.id))

    def test_invalid_endpoint_is_a_validation_error(self):
        app = self.app()
        self.assert_validation_error(
            lambda: self.svix.endpoint.create(app.id, EndpointIn(url="not a url"))
        )
        self.assert_validation_error(
            lambda: self.svix.endpoint.create(
                app.id, EndpointIn(url=RECEIVER.url("x"), throttle_rate=70000)
            )
        )

    def test_send_example_and_stats(self):
        app = self.app()
        name = unique("ping")
        self.svix.event_type.create(
            EventTypeIn(
                name=name, description="d", schemas={"1": {"examples": [{"hello": "world"}]}}
            )
        )
        path = unique("example")
        ep, secret = self.endpoint(app.id, path)
        sent = self.svix.endpoint.send_example(app.id, ep.id, EventExampleIn(event_type=name))
        self.assertEqual(sent.event_type, name)
        (req,) = RECEIVER.wait_for(path, 1)
        self.assertEqual(self.verified(secret, req), {"hello": "world"})
        self.assertEqual(req["headers"]["webhook-id"], sent.id)
        stats = eventually(
            "the endpoint's stats to count the success",
            lambda: (lambda s: s if s.success == 1 else None)(
                self.svix.endpoint.get_stats(app.id, ep.id)
            ),
        )
        self.assertEqual((stats.fail, stats.pending, stats.sending, stats.canceled), (0, 0, 0, 0))


class Messages(SdkTest):
    def test_delivery_verifies_and_lists_with_filters(self):
        app = self.app()
        path = unique("rx")
        ep, secret = self.endpoint(app.id, path, headers={"X-Tenant": "acme"})
        ids = []
        for i in range(3):
            ids.append(
                self.svix.message.create(
                    app.id,
                    MessageIn(
                        event_type="order.created" if i < 2 else "order.paid",
                        payload={"i": i},
                        channels=["eu"] if i == 0 else None,
                        tags=["first"] if i == 0 else ["rest"],
                        event_id=unique("evt"),
                    ),
                ).id
            )
        got = RECEIVER.wait_for(path, 3)
        self.assertEqual(sorted(self.verified(secret, r)["i"] for r in got), [0, 1, 2])
        self.assertEqual(got[0]["headers"]["x-tenant"], "acme")
        forged = dict(got[0]["headers"], **{"webhook-signature": "v1,AAAA"})
        with self.assertRaises(WebhookVerificationError):
            Webhook(secret).verify(got[0]["body"], forged)

        msg = self.svix.message.get(app.id, ids[0], WITH_CONTENT)
        # SDK v2 asks for `with_content=false` unless told otherwise.
        self.assertEqual(self.svix.message.get(app.id, ids[0]).payload, {})
        self.assertEqual((msg.payload, msg.channels, msg.tags), ({"i": 0}, ["eu"], ["first"]))
        every, pages = walk(
            lambda it: self.svix.message.list(app.id, MessageListOptions(limit=1, iterator=it))
        )
        self.assertEqual(sorted(m.id for m in every), sorted(ids))
        self.assertEqual(pages, 3)
        by = lambda **kw: [
            m.id for m in self.svix.message.list(app.id, MessageListOptions(**kw)).data
        ]
        self.assertEqual(by(tag="first"), [ids[0]])
        self.assertEqual(by(channel="eu"), [ids[0]])
        self.assertEqual(by(event_types=["order.paid"]), [ids[2]])
        self.assertEqual(sorted(by(event_types=["order.created"])), sorted(ids[:2]))

        attempts = self.svix.message_attempt.list_by_msg(app.id, ids[0])
        self.assertEqual(len(attempts.data), 1)
        a = attempts.data[0]
        self.assertEqual(
            (a.status, a.response_status_code, a.endpoint_id), (MessageStatus.SUCCESS, 200, ep.id)
        )
        by_ep, _ = walk(
            lambda it: self.svix.message_attempt.list_by_endpoint(
                app.id,
                ep.id,
                MessageAttemptListByEndpointOptions(limit=2, iterator=it, with_msg=True),
            )
        )
        self.assertEqual(sorted(x.msg_id for x in by_ep), sorted(ids))
        self.assertTrue(all(x.msg is not None and x.msg.id == x.msg_id for x in by_ep), "with_msg")
        tagged = self.svix.message_attempt.list_by_msg(
            app.id,
            ids[0],
            MessageAttemptListByMsgOptions(status=MessageStatus.SUCCESS, endpoint_id=ep.id),
        )
        self.assertEqual(len(tagged.data), 1)

        one = self.svix.message_attempt.get(app.id, ids[0], a.id)
        self.assertEqual((one.id, one.msg_id, one.url), (a.id, ids[0], ep.url))
        sent_to = self.svix.message_attempt.list_attempted_messages(
            app.id,
            ep.id,
            MessageAttemptListAttemptedMessagesOptions(tag="first", with_content=True),
        )
        self.assertEqual(
            [(m.id, m.status, m.payload) for m in sent_to.data],
            [(ids[0], MessageStatus.SUCCESS, {"i": 0})],
        )
        dests = self.svix.message_attempt.list_attempted_destinations(app.id, ids[0])
        self.assertEqual([(d.id, d.status) for d in dests.data], [(ep.id, MessageStatus.SUCCESS)])

        self.svix.message_attempt.resend(app.id, ids[1], ep.id)
        again = RECEIVER.wait_for(path, 4)
        self.assertEqual(self.verified(secret, again[3])["i"], 1)
        self.assertEqual(len(self.svix.message_attempt.list_by_msg(app.id, ids[1]).data), 2)

        resent = self.svix.message_attempt.list_by_msg(app.id, ids[1]).data[0]
        self.svix.message_attempt.expunge_content(app.id, ids[1], resent.id)
        self.assertEqual(
            self.svix.message_attempt.get(app.id, ids[1], resent.id).response, "EXPUNGED"
        )
        self.svix.message.expunge_content(app.id, ids[0])
        self.assertEqual(
            self.svix.message.get(app.id, ids[0], WITH_CONTENT).payload,
            EXPUNGED,
            "content expunged",
        )
        self.assertEqual(self.svix.message.get(app.id, ids[2], WITH_CONTENT).payload, {"i": 2})
        self.assert_http_error(404, "not_found", lambda: self.svix.message.get(app.id, "msg_nope"))

    def test_idempotent_event_id_conflict(self):
        app = self.app()
        evt = unique("evt")
        self.svix.message.create(app.id, MessageIn(event_type="a.b", payload={}, event_id=evt))
        self.assert_http_error(
            409,
            "conflict",
            lambda: self.svix.message.create(
                app.id, MessageIn(event_type="a.b", payload={}, event_id=evt)
            ),
        )

    def test_deliver_at_inline_application_retention(self):
        uid = unique("inline")
        path = unique("later")
        later = datetime.now(timezone.utc) + timedelta(minutes=5)
        self.assert_http_error(404, "not_found", lambda: self.svix.application.get(uid))
        msg = self.svix.message.create(
            uid,
            MessageIn(
                event_type="a.b",
                payload={"x": 1},
                application=ApplicationIn(name="Inline", uid=uid),
                deliver_at=later,
                payload_retention_hours=2,
            ),
        )
        app = self.svix.application.get(uid)
        self.assertEqual(app.name, "Inline", "the inline application was created")
        self.assertIsNotNone(msg.deliver_at)
        self.assertLess(abs((msg.deliver_at - later).total_seconds()), 1)
        self.assertEqual(self.svix.message.get(uid, msg.id).deliver_at, msg.deliver_at)

        ep, _ = self.endpoint(app.id, path)
        self.svix.message.create(
            app.id,
            MessageIn(
                event_type="a.b", payload={"y": 1}, deliver_at=later, payload_retention_period=30
            ),
        )
        time.sleep(1.5)
        self.assertEqual(RECEIVER.at(path), [], "nothing is sent before deliver_at")

        self.assert_validation_error(
            lambda: self.svix.message.create(
                app.id,
                MessageIn(
                    event_type="a.b",
                    payload={},
                    payload_retention_hours=2,
                    payload_retention_period=3,
                ),
            )
        )
        self.assert_validation_error(
            lambda: self.svix.message.create(
                app.id,
                MessageIn(
                    event_type="a.b",
                    payload={},
                    deliver_at=datetime.now(timezone.utc) + timedelta(days=30),
                ),
            )
        )

    def test_precheck(self):
        app = self.app()
        pre = lambda **kw: self.svix.message.precheck(app.id, MessagePrecheckIn(**kw)).active
        self.assertFalse(pre(event_type="a.b"))
        self.endpoint(app.id, unique("pre"), event_types=["a.b"], channels=["eu"])
        self.assertTrue(pre(event_type="a.b", channels=["eu"]))
        self.assertFalse(pre(event_type="c.d"))
        self.assertFalse(pre(event_type="a.b", channels=["us"]))


class Expunge(SdkTest):
    def test_bulk_expunge_and_expunge_all(self):
        app = self.app()
        ids = [
            self.svix.message.create(app.id, MessageIn(event_type="a.b", payload={"n": n})).id
            for n in range(3)
        ]
        out = self.svix.message.bulk_expunge_content(
            app.id, BulkExpungeContentsIn(ids=[ids[0], "msg_nope"])
        )
        self.assertEqual(
            out.results,
            {ids[0]: BulkExpungeStatus.EXPUNGED, "msg_nope": BulkExpungeStatus.NOT_FOUND},
        )
        self.assertEqual(self.svix.message.get(app.id, ids[0], WITH_CONTENT).payload, EXPUNGED)
        self.assertEqual(self.svix.message.get(app.id, ids[1], WITH_CONTENT).payload, {"n": 1})
        task = self.svix.message.expunge_all_contents(app.id)
        self.assertEqual(task.task, BackgroundTaskType.APPLICATION_PURGE_CONTENT)
        eventually(
            "every payload to be expunged",
            lambda: all(
                self.svix.message.get(app.id, i, WITH_CONTENT).payload == EXPUNGED for i in ids
            ),
        )

    def test_expunge_all_contents_task_can_be_read(self):
        app = self.app()
        self.svix.message.create(app.id, MessageIn(event_type="a.b", payload={"n": 1}))
        task = self.svix.message.expunge_all_contents(app.id)
        done = self.wait_task(task.id)
        self.assertEqual(
            (done.task, done.status),
            (BackgroundTaskType.APPLICATION_PURGE_CONTENT, BackgroundTaskStatus.FINISHED),
        )


class Recovery(SdkTest):
    def test_recover_is_a_background_task(self):
        app = self.app()
        path = unique("flaky")
        RECEIVER.answer(path, 500)
        ep, secret = self.endpoint(app.id, path)
        since = datetime.now(timezone.utc) - timedelta(minutes=1)
        msg = self.svix.message.create(app.id, MessageIn(event_type="a.b", payload={"r": 1}))
        RECEIVER.wait_for(path, 3)  # the first try and two retries
        eventually(
            "the message to fail",
            lambda: self.svix.message_attempt.list_by_msg(
                app.id, msg.id, MessageAttemptListByMsgOptions(status=MessageStatus.FAIL)
            ).data,
        )
        RECEIVER.answer(path, 200)
        task = self.svix.endpoint.recover(app.id, ep.id, RecoverIn(since=since))
        self.assertEqual(task.task, BackgroundTaskType.ENDPOINT_RECOVER)
        got = RECEIVER.wait_for(path, 4)
        self.assertEqual(self.verified(secret, got[3]), {"r": 1})
        done = self.wait_task(task.id)
        self.assertEqual((done.id, done.status), (task.id, BackgroundTaskStatus.FINISHED))
        listed, _ = walk(
            lambda it: self.svix.background_task.list(
                BackgroundTaskListOptions(
                    limit=1, iterator=it, task=BackgroundTaskType.ENDPOINT_RECOVER
                )
            )
        )
        self.assertIn(task.id, [t.id for t in listed])
        self.assert_http_error(
            404, "not_found", lambda: self.svix.background_task.get("qtask_nope")
        )

    def test_bulk_replay_with_filters(self):
        app = self.app()
        path = unique("bulk")
        ep, secret = self.endpoint(app.id, path)
        since = datetime.now(timezone.utc) - timedelta(minutes=1)
        for tag in ("keep", "skip"):
            self.svix.message.create(
                app.id, MessageIn(event_type="a.b", payload={"t": tag}, tags=[tag])
            )
        RECEIVER.wait_for(path, 2)
        task = self.svix.endpoint.bulk_replay(app.id, ep.id, BulkReplayIn(since=since, tag="keep"))
        self.assertEqual(task.task, BackgroundTaskType.ENDPOINT_BULK_REPLAY)
        self.assertEqual(self.wait_task(task.id).status, BackgroundTaskStatus.FINISHED)
        got = RECEIVER.wait_for(path, 3)
        self.assertEqual(self.verified(secret, got[2]), {"t": "keep"})
        time.sleep(0.5)
        self.assertEqual(len(RECEIVER.at(path)), 3, "only the tagged message is replayed")

    def test_replay_missing_sends_what_a_disabled_endpoint_missed(self):
        app = self.app()
        path = unique("missed")
        ep, secret = self.endpoint(app.id, path, disabled=True)
        since = datetime.now(timezone.utc) - timedelta(minutes=1)
        msg = self.svix.message.create(app.id, MessageIn(event_type="a.b", payload={"m": 1}))
        time.sleep(1)
        self.assertEqual(RECEIVER.at(path), [])
        self.svix.endpoint.patch(app.id, ep.id, EndpointPatch(disabled=False))
        task = self.svix.endpoint.replay_missing(app.id, ep.id, ReplayIn(since=since))
        (req,) = RECEIVER.wait_for(path, 1)
        self.assertEqual(self.verified(secret, req), {"m": 1})
        self.assertEqual(req["headers"]["webhook-id"], msg.id)
        self.assertEqual(self.wait_task(task.id).status, BackgroundTaskStatus.FINISHED)


class Authentication(SdkTest):
    def test_app_portal_access_expire_all_logout(self):
        app = self.app()
        access = self.svix.authentication.app_portal_access(app.id, AppPortalAccessIn())
        self.assertTrue(access.url and access.token)
        portal = HERALD.client(access.token)
        self.assertEqual(portal.application.get(app.id).id, app.id)
        other = self.app()
        # Another application is hidden (404), an admin-only route refused (403).
        self.assert_http_error(404, "not_found", lambda: portal.application.get(other.id))
        self.assert_http_error(403, "forbidden", lambda: portal.application.delete(app.id))

        portal.authentication.logout()
        self.assert_http_error(401, "authentication_failed", lambda: portal.application.get(app.id))

        second = HERALD.client(
            self.svix.authentication.app_portal_access(app.id, AppPortalAccessIn()).token
        )
        self.assertEqual(second.application.get(app.id).id, app.id)
        self.svix.authentication.expire_all(app.id, ApplicationTokenExpireIn())
        self.assert_http_error(401, "authentication_failed", lambda: second.application.get(app.id))

    def test_a_wrong_token_is_refused(self):
        self.assert_http_error(
            401, "authentication_failed", lambda: HERALD.client("wrong-token").application.list()
        )


class Operational(SdkTest):
    def test_operational_webhook_endpoint_create_list(self):
        ops = self.svix.operational_webhook.endpoint
        ep = ops.create(
            OperationalWebhookEndpointIn(
                url=RECEIVER.url(unique("ops")), event_types=["endpoint.disabled"]
            )
        )
        self.assertEqual(ops.get(ep.id).event_types, ["endpoint.disabled"])
        self.assertIn(ep.id, [e.id for e in ops.list().data])
        self.assertTrue(ops.get_secret(ep.id).key.startswith("whsec_"))
        ops.delete(ep.id)
        self.assert_http_error(404, "not_found", lambda: ops.get(ep.id))


class Environment(SdkTest):
    def test_export_then_import(self):
        name = unique("env") + ".created"
        self.svix.event_type.create(EventTypeIn(name=name, description="exported", group_name="g"))
        env = self.svix.environment.export()
        self.assertIn(name, [e.name for e in env.event_types])
        self.assertEqual(env.connectors, [])
        other = unique("env") + ".imported"
        self.svix.environment.import_(
            EnvironmentIn(
                event_types=[EventTypeIn(name=other, description="imported", deprecated=True)]
            )
        )
        got = self.svix.event_type.get(other)
        self.assertEqual((got.description, got.deprecated), ("imported", True))

    def test_health(self):
        self.svix.health.get()


class Statistics(SdkTest):
    def test_usage_statistics_are_background_tasks(self):
        app = self.app()
        self.endpoint(app.id, unique("stats"), event_types=["stats.one"])
        for n in range(3):
            self.svix.message.create(app.id, MessageIn(event_type="stats.one", payload={"n": n}))
        now = datetime.now(timezone.utc)
        out = self.svix.statistics.aggregate_app_stats(
            AppUsageStatsIn(since=now - timedelta(hours=1), until=now + timedelta(minutes=1),
                            app_ids=[app.id])
        )
        done = self.wait_task(out.id)
        self.assertEqual(done.status, BackgroundTaskStatus.FINISHED, done)
        stats = done.data["appStats"]
        self.assertEqual([(s["appId"], s["messageDestinations"]) for s in stats], [(app.id, 3)])

        out = self.svix.statistics.aggregate_event_types()
        done = self.wait_task(out.id)
        self.assertEqual(done.status, BackgroundTaskStatus.FINISHED, done)
        mine = [e for e in done.data["event_types"] if e["appId"] == app.id]
        self.assertEqual(
            [(e["explicitlySubscribedEventTypes"], e["hasCatchAllEndpoint"]) for e in mine],
            [(["stats.one"], False)],
        )


if __name__ == "__main__":
    unittest.main()
