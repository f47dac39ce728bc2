import Foundation
import Logs
import Postgres

/// What a due-work source may consult while it runs.
public struct DueWorkContext: Sendable {
    public var pool: PGPool
    public var logger: Logger
    /// This scheduler's holder id (recorded with fires, useful in logs).
    public var holder: String
    /// Whether this process still leads. Sources doing several statements check it between them, so a leader
    /// that lost its term stops within one statement.
    public var isLeader: @Sendable () -> Bool
    /// Whether this process holds the `maintenance` role (`MaintenanceRole`): `nexjobs.*` maintenance schedules
    /// act only then, so one process maintains at a time. Default: always (`tickOnce`, tests).
    public var isMaintenanceLeader: @Sendable () -> Bool = { true }
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

/// Enqueues `sync_connection` for active connections whose `next_sync_at` has come, through
/// `nexcomet.enqueue_due_syncs`, in batches; restricted and deleted organizations are left out.
public struct ConnectionSyncSource: DueWorkSource {
    public var name: String { "sync_connection" }
    public var interval: Duration = .zero
    /// Connections per statement (one transaction each); default 10 000.
    public var batchSize: Int = 10_000
    /// Random extra delay, as a share of the cadence, added to each next sync time; default 0.1.
    public var jitter: Double = 0.1
    public var queue: String = "default"
    public var priority: Int = 0

    public init() {}

    public func run(_ context: DueWorkContext) async throws -> Int {
        var total = 0
        while context.isLeader() {
            let row = try await context.pool.query(
                """
                SELECT due, enqueued FROM nexcomet.enqueue_due_syncs(\(batchSize), \(jitter), \(queue), \(priority))
                """
            ).first
            let due: Int = try row?.decode(0) ?? 0
            total += try row?.decode(1) ?? 0
            if due < batchSize { break }
        }
        return total
    }
}

/// Enqueues `refresh_token` for active connections whose access token expires within `margin`, through
/// `nexcomet.enqueue_due_refreshes`.
public struct TokenRefreshSource: DueWorkSource {
    public var name: String { "refresh_token" }
    public var interval: Duration = .seconds(10)
    /// How long before expiry a token is refreshed; default 10 minutes.
    public var margin: Duration = .seconds(600)
    /// Least time between two refresh jobs for one connection; default 15 minutes.
    public var retryAfter: Duration = .seconds(900)
    public var batchSize: Int = 10_000
    public var queue: String = "default"
    /// Refreshes run before syncs; default -10.
    public var priority: Int = -10

    public init() {}

    public func run(_ context: DueWorkContext) async throws -> Int {
        var total = 0
        while context.isLeader() {
            let margin = "\(LeaderElection.milliseconds(margin)) milliseconds"
            let retry = "\(LeaderElection.milliseconds(retryAfter)) milliseconds"
            let n: Int =
                try await context.pool.query(
                    """
                    SELECT nexcomet.enqueue_due_refreshes(\(margin)::interval, \(batchSize), \(retry)::interval,
                                                          \(queue), \(priority))
                    """
                ).first?.decode(0) ?? 0
            total += n
            if n < batchSize { break }
        }
        return total
    }
}

/// Hands pending privacy requests (`nexcomet.privacy_requests`, written by the Nexcomet app) to the privacy jobs:
/// `export` becomes a `gdpr_export` job and `erase` a `gdpr_erase` job (unique key `privacy_request:<id>`, 5
/// attempts), the request moving to `running`; `restrict` is applied at once (the organization's
/// `processing_restricted`, which stops its scheduling) and completed, with an audit row.
public struct PrivacyRequestSource: DueWorkSource {
    public var name: String { "privacy_requests" }
    public var interval: Duration = .seconds(10)
    public var batchSize: Int = 1000
    public var queue: String = "default"
    /// Privacy requests have a legal deadline; they run before syncs. Default -5.
    public var priority: Int = -5

    public init() {}

    public func run(_ context: DueWorkContext) async throws -> Int {
        try await context.pool.withTransaction { c in
            let restricted = try await c.execute(
                """
                WITH r AS (
                  UPDATE nexcomet.privacy_requests
                     SET status = 'completed', started_at = now(), completed_at = now(),
                         result = '{"restricted": true}'
                   WHERE kind = 'restrict' AND status = 'pending'
                  RETURNING id, organization_id
                ), o AS (
                  UPDATE nexcomet.organizations SET processing_restricted = true, updated_at = now()
                   WHERE id IN (SELECT organization_id FROM r)
                  RETURNING id
                )
                INSERT INTO nexcomet.privacy_audit (action, request_id, organization_id)
                SELECT 'restrict', r.id, r.organization_id FROM r, (SELECT count(*) FROM o) touched
                """)
            let enqueued: Int = try await c.query(
                """
                WITH p AS (
                  UPDATE nexcomet.privacy_requests SET status = 'running', started_at = now()
                   WHERE id = ANY(ARRAY(
                     SELECT id FROM nexcomet.privacy_requests
                      WHERE status = 'pending' AND kind IN ('export', 'erase')
                      ORDER BY requested_at LIMIT \(batchSize) FOR UPDATE SKIP LOCKED))
                  RETURNING id, kind
                )
                SELECT count(*)::int FROM p, LATERAL nexjobs.enqueue_ex(
                    CASE p.kind WHEN 'export' THEN 'gdpr_export' ELSE 'gdpr_erase' END,
                    jsonb_build_object('request_id', p.id), \(queue), \(priority), NULL,
                    'privacy_request:' || p.id, 5) e
                """
            ).first!.decode(0)
            return restricted + enqueued
        }
    }
}
