"""Side-by-side queue benchmark: NexJobs, PgQueuer and Procrastinate on one PostgreSQL server.

Run through bench/compare/run.sh (all systems) or bench/queue/run.sh (NexJobs alone, wider sweep). Standard
library only; SQL goes through psql. Every figure is read from server-side timestamps of each system's own
tables, so the three are measured the same way:
  drain/s      N / (last completion - first start), completion and start as each system records them
  enqueue/s    N / client wall time of the bulk enqueue calls
  latency      start - enqueue per job (both now() of the respective transactions), idle workers
  crash        kill -9 of one worker process mid-drain; lost = jobs never executed, duplicated = extra executions
"""

import argparse
import datetime
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV_PY = os.path.join(ROOT, "bench", ".venv", "bin", "python")
PEERS = os.path.join(ROOT, "bench", "compare", "peers.py")
NEXJOBS = os.path.join(ROOT, ".build", "release", "nexjobs")
QBENCH = os.path.join(ROOT, ".build", "release", "queue-bench")
LOGDIR = os.path.join(ROOT, "bench", "results", "logs")
STALE_S = 5  # crash test: every system declares a silent worker dead after 5 s


def log(msg):
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def db_url(admin, name):
    u = urllib.parse.urlsplit(admin)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def psql(url, sql):
    out = subprocess.run(["psql", "-XtAq", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def run_out(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {out.stderr.strip()[-2000:]}")
    return out.stdout


def field(text, name):
    m = re.search(rf"{name}=([0-9.]+)", text)
    if not m:
        raise RuntimeError(f"no {name} in {text!r}")
    return float(m.group(1))


def wait_until(pred, timeout, what, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class Workers:
    """W worker processes of one system; stopped with SIGTERM (then SIGKILL) at the end."""

    def __init__(self, cmds, env, tag):
        os.makedirs(LOGDIR, exist_ok=True)
        self.procs = []
        for i, cmd in enumerate(cmds):
            f = open(os.path.join(LOGDIR, f"{tag}-{i}.log"), "w")
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT))

    def kill9(self, i=0):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class System:
    name = ""
    dbname = ""

    def __init__(self, admin):
        self.url = db_url(admin, self.dbname)
        self.env = dict(os.environ, DATABASE_URL=self.url)

    def create_db(self, admin):
        if psql(admin, f"SELECT 1 FROM pg_database WHERE datname = '{self.dbname}'") != "1":
            psql(admin, f"CREATE DATABASE {self.dbname}")

    def remaining(self):
        return int(psql(self.url, self.remaining_sql))

    def vacuum(self):
        for t in self.tables:
            psql(self.url, f"VACUUM ANALYZE {t}")
        psql(self.url, "CHECKPOINT")

    def executions(self):
        """(distinct jobs executed, total executions) from the side table."""
        row = psql(self.url, f"SELECT count(DISTINCT job_id), count(*) FROM {self.exec_table}")
        a, b = row.split("|")
        return int(a), int(b)

    def start_workers(self, cfg, crash=False):
        return Workers(self.worker_cmds(cfg, crash), self.env, self.name)

    def warm_up(self):
        """Proves the workers are up and listening: 20 jobs must be run before the latency run starts."""
        self.latency_enqueue(20, 0)
        wait_until(lambda: self.remaining() == 0, 60, f"{self.name} warm-up")


class NexJobs(System):
    name = "NexJobs"
    dbname = "bench_nexjobs"
    remaining_sql = "SELECT count(*) FROM nexjobs.jobs WHERE state IN ('available', 'retryable', 'running')"
    tables = ["nexjobs.jobs"]
    exec_table = "nexjobs.noop_log"

    def setup(self, admin):
        self.create_db(admin)
        run_out([NEXJOBS, "migrate"], self.env)

    def version(self):
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return "git " + rev.stdout.strip()

    @staticmethod
    def label(cfg):
        return f"{cfg['workers']} proc x concurrency {cfg['concurrency']}, claim batch {cfg['batch']}"

    def reset(self):
        psql(self.url, "TRUNCATE nexjobs.jobs, nexjobs.noop_log; DELETE FROM nexjobs.workers")
        self.vacuum()

    def enqueue(self, n, record=False):
        # record: True -> {"record": true}, the row written before completion like the peers' handlers;
        # "tx" -> {"record_tx": true}, the row committed together with the completion (JobContext.complete(on:)).
        args = {True: '{"record": true}', "tx": '{"record_tx": true}'}.get(record)
        cmd = [QBENCH, "enqueue", str(n)] + (["--args", args] if args else [])
        return field(run_out(cmd, self.env), "jobs_per_s")

    def worker_cmds(self, cfg, crash):
        cmd = [NEXJOBS, "worker", "--queues", "bench", "--concurrency", str(cfg["concurrency"]),
               "--claim-batch", str(cfg["batch"])]
        if crash:
            cmd += ["--lease", f"{STALE_S}s", "--heartbeat", "1s", "--maintenance-interval", "1s"]
        return [cmd] * cfg["workers"]

    def drain_seconds(self):
        return float(psql(self.url, """SELECT extract(epoch FROM max(finished_at) - min(attempted_at))
                                         FROM nexjobs.jobs WHERE state = 'completed'"""))

    def completed(self):
        return int(psql(self.url, "SELECT count(*) FROM nexjobs.jobs WHERE state = 'completed'"))

    def latency_enqueue(self, n, interval_ms):
        return run_out([QBENCH, "latency", str(n), str(interval_ms)], self.env)

    def latency(self, n, interval_ms):
        out = self.latency_enqueue(n, interval_ms)
        return field(out, "p50_ms"), field(out, "p95_ms"), field(out, "p99_ms")


class PgQueuer(System):
    name = "PgQueuer"
    dbname = "bench_pgqueuer"
    remaining_sql = "SELECT count(*) FROM pgqueuer"
    tables = ["pgqueuer", "pgqueuer_log"]
    exec_table = "bench_exec"

    def setup(self, admin):
        self.create_db(admin)
        run_out([VENV_PY, PEERS, "pgqueuer", "setup"], self.env)

    def version(self):
        return run_out([VENV_PY, "-c", "import pgqueuer; print(pgqueuer.__version__)"], self.env).strip()

    @staticmethod
    def label(cfg):
        return f"{cfg['workers']} proc, batch {cfg['batch']}, asyncpg + uvloop"

    def reset(self):
        psql(self.url, "TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics, bench_exec")
        self.vacuum()

    def enqueue(self, n, record=False):
        cmd = [VENV_PY, PEERS, "pgqueuer", "enqueue", str(n)] + (["--record"] if record else [])
        return field(run_out(cmd, self.env), "jobs_per_s")

    def worker_cmds(self, cfg, crash):
        cmd = [VENV_PY, PEERS, "pgqueuer", "worker", "--batch", str(cfg["batch"])]
        if crash:
            cmd += ["--record", "--stale", str(STALE_S)]
        return [cmd] * cfg["workers"]

    def drain_seconds(self):
        return float(psql(self.url, """SELECT extract(epoch FROM
              (SELECT max(created) FROM pgqueuer_log WHERE status = 'successful')
            - (SELECT min(created) FROM pgqueuer_log WHERE status = 'picked'))"""))

    def completed(self):
        return int(psql(self.url, "SELECT count(DISTINCT job_id) FROM pgqueuer_log WHERE status = 'successful'"))

    def latency_enqueue(self, n, interval_ms):
        return run_out([VENV_PY, PEERS, "pgqueuer", "latency", str(n), str(interval_ms)], self.env)

    def latency(self, n, interval_ms):
        first = int(psql(self.url, "SELECT coalesce(max(job_id), 0) FROM pgqueuer_log"))
        self.latency_enqueue(n, interval_ms)
        wait_until(lambda: int(psql(self.url, f"""SELECT count(*) FROM pgqueuer_log
                                                  WHERE status = 'picked' AND job_id > {first}""")) >= n,
                   60, "PgQueuer latency jobs to start")
        return percentiles(self.url, f"""SELECT extract(epoch FROM p.created - q.created) * 1000
              FROM pgqueuer_log q JOIN pgqueuer_log p ON p.job_id = q.job_id AND p.status = 'picked'
             WHERE q.status = 'queued' AND q.job_id > {first}""")


class Procrastinate(System):
    name = "Procrastinate"
    dbname = "bench_procrastinate"
    remaining_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    tables = ["procrastinate_jobs", "procrastinate_events"]
    exec_table = "bench_exec"

    def setup(self, admin):
        self.create_db(admin)
        run_out([VENV_PY, PEERS, "procrastinate", "setup"], self.env)

    def version(self):
        return run_out([VENV_PY, "-c", "import importlib.metadata as m; print(m.version('procrastinate'))"],
                       self.env).strip()

    @staticmethod
    def label(cfg):
        return f"{cfg['workers']} proc x concurrency {cfg['concurrency']}, psycopg 3"

    def reset(self):
        psql(self.url, "TRUNCATE procrastinate_jobs, procrastinate_events, bench_exec CASCADE;"
                       " DELETE FROM procrastinate_workers")
        self.vacuum()

    def enqueue(self, n, record=False):
        cmd = [VENV_PY, PEERS, "procrastinate", "enqueue", str(n)] + (["--record"] if record else [])
        return field(run_out(cmd, self.env), "jobs_per_s")

    def worker_cmds(self, cfg, crash):
        return [[VENV_PY, PEERS, "procrastinate", "worker", "--concurrency", str(cfg["concurrency"])]] \
            * cfg["workers"]

    def drain_seconds(self):
        return float(psql(self.url, """SELECT extract(epoch FROM
              (SELECT max(at) FROM procrastinate_events WHERE type = 'succeeded')
            - (SELECT min(at) FROM procrastinate_events WHERE type = 'started'))"""))

    def completed(self):
        return int(psql(self.url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"))

    def latency_enqueue(self, n, interval_ms):
        return run_out([VENV_PY, PEERS, "procrastinate", "latency", str(n), str(interval_ms)], self.env)

    def latency(self, n, interval_ms):
        first = int(psql(self.url, "SELECT coalesce(max(id), 0) FROM procrastinate_jobs"))
        self.latency_enqueue(n, interval_ms)
        wait_until(lambda: int(psql(self.url, f"""SELECT count(*) FROM procrastinate_events
                                                  WHERE type = 'started' AND job_id > {first}""")) >= n,
                   60, "Procrastinate latency jobs to start")
        return percentiles(self.url, f"""SELECT extract(epoch FROM s.at - d.at) * 1000
              FROM procrastinate_events d JOIN procrastinate_events s ON s.job_id = d.job_id AND s.type = 'started'
             WHERE d.type = 'deferred' AND d.job_id > {first}""")


def percentiles(url, sql):
    row = psql(url, f"""WITH l(ms) AS ({sql})
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY ms),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FROM l""")
    return tuple(float(x) for x in row.split("|"))


def burn_down(sys_, cfg, n):
    """Enqueue n jobs in bulk, then drain them with cfg's workers. Returns (enqueue/s, drain/s)."""
    sys_.reset()
    enq = sys_.enqueue(n)
    w = sys_.start_workers(cfg)
    try:
        wait_until(lambda: sys_.remaining() == 0, 600, f"{sys_.name} drain", every=0.2)
    finally:
        w.stop()
    done = sys_.completed()
    if done != n:
        raise RuntimeError(f"{sys_.name}: {done} of {n} jobs completed")
    return enq, n / sys_.drain_seconds()


def quiet_server(admin, timeout=30):
    """Waits (up to timeout s) until no autovacuum worker runs on the server, so none runs during a measurement."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if psql(admin, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'") == "0":
            return
        time.sleep(0.2)
    log(f"  autovacuum still running after {timeout} s; measuring anyway")


def latency_run(sys_, cfg, a, admin):
    """One latency measurement: fresh tables, idle workers proven up by a warm-up, then the paced enqueues."""
    sys_.reset()
    w = sys_.start_workers(cfg)
    try:
        sys_.warm_up()
        quiet_server(admin)
        return sys_.latency(a.latency_jobs, a.interval_ms)
    finally:
        w.stop()


def latency_series(systems, cfgs, a, admin, tag):
    """a.latency_reps latency runs per system, rotating the systems' order each repetition; {name: [(p50, p95, p99)]}."""
    runs = {s.name: [] for s in systems}
    for r in range(a.latency_reps if systems else 0):
        for s in systems[r % len(systems):] + systems[:r % len(systems)]:
            p = latency_run(s, cfgs[s.name], a, admin)
            runs[s.name].append(p)
            log(f"latency rep {r + 1} {s.name}{tag}: p50 {p[0]:.2f} ms p95 {p[1]:.2f} p99 {p[2]:.2f}")
    return runs


def medians(runs):
    return {name: tuple(statistics.median(run[i] for run in rs) for i in range(3)) for name, rs in runs.items()}


def crash_test(sys_, cfg, n, record=True):
    """kill -9 one worker process mid-drain; returns (lost, duplicated)."""
    sys_.reset()
    sys_.enqueue(n, record=record)
    w = sys_.start_workers(cfg, crash=True)
    recover = None
    try:
        wait_until(lambda: sys_.remaining() <= n * 0.6, 300, f"{sys_.name} crash test to reach mid-drain",
                   every=0.05)
        w.kill9(0)
        log(f"  {sys_.name}: killed worker pid {w.procs[0].pid} with {sys_.remaining()} jobs left")
        if isinstance(sys_, Procrastinate):
            recover = subprocess.Popen([VENV_PY, PEERS, "procrastinate", "recover-loop", str(STALE_S)],
                                       env=sys_.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: sys_.remaining() == 0, 300, f"{sys_.name} crash test to finish", every=0.2)
    finally:
        w.stop()
        if recover:
            recover.terminate()
            recover.wait()
    distinct, total = sys_.executions()
    return n - distinct, total - distinct


def pgbench(admin, seconds):
    url = db_url(admin, "bench_pgbench")
    if psql(admin, "SELECT 1 FROM pg_database WHERE datname = 'bench_pgbench'") != "1":
        psql(admin, "CREATE DATABASE bench_pgbench")
    subprocess.run(["pgbench", "-i", "-q", "-s", "10", url], check=True, capture_output=True)
    out = subprocess.run(["pgbench", "-b", "simple-update", "-c", "16", "-j", "2", "-T", str(seconds), url],
                         check=True, capture_output=True, text=True).stdout
    m = re.search(r"tps = ([0-9.]+)", out)
    return float(m.group(1))


def parse_configs(text):
    out = []
    for part in text.split(","):
        w, c, b = part.split("x")
        out.append({"workers": int(w), "concurrency": int(c), "batch": int(b)})
    return out


def fmt(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--systems", default="nexjobs,pgqueuer,procrastinate")
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sweep-n", type=int, default=20_000)
    ap.add_argument("--procrastinate-sweep-n", type=int, default=5_000,
                    help="Procrastinate drains ~1,000 jobs/s here: a smaller sweep keeps the run under 20 minutes")
    ap.add_argument("--latency-jobs", type=int, default=1000)
    ap.add_argument("--interval-ms", type=int, default=10)
    ap.add_argument("--latency-reps", type=int, default=3,
                    help="latency runs per system, alternating systems; the table shows the median of each figure")
    ap.add_argument("--latency-one-process", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure latency with one worker process (NexJobs and PgQueuer)")
    ap.add_argument("--crash-n", type=int, default=20_000)
    ap.add_argument("--no-crash", action="store_true")
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    ap.add_argument("--nexjobs-configs", default="1x500x500,2x500x500,2x1000x1000,3x300x300")
    ap.add_argument("--pgqueuer-configs", default="1x0x250,2x0x250,2x0x500,3x0x250,2x0x1000")
    ap.add_argument("--procrastinate-configs", default="2x30x0,4x20x0,4x30x0")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="Queue benchmark")
    ap.add_argument("--command", default="")
    a = ap.parse_args()

    admin = os.environ["DATABASE_URL"]
    classes = {"nexjobs": NexJobs, "pgqueuer": PgQueuer, "procrastinate": Procrastinate}
    systems = [classes[s](admin) for s in a.systems.split(",")]
    configs = {"NexJobs": parse_configs(a.nexjobs_configs), "PgQueuer": parse_configs(a.pgqueuer_configs),
               "Procrastinate": parse_configs(a.procrastinate_configs)}
    started = time.monotonic()
    for s in systems:
        s.setup(admin)
    versions = {s.name: s.version() for s in systems}

    # 1. Sweep: one burn-down of sweep-n jobs per configuration, systems interleaved.
    sweep = {s.name: [] for s in systems}
    longest = max(len(configs[s.name]) for s in systems)
    for i in range(longest):
        for s in systems:
            if i < len(configs[s.name]):
                cfg = configs[s.name][i]
                enq, drain = burn_down(s, cfg, a.procrastinate_sweep_n if s.name == "Procrastinate" else a.sweep_n)
                sweep[s.name].append((cfg, drain))
                log(f"sweep {s.name} {s.label(cfg)}: drain {drain:,.0f}/s")
    best = {name: max(rows, key=lambda r: r[1])[0] for name, rows in sweep.items()}

    # 2. Burn-down with each system's best configuration, rotating the order every repetition.
    runs = {s.name: [] for s in systems}
    for r in range(a.reps):
        order = systems[r % len(systems):] + systems[:r % len(systems)]
        for s in order:
            enq, drain = burn_down(s, best[s.name], a.n)
            runs[s.name].append((enq, drain))
            log(f"rep {r + 1} {s.name}: enqueue {enq:,.0f}/s drain {drain:,.0f}/s")

    # 3. Latency with idle workers, each system's chosen configuration, repetitions alternating systems. Every
    #    system's tables are emptied and vacuumed first, so no system's autovacuum runs during another's run.
    for s in systems:
        s.reset()
    lat_runs = latency_series(systems, {s.name: best[s.name] for s in systems}, a, admin, "")
    lat = medians(lat_runs)
    # The same with one worker process for the systems whose chosen configuration has more (each extra process
    # is one more listener woken by every NOTIFY), alternating too.
    one = {s.name: dict(best[s.name], workers=1) for s in systems
           if best[s.name]["workers"] > 1 and s.name != "Procrastinate" and a.latency_one_process}
    lat1_runs = latency_series([s for s in systems if s.name in one], one, a, admin, ", 1 process")
    lat1 = medians(lat1_runs)

    # 4. Crash safety.
    crash = {}
    crash_tx = None
    if not a.no_crash:
        for s in systems:
            cfg = dict(best[s.name])
            cfg["workers"] = max(2, cfg["workers"])
            crash[s.name] = crash_test(s, cfg, a.crash_n)
            log(f"crash {s.name}: lost {crash[s.name][0]} duplicated {crash[s.name][1]}")
            if s.name == "NexJobs":
                crash_tx = crash_test(s, cfg, a.crash_n, record="tx")
                log(f"crash NexJobs (record_tx): lost {crash_tx[0]} duplicated {crash_tx[1]}")

    # 5. The server's own ceiling.
    tps = pgbench(admin, a.pgbench_seconds) if a.pgbench_seconds > 0 else None
    if tps:
        log(f"pgbench simple-update: {tps:,.0f} tps")
    elapsed = time.monotonic() - started

    # Report.
    summary = {}
    for s in systems:
        enqs = [e for e, _ in runs[s.name]]
        drains = [d for _, d in runs[s.name]]
        summary[s.name] = {"enqueue": statistics.median(enqs), "drain": statistics.median(drains),
                           "p50": lat[s.name][0], "p95": lat[s.name][1], "p99": lat[s.name][2],
                           "lost": crash.get(s.name, (None, None))[0],
                           "dup": crash.get(s.name, (None, None))[1]}
    lines = []
    out = lines.append
    now = datetime.datetime.now(datetime.timezone.utc)
    pgver = psql(admin, "SHOW server_version")
    out(f"# {a.title}, {now:%Y-%m-%d %H:%M} UTC")
    out("")
    out(f"Command: `{a.command or ' '.join(sys.argv)}`  ")
    out(f"Machine: {os.cpu_count()} cores, {platform.platform()}, PostgreSQL {pgver} "
        f"(fsync=on, synchronous_commit=on), load average at end {os.getloadavg()[0]:.2f} "
        "(shared with other work: figures are noisy, compare the ratios measured side by side).  ")
    out(f"Burn-down: {a.n:,} no-op jobs enqueued in bulk then drained, median of {a.reps} repetitions"
        + (", systems alternating" if len(systems) > 1 else "") + f". Latency: {a.latency_jobs:,} jobs enqueued one at a time {a.interval_ms} ms apart, idle "
        "workers, start minus enqueue from server timestamps, median of each percentile over "
        f"{a.latency_reps} runs per system, systems alternating, every system's tables emptied and vacuumed and no "
        "autovacuum running before each run. "
        + (f"Crash: {a.crash_n:,} jobs, kill -9 of one worker process at 40% drained, every system declaring a "
           f"silent worker dead after {STALE_S} s (Procrastinate: its stalled-job retry run every second); lost = "
           "jobs never recorded, duplicated = extra recorded executions (each no-op handler records its execution "
           "in a side table before its job is marked complete, so work in flight at the kill runs again: "
           "at-least-once). " if crash else "")
        + f"Total run time {elapsed / 60:.1f} min.")
    out("")
    out("| system | version | configuration | enqueue/s | drain/s | p50 ms | p95 ms | p99 ms | lost | duplicated |")
    out("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in systems:
        m = summary[s.name]
        out(f"| {s.name} | {versions[s.name]} | {s.label(best[s.name])} | {fmt(m['enqueue'])} | {fmt(m['drain'])} "
            f"| {m['p50']:.2f} | {m['p95']:.2f} | {m['p99']:.2f} | {fmt(m['lost'])} | {fmt(m['dup'])} |")
    if crash_tx:
        out(f"| NexJobs, effect committed with completion | | same; no-op writes its row in the completion's "
            f"transaction (`record_tx`) | | | | | | {crash_tx[0]:,} | {crash_tx[1]:,} |")
    if tps:
        out(f"| PostgreSQL pgbench -b simple-update | {pgver} | 16 clients, 2 threads, {a.pgbench_seconds} s "
            f"| | {tps:,.0f} tps | | | | | |")
    out("")
    peers = [s.name for s in systems if s.name != "NexJobs"]
    if "NexJobs" in summary and peers:
        nj = summary["NexJobs"]
        bd = max(peers, key=lambda p: summary[p]["drain"])
        be = max(peers, key=lambda p: summary[p]["enqueue"])
        b50 = min(peers, key=lambda p: summary[p]["p50"])
        b99 = min(peers, key=lambda p: summary[p]["p99"])
        out("NexJobs against the best peer on each figure (higher is better for rates; for latency, "
            "peer / NexJobs, so above 1 means NexJobs is faster):")
        out("")
        out(f"- drain: {nj['drain'] / summary[bd]['drain']:.2f}x {bd}")
        out(f"- enqueue: {nj['enqueue'] / summary[be]['enqueue']:.2f}x {be}")
        out(f"- latency p50: {summary[b50]['p50'] / nj['p50']:.2f}x {b50}; "
            f"p99: {summary[b99]['p99'] / nj['p99']:.2f}x {b99}")
        out("")
    pro = any(s.name == "Procrastinate" for s in systems)
    out(f"## Configuration sweep (one burn-down per configuration: {a.sweep_n:,} jobs"
        + (f", Procrastinate {a.procrastinate_sweep_n:,})" if pro else ")"))
    out("")
    out("| system | configuration | drain/s |")
    out("|---|---|---:|")
    for s in systems:
        for cfg, d in sweep[s.name]:
            mark = " (chosen)" if cfg == best[s.name] else ""
            out(f"| {s.name} | {s.label(cfg)}{mark} | {d:,.0f} |")
    out("")
    out("## Latency runs (ms)")
    out("")
    out("| system | configuration | run | p50 | p95 | p99 |")
    out("|---|---|---:|---:|---:|---:|")
    for s in systems:
        for i, p in enumerate(lat_runs[s.name]):
            out(f"| {s.name} | {s.label(best[s.name])} | {i + 1} | {p[0]:.2f} | {p[1]:.2f} | {p[2]:.2f} |")
        for i, p in enumerate(lat1_runs.get(s.name, [])):
            out(f"| {s.name} | {s.label(one[s.name])} | {i + 1} | {p[0]:.2f} | {p[1]:.2f} | {p[2]:.2f} |")
    if lat1:
        out("")
        out("Median with one worker process: " + "; ".join(
            f"{name} p50 {v[0]:.2f} ms, p95 {v[1]:.2f}, p99 {v[2]:.2f}" for name, v in lat1.items()) + ".")
    out("")
    out("## Repetitions")
    out("")
    out("| system | rep | enqueue/s | drain/s |")
    out("|---|---:|---:|---:|")
    for s in systems:
        for i, (e, d) in enumerate(runs[s.name]):
            out(f"| {s.name} | {i + 1} | {e:,.0f} | {d:,.0f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
