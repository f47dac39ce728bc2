import Foundation
import Logs
import NexcometJobs
import Postgres
import Queue
import Runtime

func migrateCommand(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(args, valued: ["dir"], flags: [])
    if a.wantsHelp {
        print(
            """
            Usage: nexjobs migrate [--dir DIR]

            Applies pending NNN_name.sql migrations in order inside one transaction guarded by an advisory lock, and
            records them in nexjobs.schema_migrations. Running it twice, or from two processes at once, is safe.
            The migrations are embedded in the binary, so it works from any directory.

              --dir DIR   apply the NNN_name.sql files of DIR instead (default: $NEXJOBS_SQL_DIR when set, else the
                          embedded copy of the repository's sql/)
            """)
        return Exit.ok
    }
    guard a.positionals.isEmpty else { throw UsageError("migrate takes no arguments") }
    let migrator: PGMigrator
    let env = ProcessInfo.processInfo.environment
    if let d = a.options["dir"] ?? env["NEXJOBS_SQL_DIR"].flatMap({ $0.isEmpty ? nil : $0 }) {
        let source = a.options["dir"] != nil ? "--dir" : "NEXJOBS_SQL_DIR"
        var isDirectory: ObjCBool = false
        guard !d.isEmpty, d.utf8.count <= 4096, FileManager.default.fileExists(atPath: d, isDirectory: &isDirectory),
            isDirectory.boolValue
        else { throw UsageError("\(source) must name an existing folder, got \(CheckedInput.quote(d))") }
        do { migrator = try PGMigrator(directory: URL(fileURLWithPath: d)) } catch let e as PGError {
            throw UsageError("\(source) \(d): \(e.message)")
        } catch {
            throw UsageError("cannot read migrations from \(d): \(error)")
        }
    } else {
        migrator = PGMigrator(migrations: EmbeddedMigrations.all)
    }
    let pool = try openPool(maxConnections: 1)
    let outcome = try await migrator.migrate(pool)
    await pool.close()
    for name in outcome.applied { print("applied \(name)") }
    for name in outcome.changed { printErr("warning: \(name) changed since it was applied (not re-applied)") }
    print("migrations: \(outcome.applied.count) applied, \(outcome.alreadyApplied) already applied")
    return Exit.ok
}

func workerCommand(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(
        args,
        valued: [
            "queues", "concurrency", "claim-batch", "poll", "grace", "lease", "heartbeat", "retry-base",
            "retry-max", "maintenance-interval", "completed-retention", "failed-retention",
        ],
        flags: ["no-maintenance"])
    if a.wantsHelp {
        print(
            """
            Usage: nexjobs worker [--queues a,b=N] [--concurrency N] [options]

            Claims jobs with FOR UPDATE SKIP LOCKED and runs them. Wakes on NOTIFY, polls as a fallback.
            SIGTERM/SIGINT: stop claiming, let running jobs finish within --grace, hand back the rest without
            charging an attempt, exit 0. A second signal skips the grace period.

              --queues a,b                 queues to work, each 1-128 of A-Z a-z 0-9 _ . : -, at most 100, no
                                           duplicates (default: default). QUEUE=N caps the jobs of QUEUE this
                                           worker runs at once, N in 1...10000 and <= --concurrency, e.g.
                                           --queues default,sync.tiktok=8,sync.snapchat=8: a queue whose jobs wait
                                           (a rate limit) cannot take every slot; a queue without =N is bounded
                                           only by --concurrency
              --concurrency N              jobs run at once, 1...10000 (default: 10)
              --claim-batch N              most jobs claimed per statement, 1...10000 (default: 1000)
              --poll DURATION              fallback poll interval, 10ms...1h (default: 1s)
              --grace DURATION             shutdown grace period, 0s...1h (default: 25s)
              --lease DURATION             lease, 1s...1h; a silent worker's jobs are rescued after it (default: 15s)
              --heartbeat DURATION         heartbeat period, 100ms...10m, shorter than --lease (default: 2s)
              --retry-base DURATION        first retry delay, 1ms...1d; doubles per attempt, with jitter (default: 1s)
              --retry-max DURATION         longest retry delay, 1ms...30d (default: 1h)
              --no-maintenance             never maintain (rescue, prune): another worker or the scheduler does
              --maintenance-interval D     100ms...1d (default: 5s)
              --completed-retention D      keep completed jobs, 0s...3650d (default: 24h)
              --failed-retention D         keep failed and cancelled jobs, 0s...3650d (default: 14d)

            Durations: 250ms, 90s, 5m, 2h, 1d, 1h30m (a bare number is seconds). Out of range: exit 2.
            """)
        return Exit.ok
    }
    guard a.positionals.isEmpty else { throw UsageError("worker takes no positional arguments") }
    try checkSettingsEnvironment()
    var o = WorkerOptions()
    if let q = a.options["queues"] { (o.queues, o.queueLimits) = try parseQueues(q) }
    o.concurrency = try a.int("concurrency", range: 1...10_000) ?? o.concurrency
    for (queue, cap) in o.queueLimits.sorted(by: { $0.key < $1.key }) where cap > o.concurrency {
        throw UsageError("--queues: the cap of \(queue) (\(cap)) must be <= --concurrency (\(o.concurrency))")
    }
    o.claimBatch = try a.int("claim-batch", range: 1...10_000) ?? o.claimBatch
    o.pollInterval = try a.duration("poll", range: .milliseconds(10)...(.seconds(3600))) ?? o.pollInterval
    o.shutdownGrace = try a.duration("grace", range: .zero...(.seconds(3600))) ?? o.shutdownGrace
    o.leaseDuration = try a.duration("lease", range: .seconds(1)...(.seconds(3600))) ?? o.leaseDuration
    o.heartbeatInterval =
        try a.duration("heartbeat", range: .milliseconds(100)...(.seconds(600))) ?? o.heartbeatInterval
    o.maintenanceInterval =
        try a.duration("maintenance-interval", range: .milliseconds(100)...(.seconds(86_400))) ?? o.maintenanceInterval
    o.completedRetention =
        try a.duration("completed-retention", range: .zero...(.seconds(3650 * 86_400))) ?? o.completedRetention
    o.failedRetention =
        try a.duration("failed-retention", range: .zero...(.seconds(3650 * 86_400))) ?? o.failedRetention
    o.maintenance = !a.flag("no-maintenance")
    let base = try a.duration("retry-base", range: .milliseconds(1)...(.seconds(86_400))) ?? .seconds(1)
    let maxBackoff = try a.duration("retry-max", range: .milliseconds(1)...(.seconds(30 * 86_400))) ?? .seconds(3600)
    o.retryPolicy = .exponentialJitter(base: base, maxBackoff: maxBackoff)
    guard o.heartbeatInterval < o.leaseDuration else {
        throw UsageError("--heartbeat must be shorter than --lease")
    }

    o.listenerConfig = try directDatabaseConfig()
    let pool = try openPool(maxConnections: max(4, min(o.concurrency + 3, 20)))
    let logger = Logger(label: "worker")
    let worker = Worker(pool: pool, registry: defaultRegistry(), options: o, logger: logger)
    let signals = SignalHandler(signals: [SIGTERM, SIGINT]) { sig in
        logger.info("signal received; shutting down", ("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"))
        worker.shutdown()
    }
    defer { signals.cancel() }
    try await worker.run()
    await pool.close()
    return Exit.ok
}

/// Parses `--queues a,b=N,...`: queue names (1-128 of A-Z a-z 0-9 _ . : -, 1...100 of them, no duplicates), each
/// optionally with `=N`, the most jobs of that queue one worker runs at once (1...10000; the caller checks it
/// against `--concurrency`). Empty entries (`a,,b`) are skipped.
func parseQueues(_ text: String) throws -> (queues: [String], limits: [String: Int]) {
    var queues: [String] = []
    var limits: [String: Int] = [:]
    var seen = Set<String>()
    for entry in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
        let parts = entry.split(separator: "=", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2 else {
            throw UsageError("--queues: give QUEUE or QUEUE=N (one '='), got \(CheckedInput.quote(entry))")
        }
        let name = parts[0]
        guard CheckedInput.isQueueName(name) else {
            throw UsageError(
                "--queues: each queue must be 1-128 of A-Z a-z 0-9 _ . : -, got \(CheckedInput.quote(name))")
        }
        guard seen.insert(name).inserted else {
            throw UsageError("--queues names queue \(CheckedInput.quote(name)) twice")
        }
        queues.append(name)
        if parts.count == 2 {
            limits[name] = try CheckedInput.integer(parts[1], name: "--queues \(name)=N", range: 1...10_000)
        }
        guard queues.count <= 100 else { throw UsageError("--queues needs 1...100 queue names") }
    }
    guard !queues.isEmpty else { throw UsageError("--queues needs 1...100 queue names") }
    return (queues, limits)
}

func enqueueCommand(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(
        args, valued: ["args", "queue", "priority", "run-at", "in", "unique-key", "max-attempts"],
        flags: ["json"])
    if a.wantsHelp {
        print(
            """
            Usage: nexjobs enqueue KIND [--args JSON] [--queue Q] [--priority P] [--run-at ISO8601 | --in 90s]
                                        [--unique-key K] [--max-attempts N] [--json]

            Enqueues one job and prints its id. With --unique-key, a live job holding the key is returned instead
            (reported as a duplicate). SQL equivalent:
              SELECT nexjobs.enqueue(kind, args, queue, priority, run_at, unique_key, max_attempts);

              --args JSON          a JSON object (default: {}); for a kind this build runs, checked against
                                   what its handler accepts (e.g. noop: sleep_ms 0...86400000)
              --queue Q            1-128 of A-Z a-z 0-9 _ . : - (default: default)
              --priority P         smaller runs first, -32768...32767 (default: 0)
              --run-at ISO8601     1970-01-01T00:00:00Z...9999-12-31T23:59:59Z, e.g. 2026-12-01T09:00:00Z
              --in DURATION        0s...36500d, e.g. 90s, 15m, 2h
              --unique-key K       1...1000 bytes; refuse a second live job with this key
              --max-attempts N     1...1000 (default: 20)
              --json               print {"id":..., "duplicate":...}
            """)
        return Exit.ok
    }
    guard a.positionals.count == 1 else { throw UsageError("enqueue needs exactly one KIND") }
    var job = NewJob(kind: a.positionals[0])
    if let args = a.options["args"] { job.args = args }
    if let q = a.options["queue"] { job.queue = q }
    job.priority = try a.int("priority", range: -32768...32767) ?? 0
    job.maxAttempts = try a.int("max-attempts", range: 1...1000) ?? 20
    job.uniqueKey = try a.text("unique-key", bytes: NewJob.uniqueKeyBytes)
    if a.options["run-at"] != nil && a.options["in"] != nil { throw UsageError("give --run-at or --in, not both") }
    if let date = try a.timestamp("run-at") { job.runAt = date }
    if let d = try a.duration("in", range: .zero...(.seconds(36_500 * 86_400))) {
        job.runAt = Date().addingTimeInterval(Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
    }
    try job.validate()
    try defaultRegistry().validateArgs(kind: job.kind, json: job.args)
    let pool = try openPool(maxConnections: 1)
    let result = try await JobClient(pool: pool).enqueue(job)
    await pool.close()
    if a.flag("json") {
        print(JSONOut.object([("id", .int(result.id)), ("duplicate", .bool(result.duplicate))]).text)
    } else if result.duplicate {
        print("\(result.id) (duplicate: a live job holds unique key '\(job.uniqueKey ?? "")')")
    } else {
        print(result.id)
    }
    return Exit.ok
}

func jobsCommand(_ args: [String]) async throws -> Int32 {
    if args.first == "why" { return try await jobsWhyCommand(Array(args.dropFirst())) }  // JobsWhyCommand.swift
    let help = """
        Usage: nexjobs jobs <list|show|retry|cancel|why> ...

          jobs list [--state S] [--kind K] [--queue Q] [--limit N] [--json]
              newest first; S is one of available, running, completed, retryable, failed, cancelled
              SQL: SELECT * FROM nexjobs.jobs WHERE state = 'failed' ORDER BY id DESC LIMIT 50;
          jobs show ID [--json]      the job with its error history
              SQL: SELECT * FROM nexjobs.jobs WHERE id = ID;
          jobs retry ID              run again now (a failed job gets one more attempt)
              SQL: SELECT nexjobs.retry(ID);
          jobs cancel ID             cancel; a running job is told and stops
              SQL: SELECT nexjobs.cancel(ID);
          jobs why ID [--json]       why it is not running (see jobs why --help)
        """
    let a = try Arguments(args, valued: ["state", "kind", "queue", "limit"], flags: ["json"])
    if a.wantsHelp || a.positionals.isEmpty {
        print(help)
        return a.wantsHelp ? Exit.ok : Exit.usage
    }
    func jobID() throws -> Int64 {
        guard a.positionals.count == 2 else { throw UsageError("jobs \(a.positionals[0]) needs exactly one ID") }
        return try databaseID(a.positionals[1], name: "job ID")
    }
    switch a.positionals[0] {
    case "list":
        guard a.positionals.count == 1 else { throw UsageError("jobs list takes no positional arguments") }
        let state = try a.options["state"].map(JobState.parse)
        for name in ["kind", "queue"] { _ = try a.text(name, bytes: 1...128) }
        let limit = try a.int("limit", range: 1...10_000) ?? 50
        let pool = try openPool(maxConnections: 1)
        let jobs = try await JobClient(pool: pool).list(
            state: state, kind: a.options["kind"],
            queue: a.options["queue"], limit: limit)
        await pool.close()
        if a.flag("json") {
            print(JSONOut.array(jobs.map(jobJSON)).text)
        } else {
            print(pad("ID", 10) + pad("STATE", 11) + pad("KIND", 20) + pad("QUEUE", 12) + pad("ATTEMPT", 9) + "RUN AT")
            for j in jobs {
                print(
                    pad(String(j.id), 10) + pad(j.state.rawValue, 11) + pad(j.kind, 20) + pad(j.queue, 12)
                        + pad("\(j.attempt)/\(j.maxAttempts)", 9) + PGTimestamp.format(j.runAt))
            }
        }
    case "show":
        let id = try jobID()
        let pool = try openPool(maxConnections: 1)
        let job = try await JobClient(pool: pool).job(id)
        await pool.close()
        if a.flag("json") {
            print(jobJSON(job).text)
        } else {
            print(
                """
                id:           \(job.id)
                kind:         \(job.kind)
                queue:        \(job.queue)
                state:        \(job.state.rawValue)
                args:         \(job.args)
                priority:     \(job.priority)
                attempt:      \(job.attempt) of \(job.maxAttempts)
                run at:       \(PGTimestamp.format(job.runAt))
                unique key:   \(job.uniqueKey ?? "-")
                locked by:    \(job.lockedBy ?? "-")
                created at:   \(PGTimestamp.format(job.createdAt))
                attempted at: \(job.attemptedAt.map(PGTimestamp.format) ?? "-")
                finished at:  \(job.finishedAt.map(PGTimestamp.format) ?? "-")
                errors:       \(job.errors.isEmpty ? "none" : "")
                """)
            for e in job.errors { print("  attempt \(e.attempt) at \(e.at): \(e.error)") }
        }
    case "retry":
        let id = try jobID()
        let pool = try openPool(maxConnections: 1)
        try await JobClient(pool: pool).retry(id)
        await pool.close()
        print("job \(id) will run again")
    case "cancel":
        let id = try jobID()
        let pool = try openPool(maxConnections: 1)
        try await JobClient(pool: pool).cancel(id)
        await pool.close()
        print("job \(id) cancelled")
    default:
        throw UsageError("unknown jobs subcommand '\(a.positionals[0])' (list, show, retry, cancel)")
    }
    return Exit.ok
}

func statsCommand(_ args: [String]) async throws -> Int32 {
    let a = try Arguments(args, valued: [], flags: ["json"])
    if a.wantsHelp {
        print(
            """
            Usage: nexjobs stats [--json]

            Jobs by queue and state, the oldest due job's age, completions in the last 1 and 5 minutes, live workers
            and the scheduler leader, and open privacy requests against their 30-day deadline.
            SQL: SELECT * FROM nexjobs.stats;
            """)
        return Exit.ok
    }
    let pool = try openPool(maxConnections: 1)
    let stats = try await JobClient(pool: pool).stats()
    let workers: Int = try await pool.query(
        "SELECT count(*)::int FROM nexjobs.workers WHERE lease_until > now()"
    ).first!.decode(0)
    let leader = try await currentLeader(pool)
    let privacy = try await privacyStats(pool)
    await pool.close()
    if a.flag("json") {
        let queues = stats.map { s in
            JSONOut.object([
                ("queue", .string(s.queue)), ("available", .int(Int64(s.available))),
                ("running", .int(Int64(s.running))),
                ("retryable", .int(Int64(s.retryable))), ("completed", .int(Int64(s.completed))),
                ("failed", .int(Int64(s.failed))), ("cancelled", .int(Int64(s.cancelled))),
                ("oldest_due_seconds", s.oldestDueSeconds.map { .double($0) } ?? .null),
                ("completed_last_minute", .int(Int64(s.completedLastMinute))),
                ("completed_last_5_minutes", .int(Int64(s.completedLast5Minutes))),
            ])
        }
        print(
            JSONOut.object([
                ("queues", .array(queues)), ("live_workers", .int(Int64(workers))),
                ("scheduler_leader", leader.map { .string($0) } ?? .null),
                ("privacy_requests", privacy.json),
            ]).text)
    } else {
        print(
            pad("QUEUE", 14) + pad("AVAIL", 8) + pad("RUNNING", 8) + pad("RETRY", 8) + pad("DONE", 10)
                + pad("FAILED", 8)
                + pad("CANCEL", 8) + pad("OLDEST", 10) + "DONE/MIN")
        for s in stats {
            let oldest = s.oldestDueSeconds.map { $0.isFinite ? String(format: "%.1fs", $0) : "infinite" } ?? "-"
            print(
                pad(s.queue, 14) + pad("\(s.available)", 8) + pad("\(s.running)", 8) + pad("\(s.retryable)", 8)
                    + pad("\(s.completed)", 10) + pad("\(s.failed)", 8) + pad("\(s.cancelled)", 8) + pad(oldest, 10)
                    + "\(s.completedLastMinute)")
        }
        print("live workers: \(workers)")
        print("scheduler leader: \(leader ?? "none")")
        print(privacy.text)
    }
    return Exit.ok
}

func jobJSON(_ j: JobRecord) -> JSONOut {
    .object([
        ("id", .int(j.id)), ("kind", .string(j.kind)), ("queue", .string(j.queue)), ("args", .raw(j.args)),
        ("state", .string(j.state.rawValue)), ("priority", .int(Int64(j.priority))),
        ("run_at", .string(PGTimestamp.format(j.runAt))), ("attempt", .int(Int64(j.attempt))),
        ("max_attempts", .int(Int64(j.maxAttempts))), ("unique_key", j.uniqueKey.map { .string($0) } ?? .null),
        ("locked_by", j.lockedBy.map { .string($0) } ?? .null),
        ("created_at", .string(PGTimestamp.format(j.createdAt))),
        ("attempted_at", j.attemptedAt.map { .string(PGTimestamp.format($0)) } ?? .null),
        ("finished_at", j.finishedAt.map { .string(PGTimestamp.format($0)) } ?? .null),
        (
            "errors",
            .array(
                j.errors.map { e in
                    .object([
                        ("at", .string(e.at)), ("attempt", .int(Int64(e.attempt))), ("error", .string(e.error)),
                        ("worker", e.worker.map { .string($0) } ?? .null),
                    ])
                })
        ),
    ])
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
}

/// The scheduler leader's id, if a leader holds a live term.
func currentLeader(_ pool: PGPool) async throws -> String? {
    let exists: Bool = try await pool.query("SELECT to_regclass('nexjobs.leader') IS NOT NULL").first!.decode(0)
    guard exists else { return nil }
    return try await pool.query(
        "SELECT holder FROM nexjobs.leader WHERE name = 'scheduler' AND term_until > now()"
    ).first?.decode(0, as: String.self)
}
