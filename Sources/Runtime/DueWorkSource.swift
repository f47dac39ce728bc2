import Foundation
import Logs
import Postgres

/// What a due-work source may consult while it runs.
public struct DueWorkContext: Sendable {
    public var pool: PGPool
    public var logger: Logger
    /// This scheduler's holder id (recorded with fires, useful in logs).
    public var holder: String
    /// Whether this process still leads and may go on (the scheduler also turns it false on shutdown and once
    /// the tick's time budget is spent). Sources doing several statements check it between them, so they stop
    /// within one statement.
    public var isLeader: @Sendable () -> Bool
    /// Whether this process holds the `maintenance` role (`MaintenanceRole`): `nexjobs.*` maintenance schedules
    /// act only then, so one process maintains at a time. Default: always (`tickOnce`, tests).
    public var isMaintenanceLeader: @Sendable () -> Bool

    public init(
        pool: PGPool, logger: Logger, holder: String, isLeader: @escaping @Sendable () -> Bool,
        isMaintenanceLeader: @escaping @Sendable () -> Bool = { true }
    ) {
        self.pool = pool
        self.logger = logger
        self.holder = holder
        self.isLeader = isLeader
        self.isMaintenanceLeader = isMaintenanceLeader
    }
}

/// One kind of due work the scheduler leader enqueues each tick: the plug-in point for new kinds.
///
/// A source runs only on the leader, at most once per `interval`. It should be set-based (one statement per
/// batch, cost proportional to the work due) and idempotent: a tick may be repeated by the next leader after a
/// crash, so use unique keys or fire records. Return the number of jobs enqueued (or rows handled), for logs.
/// Retention purges and privacy requests plug in as further sources (`SchedulerOptions.extraSources`).
public protocol DueWorkSource: Sendable {
    /// Short name for logs and metrics, e.g. `sync_connection`.
    var name: String { get }
    /// Least time between two runs; `.zero` runs on every tick.
    var interval: Duration { get }
    func run(_ context: DueWorkContext) async throws -> Int
}
