"""The native peers: PHP APCu and nginx's ngx.shared.DICT, in their languages.

Both run the same per-op workloads as the Python peers (same key names,
same pools, same random-order idea, same calibration and repetitions), with
their loops timed inside PHP (``hrtime``) and inside LuaJIT
(``clock_gettime`` via the FFI). What comes back to Python are the per-rep
totals of the op loop and of the same loop with an empty body, so the
per-op figures are the languages' own, not a process start or an HTTP round
trip.

* APCu: ``php -d apc.enable_cli=1 native/apcu_bench.php '<json>'``, one
  PHP process per data set (APCu's CLI cache lives as long as the process).
* ngx.shared.DICT: an nginx with ``libnginx-mod-http-lua`` in a temporary
  prefix, bound to 127.0.0.1 on a free port, ``master_process off`` (one
  process, so the loops run in it), serving ``native/ngx_bench.lua``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from common import Dataset, OpResult, PeerRun, Settings, short_error

HERE = Path(__file__).resolve().parent
NATIVE = HERE / "native"
NGINX_MODULES = Path("/usr/lib/nginx/modules")


def _params(settings: Settings) -> dict[str, int]:
    return {
        "reps": settings.reps,
        "target_ns": settings.target_ns,
        "min_ops": settings.min_ops,
        "max_ops": settings.max_ops,
        "batch_cap": settings.batch_cap,
        "seed": settings.seed,
    }


def _parse_lines(text: str, runs: dict[Dataset, PeerRun]) -> None:
    """Fill ``runs`` from the JSON lines a harness printed."""
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        if "error" in rec:
            for run in runs.values():
                run.notes.append(str(rec["error"]))
            continue
        ds = Dataset(int(rec["nkeys"]), int(rec["vsize"]))
        run = runs.setdefault(ds, PeerRun())
        run.results[rec["op"]] = OpResult(
            n=int(rec["n"]),
            raw_ns=[int(x) for x in rec["raw"]],
            empty_ns=[int(x) for x in rec["empty"]],
        )


# --------------------------------------------------------------------- APCu
class Apcu:
    """PHP APCu, run through the php CLI."""

    key = "apcu"
    label = "PHP APCu (PHP loop)"
    notes = (
        "php -d apc.enable_cli=1: apcu_fetch($k), apcu_store($k, $v), "
        "apcu_inc($k, 1), apcu_delete($k) in a foreach, timed with hrtime(true); "
        "apc.entries_hint sized to the table"
    )
    feature_notes = (
        "apcu_add($k, $v) (add), apcu_cas($k, 0, 0), apcu_entry($k, $gen) "
        "(setdefault: fetch, or store what $gen returns), apcu_inc($k, 1) on a "
        "missing key (APCu creates it: incr with init=0), apcu_fetch($keys) and "
        "apcu_store($map) with 10 keys. No replace, pop, stale reads or lists"
    )

    def __init__(self) -> None:
        self.version = ""

    def check(self) -> str | None:
        php = shutil.which("php")
        if php is None:
            return "php not found (apt-get install php-cli php-apcu failed)"
        try:
            out = subprocess.run(
                [
                    php,
                    "-d",
                    "apc.enable_cli=1",
                    "-r",
                    "echo phpversion(), ' ', phpversion('apcu') ?: 'none', ' ', "
                    "(int)(function_exists('apcu_enabled') && apcu_enabled());",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout.split()
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"php failed to run: {short_error(exc)}"
        if len(out) != 3 or out[1] == "none" or out[2] != "1":
            return "APCu extension not loaded (apt-get install php-apcu failed?)"
        self.version = f"PHP {out[0]}, APCu {out[1]}"
        return None

    def _php(
        self, cfg: dict[str, Any], shm_mb: int, entries: int, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            "php",
            "-d",
            "apc.enable_cli=1",
            "-d",
            f"apc.shm_size={shm_mb}M",
            "-d",
            f"apc.entries_hint={entries}",
            "-d",
            "apc.slam_defense=0",
            "-d",
            "apc.ttl=0",
            "-d",
            "memory_limit=-1",
            str(NATIVE / "apcu_bench.php"),
            json.dumps(cfg),
        ]
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False
        )

    def run(
        self, datasets: list[Dataset], settings: Settings
    ) -> dict[Dataset, PeerRun]:
        """Per-op results of every data set (one php process each)."""
        runs: dict[Dataset, PeerRun] = {}
        for ds in datasets:
            m = min(ds.nkeys, settings.batch_cap)
            entries = ds.nkeys + 2 * m
            # APCu's own per-entry overhead is ~100-200 B; be generous.
            shm_mb = max(64, (entries * (ds.vsize + 320) * 2) >> 20)
            cfg = {**_params(settings), "datasets": [[ds.nkeys, ds.vsize]]}
            try:
                proc = self._php(cfg, shm_mb, entries, timeout=900)
            except subprocess.TimeoutExpired:
                runs[ds] = PeerRun(error="timed out")
                continue
            got: dict[Dataset, PeerRun] = {}
            _parse_lines(proc.stdout, got)
            runs[ds] = got.get(ds, PeerRun())
            if proc.returncode != 0:
                runs[ds].error = f"php exited {proc.returncode}: " + short_error(
                    proc.stderr or proc.stdout or "no output"
                )
        return runs

    def run_features(self, ds: Dataset, settings: Settings) -> PeerRun:
        """The feature ops APCu has (see native/apcu_bench.php), on ``ds``."""
        m = min(ds.nkeys, settings.batch_cap)
        entries = ds.nkeys + 3 * m + 16
        shm_mb = max(64, (entries * (ds.vsize + 320) * 2) >> 20)
        cfg = {**_params(settings), "features": [ds.nkeys, ds.vsize]}
        try:
            proc = self._php(cfg, shm_mb, entries, timeout=600)
        except subprocess.TimeoutExpired:
            return PeerRun(error="timed out")
        got: dict[Dataset, PeerRun] = {ds: PeerRun()}
        _parse_lines(proc.stdout, got)
        run = got[ds]
        if proc.returncode != 0:
            run.error = f"php exited {proc.returncode}: " + short_error(
                proc.stderr or proc.stdout or "no output"
            )
        return run

    def capacity(self, klen: int, vlen: int) -> int | str:
        """Entries of klen+vlen bytes that a 64 MiB APCu holds (or why not)."""
        try:
            proc = self._php({"capacity": [klen, vlen]}, 64, 4096, timeout=300)
            return int(json.loads(proc.stdout.strip().splitlines()[-1])["count"])
        except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError) as exc:
            return f"failed: {short_error(exc)}"


# -------------------------------------------------------------------- nginx
_NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
error_log {prefix}/logs/error.log warn;
pid {prefix}/logs/nginx.pid;
load_module {modules}/ndk_http_module.so;
load_module {modules}/ngx_http_lua_module.so;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    lua_shared_dict bench {size_mb}m;
    lua_shared_dict cap 64m;
    lua_package_path "{native}/?.lua;;";
    server {{
        listen 127.0.0.1:{port};
        location = /ping {{ return 200 "ok"; }}
        location = /bench {{ content_by_lua_block {{ require("ngx_bench").bench() }} }}
        location = /features {{
            content_by_lua_block {{ require("ngx_bench").features() }}
        }}
        location = /capacity {{
            content_by_lua_block {{ require("ngx_bench").capacity() }}
        }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NgxSharedDict:
    """ngx.shared.DICT in a private nginx (Lua module) on 127.0.0.1."""

    key = "ngx"
    label = "ngx.shared.DICT (LuaJIT loop)"
    notes = (
        "nginx + lua-nginx-module, one process: dict:get(k), dict:set(k, v), "
        "dict:incr(k, 1), dict:delete(k) in a Lua for loop, timed with "
        "clock_gettime(CLOCK_MONOTONIC) through the LuaJIT FFI"
    )
    feature_notes = (
        "dict:add(k, v), dict:replace(k, v), dict:get_stale(k), "
        "dict:incr(k, 1, 0) (init 0), dict:lpush(Q, v); dict:rpop(Q), "
        "dict:llen(Q). No cas, pop, setdefault or batches"
    )

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.prefix: str | None = None
        self.port = 0
        self.version = ""

    def check(self) -> str | None:
        nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if nginx is None:
            return "nginx not found (apt-get install nginx failed)"
        if not (NGINX_MODULES / "ngx_http_lua_module.so").exists():
            return "Lua module missing (apt-get install libnginx-mod-http-lua failed)"
        proc = subprocess.run(
            [nginx, "-v"], capture_output=True, text=True, check=False
        )
        self.version = (
            (proc.stderr or proc.stdout).strip().replace("nginx version: ", "")
        )
        return None

    def start(self, size_mb: int) -> None:
        """Start nginx with a ``size_mb`` MiB shared dict; wait until it answers."""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.prefix = tempfile.mkdtemp(prefix="bench-nginx-")
        for sub in ("logs", "tmp", "conf"):
            os.makedirs(os.path.join(self.prefix, sub), exist_ok=True)
        self.port = _free_port()
        conf = Path(self.prefix) / "conf" / "nginx.conf"
        conf.write_text(
            _NGINX_CONF.format(
                prefix=self.prefix,
                modules=NGINX_MODULES,
                size_mb=size_mb,
                native=NATIVE,
                port=self.port,
            )
        )
        self.proc = subprocess.Popen(
            [nginx, "-p", self.prefix, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(self._url("/ping"), timeout=2) as r:
                    if r.read() == b"ok":
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self._error_log()
                self.stop()
                raise RuntimeError(
                    f"nginx did not start: {short_error(err or 'no log')}"
                )
            time.sleep(0.05)

    def _url(self, path: str, **query: int) -> str:
        q = f"?{urllib.parse.urlencode(query)}" if query else ""
        return f"http://127.0.0.1:{self.port}{path}{q}"

    def _error_log(self) -> str:
        if not self.prefix:
            return ""
        log = Path(self.prefix) / "logs" / "error.log"
        try:
            lines = [
                ln
                for ln in log.read_text().splitlines()
                if "[emerg]" in ln or "[error]" in ln
            ]
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def stop(self) -> None:
        """Stop nginx and remove its prefix."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None
        if self.prefix:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None

    def _fetch(
        self, path: str, ds: Dataset, settings: Settings, timeout: float
    ) -> str | PeerRun:
        """The body of one harness request, or a PeerRun saying why not."""
        try:
            url = self._url(path, nkeys=ds.nkeys, vsize=ds.vsize, **_params(settings))
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return str(r.read().decode())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode() or str(exc)
            return PeerRun(error=f"HTTP {exc.code}: {short_error(detail)}")
        except (urllib.error.URLError, OSError) as exc:
            return PeerRun(
                error=f"request failed: {short_error(exc)} {self._error_log()}"
            )

    def run(
        self, datasets: list[Dataset], settings: Settings
    ) -> dict[Dataset, PeerRun]:
        """Per-op results of every data set (one HTTP request each)."""
        runs: dict[Dataset, PeerRun] = {}
        for ds in datasets:
            body = self._fetch("/bench", ds, settings, timeout=900)
            if isinstance(body, PeerRun):
                runs[ds] = body
                continue
            got: dict[Dataset, PeerRun] = {}
            _parse_lines(body, got)
            runs[ds] = got.get(ds, PeerRun(error=f"no results: {short_error(body)}"))
            if '"clock":"ngx.update_time' in body:
                runs[ds].notes.append("timed with ngx.now() (ms resolution): no FFI")
        return runs

    def run_features(self, ds: Dataset, settings: Settings) -> PeerRun:
        """The feature ops ngx.shared.DICT has (see native/ngx_bench.lua)."""
        body = self._fetch("/features", ds, settings, timeout=600)
        if isinstance(body, PeerRun):
            return body
        got: dict[Dataset, PeerRun] = {ds: PeerRun()}
        _parse_lines(body, got)
        run = got[ds]
        if not run.results and not run.notes:
            run.error = f"no results: {short_error(body)}"
        if '"clock":"ngx.update_time' in body:
            run.notes.append("timed with ngx.now() (ms resolution): no FFI")
        return run

    def capacity(self, klen: int, vlen: int) -> int | str:
        """Entries of klen+vlen bytes that a 64 MiB shared dict holds."""
        try:
            with urllib.request.urlopen(
                self._url("/capacity", klen=klen, vlen=vlen), timeout=300
            ) as r:
                return int(json.loads(r.read().decode())["count"])
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            return f"failed: {short_error(exc)}"


def ngx_dict_size_mb(datasets: list[Dataset], settings: Settings) -> int:
    """A shared dict size that holds the largest data set with room to spare."""
    need = 0
    for ds in datasets:
        m = min(ds.nkeys, settings.batch_cap)
        # slab pages round big values up; small entries cost ~100 B of node
        per = ds.vsize + 200 if ds.vsize < 2048 else ds.vsize + 4096
        need = max(need, (ds.nkeys + 2 * m) * per)
    return max(128, int(need * 1.5) >> 20)
