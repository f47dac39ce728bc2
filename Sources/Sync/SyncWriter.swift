import Foundation
import Platforms
import Postgres

/// Counts of what one metrics write changed.
public struct MetricsWriteResult: Sendable, Equatable {
    /// Rows inserted or updated (rows whose values did not change are not counted: they are not touched).
    public var upserted: Int
    /// Rows of the window that the platform no longer reports, deleted.
    public var deleted: Int
}

/// Idempotent bulk writes of an ad account's entities and daily metrics, on a connection inside a transaction.
///
/// Each write stages rows (COPY into a temporary table for metrics, array parameters for entities) and applies them
/// with one `INSERT ... ON CONFLICT DO UPDATE ... WHERE (stored) IS DISTINCT FROM (new)`, so a row whose values did
/// not change is neither rewritten nor counted, and re-running a sync changes zero rows.
public enum SyncWriter {
    /// Locks the rows a sync's write depends on, in the erasure's fixed order (``lockOrganizationForErasure``):
    /// the organization (FOR SHARE), then the connection (FOR SHARE), then the ad account (FOR NO KEY UPDATE), each
    /// in its own statement so the order is not left to a join plan. An erasure holding the organization makes the
    /// sync wait before it holds anything under it, so the two never deadlock (40P01, issue 12). Returns false when
    /// the account, its active connection or its live, unrestricted organization is gone: nothing may be written.
    /// Call it first in the write transaction.
    public static func lockForWrite(adAccountID: Int64, on c: PGConnection) async throws -> Bool {
        guard
            let r = try await c.query(
                """
                SELECT x.organization_id, x.id FROM nexcomet.ad_accounts a
                  JOIN nexcomet.ad_connections x ON x.id = a.connection_id WHERE a.id = \(adAccountID)
                """
            ).first
        else { return false }
        let org: Int64 = try r.decode(0)
        let connection: Int64 = try r.decode(1)
        guard try await lockOrganizationThenConnection(org, connection, on: c) else { return false }
        let a = try await c.query("SELECT 1 FROM nexcomet.ad_accounts WHERE id = \(adAccountID) FOR NO KEY UPDATE")
        return !a.isEmpty
    }

    /// The first two steps of ``lockForWrite(adAccountID:on:)``, also taken by `sync_connection` before it writes
    /// accounts: true when the organization is live and unrestricted and the connection active.
    public static func lockOrganizationThenConnection(_ org: Int64, _ connection: Int64, on c: PGConnection)
        async throws -> Bool
    {
        let o = try await c.query(
            """
            SELECT 1 FROM nexcomet.organizations
             WHERE id = \(org) AND deleted_at IS NULL AND NOT processing_restricted FOR SHARE
            """)
        guard !o.isEmpty else { return false }
        let x = try await c.query(
            """
            SELECT 1 FROM nexcomet.ad_connections
             WHERE id = \(connection) AND organization_id = \(org) AND status = 'active' FOR SHARE
            """)
        return !x.isEmpty
    }

    /// Upserts campaigns, ad groups and ads of an account. Deleted entities keep their row with status `DELETED`.
    ///
    /// - Returns: rows inserted or changed.
    @discardableResult
    public static func upsertEntities(_ entities: [AdEntity], adAccountID: Int64, on c: PGConnection) async throws
        -> Int
    {
        func status(_ e: AdEntity) -> String { e.isDeleted ? "DELETED" : e.status }
        let campaigns = entities.filter { $0.level == .campaign }
        let groups = entities.filter { $0.level == .adGroup }
        let ads = entities.filter { $0.level == .ad }
        var changed = 0
        if !campaigns.isEmpty {
            changed += try await c.execute(
                """
                INSERT INTO nexcomet.campaigns AS t (ad_account_id, external_id, name, status)
                SELECT \(adAccountID), u.id, u.name, u.status
                  FROM unnest(\(campaigns.map(\.id))::text[], \(campaigns.map(\.name))::text[],
                              \(campaigns.map(status))::text[]) AS u(id, name, status)
                ON CONFLICT (ad_account_id, external_id) DO UPDATE
                   SET name = excluded.name, status = excluded.status, updated_at = now()
                 WHERE (t.name, t.status) IS DISTINCT FROM (excluded.name, excluded.status)
                """)
        }
        if !groups.isEmpty {
            changed += try await c.execute(
                """
                INSERT INTO nexcomet.ad_groups AS t (ad_account_id, campaign_external_id, external_id, name, status)
                SELECT \(adAccountID), u.parent, u.id, u.name, u.status
                  FROM unnest(\(groups.map { $0.parentId ?? $0.campaignId ?? "" })::text[], \(groups.map(\.id))::text[],
                              \(groups.map(\.name))::text[], \(groups.map(status))::text[]) AS u(parent, id, name, status)
                ON CONFLICT (ad_account_id, external_id) DO UPDATE
                   SET campaign_external_id = excluded.campaign_external_id, name = excluded.name,
                       status = excluded.status, updated_at = now()
                 WHERE (t.campaign_external_id, t.name, t.status)
                       IS DISTINCT FROM (excluded.campaign_external_id, excluded.name, excluded.status)
                """)
        }
        if !ads.isEmpty {
            changed += try await c.execute(
                """
                INSERT INTO nexcomet.ads AS t (ad_account_id, ad_group_external_id, external_id, name, status)
                SELECT \(adAccountID), u.parent, u.id, u.name, u.status
                  FROM unnest(\(ads.map { $0.parentId ?? "" })::text[], \(ads.map(\.id))::text[],
                              \(ads.map(\.name))::text[], \(ads.map(status))::text[]) AS u(parent, id, name, status)
                ON CONFLICT (ad_account_id, external_id) DO UPDATE
                   SET ad_group_external_id = excluded.ad_group_external_id, name = excluded.name,
                       status = excluded.status, updated_at = now()
                 WHERE (t.ad_group_external_id, t.name, t.status)
                       IS DISTINCT FROM (excluded.ad_group_external_id, excluded.name, excluded.status)
                """)
        }
        return changed
    }

    /// Parent ids of each entity, for the `campaign_id` / `ad_group_id` columns of metrics rows.
    public struct Parents: Sendable {
        var campaignOfGroup: [String: String] = [:]
        var groupOfAd: [String: String] = [:]
        var campaignOfAd: [String: String] = [:]

        public init(entities: [AdEntity]) {
            for e in entities {
                switch e.level {
                case .campaign: break
                case .adGroup: if let p = e.parentId ?? e.campaignId { campaignOfGroup[e.id] = p }
                case .ad:
                    if let p = e.parentId { groupOfAd[e.id] = p }
                    if let c = e.campaignId { campaignOfAd[e.id] = c }
                }
            }
        }

        /// (campaign_id, ad_group_id) of a metrics row: a campaign row names itself as campaign, an ad group row
        /// itself as ad group and its campaign, an ad row its ad group and campaign; unknown parents are NULL.
        func of(_ level: ReportLevel, _ id: String) -> (String?, String?) {
            switch level {
            case .campaign: return (id, nil)
            case .adGroup: return (campaignOfGroup[id], id)
            case .ad:
                let group = groupOfAd[id]
                return (campaignOfAd[id] ?? group.flatMap { campaignOfGroup[$0] }, group)
            }
        }
    }

    static let stageColumns =
        "platform, ad_account_id, level, entity_id, date, campaign_id, ad_group_id, currency, spend, impressions, "
        + "clicks, conversions, conversion_value, is_final"

    /// Whether a row carries any non-zero metric. Rows without activity are not stored (TikTok omits them, Snap
    /// sends zeros for every entity-day), so both platforms store the same shape and a zero day is an absent row.
    static func hasActivity(_ m: DailyMetric) -> Bool {
        m.spend != 0 || (m.impressions ?? 0) != 0 || (m.clicks ?? 0) != 0 || (m.conversions ?? 0) != 0
            || (m.conversionValue ?? 0) != 0
    }

    /// Replaces an account's metrics for the account-local days of `window` with `rows`.
    ///
    /// The account row is locked first (`FOR NO KEY UPDATE`), so writers of one account take turns and the window's
    /// stored row count stays true until commit. Then:
    /// - a window that holds no rows yet (a first sync, a backfill) is COPYed straight into `daily_metrics`: there
    ///   is nothing to conflict with, and skipping the stage and the conflict checks halves the write
    ///   (bench/sync/README.md);
    /// - otherwise rows are COPYed into a session temporary table (emptied on commit) and merged with one
    ///   `INSERT ... ON CONFLICT DO UPDATE` that only touches changed rows; rows of the window the platform no
    ///   longer reports are deleted.
    ///
    /// A row is final when the platform says so (``DailyMetric/isFinal``), else when its day is before
    /// `finalBefore`. Empty metrics (nil) are stored as 0; rows without any activity are
    /// skipped (``hasActivity(_:)``). Must run inside a transaction.
    public static func replaceMetrics(
        _ rows: [DailyMetric], adAccountID: Int64, platform: AdPlatform, window: DateWindow, parents: Parents,
        finalBefore: LocalDate, on c: PGConnection
    ) async throws -> MetricsWriteResult {
        let account = String(adAccountID)
        func dec(_ d: Decimal?) -> String? { (d ?? 0).pgText }
        var copy: [[String?]] = []
        copy.reserveCapacity(rows.count)
        // One row per key (the last one wins): a duplicate would make the upsert touch a row twice, which fails.
        struct Key: Hashable {
            var level: ReportLevel
            var entity: String
            var date: LocalDate
        }
        var position: [Key: Int] = [:]
        position.reserveCapacity(rows.count)
        // A window has a few hundred days at most; format each once.
        var dateText: [LocalDate: String] = [:]
        for m in rows where window.first <= m.date && m.date <= window.last && hasActivity(m) {
            let (campaign, group) = parents.of(m.level, m.entityId)
            let day: String
            if let known = dateText[m.date] {
                day = known
            } else {
                day = m.date.description
                dateText[m.date] = day
            }
            let row: [String?] = [
                platform.rawValue, account, m.level.rawValue, m.entityId, day, campaign, group,
                m.currency, dec(m.spend), String(m.impressions ?? 0), String(m.clicks ?? 0), dec(m.conversions),
                dec(m.conversionValue), (m.isFinal ?? (m.date < finalBefore)) ? "t" : "f",
            ]
            let key = Key(level: m.level, entity: m.entityId, date: m.date)
            if let at = position[key] {
                copy[at] = row
            } else {
                position[key] = copy.count
                copy.append(row)
            }
        }
        let locked = try await c.query(
            "SELECT 1 FROM nexcomet.ad_accounts WHERE id = \(adAccountID) FOR NO KEY UPDATE")
        guard !locked.isEmpty else {
            throw PGError(.server, "ad account \(adAccountID) does not exist; its metrics cannot be written")
        }
        // A separate statement from the lock: in READ COMMITTED it takes a fresh snapshot, after any writer that
        // held the lock before us has committed.
        func storedInWindow() async throws -> Int {
            try await c.query(
                """
                SELECT count(*) FROM nexcomet.daily_metrics
                 WHERE ad_account_id = \(adAccountID)
                   AND date BETWEEN \(window.first.description)::date AND \(window.last.description)::date
                """
            ).first!.decode(0)
        }
        if try await storedInWindow() == 0 {
            let copied = try await c.copyIn(
                unsafeSQL: "COPY nexcomet.daily_metrics (\(stageColumns)) FROM STDIN", rows: copy)
            return MetricsWriteResult(upserted: copied, deleted: 0)
        }
        try await c.simpleQuery(
            """
            CREATE TEMP TABLE IF NOT EXISTS nexjobs_metrics_stage (
                platform text, ad_account_id bigint, level text, entity_id text, date date, campaign_id text,
                ad_group_id text, currency text, spend numeric, impressions bigint, clicks bigint, conversions numeric,
                conversion_value numeric, is_final boolean
            ) ON COMMIT DELETE ROWS;
            TRUNCATE nexjobs_metrics_stage;
            """)
        try await c.copyIn(unsafeSQL: "COPY nexjobs_metrics_stage (\(stageColumns)) FROM STDIN", rows: copy)
        let upserted = try await c.execute(
            """
            INSERT INTO nexcomet.daily_metrics AS m (\(unsafeSQL: stageColumns))
            SELECT \(unsafeSQL: stageColumns) FROM nexjobs_metrics_stage
            ON CONFLICT (ad_account_id, date, level, entity_id) DO UPDATE
               SET campaign_id = excluded.campaign_id, ad_group_id = excluded.ad_group_id,
                   currency = excluded.currency, spend = excluded.spend, impressions = excluded.impressions,
                   clicks = excluded.clicks, conversions = excluded.conversions,
                   conversion_value = excluded.conversion_value, is_final = excluded.is_final, fetched_at = now()
             WHERE (m.campaign_id, m.ad_group_id, m.currency, m.spend, m.impressions, m.clicks, m.conversions,
                    m.conversion_value, m.is_final)
                   IS DISTINCT FROM
                   (excluded.campaign_id, excluded.ad_group_id, excluded.currency, excluded.spend, excluded.impressions,
                    excluded.clicks, excluded.conversions, excluded.conversion_value, excluded.is_final)
            """)
        // Rows of the window not in the stage exist only if the window now holds more rows than were staged; the
        // count is a range scan of the primary key, far cheaper than the delete it usually saves.
        guard try await storedInWindow() > copy.count else {
            return MetricsWriteResult(upserted: upserted, deleted: 0)
        }
        // EXCEPT is a hashed (or sorted) set difference whatever the statistics say; an anti-join against the
        // unindexed stage could be planned as a nested loop, quadratic in the window's rows.
        let deleted = try await c.execute(
            """
            DELETE FROM nexcomet.daily_metrics m
             WHERE m.ad_account_id = \(adAccountID)
               AND (m.date, m.level, m.entity_id) IN (
                   SELECT date, level, entity_id FROM nexcomet.daily_metrics
                    WHERE ad_account_id = \(adAccountID)
                      AND date BETWEEN \(window.first.description)::date AND \(window.last.description)::date
                   EXCEPT
                   SELECT date, level, entity_id FROM nexjobs_metrics_stage)
            """)
        return MetricsWriteResult(upserted: upserted, deleted: deleted)
    }
}
