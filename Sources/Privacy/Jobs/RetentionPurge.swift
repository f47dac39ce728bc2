import Foundation
import Postgres
import Queue

/// `retention_purge {batch_size?}`: deletes what the policy no longer allows keeping.
///
/// - daily metrics older than the plan's retention in the account's time zone (free and pro; the same days the
///   sync backfills, ``SyncSettings/retention(plan:)``); enterprise keeps everything;
/// - log and usage data older than 12 months: `usage_logs`, `sync_runs`, sent `notifications` (the
///   `privacy_audit` record of what was erased is kept);
/// - the sealed tokens of deleted organizations at once; organizations and users soft-deleted more than 30 days
///   ago, with everything they own (cascades: connections, ad accounts, entities, metrics, requests, logs);
/// - export results (`privacy_requests.result`) 30 days after completion.
///
/// Account time zones PostgreSQL does not know count in UTC (logged nowhere: the sync fails such accounts).
///
/// Deletes run in batches of `batch_size` rows (default 10,000), one short transaction each, so a large backlog
/// never holds locks for long; the job can be re-run at any time and then deletes only what expired since.
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
        counts["tokens_of_deleted_organizations"] = Int64(
            try await pool.execute(
                """
                UPDATE nexcomet.ad_connections c SET \(unsafeSQL: forgetTokensSQL)
                  FROM nexcomet.organizations o
                 WHERE o.id = c.organization_id AND o.deleted_at IS NOT NULL
                   AND (c.access_token_ciphertext IS NOT NULL OR c.refresh_token_ciphertext IS NOT NULL)
                """))
        counts["daily_metrics"] = try await repeatDelete(
            """
            WITH zones AS (SELECT name FROM pg_timezone_names)
            DELETE FROM nexcomet.daily_metrics WHERE ctid = ANY(ARRAY(
                SELECT m.ctid
                  FROM nexcomet.organizations o
                  JOIN nexcomet.ad_connections c ON c.organization_id = o.id
                  JOIN nexcomet.ad_accounts a ON a.connection_id = c.id
                  LEFT JOIN zones z ON z.name = a.timezone
                  JOIN nexcomet.daily_metrics m ON m.ad_account_id = a.id
                 WHERE o.plan IN ('free', 'pro')
                   -- An unknown zone name must not stop the purge: such an account counts in UTC.
                   AND m.date < (now() AT TIME ZONE coalesce(z.name, 'UTC'))::date
                                - (CASE o.plan WHEN 'free' THEN \(free)::int ELSE \(pro)::int END - 1)
                 LIMIT \(batch)::int))
            """)
        for (table, column, extra) in [
            ("usage_logs", "at", ""), ("sync_runs", "started_at", ""),
            ("notifications", "sent_at", " AND sent_at IS NOT NULL"),
        ] {
            counts[table] = try await repeatDelete(
                PGQuery(
                    unsafeSQL: """
                        DELETE FROM nexcomet.\(table) WHERE ctid = ANY(ARRAY(
                            SELECT ctid FROM nexcomet.\(table)
                             WHERE \(column) < now() - interval '12 months'\(extra) LIMIT \(batch)::int))
                        """))
        }
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
        // An export is handed over, not archived: its copy of the data goes after 30 days.
        counts["export_results"] = Int64(
            try await pool.execute(
                """
                UPDATE nexcomet.privacy_requests SET result = NULL
                 WHERE kind = 'export' AND result IS NOT NULL AND completed_at < now() - interval '30 days'
                """))
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
