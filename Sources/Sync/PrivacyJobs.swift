import Foundation
import Postgres
import Queue

// The privacy policy's obligations as jobs (../shared/reference/privacy-policy.txt, section 7 and the GDPR rights;
// DESIGN.md "Job kinds"): retention_purge, disconnect, gdpr_export, gdpr_erase. Each records what it did in
// nexcomet.privacy_audit: action, ids and counts, never personal data or tokens.

/// The SET list that forgets a connection's tokens and stops its scheduling (disconnect, deleted organizations).
let forgetTokensSQL = """
    status = 'disconnected', access_token_ciphertext = NULL, refresh_token_ciphertext = NULL, token_key_id = NULL,
    access_token_expires_at = NULL, refresh_token_expires_at = NULL, next_sync_at = NULL, refresh_enqueued_at = NULL,
    updated_at = now()
    """

/// Writes one audit row on `c`. `details` holds counts and ids only.
func audit(
    _ action: String, requestID: Int64? = nil, organizationID: Int64?, details: [String: Int64], on c: PGConnection
) async throws {
    let keys = details.keys.sorted()
    try await c.execute(
        """
        INSERT INTO nexcomet.privacy_audit (action, request_id, organization_id, details)
        SELECT \(action)::text, \(requestID)::bigint, \(organizationID)::bigint,
               coalesce(jsonb_object_agg(k, v), '{}') FROM unnest(\(keys)::text[], \(keys.map { details[$0]! })::bigint[]) AS d(k, v)
        """)
}

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
    let settings: SyncSettings

    public init(settings: SyncSettings) { self.settings = settings }

    public func run(_ args: Args, context: JobContext) async throws {
        if let b = args.batch_size, b < 1 || b > 1_000_000 {
            throw JobDiscard("batch_size must be between 1 and 1000000")
        }
        let batch = args.batch_size ?? 10_000
        let pool = context.pool
        let free = settings.retention(plan: "free")
        let pro = settings.retention(plan: "pro")
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

/// `disconnect {connection_id}`: the platform is disconnected. Its sealed tokens are deleted at once (the policy:
/// "retained until you disconnect"), the connection stays as `disconnected` (no token, never scheduled), and its ad
/// accounts go with their entities and metrics. One transaction, together with the job's completion.
public struct DisconnectHandler: JobHandler {
    public typealias Args = ConnectionJobArgs

    public static let kind = "disconnect"
    public var timeout: Duration { .seconds(600) }

    public init() {}

    public func run(_ args: Args, context: JobContext) async throws {
        let id = args.connectionID.value
        try await context.pool.withTransaction { c in
            guard
                let org: Int64 = try await c.query(
                    """
                    UPDATE nexcomet.ad_connections
                       SET \(unsafeSQL: forgetTokensSQL), last_error = NULL, external_user_id = NULL
                     WHERE id = \(id)
                    RETURNING organization_id
                    """
                ).first?.decode(0)
            else { throw JobDiscard("connection \(id) does not exist") }
            let accounts = try await c.execute("DELETE FROM nexcomet.ad_accounts WHERE connection_id = \(id)")
            try await audit(
                "disconnect", organizationID: org, details: ["connection_id": id, "ad_accounts": Int64(accounts)], on: c
            )
            try await context.complete(on: c)
        }
    }
}

/// Deletes an organization and everything it owns. Its users' usage logs go first: the foreign key from
/// `usage_logs.user_id` only unlinks them (and a log row may carry no organization id).
func deleteOrganization(_ id: Int64, on c: PGConnection) async throws {
    try await c.execute(
        """
        DELETE FROM nexcomet.usage_logs
         WHERE user_id IN (SELECT u.id FROM nexcomet.users u WHERE u.organization_id = \(id))
        """)
    try await c.execute("DELETE FROM nexcomet.organizations WHERE id = \(id)")
}

/// A privacy request row, locked for the job handling it.
struct PrivacyRequest {
    var organizationID: Int64
    var userID: Int64?
    var status: String

    /// Locks the request; `nil` when it does not exist. Throws `JobDiscard` when it is of another kind.
    static func lock(_ id: Int64, kind: String, on c: PGConnection) async throws -> PrivacyRequest? {
        guard
            let r = try await c.query(
                """
                SELECT organization_id, user_id, status, kind FROM nexcomet.privacy_requests
                 WHERE id = \(id) FOR UPDATE
                """
            ).first
        else { return nil }
        let actual: String = try r.decode(3)
        guard actual == kind else { throw JobDiscard("privacy request \(id) is a '\(actual)' request, not '\(kind)'") }
        return PrivacyRequest(organizationID: try r.decode(0), userID: try r.decode(1), status: try r.decode(2))
    }

    /// Refuses a request whose user belongs to another organization (the user may be gone: erased or purged).
    static func checkUser(_ user: Int64, belongsTo org: Int64, on c: PGConnection) async throws {
        if let owner: Int64 = try await c.query(
            "SELECT organization_id FROM nexcomet.users WHERE id = \(user)"
        ).first?.decode(0), owner != org {
            throw JobDiscard("user \(user) does not belong to organization \(org)")
        }
    }
}

/// `gdpr_export {request_id}`: a machine-readable (JSON) export of the request's subject, stored in the
/// request's `result` and the request marked `completed`, in the transaction that completes the job.
///
/// For an organization (`user_id` NULL): the organization, its users, connections (metadata only: never token
/// ciphertext or key ids), ad accounts, campaigns, ad groups, ads, daily metrics, sync runs, usage logs and
/// notifications. For a user: the organization's name and id, the user's own row and usage logs. Nothing of
/// another organization: every part is selected by the request's organization id.
public struct GDPRExportHandler: JobHandler {
    public typealias Args = PrivacyRequestJobArgs

    public static let kind = "gdpr_export"
    public var timeout: Duration { .seconds(1800) }

    public init() {}

    public func run(_ args: Args, context: JobContext) async throws {
        let id = args.requestID.value
        try await context.pool.withTransaction { c in
            guard let request = try await PrivacyRequest.lock(id, kind: "export", on: c) else {
                throw JobDiscard("privacy request \(id) does not exist")
            }
            guard request.status != "completed" else {
                try await context.complete(on: c)
                return
            }
            let org = request.organizationID
            let export: String
            if let user = request.userID {
                try await PrivacyRequest.checkUser(user, belongsTo: org, on: c)
                export = try await c.query(
                    """
                    SELECT jsonb_build_object(
                      'format', 'nexcomet-export-v1', 'exported_at', now(), 'subject', 'user',
                      'organization', (SELECT jsonb_build_object('id', o.id, 'name', o.name)
                                         FROM nexcomet.organizations o WHERE o.id = \(org)),
                      'user', (SELECT to_jsonb(u) FROM nexcomet.users u WHERE u.id = \(user) AND u.organization_id = \(org)),
                      'usage_logs', (SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.at), '[]')
                                       FROM nexcomet.usage_logs l WHERE l.user_id = \(user) AND l.organization_id = \(org))
                    )::text
                    """
                ).first!.decode(0)
            } else {
                export = try await c.query(
                    """
                    WITH accounts AS (
                      SELECT a.* FROM nexcomet.ad_accounts a JOIN nexcomet.ad_connections x ON x.id = a.connection_id
                       WHERE x.organization_id = \(org))
                    SELECT jsonb_build_object(
                      'format', 'nexcomet-export-v1', 'exported_at', now(), 'subject', 'organization',
                      'organization', (SELECT to_jsonb(o) FROM nexcomet.organizations o WHERE o.id = \(org)),
                      'users', (SELECT coalesce(jsonb_agg(to_jsonb(u) ORDER BY u.id), '[]')
                                  FROM nexcomet.users u WHERE u.organization_id = \(org)),
                      'connections', (SELECT coalesce(jsonb_agg(to_jsonb(x) - 'access_token_ciphertext'
                                                        - 'refresh_token_ciphertext' - 'token_key_id' ORDER BY x.id), '[]')
                                        FROM nexcomet.ad_connections x WHERE x.organization_id = \(org)),
                      'ad_accounts', (SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.id), '[]') FROM accounts a),
                      'campaigns', (SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.id), '[]') FROM nexcomet.campaigns e
                                     WHERE e.ad_account_id IN (SELECT id FROM accounts)),
                      'ad_groups', (SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.id), '[]') FROM nexcomet.ad_groups e
                                     WHERE e.ad_account_id IN (SELECT id FROM accounts)),
                      'ads', (SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.id), '[]') FROM nexcomet.ads e
                               WHERE e.ad_account_id IN (SELECT id FROM accounts)),
                      'daily_metrics', (SELECT coalesce(jsonb_agg(to_jsonb(m) ORDER BY m.ad_account_id, m.date, m.level,
                                                                   m.entity_id), '[]')
                                          FROM nexcomet.daily_metrics m WHERE m.ad_account_id IN (SELECT id FROM accounts)),
                      'sync_runs', (SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.id), '[]')
                                      FROM nexcomet.sync_runs r JOIN nexcomet.ad_connections x ON x.id = r.connection_id
                                     WHERE x.organization_id = \(org)),
                      'usage_logs', (SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.at), '[]')
                                       FROM nexcomet.usage_logs l WHERE l.organization_id = \(org)),
                      'notifications', (SELECT coalesce(jsonb_agg(to_jsonb(n) ORDER BY n.id), '[]')
                                          FROM nexcomet.notifications n WHERE n.organization_id = \(org))
                    )::text
                    """
                ).first!.decode(0)
            }
            try await c.execute(
                """
                UPDATE nexcomet.privacy_requests
                   SET status = 'completed', result = \(export)::jsonb, error = NULL,
                       started_at = coalesce(started_at, now()), completed_at = now()
                 WHERE id = \(id)
                """)
            try await audit(
                "export", requestID: id, organizationID: org,
                details: ["bytes": Int64(export.utf8.count), "user_level": request.userID == nil ? 0 : 1], on: c)
            try await context.complete(on: c)
        }
    }
}

/// `gdpr_erase {request_id}`: erases the request's subject everywhere, keeping only a non-personal audit row.
///
/// A user (who must belong to the request's organization, or be gone already): their usage logs, their user row,
/// and the results of the organization's earlier exports that hold them; the request keeps the bare user id (no
/// foreign key, sql/025) and is marked `completed`. An organization: the organization row and, by cascade, everything it owns
/// (users, connections and sealed tokens, accounts, entities, metrics, runs, logs, notifications, requests, this
/// one included). One transaction, together with the job's completion.
public struct GDPREraseHandler: JobHandler {
    public typealias Args = PrivacyRequestJobArgs

    public static let kind = "gdpr_erase"
    public var timeout: Duration { .seconds(1800) }

    public init() {}

    public func run(_ args: Args, context: JobContext) async throws {
        let id = args.requestID.value
        try await context.pool.withTransaction { c in
            guard let request = try await PrivacyRequest.lock(id, kind: "erase", on: c) else {
                // An organization's erasure deletes its own request: a re-run finds it gone, and the audit shows it.
                let done: Int = try await c.query(
                    "SELECT count(*)::int FROM nexcomet.privacy_audit WHERE action = 'erase' AND request_id = \(id)"
                ).first!.decode(0)
                guard done > 0 else { throw JobDiscard("privacy request \(id) does not exist") }
                try await context.complete(on: c)
                return
            }
            guard request.status != "completed" else {
                try await context.complete(on: c)
                return
            }
            let org = request.organizationID
            if let user = request.userID {
                try await PrivacyRequest.checkUser(user, belongsTo: org, on: c)
                // The user's logs of this organization, and those that name no organization.
                let logs = try await c.execute(
                    """
                    DELETE FROM nexcomet.usage_logs
                     WHERE user_id = \(user) AND (organization_id = \(org) OR organization_id IS NULL)
                    """)
                let users = try await c.execute(
                    "DELETE FROM nexcomet.users WHERE id = \(user) AND organization_id = \(org)")
                // Earlier exports of the organization or of the user hold copies of the user's data.
                let exports = try await c.execute(
                    """
                    UPDATE nexcomet.privacy_requests SET result = NULL
                     WHERE organization_id = \(org) AND kind = 'export' AND result IS NOT NULL
                       AND (user_id IS NULL OR user_id = \(user))
                    """)
                try await c.execute(
                    """
                    UPDATE nexcomet.privacy_requests
                       SET status = 'completed', started_at = coalesce(started_at, now()), completed_at = now(),
                           result = jsonb_build_object('erased', jsonb_build_object('users', \(users)::int,
                                                                                'usage_logs', \(logs)::int))
                     WHERE id = \(id)
                    """)
                try await audit(
                    "erase", requestID: id, organizationID: org,
                    details: ["users": Int64(users), "usage_logs": Int64(logs), "export_results": Int64(exports)],
                    on: c)
            } else {
                try await audit("erase", requestID: id, organizationID: org, details: ["organizations": 1], on: c)
                try await deleteOrganization(org, on: c)
            }
            try await context.complete(on: c)
        }
    }
}
