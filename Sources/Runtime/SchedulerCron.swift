import Foundation
import Logs
import Postgres

/// Fires the cron schedules of `nexjobs.schedules` that are due, exactly once per fire time.
///
/// Times come from the database clock (`now()`), shared by every scheduler process. For each due schedule the
/// latest fire time at or before now is fired: after downtime a schedule fires once for the whole missed window,
/// not once per missed tick. A short gap -- a leader handover, at most `catchUpWindow` (default 60 s) behind --
/// fires every missed time instead, so a handover skips no fire time. The fire record (`nexjobs.schedule_fires`, primary key (name, fire_at)) and the job
/// are inserted in one transaction with `ON CONFLICT DO NOTHING`, so two leaders racing over a handover fire a
/// time once. A schedule without `next_fire_at` (new, or whose cron, timezone or enabled flag changed) gets one
/// computed and fires from then on. Kinds starting with `nexjobs.` are maintenance run here, in batches, instead
/// of enqueued (see `MaintenanceAction`).
///
/// Failures are isolated per schedule: one whose fire time cannot be computed, whose maintenance arguments are
/// invalid, or whose fire fails for any other reason is skipped with `last_error` set and `retry_at` pushed back
/// (10 s after the first failure, doubling, at most 1 hour; `failures` counts them), and the tick goes on with
/// the next schedule. A fire-time failure keeps `next_fire_at`, so the retry fires the same fire time; a fire that
/// succeeds clears the error. Only a failure to record the failure (the database is unreachable) fails the run.
public struct CronScheduleSource: DueWorkSource {
    public var name: String { "cron" }
    public var interval: Duration = .zero
    /// Missed fire times no older than this fire one by one (handovers); older gaps fire once. Default 60 s.
    public var catchUpWindow: Duration = .seconds(60)
    /// Most due schedules looked at per run; the rest wait for the next tick. Default 500.
    public var maxPerRun: Int = 500
    /// Delay before a failed schedule is tried again after its first failure; doubles with each further
    /// consecutive failure up to `retryMax`. Defaults 10 s and 1 hour.
    public var retryBase: Duration = .seconds(10)
    public var retryMax: Duration = .seconds(3600)

    public init() {}

    public func run(_ context: DueWorkContext) async throws -> Int {
        let rows = try await context.pool.query(
            """
            SELECT name, cron, timezone, kind, args::text, queue, priority, max_attempts, next_fire_at, now()
              FROM nexjobs.schedules
             WHERE enabled AND (next_fire_at IS NULL OR next_fire_at <= now())
               AND (retry_at IS NULL OR retry_at <= now())
             ORDER BY next_fire_at NULLS FIRST, name
             LIMIT \(max(1, maxPerRun))
            """)
        var fired = 0
        for row in rows {
            guard context.isLeader() else { break }
            let name: String = try row.decode(0)
            let s: DueSchedule
            do {
                s = DueSchedule(
                    name: name, cron: try row.decode(1), timezone: try row.decode(2),
                    kind: try row.decode(3), args: try row.decode(4), queue: try row.decode(5),
                    priority: try row.decode(6), maxAttempts: try row.decode(7), nextFireAt: try row.decode(8),
                    now: try row.decode(9))
            } catch {
                try await recordFailure(name: name, cron: row.text(1), timezone: row.text(2), error, context)
                continue
            }
            let spec: ScheduleSpec
            do {
                spec = try ScheduleSpec(s.cron, timeZone: s.timezone)
            } catch {
                // Its fire times cannot be computed: no next fire time until the definition is fixed.
                try await recordFailure(
                    name: s.name, cron: s.cron, timezone: s.timezone, error, context, clearNextFire: true)
                continue
            }
            do {
                if try await fire(s, spec, context) { fired += 1 }
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                try await recordFailure(name: s.name, cron: s.cron, timezone: s.timezone, error, context)
            }
        }
        return fired
    }

    struct DueSchedule {
        var name, cron, timezone, kind, args, queue: String
        var priority, maxAttempts: Int
        var nextFireAt: Date?
        var now: Date
    }

    /// Marks a schedule as failed: `last_error`, one more in `failures`, and `retry_at` after the backoff. Only a
    /// row whose definition is unchanged since it was read is touched (a fix made meanwhile wins).
    private func recordFailure(
        name: String, cron: String?, timezone: String?, _ error: Error, _ context: DueWorkContext,
        clearNextFire: Bool = false
    ) async throws {
        let text = (error as? ScheduleSpecError)?.message ?? "\(error)"
        let message = String(text.prefix(1000))
        let base = "\(LeaderElection.milliseconds(retryBase)) milliseconds"
        let cap = "\(LeaderElection.milliseconds(retryMax)) milliseconds"
        let row = try await context.pool.query(
            """
            UPDATE nexjobs.schedules
               SET last_error = \(message), failures = failures + 1,
                   retry_at = now() + least(\(cap)::interval, \(base)::interval * power(2, least(failures, 30))),
                   next_fire_at = CASE WHEN \(clearNextFire)::boolean THEN NULL ELSE next_fire_at END
             WHERE name = \(name) AND cron IS NOT DISTINCT FROM coalesce(\(cron), cron)
               AND timezone IS NOT DISTINCT FROM coalesce(\(timezone), timezone)
            RETURNING failures, retry_at
            """
        ).first
        let failures: Int = try row?.decode(0) ?? 0
        let retryAt: Date? = try row?.decode(1, as: Date?.self)
        context.logger.error(
            "schedule failed; skipped until its retry", ("schedule", name), ("error", message),
            ("failures", String(failures)), ("retry_at", retryAt.map(PGTimestamp.format) ?? "-"))
    }

    /// Clears a schedule's failure state after it fired.
    private func clearFailure(_ s: DueSchedule, _ conn: PGConnection) async throws {
        try await conn.execute(
            """
            UPDATE nexjobs.schedules SET last_error = NULL, failures = 0, retry_at = NULL
             WHERE name = \(s.name) AND (last_error IS NOT NULL OR failures <> 0 OR retry_at IS NOT NULL)
            """)
    }

    /// Fires one schedule if due; returns whether a new fire record was written.
    private func fire(_ s: DueSchedule, _ spec: ScheduleSpec, _ context: DueWorkContext) async throws -> Bool {
        let following = spec.next(after: s.now)
        guard let nextFireAt = s.nextFireAt, let fireAt = spec.latestFire(atOrBefore: s.now), fireAt >= nextFireAt
        else {
            // New or redefined schedule: it fires from its next fire time on, not for the past. A failure recorded
            // earlier stays visible until it fires.
            try await context.pool.execute(
                """
                UPDATE nexjobs.schedules SET next_fire_at = \(following ?? .distantFuture), retry_at = NULL
                 WHERE name = \(s.name) AND cron = \(s.cron) AND timezone = \(s.timezone) AND enabled
                   AND next_fire_at IS NOT DISTINCT FROM \(s.nextFireAt)
                """)
            return false
        }
        let maintenance = s.kind.hasPrefix("nexjobs.")
        // Bad maintenance arguments fail here, before anything is recorded, so the retry can fire this time.
        let plan = maintenance ? try await MaintenanceAction.plan(kind: s.kind, args: s.args, context.pool) : nil
        // Every missed time of a short gap (a handover), else only the latest one.
        var times = [fireAt]
        let gap = s.now.timeIntervalSince(nextFireAt)
        let window = Double(catchUpWindow.components.seconds)
        if !maintenance && gap <= window {
            times = []
            var t: Date? = nextFireAt
            while let current = t, current <= fireAt, times.count < 1000 {
                times.append(current)
                t = spec.next(after: current)
            }
            if times.last != fireAt { times.append(fireAt) }
        }
        let holder = context.holder
        let inserted = try await context.pool.withTransaction { conn -> Bool in
            var any = false
            for time in times {
                let record = try await conn.query(
                    """
                    INSERT INTO nexjobs.schedule_fires (name, fire_at, holder) VALUES (\(s.name), \(time), \(holder))
                    ON CONFLICT (name, fire_at) DO NOTHING RETURNING 1
                    """)
                if record.isEmpty { continue }
                any = true
                if !maintenance {
                    try await conn.execute(
                        """
                        UPDATE nexjobs.schedule_fires f
                           SET job_id = (nexjobs.enqueue_ex(\(s.kind), \(s.args)::jsonb, \(s.queue), \(s.priority),
                                                            NULL, NULL, \(s.maxAttempts))).id
                         WHERE f.name = \(s.name) AND f.fire_at = \(time)
                        """)
                }
            }
            try await conn.execute(
                """
                UPDATE nexjobs.schedules
                   SET last_fire_at = greatest(last_fire_at, \(fireAt)), next_fire_at = \(following ?? .distantFuture)
                 WHERE name = \(s.name) AND cron = \(s.cron) AND timezone = \(s.timezone) AND enabled
                """)
            // A maintenance fire clears its error only once the maintenance itself has run (below).
            if !maintenance { try await clearFailure(s, conn) }
            return any
        }
        guard inserted else { return false }
        // Maintenance fires every few seconds; logging each at info would drown the log.
        context.logger.log(
            maintenance ? .debug : .info, "schedule fired",
            [("schedule", s.name), ("kind", s.kind), ("fire_at", PGTimestamp.format(fireAt))])
        if let plan {
            let n = try await MaintenanceAction.run(plan, context)
            try await context.pool.withConnection { try await clearFailure(s, $0) }
            context.logger.debug("maintenance done", ("schedule", s.name), ("rows", String(n)))
        }
        return true
    }
}

/// Queue maintenance run by the leader itself when a `nexjobs.*` schedule fires, in batches so no statement
/// holds a long transaction. Arguments come from the schedule's `args`, with the defaults below; they are checked
/// before anything runs, whatever wrote the row.
///
/// Each run is bounded: at most `maxBatches` statements per loop, and it stops as soon as
/// `DueWorkContext.isLeader()` turns false (leadership lost, shutdown, or the tick's time budget spent); what is
/// left is done at the next fire.
public enum MaintenanceAction {
    /// Most batches one loop runs per fire. 100.
    public static let maxBatches = 100
    /// Accepted `batch_size`: 1...100 000.
    public static let batchSizeRange = 1...100_000

    /// Checked arguments of one maintenance run.
    public struct Plan: Sendable, Equatable {
        public var kind: String
        public var batchSize: Int
        /// PostgreSQL interval texts (prune only), checked to be valid and not negative.
        public var completedRetention = "24 hours"
        public var failedRetention = "14 days"
        public var firesRetention = "30 days"
    }

    private struct Args: Decodable {
        var batch_size: Int?
        var completed_retention: String?
        var failed_retention: String?
        var fires_retention: String?
    }

    /// Checks a maintenance schedule's kind and args without the database (interval syntax is checked by `plan`).
    /// - Throws: `ScheduleSpecError` naming the bad value.
    public static func validate(kind: String, args: String) throws {
        _ = try parse(kind: kind, args: args)
    }

    static func parse(kind: String, args: String) throws -> Plan {
        let defaultBatch: Int
        switch kind {
        case "nexjobs.rescue": defaultBatch = 1000
        case "nexjobs.prune": defaultBatch = 5000
        default:
            throw ScheduleSpecError(
                message: "unknown maintenance kind '\(kind)' (known: nexjobs.rescue, nexjobs.prune)")
        }
        let decoded: Args
        do {
            decoded = try JSONDecoder().decode(Args.self, from: Data(args.utf8))
        } catch {
            throw ScheduleSpecError(
                message: "args of \(kind) must be a JSON object with batch_size (an integer in 1...100000)"
                    + (kind == "nexjobs.prune"
                        ? " and completed_retention, failed_retention, fires_retention (intervals, e.g. \"24 hours\")"
                        : ""))
        }
        var plan = Plan(kind: kind, batchSize: decoded.batch_size ?? defaultBatch)
        guard batchSizeRange.contains(plan.batchSize) else {
            throw ScheduleSpecError(
                message: "args of \(kind): batch_size \(plan.batchSize) is out of range 1...100000")
        }
        if kind == "nexjobs.prune" {
            for (field, value) in [
                ("completed_retention", decoded.completed_retention), ("failed_retention", decoded.failed_retention),
                ("fires_retention", decoded.fires_retention),
            ] {
                guard let value else { continue }
                guard (1...100).contains(value.count) else {
                    throw ScheduleSpecError(message: "args of \(kind): \(field) must be 1-100 characters")
                }
                switch field {
                case "completed_retention": plan.completedRetention = value
                case "failed_retention": plan.failedRetention = value
                default: plan.firesRetention = value
                }
            }
        }
        return plan
    }

    /// Parses and checks a maintenance schedule's args; prune retentions are checked by the database as
    /// intervals of at least zero.
    /// - Throws: `ScheduleSpecError` for a bad kind or argument; `PGError` when the database cannot be asked.
    public static func plan(kind: String, args: String, _ pool: PGPool) async throws -> Plan {
        let plan = try parse(kind: kind, args: args)
        guard kind == "nexjobs.prune" else { return plan }
        let ok: Bool
        do {
            ok =
                try await pool.query(
                    """
                    SELECT \(plan.completedRetention)::interval >= interval '0'
                       AND \(plan.failedRetention)::interval >= interval '0'
                       AND \(plan.firesRetention)::interval >= interval '0'
                    """
                ).first?.decode(0) ?? false
        } catch let e as PGError where e.sqlState?.hasPrefix("22") == true {
            throw ScheduleSpecError(
                message: "args of \(kind): a retention is not a PostgreSQL interval (e.g. \"24 hours\"): \(e.message)")
        }
        guard ok else { throw ScheduleSpecError(message: "args of \(kind): retentions must not be negative") }
        return plan
    }

    /// Runs `nexjobs.rescue` (args: `batch_size`, default 1000) or `nexjobs.prune` (args: `completed_retention`
    /// default 24 hours, `failed_retention` default 14 days, `fires_retention` default 30 days, `batch_size`
    /// default 5000). Returns the rows handled.
    /// - Throws: `ScheduleSpecError` for another `nexjobs.` kind or bad args.
    public static func run(kind: String, args: String, _ context: DueWorkContext) async throws -> Int {
        let plan = try await plan(kind: kind, args: args, context.pool)
        // Another process (a worker) holds the maintenance role: it maintains, not this scheduler.
        guard context.isMaintenanceLeader() else { return 0 }
        return try await run(plan, context)
    }

    static func run(_ plan: Plan, _ context: DueWorkContext) async throws -> Int {
        let pool = context.pool
        let batch = plan.batchSize
        var total = 0
        switch plan.kind {
        case "nexjobs.rescue":
            for _ in 0..<maxBatches {
                guard context.isLeader() else { break }
                let n: Int = try await pool.query("SELECT nexjobs.rescue(\(batch))").first?.decode(0) ?? 0
                total += n
                if n < batch { break }
            }
            if total > 0 { context.logger.info("rescued expired leases", ("jobs", String(total))) }
        case "nexjobs.prune":
            for _ in 0..<maxBatches {
                guard context.isLeader() else { break }
                let n: Int =
                    try await pool.query(
                        """
                        SELECT nexjobs.prune(\(plan.completedRetention)::interval, \(plan.failedRetention)::interval,
                                             \(batch))
                        """
                    ).first?.decode(0) ?? 0
                total += n
                if n < batch { break }
            }
            for _ in 0..<maxBatches {
                guard context.isLeader() else { break }
                let n = try await pool.execute(
                    """
                    DELETE FROM nexjobs.schedule_fires
                     WHERE ctid IN (SELECT ctid FROM nexjobs.schedule_fires
                                     WHERE fired_at < now() - \(plan.firesRetention)::interval
                                     LIMIT \(batch))
                    """)
                total += n
                if n < batch { break }
            }
        default:
            throw ScheduleSpecError(
                message: "unknown maintenance kind '\(plan.kind)' (known: nexjobs.rescue, nexjobs.prune)")
        }
        return total
    }
}
