"""A custom Mesos executor written with pymesos 0.3.15's `MesosExecutorDriver`, unchanged, as a
Mesos framework ships one: the agent starts it with the Mesos executor environment
(MESOS_AGENT_ENDPOINT, MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID, ...), it subscribes to the
agent's executor API and runs the tasks the agent launches.

Each task: TASK_RUNNING at once, then the framework message "hello <task> <task data>"; the
task finishes (TASK_FINISHED) when the framework sends "finish <task>", and is killed
(TASK_KILLED) on KILL. A task group (LAUNCH_GROUP) runs the same way, each of its tasks
sending "group <task> of <size>" instead. The test (tests/mesos_http.rs) runs it through mesos_clients.py's
`pymesos-executor` mode.
"""

import logging
import sys
import threading

from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data


class Tasks(Executor):
    def __init__(self):
        self.lock = threading.Lock()

    def update(self, driver, task_id, state, message=""):
        driver.sendStatusUpdate({"task_id": {"value": task_id}, "state": state, "message": message})

    def launchTask(self, driver, task):
        task_id = task["task_id"]["value"]
        data = decode_data(task["data"]).decode() if "data" in task else ""

        # The driver's callbacks run on its event thread; calls back to the agent go from
        # another, as pymesos's examples do.
        def run():
            with self.lock:
                self.update(driver, task_id, "TASK_RUNNING", "running in a pymesos executor")
                driver.sendFrameworkMessage(encode_data(f"hello {task_id} {data}".encode()))

        threading.Thread(target=run, daemon=True).start()

    def launchTaskGroup(self, driver, tasks):
        ids = [t["task_id"]["value"] for t in tasks]

        def run():
            with self.lock:
                for task_id in ids:
                    self.update(driver, task_id, "TASK_RUNNING", "running in a task group")
                    driver.sendFrameworkMessage(encode_data(f"group {task_id} of {len(ids)}".encode()))

        threading.Thread(target=run, daemon=True).start()

    def killTask(self, driver, task_id):
        def run():
            with self.lock:
                self.update(driver, task_id["value"], "TASK_KILLED", "killed on request")

        threading.Thread(target=run, daemon=True).start()

    def frameworkMessage(self, driver, message):
        words = decode_data(message).decode().split()
        if len(words) == 2 and words[0] == "finish":

            def run():
                with self.lock:
                    self.update(driver, words[1], "TASK_FINISHED", "finished on request")

            threading.Thread(target=run, daemon=True).start()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    driver = MesosExecutorDriver(Tasks(), use_addict=False)
    driver.run()
