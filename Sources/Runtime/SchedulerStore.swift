import Foundation
import Postgres

/// A row of `nexjobs.schedules`.
public struct Schedule: Sendable, Equatable {
    public var name: String
    /// 5-field cron expression or `@every <duration>` (see `ScheduleSpec`).
    public var cron: String
    /// IANA time zone the cron fields are read in; default UTC.
    public var timezone: String = "UTC"
    public var kind: String
    /// A JSON object, kept as text so big integers survive.
    public var args: String = "{}"
    public var queue: String = "default"
    public var priority: Int = 0
    public var maxAttempts: Int = 20
    public var enabled: Bool = true
    public var lastFireAt: Date? = nil
    public var nextFireAt: Date? = nil
    /// Why the last attempt to compute or fire it failed; cleared when it fires again.
    public var lastError: String? = nil
    /// Consecutive failed attempts (0 after a successful fire).
    public var failures: Int = 0
    /// While failing: the scheduler tries it again no earlier than this (the backoff grows with `failures`).
    public var retryAt: Date? = nil

    public init(
        name: String, cron: String, timezone: String = "UTC", kind: String, args: String = "{}",
        queue: String = "default", priority: Int = 0, maxAttempts: Int = 20, enabled: Bool = true
    ) {
        self.name = name
        self.cron = cron
        self.timezone = timezone
        self.kind = kind
        self.args = args
        self.queue = queue
        self.priority = priority
        self.maxAttempts = maxAttempts
        self.enabled = enabled
    }

    /// Checks what the database cannot: the cron expression, the time zone, and the argument JSON's shape.
    /// - Throws: `ScheduleSpecError` naming the bad value.
    public func validate() throws {
        guard CheckedInput.isQueueName(name) else {
            throw ScheduleSpecError(message: "schedule name '\(name)' must be 1-128 of A-Z a-z 0-9 _ . : -")
        }
        guard kind.range(of: #"^[a-z][a-z0-9_.:-]{0,127}$"#, options: .regularExpression) != nil else {
            throw ScheduleSpecError(message: "kind '\(kind)' must start with a-z and use a-z 0-9 _ . : -")
        }
        if kind.hasPrefix("nexjobs."), !["nexjobs.rescue", "nexjobs.prune"].contains(kind) {
            throw ScheduleSpecError(
                message: "unknown maintenance kind '\(kind)' (known: nexjobs.rescue, nexjobs.prune)")
        }
        guard CheckedInput.isQueueName(queue) else {
            throw ScheduleSpecError(message: "queue '\(queue)' must be 1-128 of A-Z a-z 0-9 _ . : -")
        }
        guard (-32768...32767).contains(priority) else {
            throw ScheduleSpecError(message: "priority must be in -32768...32767")
        }
        guard maxAttempts >= 1 else { throw ScheduleSpecError(message: "max attempts must be at least 1") }
        let trimmed = args.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.hasPrefix("{"),
            (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) is [String: Any]
        else {
            throw ScheduleSpecError(message: "args must be a JSON object")
        }
        _ = try ScheduleSpec(cron, timeZone: timezone)
    }
}

/// Reads and writes `nexjobs.schedules` (what `nexjobs schedules` does; plain SQL works the same).
public struct ScheduleStore: Sendable {
    public let pool: PGPool

    public init(pool: PGPool) { self.pool = pool }

    /// All schedules by name.
    public func list() async throws -> [Schedule] {
        let rows = try await pool.query(
            """
            SELECT name, cron, timezone, kind, args::text, queue, priority, max_attempts, enabled, last_fire_at,
                   next_fire_at, last_error, failures, retry_at
              FROM nexjobs.schedules ORDER BY name
            """)
        return try rows.map { r in
            var s = Schedule(
                name: try r.decode(0), cron: try r.decode(1), timezone: try r.decode(2),
                kind: try r.decode(3), args: try r.decode(4), queue: try r.decode(5),
                priority: try r.decode(6), maxAttempts: try r.decode(7), enabled: try r.decode(8))
            s.lastFireAt = try r.decode(9, as: Date?.self)
            // 'infinity' marks a schedule that cannot fire; it shows as no next fire.
            s.nextFireAt = r.text(10) == "infinity" ? nil : try r.decode(10, as: Date?.self)
            s.lastError = try r.decode(11, as: String?.self)
            s.failures = try r.decode(12)
            s.retryAt = try r.decode(13, as: Date?.self)
            return s
        }
    }

    /// Inserts a schedule after validating it; with `replace`, an existing one of that name is redefined.
    /// - Returns: false when the name exists and `replace` is false.
    public func add(_ s: Schedule, replace: Bool = false) async throws -> Bool {
        try s.validate()
        let conflict =
            replace
            ? """
            DO UPDATE SET cron = excluded.cron, timezone = excluded.timezone, kind = excluded.kind,
               args = excluded.args, queue = excluded.queue, priority = excluded.priority,
               max_attempts = excluded.max_attempts, enabled = excluded.enabled, next_fire_at = NULL
            """
            : "DO NOTHING"
        let n = try await pool.execute(
            """
            INSERT INTO nexjobs.schedules (name, cron, timezone, kind, args, queue, priority, max_attempts, enabled)
            VALUES (\(s.name), \(s.cron), \(s.timezone), \(s.kind), \(s.args)::jsonb, \(s.queue), \(s.priority),
                    \(s.maxAttempts), \(s.enabled))
            ON CONFLICT (name) \(unsafeSQL: conflict)
            """)
        return n == 1
    }

    /// Enables or disables a schedule. Returns false when no schedule has that name.
    public func setEnabled(_ name: String, _ enabled: Bool) async throws -> Bool {
        try await pool.execute("UPDATE nexjobs.schedules SET enabled = \(enabled) WHERE name = \(name)") == 1
    }

    /// Deletes a schedule and its fire records. Returns false when no schedule has that name.
    public func remove(_ name: String) async throws -> Bool {
        try await pool.execute("DELETE FROM nexjobs.schedules WHERE name = \(name)") == 1
    }
}
