"""`sweep dashboard` as a real subprocess: chromium finds the study and its trials; SIGTERM stops it."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from optuna.trial import TrialState

from sweep.commands import dashboard
from tests.conftest import deadline
from tests.sweep.browser import TIMEOUT_MS, chromium, save_screenshot, watched_page
from tests.sweep.conftest import ROOT, assert_one_line_error, run_sweep, sweep_cmd, sweep_main
from tests.sweep.report_studies import Trial, epoch, make_study

if TYPE_CHECKING:
    from playwright.sync_api import Browser

STUDY = "dash-optimizers"
START_TIMEOUT = deadline(30.0)  # seconds for the server to answer its API


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick for port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    trials = [
        Trial(
            {"optimizer": name},
            epochs=[epoch(e, 1.0 / e, 0.5 + e / 10, 1.1 / e, 0.45 + e / 10) for e in (1, 2)],
        )
        for name in ("sgd", "sgd_nesterov", "adam")
    ]
    trials.append(Trial({"optimizer": "adagrad"}, TrialState.PRUNED, epochs=[epoch(1, 2.0, 0.1, 2.0, 0.1)]))
    make_study(results, STUDY, trials)
    return results


def _wait_until_serving(proc: subprocess.Popen[str], base: str) -> None:
    give_up_at = time.monotonic() + START_TIMEOUT
    while time.monotonic() < give_up_at:
        assert proc.poll() is None, f"the dashboard exited with {proc.returncode}: {proc.communicate()}"
        try:
            with urllib.request.urlopen(f"{base}/api/studies", timeout=deadline(2)) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"the dashboard did not answer {base}/api/studies within {START_TIMEOUT}s")


def test_dashboard_shows_the_study_and_its_trials_and_stops_on_sigterm(
    browser: Browser, tmp_path: Path
) -> None:
    results = _results(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = sweep_cmd("dashboard", "--results-dir", str(results), "--port", str(port))
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_serving(proc, base)
        page, errors = watched_page(browser)
        page.goto(f"{base}/dashboard")
        link = page.locator("a[href='/dashboard/studies/1']")
        link.get_by_text(STUDY).wait_for()
        link.click()
        page.wait_for_url("**/dashboard/studies/1", timeout=TIMEOUT_MS)
        page.get_by_text(f"{STUDY} (id=1)").wait_for()
        page.locator(".js-plotly-plot").first.wait_for()
        page.get_by_role("link", name="Trials (List)").click()
        page.get_by_text("4 Trials", exact=True).wait_for()
        trials = page.locator(".MuiListItemText-primary").filter(has_text=re.compile(r"^Trial \d+$"))
        trials.nth(3).wait_for()
        assert trials.all_inner_texts() == ["Trial 0", "Trial 1", "Trial 2", "Trial 3"]
        save_screenshot(page, "dashboard-trials.png", tmp_path)
        page.close()
        assert errors == []
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=deadline(15))
        except subprocess.TimeoutExpired:
            proc.kill()  # a server that ignores SIGTERM fails the test, and is not left running
            proc.communicate(timeout=deadline(15))
            raise
    assert proc.returncode == 0, err
    assert out.splitlines()[0].endswith(f"at {base}/ (Ctrl-C to stop)")
    assert out.splitlines()[-1] == "dashboard stopped"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{base}/api/studies", timeout=deadline(2))


def test_taken_port_is_one_line_exit_2(tmp_path: Path) -> None:
    results = _results(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_sweep(
            "dashboard", "--results-dir", str(results), "--port", str(port), timeout=deadline(60)
        )
    assert_one_line_error(result, f"port {port}", "--port")


def test_missing_storage_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = sweep_main(
        capsys, "dashboard", "--results-dir", str(tmp_path / "none"), "--port", str(free_port())
    )
    assert_one_line_error(result, "no database")
    assert not (tmp_path / "none").exists()


def _delete_study(base: str, study_id: int = 1) -> int:
    """The status of a real HTTP DELETE of study `study_id`, as any client that reaches the port can send."""
    request = urllib.request.Request(f"{base}/api/studies/{study_id}", method="DELETE")
    try:
        with urllib.request.urlopen(request, timeout=deadline(10)) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def _serve_and_delete(results: Path, *options: str) -> tuple[int, str]:
    """Start `sweep dashboard OPTIONS`, DELETE study 1 over HTTP, stop it: the DELETE's status and stderr."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = sweep_cmd("dashboard", "--results-dir", str(results), "--port", str(port), *options)
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_serving(proc, base)
        status = _delete_study(base)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=deadline(15))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=deadline(15))
            raise
    assert proc.returncode == 0, err
    return status, err


def _study_names(results: Path) -> list[str]:
    import optuna

    storage = f"sqlite:///{results / 'sweep.db'}"
    return [summary.study_name for summary in optuna.get_all_study_summaries(storage)]


def test_dashboard_is_read_only_by_default_and_warns_beyond_loopback(tmp_path: Path) -> None:
    """Fault: the dashboard served optuna-dashboard's write API with no authentication, and --host 0.0.0.0
    gave no warning: one `curl -X DELETE .../api/studies/1` from anywhere deleted a study."""
    results = _results(tmp_path)
    status, err = _serve_and_delete(results, "--host", "0.0.0.0")
    assert status == 403
    assert _study_names(results) == [STUDY]
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0] and "no authentication" in warnings[0], err


def test_dashboard_allow_writes_lets_a_delete_through_and_loopback_is_not_warned(tmp_path: Path) -> None:
    """Fault: the write API had no switch; --allow-writes is the explicit one (silent on loopback)."""
    results = _results(tmp_path)
    status, err = _serve_and_delete(results, "--host", "127.0.0.1", "--allow-writes")
    assert status == 204
    assert _study_names(results) == []
    assert "warning" not in err


def test_a_stop_signal_while_the_server_takes_in_a_request_still_stops_it() -> None:
    """Fault (a CI run): SIGTERM came while the server took in a request; socketserver caught the stop as
    that request's error, printed it, and served on: the process never ended."""

    def app(environ: object, start_response: object) -> list[bytes]:  # never reached
        return []

    server = dashboard._bind(app, "127.0.0.1", 0)  # type: ignore[arg-type]

    def signalled_meanwhile(request: object, client_address: object) -> None:
        dashboard._raise_stop(signal.SIGTERM, None)

    server.process_request = signalled_meanwhile  # type: ignore[method-assign]
    ended: list[BaseException] = []

    def serve() -> None:
        try:
            server.serve_forever(poll_interval=0.05)
        except BaseException as stopped:  # noqa: BLE001 (what ended it is the assertion)
            ended.append(stopped)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=deadline(10)):
        thread.join(timeout=deadline(10))
    alive = thread.is_alive()
    if alive:
        server.shutdown()
    server.server_close()
    assert not alive and [type(stop) for stop in ended] == [dashboard._Stop]
