"""Drives Drover's masters with real Mesos clients from PyPI, unchanged, as Mesos frameworks
would: pymesos 0.3.15 (`MesosSchedulerDriver`) and mesoshttp 0.4.2 (`MesosClient`).

Usage:
  python mesos_clients.py pymesos  MASTER[,MASTER...]
  python mesos_clients.py mesoshttp MASTER[,MASTER...]
  python mesos_clients.py operator MASTER[,MASTER...]
  python mesos_clients.py pymesos-executor MASTER[,MASTER...] EXECUTOR_SCRIPT

The first master given should be a follower: subscribing goes through its redirect.

pymesos: launches command tasks on offers and sees them RUNNING and FINISHED (acknowledged by
the driver's implicit acknowledgements), reconciles explicitly and implicitly, kills a task the
master does not know, then prints "kill-leader" and waits for a line on stdin: the test has
SIGKILLed the leading master. The framework, as a user's framework with several master
addresses does, points the driver at the next address when it is disconnected; it must
re-register under the same framework id, find its long task RUNNING by reconciliation, kill it,
and launch one more task on the new leader. It then tears down.

mesoshttp: subscribes, launches one task, sees it FINISHED (the client acknowledges), and tears
down.

operator: pymesos's `MesosOperatorMasterDriver` subscribes to the operator event stream through
a follower's redirect and reads the cluster with the operator API's calls, while a pymesos
scheduler in the same script runs one task: the operator sees FRAMEWORK_ADDED, TASK_ADDED and
TASK_UPDATED (RUNNING, then FINISHED), and the calls' answers name the framework, the task
and the agent.

pymesos-executor: a pymesos scheduler launches a task on one agent with a custom executor
(EXECUTOR_SCRIPT, a pymesos `MesosExecutorDriver`, see mesos_executor.py) and the task data it
carries: the task is RUNNING (its updates naming the executor) and the executor's framework
message "hello <task> <data>" arrives. It then prints "restart-agent" and waits for a line on
stdin: the test has SIGKILLed the agent and started it again. A second task goes to the same
run of the executor, which subscribed again; then a task group of two (LAUNCH_GROUP), which
the executor gets together (each of its tasks says "group <task> of 2"); the scheduler's messages "finish <task>" (sent
again until they work: messages are best effort) make the executor finish both; once idle,
the agent shuts the executor down and the scheduler hears executorLost with its status. It
then tears down.

Prints "ok" and exits 0 when every check held; a failed check raises.
"""

import getpass
import logging
import os
import pwd
import sys
import threading
import time
import uuid

DEADLINE_SECONDS = 60
TASK_RESOURCES = [
    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
    {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
]


def wait(what, check, deadline=DEADLINE_SECONDS):
    """Polls `check` until it returns something true; fails after the deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def task_info(name, command, agent_id):
    return {
        "name": name,
        "task_id": {"value": f"{name}-{uuid.uuid4()}"},
        "agent_id": agent_id,
        "resources": TASK_RESOURCES,
        "command": {"value": command, "shell": True},
    }


def run_pymesos(masters):
    from pymesos import MesosSchedulerDriver, Scheduler

    class Framework(Scheduler):
        def __init__(self):
            self.lock = threading.Lock()
            self.to_launch = []  # (name, command)
            self.launched = {}  # name -> task id
            self.updates = []  # every status dict, in order
            self.registered_ids = []
            self.reregistrations = 0
            self.disconnects = 0
            self.errors = []
            self.master_index = 0

        def registered(self, driver, framework_id, master_info):
            with self.lock:
                self.registered_ids.append(framework_id["value"])

        def reregistered(self, driver, master_info):
            with self.lock:
                self.reregistrations += 1

        def disconnected(self, driver):
            # As a framework given several masters does: try the next one. A follower
            # redirects to the leader.
            with self.lock:
                self.disconnects += 1
                self.master_index = (self.master_index + 1) % len(masters)
                nxt = masters[self.master_index]
            driver.change_master(nxt)

        def resourceOffers(self, driver, offers):
            for offer in offers:
                with self.lock:
                    todo = self.to_launch.pop(0) if self.to_launch else None
                if todo is None:
                    driver.declineOffer(offer["id"], filters={"refuse_seconds": 1})
                    continue
                name, command = todo
                info = task_info(name, command, offer["agent_id"])
                with self.lock:
                    self.launched[name] = info["task_id"]["value"]
                driver.launchTasks(offer["id"], [info], filters={"refuse_seconds": 1})

        def statusUpdate(self, driver, status):
            with self.lock:
                self.updates.append(status)

        def error(self, driver, message):
            with self.lock:
                self.errors.append(message)

    fw = Framework()

    def launch(name, command):
        with fw.lock:
            fw.to_launch.append((name, command))
        driver.reviveOffers()
        return wait(f"{name} launched", lambda: fw.launched.get(name))

    def states_of(task_id, reliable=None):
        with fw.lock:
            return [
                u["state"]
                for u in fw.updates
                if u["task_id"]["value"] == task_id
                and (reliable is None or ("uuid" in u) == reliable)
            ]

    def saw(task_id, state, reliable=None):
        return wait(f"{state} of {task_id}", lambda: state in states_of(task_id, reliable))

    def update_of(task_id, reason):
        def find():
            with fw.lock:
                for u in fw.updates:
                    if u["task_id"]["value"] == task_id and u.get("reason") == reason:
                        return u
            return None

        return wait(f"an update of {task_id} with {reason}", find)

    framework = {
        "user": getpass.getuser(),
        "name": "pymesos-on-drover",
        "capabilities": [{"type": "PARTITION_AWARE"}],
        "failover_timeout": 300,
    }
    driver = MesosSchedulerDriver(fw, framework, masters[0], use_addict=False)
    driver.start()
    framework_id = wait("registered", lambda: fw.registered_ids and fw.registered_ids[0])

    # Tasks run and finish; each reliable update carries agent_id and is acknowledged by the
    # driver (a refused acknowledgement would stop it).
    short = [launch(f"short{i}", "echo hello from pymesos") for i in range(2)]
    for t in short:
        saw(t, "TASK_RUNNING", reliable=True)
        saw(t, "TASK_FINISHED", reliable=True)
    with fw.lock:
        for u in fw.updates:
            if "uuid" in u:
                assert "agent_id" in u, u
                assert u.get("source") in ("SOURCE_EXECUTOR", "SOURCE_AGENT", "SOURCE_MASTER"), u

    long_task = launch("long", "sleep 600")
    saw(long_task, "TASK_RUNNING", reliable=True)

    # Explicit reconciliation: an update without uuid, REASON_RECONCILIATION.
    driver.reconcileTasks([{"task_id": {"value": long_task}}])
    u = update_of(long_task, "REASON_RECONCILIATION")
    assert u["state"] == "TASK_RUNNING" and "uuid" not in u, u
    # Implicit reconciliation: every live task, the long one among them.
    with fw.lock:
        before = len(fw.updates)
    driver.reconcileTasks([])
    wait(
        "implicit reconciliation",
        lambda: any(
            u["task_id"]["value"] == long_task and u.get("reason") == "REASON_RECONCILIATION"
            for u in fw.updates[before:]
        ),
    )

    # A kill of a task the master does not know: TASK_UNKNOWN (partition-aware).
    ghost = f"ghost-{uuid.uuid4()}"
    driver.killTask({"value": ghost})
    saw(ghost, "TASK_UNKNOWN", reliable=False)

    # The leading master dies.
    print("kill-leader", flush=True)
    line = sys.stdin.readline()
    assert line.strip() == "killed", line
    wait("disconnected", lambda: fw.disconnects > 0)
    wait("re-registered with the new leader", lambda: fw.reregistrations > 0, deadline=90)
    assert fw.registered_ids == [framework_id], fw.registered_ids

    with fw.lock:
        before = len(fw.updates)
    driver.reconcileTasks([{"task_id": {"value": long_task}}])
    wait(
        "the long task RUNNING after the failover",
        lambda: any(
            u["task_id"]["value"] == long_task
            and u["state"] == "TASK_RUNNING"
            and u.get("reason") == "REASON_RECONCILIATION"
            for u in fw.updates[before:]
        ),
    )
    driver.killTask({"value": long_task})
    saw(long_task, "TASK_KILLED", reliable=True)

    after = launch("after", "echo after the failover")
    saw(after, "TASK_FINISHED", reliable=True)

    assert not fw.errors, fw.errors
    driver.stop()  # TEARDOWN
    driver.join()
    print(f"ok framework {framework_id}: {len(fw.updates)} updates")


def run_mesoshttp(masters):
    from mesoshttp.client import MesosClient

    seen = {"states": [], "task": None, "errors": []}
    client = MesosClient(mesos_urls=[f"http://{m}" for m in masters], frameworkName="mesoshttp-on-drover")

    def subscribed(driver):
        seen["driver"] = driver

    def offers(offers):
        for offer in offers:
            o = offer.get_offer()
            if seen["task"] is None:
                info = task_info("mh", "echo hello from mesoshttp", o["agent_id"])
                # mesoshttp adds "slave_id" beside agent_id: Drover ignores it.
                seen["task"] = info["task_id"]["value"]
                offer.accept([info])
            else:
                offer.decline()

    def update(update):
        status = update["status"]
        if status["task_id"]["value"] == seen["task"]:
            seen["states"].append(status["state"])
            if status["state"] == "TASK_FINISHED":
                seen["driver"].tearDown()
                client.tearDown()

    def error(message):
        seen["errors"].append(message)

    client.on(MesosClient.SUBSCRIBED, subscribed)
    client.on(MesosClient.OFFERS, offers)
    client.on(MesosClient.UPDATE, update)
    client.on(MesosClient.ERROR, error)
    runner = threading.Thread(target=client.register, daemon=True)
    runner.start()
    wait("TASK_FINISHED through mesoshttp", lambda: "TASK_FINISHED" in seen["states"])
    assert "TASK_RUNNING" in seen["states"], seen["states"]
    assert not seen["errors"], seen["errors"]
    # The teardown closes the stream; the client's loop ends.
    runner.join(DEADLINE_SECONDS)
    assert not runner.is_alive(), "mesoshttp's loop did not end after the teardown"
    print(f"ok mesoshttp: {seen['states']}")


def run_operator(masters):
    from pymesos import MesosOperatorMasterDriver, MesosSchedulerDriver, OperatorMaster, Scheduler

    class Operator(OperatorMaster):
        def __init__(self):
            self.lock = threading.Lock()
            self.seen = []  # (kind, payload)

        def _add(self, kind, payload):
            with self.lock:
                self.seen.append((kind, payload))

        def taskAdded(self, task_info):
            self._add("task_added", task_info)

        def taskUpdated(self, task_info):
            self._add("task_updated", task_info)

        def frameworkAdded(self, framework_info):
            self._add("framework_added", framework_info)

        def frameworkUpdated(self, framework_info):
            self._add("framework_updated", framework_info)

        def frameworkRemoved(self, framework_info):
            self._add("framework_removed", framework_info)

        def agentAdded(self, agent_info):
            self._add("agent_added", agent_info)

        def agentRemoved(self, agent_id):
            self._add("agent_removed", agent_id)

    op = Operator()
    operator = MesosOperatorMasterDriver(masters[0], op)
    operator.start()
    # Calls follow the follower's redirect to the leader.
    assert operator.getHealth()["get_health"]["healthy"] is True
    assert operator.getVersion()["get_version"]["version_info"]["version"] == "1.11.0"
    agents = operator.getAgents()["get_agents"]["agents"]
    assert agents and agents[0]["active"] is True, agents
    # The event stream is open once the operator's connection has subscribed.
    wait("the operator subscribed", lambda: operator.connected)

    class OneTask(Scheduler):
        def __init__(self):
            self.task = None
            self.states = []

        def resourceOffers(self, driver, offers):
            for offer in offers:
                if self.task is None:
                    info = task_info("op", "sleep 1", offer["agent_id"])
                    self.task = info["task_id"]["value"]
                    driver.launchTasks(offer["id"], [info])
                else:
                    driver.declineOffer(offer["id"], filters={"refuse_seconds": 60})

        def statusUpdate(self, driver, status):
            self.states.append(status["state"])

    sched = OneTask()
    framework = {"user": getpass.getuser(), "name": "operated-by-pymesos"}
    driver = MesosSchedulerDriver(sched, framework, masters[0], use_addict=False)
    driver.start()
    wait("the task finished", lambda: "TASK_FINISHED" in sched.states)

    def kinds():
        with op.lock:
            return [k for k, _ in op.seen]

    wait("FRAMEWORK_ADDED", lambda: "framework_added" in kinds())
    wait("TASK_ADDED", lambda: "task_added" in kinds())
    wait(
        "TASK_UPDATED to FINISHED",
        lambda: any(k == "task_updated" and p["state"] == "TASK_FINISHED" for k, p in op.seen),
    )
    with op.lock:
        added = next(p for k, p in op.seen if k == "task_added")
        framework_added = next(p for k, p in op.seen if k == "framework_added")
    assert added["task_id"]["value"] == sched.task, added
    assert framework_added["framework_info"]["name"] == "operated-by-pymesos", framework_added

    tasks = operator.getTasks()["get_tasks"]
    done = [t["task_id"]["value"] for t in tasks.get("completed_tasks", [])]
    assert sched.task in done, tasks
    state = operator.getState()["get_state"]
    names = [f["framework_info"]["name"] for f in state["get_frameworks"].get("frameworks", [])]
    assert "operated-by-pymesos" in names, names
    assert operator.getFrameworks()["get_frameworks"]["frameworks"]
    assert operator.getMaster()["get_master"]["master_info"]["version"] == "1.11.0"
    assert operator.getRoles()["get_roles"]["roles"]
    assert "get_maintenance_status" in operator.getMaintenanceStatus()
    driver.stop()  # TEARDOWN
    driver.join()
    wait("FRAMEWORK_REMOVED", lambda: "framework_removed" in kinds())
    operator.stop()
    print(f"ok operator: {kinds()}")


def run_pymesos_executor(masters, executor_script):
    from pymesos import MesosSchedulerDriver, Scheduler, decode_data, encode_data

    executor = {
        "executor_id": {"value": "pymesos-executor"},
        "type": "CUSTOM",
        "name": "a pymesos executor",
        # As the user running the tests: the executor is the test virtualenv's Python,
        # which the agent's default task user (nobody) may not be able to reach.
        "command": {
            "value": f"{sys.executable} {executor_script}",
            "shell": True,
            "user": pwd.getpwuid(os.getuid()).pw_name,
        },
        "resources": TASK_RESOURCES,
    }

    class Framework(Scheduler):
        def __init__(self):
            self.lock = threading.Lock()
            self.to_launch = []  # task names
            self.launched = {}  # name -> (task id, agent id)
            self.updates = []
            self.messages = []  # (executor id, agent id, text)
            self.lost = []  # (executor id, agent id, status)
            self.registered_ids = []
            self.errors = []
            self.relaunchable = set()  # names launched again if their offer was gone

        def registered(self, driver, framework_id, master_info):
            with self.lock:
                self.registered_ids.append(framework_id["value"])

        def resourceOffers(self, driver, offers):
            for offer in offers:
                with self.lock:
                    name = self.to_launch.pop(0) if self.to_launch else None
                if name is None:
                    driver.declineOffer(offer["id"], filters={"refuse_seconds": 1})
                    continue
                if isinstance(name, list):
                    # A task group: one LAUNCH_GROUP, its tasks without an executor of their own.
                    infos = [
                        {
                            "name": n,
                            "task_id": {"value": f"{n}-{uuid.uuid4()}"},
                            "agent_id": offer["agent_id"],
                            "resources": TASK_RESOURCES,
                        }
                        for n in name
                    ]
                    with self.lock:
                        for n, info in zip(name, infos):
                            self.launched[n] = (info["task_id"]["value"], offer["agent_id"])
                    driver.acceptOffers(
                        [offer["id"]],
                        [{
                            "type": "LAUNCH_GROUP",
                            "launch_group": {"executor": executor, "task_group": {"tasks": infos}},
                        }],
                        filters={"refuse_seconds": 1},
                    )
                    continue
                info = {
                    "name": name,
                    "task_id": {"value": f"{name}-{uuid.uuid4()}"},
                    "agent_id": offer["agent_id"],
                    "resources": TASK_RESOURCES,
                    "executor": executor,
                    "data": encode_data(f"data-of-{name}".encode()),
                }
                with self.lock:
                    self.launched[name] = (info["task_id"]["value"], offer["agent_id"])
                driver.launchTasks(offer["id"], [info], filters={"refuse_seconds": 1})

        def statusUpdate(self, driver, status):
            again = False
            with self.lock:
                self.updates.append(status)
                # As a framework must: a task on an offer that was gone (the agent registered
                # again meanwhile, which rescinds its offers) is launched again on a new offer.
                if status["state"] in ("TASK_DROPPED", "TASK_LOST") and (
                    status.get("reason") == "REASON_INVALID_OFFERS"
                ):
                    task_id = status["task_id"]["value"]
                    for name, (launched_id, _) in list(self.launched.items()):
                        if launched_id == task_id and name in self.relaunchable:
                            del self.launched[name]
                            self.to_launch.append(name)
                            again = True
            if again:
                driver.reviveOffers()

        def frameworkMessage(self, driver, executor_id, agent_id, message):
            with self.lock:
                self.messages.append(
                    (executor_id["value"], agent_id["value"], decode_data(message).decode())
                )

        def executorLost(self, driver, executor_id, agent_id, status):
            with self.lock:
                self.lost.append((executor_id["value"], agent_id["value"], status))

        def error(self, driver, message):
            with self.lock:
                self.errors.append(message)

    fw = Framework()

    def launch(name):
        with fw.lock:
            fw.to_launch.append(name)
        driver.reviveOffers()
        return wait(f"{name} launched", lambda: fw.launched.get(name))

    def update(task_id, state):
        def find():
            with fw.lock:
                for u in fw.updates:
                    if u["task_id"]["value"] == task_id and u["state"] == state:
                        return u
            return None

        return wait(f"{state} of {task_id}", find)

    def message(text):
        def find():
            with fw.lock:
                return next((m for m in fw.messages if m[2] == text), None)

        return wait(f"the executor's message {text!r}", find)

    framework = {"user": getpass.getuser(), "name": "pymesos-executor-on-drover"}
    driver = MesosSchedulerDriver(fw, framework, masters[0], use_addict=False)
    driver.start()
    framework_id = wait("registered", lambda: fw.registered_ids and fw.registered_ids[0])

    def running_of(name):
        """The RUNNING of the task launched for `name` (the latest, if it was launched again)."""

        def find():
            with fw.lock:
                current = fw.launched.get(name)
                for u in fw.updates if current else []:
                    if u["task_id"]["value"] == current[0] and u["state"] == "TASK_RUNNING":
                        return u, current
            return None

        def describe():
            with fw.lock:
                seen = [(u["task_id"]["value"], u["state"], u.get("reason"), u.get("message"))
                        for u in fw.updates if u["task_id"]["value"].startswith(name + "-")]
            return f"TASK_RUNNING of {name} (its updates: {seen})"

        try:
            return wait(f"TASK_RUNNING of {name}", find)
        except AssertionError:
            raise AssertionError(f"timed out waiting for {describe()}") from None

    def started(name):
        with fw.lock:
            fw.relaunchable.add(name)
        launch(name)
        running, (task_id, agent_id) = running_of(name)
        assert running.get("executor_id") == executor["executor_id"], running
        assert running.get("source") == "SOURCE_EXECUTOR", running
        executor_id, agent, _ = message(f"hello {task_id} data-of-{name}")
        assert executor_id == "pymesos-executor" and agent == agent_id["value"], (executor_id, agent)
        return task_id, agent_id

    tasks = [started("first")]

    # The agent is SIGKILLed and started again: the executor (told MESOS_CHECKPOINT=1) keeps
    # running, subscribes again, and takes the next task in the same run.
    print("restart-agent", flush=True)
    line = sys.stdin.readline()
    assert line.strip() == "restarted", line
    tasks.append(started("second"))
    assert tasks[0][1] == tasks[1][1], "one agent: both tasks on it"

    # A task group, to the same run: the executor gets both tasks in one LAUNCH_GROUP.
    with fw.lock:
        fw.to_launch.append(["group-a", "group-b"])
    driver.reviveOffers()
    for name in ["group-a", "group-b"]:
        task_id, agent_id = wait(f"{name} launched", lambda: fw.launched.get(name))
        running = update(task_id, "TASK_RUNNING")
        assert running.get("executor_id") == executor["executor_id"], running
        message(f"group {task_id} of 2")
        tasks.append((task_id, agent_id))

    for task_id, agent_id in tasks:
        # Messages are best effort: sent again until the task is finished.
        def finish():
            driver.sendFrameworkMessage(
                executor["executor_id"], agent_id, encode_data(f"finish {task_id}".encode())
            )
            time.sleep(1)
            with fw.lock:
                return next(
                    (u for u in fw.updates
                     if u["task_id"]["value"] == task_id and u["state"] == "TASK_FINISHED"),
                    None,
                )

        finished = wait(f"{task_id} finished", finish)
        assert finished.get("message") == "finished on request", finished

    # Idle, the executor is shut down; the framework hears of its end.
    lost = wait("executorLost", lambda: fw.lost, deadline=90)
    assert lost[0][0] == "pymesos-executor" and lost[0][1] == tasks[0][1]["value"], lost
    assert isinstance(lost[0][2], int), lost

    assert not fw.errors, fw.errors
    driver.stop()  # TEARDOWN
    driver.join()
    print(f"ok framework {framework_id}: {len(fw.updates)} updates, executor lost with status {lost[0][2]}")


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    mode, masters = sys.argv[1], sys.argv[2].split(",")
    if mode == "pymesos":
        run_pymesos(masters)
    elif mode == "pymesos-executor":
        run_pymesos_executor(masters, sys.argv[3])
    elif mode == "mesoshttp":
        run_mesoshttp(masters)
    elif mode == "operator":
        run_operator(masters)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
