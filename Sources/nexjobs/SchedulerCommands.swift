import Foundation
import Logs
import NexcometJobs
import Postgres
import Runtime
import Sync

func schedulerCommand(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(
        args,
        valued: [
            "tick", "term", "renew", "standby-retry", "safety-margin", "id", "sync-batch", "sync-jitter",
            "refresh-margin", "queue", "first-sync-backlog",
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

              --tick DURATION            how often the leader looks for due work, 10ms...1h (default: 1s)
              --term DURATION            leadership term, 1s...1h (default: 10s)
              --renew DURATION           the leader extends its term this often, 100ms...1h (default: 3s)
              --standby-retry DURATION   standbys try to take an expired term this often, 100ms...1h (default: 2s)
              --safety-margin DURATION   stop acting this long before the term ends unless extended, 0s...1h
                                         (default: 2s)
              --id ID                    holder id shown by `nexjobs stats`, 1-200 characters (default: host:pid:random)
              --sync-batch N             connections per sync statement, 1...1000000 (default: 10000)
              --sync-jitter F            random extra delay as a share of the cadence, 0...1 (default: 0.1)
              --first-sync-backlog N     enqueue first syncs (connections never synced) only while fewer than N
                                         sync jobs wait in the queue, 1...10000000 (default: 1000); the others
                                         stay due and are admitted as it drains. Regular syncs are not held back.
              --refresh-margin DURATION  refresh tokens expiring within this, 0s...30d (default: 10m)
              --queue Q                  queue of sync, refresh and privacy-request jobs, 1-128 of A-Z a-z 0-9 _ . : -
                                         (default: default)
              --once                     take leadership (exit 3 if another scheduler leads), run one tick,
                                         print what it enqueued and how long it took, release, exit
              --json                     with --once: print {"elapsed_ms":..., "<source>": count, ...}
            """)
        return Exit.ok
    }
    guard a.positionals.isEmpty else { throw UsageError("scheduler takes no positional arguments") }
    try checkSettingsEnvironment()
    var o = SchedulerOptions()
    o.tick = try a.duration("tick", range: .milliseconds(10)...(.seconds(3600))) ?? o.tick
    o.election.term = try a.duration("term", range: .seconds(1)...(.seconds(3600))) ?? o.election.term
    o.election.renewInterval =
        try a.duration("renew", range: .milliseconds(100)...(.seconds(3600))) ?? o.election.renewInterval
    o.election.standbyRetry =
        try a.duration("standby-retry", range: .milliseconds(100)...(.seconds(3600))) ?? o.election.standbyRetry
    o.election.safetyMargin =
        try a.duration("safety-margin", range: .zero...(.seconds(3600))) ?? o.election.safetyMargin
    guard o.tick >= .milliseconds(10) else { throw UsageError("--tick must be at least 10ms") }
    do { try o.election.validate() } catch let e as ScheduleSpecError { throw UsageError(e.message) }
    var syncs = ConnectionSyncSource()
    var refreshes = TokenRefreshSource()
    var privacy = PrivacyRequestSource()
    syncs.batchSize = try a.int("sync-batch", range: 1...1_000_000) ?? syncs.batchSize
    syncs.firstSyncBacklog = try a.int("first-sync-backlog", range: 1...10_000_000) ?? syncs.firstSyncBacklog
    if let j = a.options["sync-jitter"] {
        syncs.jitter = try CheckedInput.decimal(j, name: "--sync-jitter", range: 0...1)
    }
    refreshes.margin = try a.duration("refresh-margin", range: .zero...(.seconds(30 * 86_400))) ?? refreshes.margin
    if let q = a.options["queue"] {
        guard CheckedInput.isQueueName(q) else {
            throw UsageError("--queue must be 1-128 of A-Z a-z 0-9 _ . : -")
        }
        syncs.queue = q
        refreshes.queue = q
        privacy.queue = q
    }
    // Each platform's discoveries in its own queue, as its account syncs (NEXJOBS_SYNC_QUEUE_*, checked at start).
    syncs.platformQueues = SyncSettings.fromEnvironment(ProcessInfo.processInfo.environment).syncQueuesByName
    o.sources = [CronScheduleSource(), syncs, refreshes, privacy]
    if let id = a.options["id"], id.isEmpty || id.count > 200 || id.utf8.contains(0) {
        throw UsageError("--id must be 1-200 characters")
    }

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
              --cron EXPR        1...200 bytes: 5 fields (minute hour day-of-month month day-of-week) with lists, ranges, steps
                                 and names, a macro (@hourly, @daily, @weekly, @monthly, @yearly), or
                                 `@every DURATION` (1s...3650d, whole seconds; e.g. @every 30s: multiples of
                                 the interval since the epoch)
              --timezone TZ      IANA zone the cron fields are read in (default: UTC)
              --kind KIND        job kind enqueued at each fire (nexjobs.rescue / nexjobs.prune run in the leader)
              --args JSON        job args, a JSON object (default: {}), checked like `nexjobs enqueue` checks
                                 them (nexjobs.rescue: batch_size 1...100000; nexjobs.prune: batch_size
                                 1...100000 and *_retention PostgreSQL intervals of at least 0)
              --queue Q          1-128 of A-Z a-z 0-9 _ . : - (default: default)
              --priority P       -32768...32767 (default: 0)
              --max-attempts N   1...1000 (default: 20)
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
    s.priority = try a.int("priority", range: -32768...32767) ?? s.priority
    s.maxAttempts = try a.int("max-attempts", range: 1...1000) ?? s.maxAttempts
    s.enabled = !a.flag("disabled")
    guard cron.utf8.count <= 200 else { throw UsageError("--cron must be 1...200 bytes, got \(cron.utf8.count)") }
    guard s.timezone.utf8.count <= 64 else { throw UsageError("--timezone must be an IANA name of at most 64 bytes") }
    do { try s.validate() } catch let e as ScheduleSpecError { throw UsageError(e.message) }
    try checkScheduleArgs(kind: s.kind, args: s.args)
    let pool = try openPool(maxConnections: 1)
    try await checkMaintenanceIntervals(kind: s.kind, args: s.args, pool: pool)
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
    if enable {
        // A schedule written through SQL is checked like `schedules add` before it can fire.
        if let s = try await ScheduleStore(pool: pool).list().first(where: { $0.name == a.positionals[0] }) {
            do { try s.validate() } catch let e as ScheduleSpecError {
                throw UsageError("schedule '\(s.name)' cannot be enabled: \(e.message)")
            }
            do {
                try checkScheduleArgs(kind: s.kind, args: s.args)
                try await checkMaintenanceIntervals(kind: s.kind, args: s.args, pool: pool)
            } catch let e as UsageError {
                throw UsageError("schedule '\(s.name)' cannot be enabled: \(e.message)")
            }
        }
    }
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

/// Checks a schedule's args as its kind would: the leader's maintenance kinds here, job kinds through the
/// registry's `CheckedArgs` (the same check `nexjobs enqueue` does).
func checkScheduleArgs(kind: String, args: String) throws {
    if kind == "nexjobs.rescue" || kind == "nexjobs.prune" {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(args.utf8))) as? [String: Any] else {
            throw UsageError("--args must be a JSON object")
        }
        let known: Set<String> =
            kind == "nexjobs.rescue"
            ? ["batch_size"] : ["batch_size", "completed_retention", "failed_retention", "fires_retention"]
        for key in object.keys where !known.contains(key) {
            throw UsageError(
                "--args: \(kind) takes \(known.sorted().joined(separator: ", ")), not \(CheckedInput.quote(key))")
        }
        struct Batch: Decodable { var batch_size: Int? }
        if object["batch_size"] != nil {
            let batch = try? JSONDecoder().decode(Batch.self, from: Data(args.utf8))
            guard let n = batch?.batch_size, (1...100_000).contains(n) else {
                throw UsageError("--args: batch_size of \(kind) must be an integer in 1...100000")
            }
        }
        for key in ["completed_retention", "failed_retention", "fires_retention"] {
            if let v = object[key], !(v is String) || (v as! String).utf8.count > 100 {
                throw UsageError("--args: \(key) must be a PostgreSQL interval string like '24 hours'")
            }
        }
        return
    }
    try defaultRegistry().validateArgs(kind: kind, json: args)
}

/// The interval args of `nexjobs.prune` must be intervals PostgreSQL reads, finite and not negative.
func checkMaintenanceIntervals(kind: String, args: String, pool: PGPool) async throws {
    guard kind == "nexjobs.prune" else { return }
    for key in ["completed_retention", "failed_retention", "fires_retention"] {
        let ok: Bool?
        do {
            ok = try await pool.query(
                """
                SELECT CASE WHEN \(PGJSON(args))::jsonb ? \(key)
                            THEN (\(PGJSON(args))::jsonb->>\(key))::interval BETWEEN interval '0' AND interval '100 years'
                            ELSE true END
                """
            ).first?.decode(0, as: Bool?.self)
        } catch let e as PGError where e.sqlState?.hasPrefix("22") == true {
            ok = false
        }
        guard ok == true else { throw UsageError("--args: \(key) must be an interval in 0...100 years") }
    }
}
