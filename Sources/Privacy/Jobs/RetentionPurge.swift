import Foundation
import Postgres
import Queue

/// `retention_purge {batch_size?}`: deletes what the policy (section 7) no longer allows keeping. Runs hourly
/// (sql/031), so nothing outlives its window by more than an hour. Restricted organizations are purged too:
/// retention is not processing for analytics.
///
/// - daily metrics older than the plan's retention in the account's time zone (free 7 days, pro 90, capped by the
///   policy whatever `NEXJOBS_SYNC_RETENTION_*` says, ``PlanRetention``); enterprise keeps everything. The plan is
///   read at each run, so a downgrade from pro to free is purged on the next run;
/// - campaigns, ad groups and ads of free and pro accounts with no metrics left inside the window and created
///   before it (the next sync brings back any that are still live);
/// - log and usage data older than 12 months: `usage_logs`, `sync_runs`, `sync_writes`, `privacy_audit`, and notifications, sent
///   or not (an unsent one by its creation time);
/// - the sealed tokens of deleted organizations at once; organizations and users soft-deleted more than 30 days
///   ago, with everything they own (cascades: connections, ad accounts, entities, metrics, requests, logs);
/// - completed privacy requests 30 days after completion, with their export (result and chunks).
///
/// Account time zones PostgreSQL does not know count in UTC (logged nowhere: the sync fails such accounts).
///
/// Every delete runs in batches of `batch_size` rows (default 10,000), one short transaction each, so a large
/// backlog never holds locks for long; the job can be re-run at any time and then deletes only what expired since.
public struct RetentionPurgeHandler: JobHandler {
    public struct Args: Decodable, Sendable {
        public var batch_size: Int?
    }

    public static let kind = "retention_purge"
    public var timeout: Duration { .seconds(3600) }
    let retention: PlanRetention

    public init(retention: PlanRetention) { self.retention = retention }

    public func run(_ args: Args, context: JobContext) async throws {
        if let b = args.batch_size, b < 1 || b > 1_000_000 {
            throw JobDiscard("batch_size must be between 1 and 1000000")
        }
        let batch = args.batch_size ?? 10_000
        let pool = context.pool
        let free = retention.days(plan: "free")
        let pro = retention.days(plan: "pro")
        // Until a batch deletes nothing: a row a concurrent writer moved (new ctid) is found by a later batch.
        func repeatDelete(_ statement: PGQuery) async throws -> Int64 {
            var total: Int64 = 0
            while true {
                let n = try await pool.execute(statement)
                total += Int64(n)
                if n == 0 { return total }
            }
        }
        var counts: [String: Int64] = [:]
        // Tokens go when the account is deleted (policy section 7), not 30 days later with the rest.
        var wiped: Int64 = 0
        while true {
            let n: Int = try await pool.query(
                "SELECT nexcomet.wipe_tokens_of_deleted_organizations(\(batch)::int)"
            ).first!.decode(0)
            wiped += Int64(n)
            if n < batch { break }
        }
        counts["tokens_of_deleted_organizations"] = wiped
        // The oldest day each limited plan keeps, per account, in the account's time zone.
        let keptFrom = """
            (now() AT TIME ZONE coalesce(z.name, 'UTC'))::date
              - (CASE o.plan WHEN 'pro' THEN \(pro)::int ELSE \(free)::int END - 1)
            """
        counts["daily_metrics"] = try await repeatDelete(
            """
            WITH zones AS (SELECT name FROM pg_timezone_names)
            DELETE FROM nexcomet.daily_metrics WHERE ctid = ANY(ARRAY(
                SELECT m.ctid
                  FROM nexcomet.organizations o
                  JOIN nexcomet.ad_connections c ON c.organization_id = o.id
                  JOIN nexcomet.ad_accounts a ON a.connection_id = c.id
                  -- An unknown zone name must not stop the purge: such an account counts in UTC.
                  LEFT JOIN zones z ON z.name = a.timezone
                  JOIN nexcomet.daily_metrics m ON m.ad_account_id = a.id
                 WHERE o.plan <> 'enterprise' AND m.date < \(unsafeSQL: keptFrom)
                 LIMIT \(batch)::int))
            """)
        // Entities whose metrics are all gone (older than the window) and that were not synced inside it.
        for (table, level) in [("campaigns", "campaign"), ("ad_groups", "ad_group"), ("ads", "ad")] {
            counts[table] = try await repeatDelete(
                PGQuery(
                    unsafeSQL: """
                        WITH zones AS (SELECT name FROM pg_timezone_names)
                        DELETE FROM nexcomet.\(table) WHERE ctid = ANY(ARRAY(
                            SELECT e.ctid
                              FROM nexcomet.organizations o
                              JOIN nexcomet.ad_connections c ON c.organization_id = o.id
                              JOIN nexcomet.ad_accounts a ON a.connection_id = c.id
                              LEFT JOIN zones z ON z.name = a.timezone
                              JOIN nexcomet.\(table) e ON e.ad_account_id = a.id
                             WHERE o.plan <> 'enterprise'
                               AND (e.created_at AT TIME ZONE coalesce(z.name, 'UTC'))::date < \(keptFrom)
                               AND NOT EXISTS (
                                   SELECT 1 FROM nexcomet.daily_metrics m
                                    WHERE m.ad_account_id = e.ad_account_id AND m.level = '\(level)'
                                      AND m.entity_id = e.external_id AND m.date >= \(keptFrom))
                             LIMIT $1::int))
                        """, binds: [String(batch)]))
        }
        for (table, column) in [
            ("usage_logs", "at"), ("sync_runs", "started_at"), ("sync_writes", "written_at"), ("privacy_audit", "at"),
            ("notifications", "coalesce(sent_at, created_at)"),
        ] {
            counts[table] = try await repeatDelete(
                PGQuery(
                    unsafeSQL: """
                        DELETE FROM nexcomet.\(table) WHERE ctid = ANY(ARRAY(
                            SELECT ctid FROM nexcomet.\(table)
                             WHERE \(column) < now() - interval '12 months' LIMIT $1::int))
                        """, binds: [String(batch)]))
        }
        // Sealed token copies kept for revocation at the platform: 24 hours at most, revoked or not.
        counts["token_revocations"] = try await repeatDelete(
            """
            DELETE FROM nexcomet.token_revocations WHERE id = ANY(ARRAY(
                SELECT id FROM nexcomet.token_revocations WHERE expires_at <= now() LIMIT \(batch)::int))
            """)
        // A purged user's usage logs go with them (the foreign key would only unlink them).
        counts["users"] = try await repeatDelete(
            """
            WITH u AS (
                SELECT id FROM nexcomet.users WHERE deleted_at < now() - interval '30 days' LIMIT \(batch)::int
            ), logs AS (
                DELETE FROM nexcomet.usage_logs WHERE user_id IN (SELECT id FROM u)
            )
            DELETE FROM nexcomet.users WHERE id IN (SELECT id FROM u)
            """)
        // An answered request is kept 30 days after completion, then goes with its export (handed over, not
        // archived). The audit keeps that it existed.
        counts["privacy_requests"] = try await repeatDelete(
            """
            DELETE FROM nexcomet.privacy_requests WHERE id = ANY(ARRAY(
                SELECT id FROM nexcomet.privacy_requests
                 WHERE status = 'completed' AND completed_at < now() - interval '30 days' LIMIT \(batch)::int))
            """)
        // One organization per transaction: the cascade may be large.
        var organizations: Int64 = 0
        while true {
            let purged: Int64? = try await pool.withTransaction { c in
                guard
                    let id: Int64 = try await c.query(
                        """
                        SELECT id FROM nexcomet.organizations WHERE deleted_at < now() - interval '30 days'
                         ORDER BY deleted_at LIMIT 1 FOR UPDATE SKIP LOCKED
                        """
                    ).first?.decode(0)
                else { return nil }
                try await deleteOrganization(id, on: c)
                try await audit(
                    "retention_purge", organizationID: id, details: ["organization_deleted_days_ago_over": 30], on: c)
                return id
            }
            guard purged != nil else { break }
            organizations += 1
        }
        counts["organizations"] = organizations
        try await pool.withTransaction { c in
            try await audit("retention_purge", organizationID: nil, details: counts, on: c)
        }
        context.logger.info(
            "retention purge done",
            ("deleted", counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")))
    }
}
