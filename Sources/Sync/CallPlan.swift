import Foundation
import Platforms
import Postgres

/// How a `sync_ad_account` spends API requests (see `Sync.docc/Sync.md`, "Call plan").
public enum SyncCallPlan: String, Sendable, CaseIterable {
    /// Ad-level report only, campaign and ad-group rows summed from it; the entity lists are fetched again only
    /// when the stored snapshot is older than ``SyncSettings/entityRefreshInterval`` or a report names an unknown
    /// ad. The default.
    case lean
    /// One report per level and the three entity lists on every sync (the plan before issue 14; kept so the
    /// benchmark can measure both in one run).
    case perLevel = "per-level"
}

/// Derives campaign and ad-group daily rows from ad-level rows.
///
/// Why the sums are identical to the platform's own campaign / ad-group reports: every metric NexJobs stores is an
/// additive count booked on exactly one ad. Spend is charged per ad impression/click (TikTok bills ads inside ad
/// groups; Snap bills ads inside ad squads), impressions and clicks/swipes are events of one ad, and conversions
/// and their value are attributed to the one ad that got the credit (ad-apis.md A4 / B4: the level reports aggregate
/// the same rows by `campaign_id` / `adgroup_id`; Snap `breakdown=campaign|adsquad` is the same aggregation server
/// side). Non-additive metrics (reach, frequency, ratios such as CPC/CTR) would not be: they are not stored, and the
/// derivation refuses nothing else. The derivation needs every ad's ad group and every ad group's campaign: when
/// one is unknown (an ad created between the entity list and the report), it returns nil and the caller fetches
/// the two levels from the API instead.
public enum LevelDerivation {
    public static func derive(_ adRows: [DailyMetric], entities: [AdEntity]) -> [DailyMetric]? {
        var groupOfAd: [String: String] = [:]
        var campaignOfGroup: [String: String] = [:]
        for e in entities {
            switch e.level {
            case .ad: if let p = e.parentId { groupOfAd[e.id] = p }
            case .adGroup: if let p = e.parentId ?? e.campaignId { campaignOfGroup[e.id] = p }
            case .campaign: break
            }
        }
        struct Key: Hashable {
            var level: ReportLevel
            var id: String
            var date: LocalDate
        }
        var sums: [Key: DailyMetric] = [:]
        var order: [Key] = []
        func add(_ row: DailyMetric, level: ReportLevel, id: String) {
            let key = Key(level: level, id: id, date: row.date)
            guard var sum = sums[key] else {
                var first = row
                first.level = level
                first.entityId = id
                sums[key] = first
                order.append(key)
                return
            }
            sum.spend += row.spend
            sum.impressions = plus(sum.impressions, row.impressions)
            sum.clicks = plus(sum.clicks, row.clicks)
            sum.conversions = plus(sum.conversions, row.conversions)
            sum.conversionValue = plus(sum.conversionValue, row.conversionValue)
            // A sum is final only when every part is (Snap sends one finalized_data_end_time per response).
            if let a = sum.isFinal, let b = row.isFinal { sum.isFinal = a && b } else { sum.isFinal = nil }
            sums[key] = sum
        }
        // A duplicated row (a page boundary seen twice while the list shifted) must not be counted twice.
        for row in adRows.uniqueByEntityDay() where row.level == .ad {
            guard let group = groupOfAd[row.entityId], let campaign = campaignOfGroup[group] else { return nil }
            add(row, level: .adGroup, id: group)
            add(row, level: .campaign, id: campaign)
        }
        return order.map { sums[$0]! }
    }

    /// nil only when both are nil (the platform left the metric empty everywhere).
    static func plus<T: AdditiveArithmetic>(_ a: T?, _ b: T?) -> T? {
        switch (a, b) {
        case (nil, nil): return nil
        default: return (a ?? .zero) + (b ?? .zero)
        }
    }

    /// Counts (impressions, clicks) come from the platform's response: they saturate instead of trapping.
    static func plus<T: FixedWidthInteger>(_ a: T?, _ b: T?) -> T? {
        switch (a, b) {
        case (nil, nil): return nil
        default: return (a ?? 0).saturatingAdding(b ?? 0)
        }
    }
}

extension SyncAdAccountHandler {
    /// Whether the account's stored entity snapshot was fetched at or after `freshSince`; nil when none was ever
    /// stored (`ad_accounts.entities_synced_at`, sql/060).
    static func entitiesAreFresh(_ id: Int64, since freshSince: Date, on pool: PGPool) async throws -> Bool? {
        let row = try await pool.query(
            "SELECT entities_synced_at >= \(freshSince) FROM nexcomet.ad_accounts WHERE id = \(id)"
        ).first
        return try row?.decode(0, as: Bool?.self) ?? nil
    }

    /// The account's stored entity snapshot, when it was fetched at or after `freshSince`; nil otherwise.
    static func storedEntities(
        _ id: Int64, account: AdAccount, freshSince: Date, on pool: PGPool
    ) async throws -> [AdEntity]? {
        guard try await entitiesAreFresh(id, since: freshSince, on: pool) == true else { return nil }
        let rows = try await pool.query(
            """
            SELECT 'campaign', external_id, coalesce(name, ''), NULL::text, status FROM nexcomet.campaigns
             WHERE ad_account_id = \(id)
            UNION ALL
            SELECT 'ad_group', external_id, coalesce(name, ''), campaign_external_id, status FROM nexcomet.ad_groups
             WHERE ad_account_id = \(id)
            UNION ALL
            SELECT 'ad', external_id, coalesce(name, ''), ad_group_external_id, status FROM nexcomet.ads
             WHERE ad_account_id = \(id)
            """)
        return try rows.map { r in
            let level = ReportLevel(rawValue: try r.decode(0))!
            let entityID: String = try r.decode(1)
            let parent: String? = try r.decode(3)
            let status: String = try r.decode(4)
            return AdEntity(
                platform: account.platform, accountId: account.id, level: level, id: entityID,
                name: try r.decode(2), parentId: parent, campaignId: level == .campaign ? entityID : nil,
                status: status, isDeleted: status == "DELETED", updatedAt: nil)
        }
    }
}

/// The outcome of an account sync's reconciliation (`sync_runs.reconcile_status`, sql/062): `ok` (the platform's
/// account totals equal the stored ad-level sums), `resynced` (they differed, and re-syncing the window once fixed
/// it), `mismatch` (they still differ: `reconcile_difference` holds both sides), `skipped` (the totals request
/// failed; the sync itself succeeded).
struct Reconciliation: Sendable {
    var status: String
    var api: AccountTotals?
    var stored: AccountTotals?
    var error: String?
    /// False for a `mismatch` recorded without re-syncing (one re-synced within the last day did not clear it):
    /// written as `"resynced": false`, so that only a re-synced mismatch holds back the next day's re-syncs.
    var resynced = true

    /// `{"api": {...}, "stored": {...}, "difference": {...}}` (amounts as JSON numbers; `"resynced": false` added for
    /// a mismatch not re-synced), or `{"error": "..."}`.
    var differenceJSON: String? {
        if let error {
            return JSONValue.object([("error", .string(error))]).jsonText
        }
        guard let api, let stored else { return nil }
        func side(_ t: AccountTotals) -> String {
            #"{"spend":\#(t.spend),"impressions":\#(t.impressions),"conversions":\#(t.conversions)}"#
        }
        // Saturating: the API side is whatever the platform answered.
        let (impressions, overflow) = api.impressions.subtractingReportingOverflow(stored.impressions)
        let diff = AccountTotals(
            spend: api.spend - stored.spend,
            impressions: overflow ? (stored.impressions < 0 ? .max : .min) : impressions,
            conversions: api.conversions - stored.conversions)
        let note = resynced ? "" : #","resynced":false"#
        return #"{"api":\#(side(api)),"stored":\#(side(stored)),"difference":\#(side(diff))\#(note)}"#
    }
}

extension SyncAdAccountHandler {
    /// No stored ad-level row of `window` holds a non-zero metric.
    static func storedIsQuiet(_ id: Int64, window: DateWindow, on pool: PGPool) async throws -> Bool {
        try await pool.query(
            """
            SELECT NOT EXISTS (
                SELECT 1 FROM nexcomet.daily_metrics
                 WHERE ad_account_id = \(id) AND level = 'ad'
                   AND date BETWEEN \(window.first.description)::date AND \(window.last.description)::date
                   AND (spend <> 0 OR impressions <> 0 OR clicks <> 0 OR conversions <> 0 OR conversion_value <> 0))
            """
        ).first!.decode(0)
    }

    /// Sums of the stored ad-level rows of `window` (the rows the account totals must equal). The impressions sum
    /// is numeric in SQL (sum(bigint) is numeric) and held at the Int64 bounds, like the saturating sums of the
    /// platform clients: absurd stored counts make a reconciliation mismatch, never an out-of-range error (22003)
    /// that would fail the sync job on every attempt.
    static func storedTotals(_ id: Int64, window: DateWindow, on pool: PGPool) async throws -> AccountTotals {
        let r = try await pool.query(
            """
            SELECT coalesce(sum(spend), 0)::text,
                   greatest(least(coalesce(sum(impressions), 0), 9223372036854775807), -9223372036854775808)::bigint,
                   coalesce(sum(conversions), 0)::text
              FROM nexcomet.daily_metrics
             WHERE ad_account_id = \(id) AND level = 'ad'
               AND date BETWEEN \(window.first.description)::date AND \(window.last.description)::date
            """
        ).first!
        return AccountTotals(
            spend: Decimal(string: try r.decode(0)) ?? 0, impressions: try r.decode(1),
            conversions: Decimal(string: try r.decode(2)) ?? 0)
    }
}
