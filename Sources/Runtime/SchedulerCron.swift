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
public struct CronScheduleSource: DueWorkSource {
    public var name: String { "cron" }
    public var interval: Duration = .zero
    /// Missed fire times no older than this fire one by one (handovers); older gaps fire once. Default 60 s.
    public var catchUpWindow: Duration = .seconds(60)

    public init() {}

    public func run(_ context: DueWorkContext) async throws -> Int {
        let rows = try await context.pool.query(
            """
            SELECT name, cron, timezone, kind, args::text, queue, priority, max_attempts, next_fire_at, now()
              FROM nexjobs.schedules
             WHERE enabled AND (next_fire_at IS NULL OR next_fire_at <= now())
             ORDER BY next_fire_at NULLS FIRST
            """)
        var fired = 0
        for row in rows {
            guard context.isLeader() else { break }
            let s = DueSchedule(
                name: try row.decode(0), cron: try row.decode(1), timezone: try row.decode(2),
                kind: try row.decode(3), args: try row.decode(4), queue: try row.decode(5),
                priority: try row.decode(6), maxAttempts: try row.decode(7), nextFireAt: try row.decode(8),
                now: try row.decode(9))
            do {
                if try await fire(s, context) { fired += 1 }
            } catch let e as ScheduleSpecError {
                context.logger.error("schedule cannot fire", ("schedule", s.name), ("error", e.message))
                try await context.pool.execute(
                    """
                    UPDATE nexjobs.schedules SET last_error = \(e.message), next_fire_at = 'infinity'
                     WHERE name = \(s.name) AND cron = \(s.cron) AND timezone = \(s.timezone)
                    """)
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

    /// Fires one schedule if due; returns whether a new fire record was written.
    private func fire(_ s: DueSchedule, _ context: DueWorkContext) async throws -> Bool {
        let spec = try ScheduleSpec(s.cron, timeZone: s.timezone)
        let following = spec.next(after: s.now)
        guard let nextFireAt = s.nextFireAt, let fireAt = spec.latestFire(atOrBefore: s.now), fireAt >= nextFireAt
        else {
            // New or redefined schedule: it fires from its next fire time on, not for the past.
            try await context.pool.execute(
                """
                UPDATE nexjobs.schedules SET next_fire_at = \(following ?? .distantFuture), last_error = NULL
                 WHERE name = \(s.name) AND cron = \(s.cron) AND timezone = \(s.timezone) AND enabled
                   AND next_fire_at IS NOT DISTINCT FROM \(s.nextFireAt)
                """)
            return false
        }
        let maintenance = s.kind.hasPrefix("nexjobs.")
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
                   SET last_fire_at = greatest(last_fire_at, \(fireAt)), next_fire_at = \(following ?? .distantFuture),
                       last_error = NULL
                 WHERE name = \(s.name) AND cron = \(s.cron) AND timezone = \(s.timezone) AND enabled
                """)
            return any
        }
        guard inserted else { return false }
        // Maintenance fires every few seconds; logging each at info would drown the log.
        context.logger.log(
            maintenance ? .debug : .info, "schedule fired",
            [("schedule", s.name), ("kind", s.kind), ("fire_at", PGTimestamp.format(fireAt))])
        if maintenance {
            let n = try await MaintenanceAction.run(kind: s.kind, args: s.args, context)
            context.logger.debug("maintenance done", ("schedule", s.name), ("rows", String(n)))
        }
        return true
    }
}

/// Queue maintenance run by the leader itself when a `nexjobs.*` schedule fires, in batches so no statement
/// holds a long transaction. Arguments come from the schedule's `args`, with the defaults below.
public enum MaintenanceAction {
    /// Runs `nexjobs.rescue` (args: `batch_size`, default 1000) or `nexjobs.prune` (args: `completed_retention`
    /// default 24 hours, `failed_retention` default 14 days, `fires_retention` default 30 days, `batch_size`
    /// default 5000). Returns the rows handled.
    /// - Throws: `ScheduleSpecError` for any other `nexjobs.` kind.
    public static func run(kind: String, args: String, _ context: DueWorkContext) async throws -> Int {
        // Another process (a worker) holds the maintenance role: it maintains, not this scheduler.
        guard context.isMaintenanceLeader() else { return 0 }
        let pool = context.pool
        switch kind {
        case "nexjobs.rescue":
            var total = 0
            while context.isLeader() {
                let rows = try await pool.query(
                    """
                    SELECT nexjobs.rescue(coalesce((\(args)::jsonb->>'batch_size')::integer, 1000)),
                           coalesce((\(args)::jsonb->>'batch_size')::integer, 1000)
                    """)
                let n: Int = try rows.first?.decode(0) ?? 0
                let batch: Int = try rows.first?.decode(1) ?? 1000
                total += n
                if n < batch { break }
            }
            if total > 0 { context.logger.info("rescued expired leases", ("jobs", String(total))) }
            return total
        case "nexjobs.prune":
            var total = 0
            while context.isLeader() {
                let rows = try await pool.query(
                    """
                    SELECT nexjobs.prune(coalesce((\(args)::jsonb->>'completed_retention')::interval, '24 hours'),
                                         coalesce((\(args)::jsonb->>'failed_retention')::interval, '14 days'),
                                         coalesce((\(args)::jsonb->>'batch_size')::integer, 5000)),
                           coalesce((\(args)::jsonb->>'batch_size')::integer, 5000)
                    """)
                let n: Int = try rows.first?.decode(0) ?? 0
                let batch: Int = try rows.first?.decode(1) ?? 5000
                total += n
                if n < batch { break }
            }
            while context.isLeader() {
                let n = try await pool.execute(
                    """
                    DELETE FROM nexjobs.schedule_fires
                     WHERE ctid IN (SELECT ctid FROM nexjobs.schedule_fires
                                     WHERE fired_at < now() - coalesce((\(args)::jsonb->>'fires_retention')::interval,
                                                                       '30 days')
                                     LIMIT 5000)
                    """)
                total += n
                if n < 5000 { break }
            }
            return total
        default:
            throw ScheduleSpecError(
                message: "unknown maintenance kind '\(kind)' (known: nexjobs.rescue, nexjobs.prune)")
        }
    }
}
