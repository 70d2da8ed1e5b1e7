"""Drives a Drover scheduler with the `marathon` package from PyPI (marathon-python 0.13.0),
unchanged, as users' tools would: create, list, get, scale, list tasks, kill tasks,
deployments, queue, versions, info, leader, errors and the event stream.

Its models are strict (they raise on any key they do not know), so every answer parsing here
proves a response shape. Usage: python marathon_client.py http://127.0.0.1:8080 [more URLs]
Prints "ok" and exits 0 when every check held; a failed check raises.

With DROVER_TLS_CERT, DROVER_TLS_KEY and DROVER_TLS_CA set (an operator's certificate, its
key, the cluster's CA) it talks HTTPS with mutual TLS, through the client's own `session`,
`sse_session` and `verify` parameters, as a user's tool would.
"""

import collections
import collections.abc
import os
import sys
import threading
import time

# marathon-python 0.13.0 uses collections.Iterable, which Python 3.10 removed; this alias is
# the only thing added (scheduler/MARATHON.md, section 0). The package itself is unchanged.
collections.Iterable = collections.abc.Iterable

import requests  # noqa: E402
from marathon import MarathonClient  # noqa: E402
from marathon.exceptions import ConflictError, MarathonHttpError, NotFoundError  # noqa: E402
from marathon.models import MarathonApp, MarathonConstraint  # noqa: E402
from marathon.models.events import MarathonEvent  # noqa: E402

DEADLINE_SECONDS = 60
APP = "/py/web"


def wait(what, check):
    """Polls `check` until it returns something true; fails after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (NotFoundError, MarathonHttpError) as e:
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def follow(client, seen):
    """Collects the event stream's events (parsed by the client's own classes)."""
    for event in client.event_stream():
        assert isinstance(event, MarathonEvent), event
        seen.append(event)


def tls_options():
    """The client's keyword arguments for mutual TLS, from the environment (none if unset)."""
    cert, key, ca = (os.environ.get(k) for k in ("DROVER_TLS_CERT", "DROVER_TLS_KEY", "DROVER_TLS_CA"))
    if not cert:
        return {}
    session, sse_session = requests.Session(), requests.Session()
    session.cert = sse_session.cert = (cert, key)
    return {"session": session, "sse_session": sse_session, "verify": ca}


def main():
    client = MarathonClient(sys.argv[1:], timeout=10, **tls_options())
    assert client.ping().strip() == b"pong", client.ping()
    info = client.get_info()
    assert info.framework_id, info
    assert client.get_leader(), "a leader is named"

    seen = []
    threading.Thread(target=follow, args=(client, seen), daemon=True).start()
    wait("the event stream", lambda: any(e.event_type == "event_stream_attached" for e in seen))

    app = MarathonApp(
        cmd="sleep 1000",
        instances=2,
        cpus=0.05,
        mem=16,
        constraints=[MarathonConstraint("hostname", "GROUP_BY")],
        labels={"team": "py"},
    )
    created = client.create_app(APP, app)
    assert created and created.id == APP, created
    try:
        client.create_app(APP, app)
        raise AssertionError("a second create of one id must be refused")
    except ConflictError:
        pass
    try:
        client.get_app("/py/nothing")
        raise AssertionError("an unknown app must be 404")
    except NotFoundError:
        pass

    assert APP in [a.id for a in client.list_apps()]
    assert [a.id for a in client.list_apps(label="team==py")] == [APP]
    assert client.list_apps(app_id="nothing-like-it") == []

    running = wait("2 running", lambda: client.get_app(APP).tasks_running == 2 or None)
    tasks = client.list_tasks(APP)
    assert len(tasks) == 2, tasks
    for t in tasks:
        assert t.app_id == APP and t.started_at is not None and t.host, t
    assert len(client.list_endpoints()) >= 2

    client.scale_app(APP, instances=3)
    wait("3 running", lambda: client.get_app(APP).tasks_running == 3 or None)
    wait("no deployment", lambda: client.list_deployments() == [] or None)

    # Killed with scale: the app wants one fewer.
    victim = client.list_tasks(APP)[0].id
    result = client.kill_task(APP, victim, scale=True)
    assert "deploymentId" in result, result
    wait("2 instances", lambda: client.get_app(APP).instances == 2 and client.get_app(APP).tasks_running == 2 or None)

    # Killed without scale: relaunched.
    before = {t.id for t in client.list_tasks(APP)}
    assert client.kill_given_tasks([sorted(before)[0]])
    wait(
        "a replacement",
        lambda: (lambda now: len(now) == 2 and now != before and all(t.state == "TASK_RUNNING" for t in client.list_tasks(APP)))(
            {t.id for t in client.list_tasks(APP)}
        )
        or None,
    )

    versions = client.list_versions(APP)
    assert versions, versions
    old = client.get_version(APP, versions[-1])
    assert old.id == APP and old.instances == 2, old
    assert isinstance(client.list_queue(), list)

    client.restart_app(APP)
    wait("the restart", lambda: client.list_deployments() == [] and client.get_app(APP).tasks_running == 2 or None)

    client.delete_app(APP, force=True)
    wait("the app gone", lambda: not [a for a in client.list_apps() if a.id == APP])

    kinds = {e.event_type for e in seen}
    for kind in ["api_post_event", "status_update_event", "deployment_info", "deployment_success", "app_terminated_event"]:
        wait(f"a {kind} event", lambda kind=kind: kind in {e.event_type for e in seen})
    print("ok", sorted(kinds))


if __name__ == "__main__":
    main()
