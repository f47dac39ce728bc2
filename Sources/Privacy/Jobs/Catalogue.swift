import Foundation
import Postgres

/// One table of the `nexcomet` schema as the privacy jobs see it: which of its rows belong to an organization or
/// to one of its users, the columns that identify a subject, which columns never leave (token material), and what
/// a user's erasure does to it. ``PrivacyCatalogue/tables`` lists every table of the schema (a schema-scan test
/// fails when a table is missing); `gdpr_export` and `gdpr_erase` iterate it, so a table added there is exported
/// and erased by both.
///
/// Predicates are SQL over the alias `t`, with `$1` the organization id and `$2` the user id. They are constants
/// of this file, never input.
public struct CatalogueTable: Sendable {
    /// What a user's erasure does to the rows ``userErase``'s predicate selects.
    public enum UserErasure: Sendable {
        /// The rows go.
        case delete
        /// These columns become NULL; the row stays (it is the organization's, not the user's).
        case clear([String])
        /// Nothing: the row holds no data of the user (the reason is documented in `note`).
        case keep
    }

    public var table: String
    /// The export category (one NDJSON line per row: `{"category": ..., "row": {...}}`); nil: never exported.
    public var category: String?
    /// Columns that identify a subject (a person or an organization), for the record and for review.
    public var subjectColumns: [String]
    /// Columns never exported: token ciphertext and key ids.
    public var secretColumns: [String]
    /// The organization's rows ($1): exported with the organization, deleted by its erasure.
    public var organizationRows: String
    /// The user's rows ($1 organization, $2 user): exported with the user; nil when none are the user's.
    public var userRows: String?
    /// A user's erasure: the rows it applies to ($1, $2) and what it does.
    public var userErase: (rows: String, action: UserErasure)?
    /// Kept when the organization is erased: the accountability record (ids and counts, no personal data).
    public var keptAfterOrganizationErasure: Bool
    /// Row order of the export.
    public var order: String
    public var note: String

    /// The `organizationRows` of a table that belongs to no organization (e.g. per-platform counters): no row is
    /// any tenant's, so none is exported or erased.
    public static let noTenant = "$1::bigint IS NULL"
    /// False for a table of no tenant (``noTenant``).
    public var holdsTenantRows: Bool { organizationRows != Self.noTenant }
}

public enum PrivacyCatalogue {
    static let accountsOf = """
        SELECT a.id FROM nexcomet.ad_accounts a JOIN nexcomet.ad_connections x ON x.id = a.connection_id
         WHERE x.organization_id = $1
        """

    /// Every table of the `nexcomet` schema, parents before children (an organization's erasure deletes in reverse).
    public static let tables: [CatalogueTable] = [
        CatalogueTable(
            table: "organizations", category: "organization", subjectColumns: ["id", "name"], secretColumns: [],
            organizationRows: "t.id = $1", userRows: "t.id = $1", userErase: nil,
            keptAfterOrganizationErasure: false, order: "t.id",
            note: "a user's export names the organization; the last member's erasure deletes it (GDPRErase)"),
        CatalogueTable(
            table: "users", category: "users", subjectColumns: ["id", "email", "name"], secretColumns: [],
            organizationRows: "t.organization_id = $1", userRows: "t.organization_id = $1 AND t.id = $2",
            userErase: ("t.organization_id = $1 AND t.id = $2", .delete),
            keptAfterOrganizationErasure: false, order: "t.id", note: "the subject itself"),
        CatalogueTable(
            table: "ad_connections", category: "connections", subjectColumns: ["organization_id", "external_user_id"],
            secretColumns: ["access_token_ciphertext", "refresh_token_ciphertext", "token_key_id"],
            organizationRows: "t.organization_id = $1", userRows: "t.organization_id = $1",
            userErase: ("t.organization_id = $1 AND t.external_user_id IS NOT NULL", .clear(["external_user_id"])),
            keptAfterOrganizationErasure: false, order: "t.id",
            note: """
                metadata only, never tokens; external_user_id is the platform identity of whoever authorized the
                connection: no column records who did, so a member's erasure clears it on all the organization's
                connections (set again at reconnection)
                """),
        CatalogueTable(
            table: "ad_accounts", category: "ad_accounts", subjectColumns: ["connection_id", "external_id", "name"],
            secretColumns: [],
            organizationRows: "t.connection_id IN (SELECT id FROM nexcomet.ad_connections WHERE organization_id = $1)",
            userRows: nil, userErase: nil, keptAfterOrganizationErasure: false, order: "t.id",
            note: "advertiser data of the organization, not of a member"),
        CatalogueTable(
            table: "campaigns", category: "campaigns", subjectColumns: ["ad_account_id"], secretColumns: [],
            organizationRows: "t.ad_account_id IN (\(accountsOf))", userRows: nil, userErase: nil,
            keptAfterOrganizationErasure: false, order: "t.id", note: "advertiser data"),
        CatalogueTable(
            table: "ad_groups", category: "ad_groups", subjectColumns: ["ad_account_id"], secretColumns: [],
            organizationRows: "t.ad_account_id IN (\(accountsOf))", userRows: nil, userErase: nil,
            keptAfterOrganizationErasure: false, order: "t.id", note: "advertiser data"),
        CatalogueTable(
            table: "ads", category: "ads", subjectColumns: ["ad_account_id"], secretColumns: [],
            organizationRows: "t.ad_account_id IN (\(accountsOf))", userRows: nil, userErase: nil,
            keptAfterOrganizationErasure: false, order: "t.id", note: "advertiser data"),
        CatalogueTable(
            table: "daily_metrics", category: "daily_metrics", subjectColumns: ["ad_account_id"], secretColumns: [],
            organizationRows: "t.ad_account_id IN (\(accountsOf))", userRows: nil, userErase: nil,
            keptAfterOrganizationErasure: false, order: "t.ad_account_id, t.date, t.level, t.entity_id",
            note: "advertiser data"),
        CatalogueTable(
            table: "sync_runs", category: "sync_runs", subjectColumns: ["ad_account_id", "connection_id"],
            secretColumns: [],
            organizationRows: """
                (t.connection_id IN (SELECT id FROM nexcomet.ad_connections WHERE organization_id = $1)
                 OR t.ad_account_id IN (\(accountsOf)))
                """,
            userRows: nil, userErase: nil, keptAfterOrganizationErasure: false, order: "t.id", note: "sync log"),
        CatalogueTable(
            table: "sync_writes", category: "sync_writes", subjectColumns: ["ad_account_id"], secretColumns: [],
            organizationRows: "t.ad_account_id IN (\(accountsOf))", userRows: nil, userErase: nil,
            keptAfterOrganizationErasure: false, order: "t.id",
            note: "one row per committed sync window (ids, dates, counts); cascades with its account"),
        CatalogueTable(
            table: "sync_progress", category: "sync_progress", subjectColumns: ["ad_account_id"], secretColumns: [],
            organizationRows: "t.ad_account_id IN (\(accountsOf))", userRows: nil, userErase: nil,
            keptAfterOrganizationErasure: false, order: "t.ad_account_id",
            note: "how far a running account sync got (issue 14); ids and dates only, cascades with its account"),
        CatalogueTable(
            table: "sync_reconcile_counters", category: nil, subjectColumns: [], secretColumns: [],
            organizationRows: CatalogueTable.noTenant, userRows: nil, userErase: nil,
            keptAfterOrganizationErasure: true,
            order: "t.platform",
            note: "per-platform mismatch counts for /metrics: no organization, no person, nothing to export or erase"),
        CatalogueTable(
            table: "api_call_totals", category: nil, subjectColumns: [], secretColumns: [],
            organizationRows: CatalogueTable.noTenant, userRows: nil, userErase: nil,
            keptAfterOrganizationErasure: true,
            order: "t.platform, t.status_class, t.shard",
            note: "cumulative API call counts per platform and status class for /metrics: no organization, no person"),
        CatalogueTable(
            table: "notifications", category: "notifications", subjectColumns: ["organization_id", "connection_id"],
            secretColumns: [], organizationRows: "t.organization_id = $1", userRows: nil, userErase: nil,
            keptAfterOrganizationErasure: false, order: "t.id",
            note: "addressed to the organization; payload holds platform and reason, no member data"),
        CatalogueTable(
            table: "privacy_requests", category: "privacy_requests", subjectColumns: ["organization_id", "user_id"],
            secretColumns: [], organizationRows: "t.organization_id = $1",
            userRows: "t.organization_id = $1 AND t.user_id = $2",
            userErase: (
                """
                t.organization_id = $1 AND t.result IS NOT NULL
                AND (t.user_id = $2 OR (t.user_id IS NULL AND t.kind = 'export'))
                """, .clear(["result"])
            ),
            keptAfterOrganizationErasure: false, order: "t.id",
            note: """
                the bare user id stays on the user's requests (no foreign key, sql/025): the record that the
                request was answered; results go, and those of the organization's exports (exports made before
                sql/032 held the data in `result`)
                """),
        CatalogueTable(
            table: "usage_logs", category: "usage_logs", subjectColumns: ["organization_id", "user_id", "details"],
            secretColumns: [],
            organizationRows: """
                (t.organization_id = $1
                 OR (t.organization_id IS NULL
                     AND t.user_id IN (SELECT u.id FROM nexcomet.users u WHERE u.organization_id = $1)))
                """,
            userRows: "t.user_id = $2 AND (t.organization_id = $1 OR t.organization_id IS NULL)",
            userErase: ("t.user_id = $2 AND (t.organization_id = $1 OR t.organization_id IS NULL)", .delete),
            keptAfterOrganizationErasure: false, order: "t.at, t.id",
            note: """
                logs without an organization id belong to their user; another organization's log naming the user
                stays with the user unlinked (the foreign key sets NULL)
                """),
        CatalogueTable(
            table: "privacy_audit", category: "privacy_audit", subjectColumns: ["organization_id", "request_id"],
            secretColumns: [], organizationRows: "t.organization_id = $1",
            userRows:
                "t.request_id IN (SELECT id FROM nexcomet.privacy_requests WHERE organization_id = $1 AND user_id = $2)",
            userErase: nil, keptAfterOrganizationErasure: true, order: "t.id",
            note: "ids and counts only, never names, emails or tokens: the record of what was done, kept 12 months"),
        CatalogueTable(
            table: "privacy_export_chunks", category: nil, subjectColumns: ["request_id"], secretColumns: [],
            organizationRows: "t.request_id IN (SELECT id FROM nexcomet.privacy_requests WHERE organization_id = $1)",
            userRows: nil,
            userErase: (
                "t.request_id IN (SELECT id FROM nexcomet.privacy_requests WHERE organization_id = $1)", .delete
            ),
            keptAfterOrganizationErasure: false, order: "t.request_id, t.seq",
            note: """
                earlier exports hold copies of the data: a member's erasure deletes every export of the organization
                (each holds connection metadata, whose external_user_id may be the member's); they can be requested
                again
                """),
        CatalogueTable(
            table: "token_revocations", category: nil, subjectColumns: ["organization_id", "connection_id"],
            secretColumns: ["access_token_ciphertext", "token_key_id"], organizationRows: "t.organization_id = $1",
            userRows: nil, userErase: nil, keptAfterOrganizationErasure: true, order: "t.id",
            note: """
                sealed copies of deleted TikTok access tokens, kept only to revoke the grant at the platform
                (revoke_tokens): deleted when revoked and at most 24 hours after the local deletion; never exported
                """),
    ]

    /// The entry of `table`, if catalogued.
    public static func entry(_ table: String) -> CatalogueTable? { tables.first { $0.table == table } }

    /// Applies a user's erasure to every catalogued table on `c` (in catalogue order, users last so their rows
    /// are still there for the predicates of the others). Returns rows affected per table.
    static func eraseUser(_ user: Int64, organization org: Int64, on c: PGConnection) async throws -> [String: Int64] {
        var counts: [String: Int64] = [:]
        for t in tables.filter({ $0.table != "users" }) + tables.filter({ $0.table == "users" }) {
            guard let (rows, action) = t.userErase else { continue }
            let sql: String
            switch action {
            case .delete:
                sql = "DELETE FROM nexcomet.\(t.table) t WHERE \(rows)"
            case .clear(let columns):
                let set = columns.map { "\($0) = NULL" }.joined(separator: ", ")
                sql = "UPDATE nexcomet.\(t.table) t SET \(set) WHERE \(rows)"
            case .keep:
                continue
            }
            let n = try await c.execute(PGQuery(unsafeSQL: sql, binds: binds(sql, org, user)))
            counts[t.table] = Int64(n)
        }
        return counts
    }

    /// Deletes every catalogued row of organization `org` on `c`, children first, except the kept audit; the
    /// organization row last.
    static func eraseOrganization(_ org: Int64, on c: PGConnection) async throws {
        for t in tables.reversed() where !t.keptAfterOrganizationErasure {
            try await c.execute(
                PGQuery(
                    unsafeSQL: "DELETE FROM nexcomet.\(t.table) t WHERE \(t.organizationRows)", binds: [String(org)]))
        }
    }

    /// The bind values a catalogue statement uses: `$1` the organization, `$2` the user when referenced.
    static func binds(_ sql: String, _ org: Int64, _ user: Int64?) -> [String?] {
        guard let user, sql.contains("$2") else { return [String(org)] }
        return [String(org), String(user)]
    }
}
