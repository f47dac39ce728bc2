"""Peer job queues driven through their own public APIs, for bench/compare.

    peers.py SYSTEM setup                       install the system's schema and the side table
    peers.py SYSTEM enqueue N [--record]        bulk-enqueue N no-op jobs; prints jobs_per_s=R
    peers.py SYSTEM worker --batch B | --concurrency C [--record] [--stale SECONDS]
    peers.py SYSTEM latency N INTERVAL_MS       enqueue N jobs one at a time (workers must be idle)
    peers.py procrastinate recover SECONDS      retry jobs whose worker stopped heartbeating (documented recovery)
    peers.py procrastinate recover-loop SECONDS the same every second until killed

SYSTEM is pgqueuer or procrastinate; DATABASE_URL names the database. Timings of the drain and the
enqueue-to-start latency are read afterwards from each system's own server-side timestamps by compare.py.
With --record the no-op handler inserts (job_id, worker pid) into bench_exec so lost and duplicated
executions can be counted.
"""

import asyncio
import os
import sys
import time

URL = os.environ["DATABASE_URL"]
QUEUE = "bench"
CHUNK = 5000
SIDE_TABLE = """CREATE TABLE IF NOT EXISTS bench_exec (
    job_id bigint NOT NULL, worker integer NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"""


def opt(args, name, default=None):
    if name in args:
        return args[args.index(name) + 1]
    return default


# ---------------------------------------------------------------- PgQueuer (asyncpg + uvloop)

async def pgq_setup():
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(URL)
    try:
        exists = await conn.fetchval("SELECT to_regclass('pgqueuer') IS NOT NULL")
        if not exists:
            await Queries(AsyncpgDriver(conn)).install()
        await conn.execute(SIDE_TABLE)
    finally:
        await conn.close()


async def pgq_enqueue(n, record):
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(URL)
    q = Queries(AsyncpgDriver(conn))
    payload = b"record" if record else None
    began = time.perf_counter()
    done = 0
    while done < n:
        k = min(CHUNK, n - done)
        await q.enqueue(["noop"] * k, [payload] * k, [0] * k)
        done += k
    took = time.perf_counter() - began
    await conn.close()
    print(f"enqueued={n} seconds={took:.4f} jobs_per_s={n / took:.0f}")


async def pgq_worker(batch, record, stale):
    from datetime import timedelta

    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager

    conn = await asyncpg.connect(URL)
    side = await asyncpg.create_pool(URL, min_size=1, max_size=4) if record else None
    qm = QueueManager(Queries(AsyncpgDriver(conn)))
    pid = os.getpid()

    @qm.entrypoint("noop")
    async def noop(job):
        if side is not None and job.payload == b"record":
            await side.execute("INSERT INTO bench_exec (job_id, worker) VALUES ($1, $2)", job.id, pid)

    await qm.run(batch_size=batch, heartbeat_timeout=timedelta(seconds=stale))


async def pgq_latency(n, interval_ms):
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(URL)
    q = Queries(AsyncpgDriver(conn))
    start = time.perf_counter()
    for i in range(n):
        delay = start + i * interval_ms / 1000 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await q.enqueue("noop", None)
    await conn.close()


# ---------------------------------------------------------------- Procrastinate (psycopg 3)

def procrastinate_app(record=False, pool_size=None):
    import procrastinate

    kwargs = {"conninfo": URL}
    if pool_size:
        kwargs["max_size"] = pool_size
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(**kwargs))
    pid = os.getpid()

    @app.task(name="noop", queue=QUEUE, pass_context=True)
    async def noop(context, record=False):
        if record:
            await app.connector.execute_query_async(
                "INSERT INTO bench_exec (job_id, worker) VALUES (%(job_id)s, %(worker)s)",
                job_id=context.job.id, worker=pid)

    return app, noop


async def pro_setup():
    app, _ = procrastinate_app()
    async with app.open_async():
        exists = await app.connector.execute_query_one_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS e")
        if not exists["e"]:
            await app.schema_manager.apply_schema_async()
        await app.connector.execute_query_async(SIDE_TABLE)


async def pro_enqueue(n, record):
    app, noop = procrastinate_app()
    async with app.open_async():
        kw = {"record": True} if record else {}
        began = time.perf_counter()
        done = 0
        while done < n:
            k = min(CHUNK, n - done)
            await noop.batch_defer_async(*([kw] * k))
            done += k
        took = time.perf_counter() - began
    print(f"enqueued={n} seconds={took:.4f} jobs_per_s={n / took:.0f}")


async def pro_worker(concurrency):
    app, _ = procrastinate_app(pool_size=max(10, concurrency + 2))
    async with app.open_async():
        await app.run_worker_async(queues=[QUEUE], concurrency=concurrency, wait=True,
                                   update_heartbeat_interval=1.0)


async def pro_latency(n, interval_ms):
    app, noop = procrastinate_app()
    async with app.open_async():
        start = time.perf_counter()
        for i in range(n):
            delay = start + i * interval_ms / 1000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await noop.defer_async()


async def pro_recover(stale):
    """Procrastinate's documented recovery for a crashed worker: retry jobs whose worker's heartbeat is stale."""
    app, _ = procrastinate_app()
    async with app.open_async():
        n = 0
        for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stale):
            await app.job_manager.retry_job(job)
            n += 1
    print(f"recovered={n}")


async def pro_recover_loop(stale):
    """Runs the documented recovery every second until killed, as a deployment would from a periodic task."""
    app, _ = procrastinate_app()
    async with app.open_async():
        while True:
            for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stale):
                await app.job_manager.retry_job(job)
            await asyncio.sleep(1)


def main():
    system, cmd, *rest = sys.argv[1:]
    record = "--record" in rest
    valued = {"--batch", "--concurrency", "--stale"}
    pos = [a for i, a in enumerate(rest) if not a.startswith("--") and not (i and rest[i - 1] in valued)]
    if system == "pgqueuer":
        import uvloop
        run = uvloop.run
        if cmd == "setup":
            run(pgq_setup())
        elif cmd == "enqueue":
            run(pgq_enqueue(int(pos[0]), record))
        elif cmd == "worker":
            run(pgq_worker(int(opt(rest, "--batch", "10")), record, float(opt(rest, "--stale", "30"))))
        elif cmd == "latency":
            run(pgq_latency(int(pos[0]), int(pos[1])))
        else:
            sys.exit(f"unknown command {cmd}")
    elif system == "procrastinate":
        run = asyncio.run
        if cmd == "setup":
            run(pro_setup())
        elif cmd == "enqueue":
            run(pro_enqueue(int(pos[0]), record))
        elif cmd == "worker":
            run(pro_worker(int(opt(rest, "--concurrency", "10"))))
        elif cmd == "latency":
            run(pro_latency(int(pos[0]), int(pos[1])))
        elif cmd == "recover":
            run(pro_recover(float(pos[0])))
        elif cmd == "recover-loop":
            run(pro_recover_loop(float(pos[0])))
        else:
            sys.exit(f"unknown command {cmd}")
    else:
        sys.exit(f"unknown system {system}")


if __name__ == "__main__":
    main()
