import Foundation
import Logs
import NexcometJobs
import Postgres
import Runtime

func schedulerCommand(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(
        args,
        valued: [
            "tick", "term", "renew", "standby-retry", "safety-margin", "id", "sync-batch", "sync-jitter",
            "refresh-margin", "queue",
        ],
        flags: ["once", "json"])
    if a.wantsHelp {
        print(
            """
            Usage: nexjobs scheduler [--tick 1s] [--term 10s] [options]

            Campaigns for leadership in nexjobs.leader (one atomic statement per attempt, safe behind PgBouncer
            transaction pooling). Only the leader acts; on each tick it fires due cron schedules (nexjobs.schedules,
            see `nexjobs schedules`), enqueues sync_connection for due connections, refresh_token for tokens
            near expiry, and gdpr_export / gdpr_erase for pending privacy requests (restrict requests are applied
            at once). Standbys take over within about term + standby retry after the leader dies.
            A schedule that cannot be computed or fired is skipped with last_error and retried with backoff
            (see `nexjobs schedules list`); a leader whose ticks keep failing or hang steps down for one term.
            SIGTERM/SIGINT: finish the current tick (waiting at most 10 s), release leadership, exit 0.

              --tick DURATION            how often the leader looks for due work (default: 1s)
              --term DURATION            leadership term (default: 10s)
              --renew DURATION           the leader extends its term this often (default: 3s)
              --standby-retry DURATION   standbys try to take an expired term this often (default: 2s)
              --safety-margin DURATION   stop acting this long before the term ends unless extended (default: 2s)
              --id ID                    holder id shown by `nexjobs stats` (default: host:pid:random)
              --sync-batch N             connections per sync statement (default: 10000)
              --sync-jitter F            random extra delay as a share of the cadence, 0...1 (default: 0.1)
              --refresh-margin DURATION  refresh tokens expiring within this (default: 10m)
              --queue Q                  queue of sync, refresh and privacy-request jobs (default: default)
              --once                     take leadership (exit 3 if another scheduler leads), run one tick,
                                         print what it enqueued and how long it took, release, exit
              --json                     with --once: print {"elapsed_ms":..., "<source>": count, ...}
            """)
        return Exit.ok
    }
    guard a.positionals.isEmpty else { throw UsageError("scheduler takes no positional arguments") }
    var o = SchedulerOptions()
    o.tick = try a.duration("tick") ?? o.tick
    o.election.term = try a.duration("term") ?? o.election.term
    o.election.renewInterval = try a.duration("renew") ?? o.election.renewInterval
    o.election.standbyRetry = try a.duration("standby-retry") ?? o.election.standbyRetry
    o.election.safetyMargin = try a.duration("safety-margin") ?? o.election.safetyMargin
    guard o.tick >= .milliseconds(10) else { throw UsageError("--tick must be at least 10ms") }
    do { try o.election.validate() } catch let e as ScheduleSpecError { throw UsageError(e.message) }
    var syncs = ConnectionSyncSource()
    var refreshes = TokenRefreshSource()
    var privacy = PrivacyRequestSource()
    syncs.batchSize = try a.int("sync-batch", range: 1...1_000_000) ?? syncs.batchSize
    if let j = a.options["sync-jitter"] {
        guard let v = Double(j), (0...1).contains(v) else { throw UsageError("--sync-jitter must be in 0...1") }
        syncs.jitter = v
    }
    refreshes.margin = try a.duration("refresh-margin") ?? refreshes.margin
    if let q = a.options["queue"] {
        guard q.range(of: #"^[A-Za-z0-9_.:-]{1,128}$"#, options: .regularExpression) != nil else {
            throw UsageError("--queue must be 1-128 of A-Z a-z 0-9 _ . : -")
        }
        syncs.queue = q
        refreshes.queue = q
        privacy.queue = q
    }
    o.sources = [CronScheduleSource(), syncs, refreshes, privacy]
    if let id = a.options["id"], id.isEmpty || id.count > 200 { throw UsageError("--id must be 1-200 characters") }

    let pool = try openPool(maxConnections: 3)
    let electionPool = try openDirectPool()  // NEXJOBS_DIRECT_DATABASE_URL, behind PgBouncer
    let logger = Logger(label: "scheduler")
    let scheduler = Scheduler(
        pool: pool, options: o, holder: a.options["id"], electionPool: electionPool, logger: logger)

    if a.flag("once") {
        guard await scheduler.election.attempt() else {
            printErr("error: another scheduler leads; --once runs only as leader")
            await pool.close()
            return Exit.notFound
        }
        let t0 = ContinuousClock.now
        let counts: [String: Int]
        do {
            counts = try await scheduler.tickOnce()
        } catch {
            await scheduler.election.release()
            await pool.close()
            throw error
        }
        let elapsed = ContinuousClock.now - t0
        await scheduler.election.release()
        await pool.close()
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        let names = o.sources.map(\.name)
        if a.flag("json") {
            print(
                JSONOut.object(
                    [("elapsed_ms", .double((ms * 10).rounded() / 10))]
                        + names.map { ($0, .int(Int64(counts[$0] ?? 0))) }
                ).text)
        } else {
            print(
                "tick: " + names.map { "\($0)=\(counts[$0] ?? 0)" }.joined(separator: " ")
                    + String(format: " elapsed=%.1fms", ms))
        }
        return Exit.ok
    }

    let signals = SignalHandler(signals: [SIGTERM, SIGINT]) { sig in
        logger.info("signal received; shutting down", ("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"))
        scheduler.shutdown()
    }
    defer { signals.cancel() }
    try await scheduler.run()
    await pool.close()
    await electionPool?.close()
    return Exit.ok
}

func schedulesCommand(_ args: [String]) async throws -> Int32 {
    let help = """
        Usage: nexjobs schedules <list|add|enable|disable|remove> ...   (each takes --help)

        Cron schedules live in nexjobs.schedules; the scheduler leader fires each fire time exactly once
        (nexjobs.schedule_fires) and, after downtime, once for the whole missed window. Plain SQL works too:
          SELECT * FROM nexjobs.schedules;
          INSERT INTO nexjobs.schedules (name, cron, timezone, kind, args) VALUES ('n', '0 6 * * *', 'UTC', 'k', '{}');
          UPDATE nexjobs.schedules SET enabled = false WHERE name = 'n';
          UPDATE nexjobs.schedules SET cron = '0 4 * * *' WHERE name = 'retention_purge';
          DELETE FROM nexjobs.schedules WHERE name = 'n';
        """
    guard let sub = args.first, sub != "--help", sub != "-h" else {
        print(help)
        return args.isEmpty ? Exit.usage : Exit.ok
    }
    let rest = Array(args.dropFirst())
    switch sub {
    case "list": return try await schedulesList(rest)
    case "add": return try await schedulesAdd(rest)
    case "enable", "disable": return try await schedulesToggle(rest, enable: sub == "enable")
    case "remove": return try await schedulesRemove(rest)
    default: throw UsageError("unknown schedules subcommand '\(sub)' (list, add, enable, disable, remove)")
    }
}

private func schedulesList(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(args, valued: [], flags: ["json"])
    if a.wantsHelp {
        print(
            """
            Usage: nexjobs schedules list [--json]

            Every schedule with its cron expression, time zone, kind, queue, state and last / next fire time.
            A schedule that cannot be computed or fired shows its last error, the consecutive failures and when
            it is retried (backoff: 10 s, doubling, at most 1 h); other schedules keep firing meanwhile.
            SQL: SELECT * FROM nexjobs.schedules ORDER BY name;
            """)
        return Exit.ok
    }
    guard a.positionals.isEmpty else { throw UsageError("schedules list takes no positional arguments") }
    let pool = try openPool(maxConnections: 1)
    let schedules = try await ScheduleStore(pool: pool).list()
    await pool.close()
    func time(_ d: Date?) -> JSONOut { d.map { .string(PGTimestamp.format($0)) } ?? .null }
    if a.flag("json") {
        print(
            JSONOut.array(
                schedules.map { s in
                    .object([
                        ("name", .string(s.name)), ("cron", .string(s.cron)), ("timezone", .string(s.timezone)),
                        ("kind", .string(s.kind)), ("args", .raw(s.args)), ("queue", .string(s.queue)),
                        ("priority", .int(Int64(s.priority))), ("max_attempts", .int(Int64(s.maxAttempts))),
                        ("enabled", .bool(s.enabled)), ("last_fire_at", time(s.lastFireAt)),
                        ("next_fire_at", time(s.nextFireAt)), ("last_error", s.lastError.map { .string($0) } ?? .null),
                        ("failures", .int(Int64(s.failures))), ("retry_at", time(s.retryAt)),
                    ])
                }
            ).text)
    } else {
        print(
            pad("NAME", 22) + pad("CRON", 16) + pad("TIMEZONE", 16) + pad("KIND", 20) + pad("QUEUE", 12)
                + pad("ENABLED", 8) + pad("LAST FIRE", 30) + "NEXT FIRE")
        for s in schedules {
            var next = s.nextFireAt.map(PGTimestamp.format) ?? "-"
            if let error = s.lastError {
                let retry = s.retryAt.map { ", retry at " + PGTimestamp.format($0) } ?? ""
                next = "error (\(s.failures) failure\(s.failures == 1 ? "" : "s")\(retry)): \(error)"
            }
            print(
                pad(s.name, 22) + pad(s.cron, 16) + pad(s.timezone, 16) + pad(s.kind, 20) + pad(s.queue, 12)
                    + pad(s.enabled ? "yes" : "no", 8) + pad(s.lastFireAt.map(PGTimestamp.format) ?? "-", 30) + next)
        }
    }
    return Exit.ok
}

private func schedulesAdd(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(
        args, valued: ["cron", "timezone", "kind", "args", "queue", "priority", "max-attempts"],
        flags: ["disabled", "replace"])
    if a.wantsHelp {
        print(
            """
            Usage: nexjobs schedules add NAME --cron EXPR --kind KIND [--timezone TZ] [--args JSON] [--queue Q]
                                         [--priority P] [--max-attempts N] [--disabled] [--replace]

            Adds a schedule; it first fires at its next fire time after now.
              --cron EXPR        5 fields (minute hour day-of-month month day-of-week) with lists, ranges, steps
                                 and names, a macro (@hourly, @daily, @weekly, @monthly, @yearly), or
                                 `@every DURATION` (e.g. @every 30s: multiples of the interval since the epoch)
              --timezone TZ      IANA zone the cron fields are read in (default: UTC)
              --kind KIND        job kind enqueued at each fire (nexjobs.rescue / nexjobs.prune run in the leader)
              --args JSON        job args, a JSON object (default: {})
              --queue Q          (default: default)       --priority P    (default: 0)
              --max-attempts N   (default: 20)
              --disabled         add it disabled
              --replace          redefine an existing schedule of that name instead of failing
            SQL: INSERT INTO nexjobs.schedules (name, cron, timezone, kind, args, queue, priority)
                 VALUES ('NAME', 'EXPR', 'UTC', 'KIND', '{}', 'default', 0);
            """)
        return Exit.ok
    }
    guard a.positionals.count == 1 else { throw UsageError("schedules add needs exactly one NAME") }
    guard let cron = a.options["cron"] else { throw UsageError("schedules add needs --cron") }
    guard let kind = a.options["kind"] else { throw UsageError("schedules add needs --kind") }
    var s = Schedule(name: a.positionals[0], cron: cron, kind: kind)
    s.timezone = a.options["timezone"] ?? s.timezone
    s.args = a.options["args"] ?? s.args
    s.queue = a.options["queue"] ?? s.queue
    s.priority = try a.int("priority") ?? s.priority
    s.maxAttempts = try a.int("max-attempts", range: 1...1000) ?? s.maxAttempts
    s.enabled = !a.flag("disabled")
    do { try s.validate() } catch let e as ScheduleSpecError { throw UsageError(e.message) }
    let pool = try openPool(maxConnections: 1)
    let added = try await ScheduleStore(pool: pool).add(s, replace: a.flag("replace"))
    await pool.close()
    guard added else {
        printErr("error: a schedule named '\(s.name)' exists (use --replace to redefine it)")
        return Exit.notFound
    }
    print("schedule \(s.name) \(a.flag("replace") ? "saved" : "added")")
    return Exit.ok
}

private func schedulesToggle(_ args: [String], enable: Bool) async throws -> Int32 {
    let verb = enable ? "enable" : "disable"
    let a = try Arguments(args, valued: [], flags: [])
    if a.wantsHelp {
        let what =
            enable
            ? "Enables a schedule; it fires from its next fire time after now (no catch-up for the disabled time)."
            : "Disables a schedule; it stops firing until enabled."
        print(
            """
            Usage: nexjobs schedules \(verb) NAME

            \(what)
            SQL: UPDATE nexjobs.schedules SET enabled = \(enable) WHERE name = 'NAME';
            """)
        return Exit.ok
    }
    guard a.positionals.count == 1 else { throw UsageError("schedules \(verb) needs exactly one NAME") }
    let pool = try openPool(maxConnections: 1)
    let found = try await ScheduleStore(pool: pool).setEnabled(a.positionals[0], enable)
    await pool.close()
    guard found else {
        printErr("error: no schedule named '\(a.positionals[0])'")
        return Exit.notFound
    }
    print("schedule \(a.positionals[0]) \(verb)d")
    return Exit.ok
}

private func schedulesRemove(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(args, valued: [], flags: [])
    if a.wantsHelp {
        print(
            """
            Usage: nexjobs schedules remove NAME

            Deletes a schedule and its fire records (jobs it enqueued are kept).
            SQL: DELETE FROM nexjobs.schedules WHERE name = 'NAME';
            """)
        return Exit.ok
    }
    guard a.positionals.count == 1 else { throw UsageError("schedules remove needs exactly one NAME") }
    let pool = try openPool(maxConnections: 1)
    let found = try await ScheduleStore(pool: pool).remove(a.positionals[0])
    await pool.close()
    guard found else {
        printErr("error: no schedule named '\(a.positionals[0])'")
        return Exit.notFound
    }
    print("schedule \(a.positionals[0]) removed")
    return Exit.ok
}
