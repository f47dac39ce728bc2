import Foundation
import Postgres
import Platforms
import Privacy
import Runtime
import Sync

extension SchedulerOptions {
    /// Nexcomet's scheduler: the engine's cron schedules, then connection syncs, token refreshes and privacy
    /// requests, in that order each tick.
    public static func nexcomet() -> SchedulerOptions {
        SchedulerOptions(sources: [
            CronScheduleSource(), ConnectionSyncSource(), TokenRefreshSource(), PrivacyRequestSource(),
        ])
    }
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
    /// The queue of a platform's `sync_connection` jobs (`NEXJOBS_SYNC_QUEUE_TIKTOK|SNAPCHAT`, keyed by the
    /// platform's name, `tiktok` / `snapchat`); a platform not named uses ``queue``. Default: none.
    public var platformQueues: [String: String] = [:]
    public var priority: Int = 0
    /// First syncs (connections never synced) are enqueued only while fewer sync jobs than this wait in the queue
    /// (sql/068); the rest stay due and are admitted as the backlog drains, so a wave of new connections neither
    /// floods the queue nor delays the regular syncs of the others. nil: no limit. Default 1,000.
    public var firstSyncBacklog: Int? = 1000

    public init() {}

    public func run(_ context: DueWorkContext) async throws -> Int {
        var total = 0
        let platforms = JSONValue.object(platformQueues.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })
            .jsonText
        while context.isLeader() {
            let row = try await context.pool.query(
                """
                SELECT due, enqueued
                  FROM nexcomet.enqueue_due_syncs(\(batchSize), \(jitter), \(queue), \(priority), \(platforms)::jsonb,
                                                  \(firstSyncBacklog)::integer)
                """
            ).first
            let due: Int = try row?.decode(0) ?? 0
            total += try row?.decode(1) ?? 0
            if due < batchSize || batchSize < 1 { break }  // a batch size below 1 must not spin
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
            if n < batchSize || batchSize < 1 { break }  // a batch size below 1 must not spin
        }
        return total
    }
}

/// Privacy duties of every tick (policy sections 7-9; Sources/Sync/Privacy/RequestLifecycle.swift):
/// - wipes the sealed tokens of soft-deleted organizations (`nexcomet.wipe_tokens_of_deleted_organizations`), so
///   they are gone within one tick of the deletion, whoever deleted;
/// - applies pending `restrict`, `object` and `lift_restriction` requests (the organization's
///   `processing_restricted`);
/// - hands pending `export` and `erase` requests to `gdpr_export` / `gdpr_erase` jobs (unique key
///   `privacy_request:<id>`, 5 attempts), the request moving to `running`;
/// - ends `failed` the running requests whose job is no longer live, with the job's last error.
public struct PrivacyRequestSource: DueWorkSource {
    public var name: String { "privacy_requests" }
    public var interval: Duration = .seconds(10)
    public var batchSize: Int = 1000
    public var queue: String = "default"
    /// Privacy requests have a legal deadline; they run before syncs. Default -5.
    public var priority: Int = -5

    public init() {}

    public func run(_ context: DueWorkContext) async throws -> Int {
        var total = 0
        while context.isLeader() {
            let n: Int =
                try await context.pool.query(
                    "SELECT nexcomet.wipe_tokens_of_deleted_organizations(\(batchSize))"
                ).first?.decode(0) ?? 0
            total += n
            if n < batchSize || batchSize < 1 { break }  // a batch size below 1 must not spin
        }
        total += try await PrivacyRequests.applyRestrictions(pool: context.pool, batchSize: batchSize)
        return try await context.pool.withTransaction { c in
            let orphans = try await PrivacyRequests.failOrphans(on: c)
            let enqueued = try await PrivacyRequests.enqueuePending(
                on: c, batchSize: batchSize, queue: queue, priority: priority)
            // Token copies awaiting revocation at the platform (deleted organizations' tokens wiped above, or a
            // retry coming due): one live revoke_tokens job.
            let revocations: Int = try await c.query(
                """
                SELECT count(*)::int FROM (
                  SELECT nexjobs.enqueue_ex('revoke_tokens', '{}'::jsonb, \(queue), \(priority), NULL, 'revoke_tokens', 20)
                   WHERE EXISTS (SELECT 1 FROM nexcomet.token_revocations WHERE next_attempt_at <= now())
                     AND NOT EXISTS (SELECT 1 FROM nexjobs.jobs WHERE unique_key = 'revoke_tokens'
                                        AND state IN ('available', 'retryable', 'running'))) e
                """
            ).first!.decode(0)
            return total + orphans + enqueued + revocations
        }
    }
}
