# The API of the NixOS test driver since late 2026 (see test.toml).
import datetime as dt
from pathlib import Path

from test_driver.driver import get_tmp_dir
from test_driver.duration import Duration
from test_driver.errors import RequestedAssertionFailed
from test_driver.machine import QemuMachine, retry


class BusyboxMachine(QemuMachine):
    """A node without systemd: it waits for files instead of units."""

    def wait_for_boot_file(self, path: str, timeout: Duration = dt.timedelta(minutes=5)) -> None:
        with self.nested(f"waiting for {path} (busybox init)"):
            self.wait_for_file(path, timeout=timeout)


start_all()
server.wait_for_open_port(3000, timeout=dt.timedelta(minutes=10))

with subtest("timeouts and durations are timedeltas"):
    page = client.wait_until_succeeds("wget -qO- http://server:3000/index.html", timeout=dt.timedelta(minutes=2))
    t.assertEqual(page, "hello from server\n")
    client.sleep(dt.timedelta(milliseconds=200))
    client.succeed("true", timeout=dt.timedelta(seconds=30))

with subtest("failed checks raise RequestedAssertionFailed"):
    try:
        client.wait_for_file("/nonexistent", timeout=dt.timedelta(seconds=2))
    except RequestedAssertionFailed as error:
        log.info(f"timed out as expected: {error}")
    else:
        raise Exception("wait_for_file() should have timed out")
    try:
        client.succeed("exit 3")
    except RequestedAssertionFailed as error:
        log.info(f"failed as expected: {error}")

with subtest("retry and polling conditions take timedeltas"):
    attempts = []

    def third_time_lucky(last_try: bool) -> bool:
        attempts.append(last_try)
        return len(attempts) >= 3

    retry(third_time_lucky, timeout=dt.timedelta(seconds=60))

    @polling_condition(interval=dt.timedelta(seconds=1))
    def server_is_serving():
        server.succeed("nc -z localhost 3000")

    with server_is_serving:
        client.succeed("wget -qO- http://server:3000/index.html")

with subtest("older spellings still work"):
    retry(lambda last_try: True, timeout_seconds=10)
    client.sleep(secs=0.1)

with subtest("copy_from_machine"):
    server.succeed("echo 'report from server' > /tmp/report.txt")
    server.copy_from_machine("/tmp/report.txt", "reports")
    copied = Path(driver.out_dir) / "reports" / "report.txt"
    t.assertEqual(copied.read_text(), "report from server\n")

with subtest("a machine of the script's own class"):
    client.shutdown()
    # Built the way the driver's own create_machine() builds machines.  In a
    # NixOS test the start script comes from Nix, e.g.
    # "${nodes.client.system.build.vm}/bin/run-client-vm".
    spare = BusyboxMachine(
        out_dir=driver.out_dir,
        tmp_dir=get_tmp_dir(),
        start_command=client.start_command,
        logger=log,
        name="spare",
    )
    assert isinstance(spare, QemuMachine)
    spare.start()
    spare.wait_for_boot_file("/etc/hosts", timeout=dt.timedelta(minutes=10))
    t.assertEqual(spare.succeed("hostname").strip(), "client")
    spare.shutdown()
