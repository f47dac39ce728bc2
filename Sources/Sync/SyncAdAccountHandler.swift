import Foundation
import Platforms
import Postgres
import Privacy
import Queue

/// `sync_ad_account {ad_account_id, from?, to?}`: the account's campaigns, ad groups and ads, then its daily metrics
/// at the three levels for a window of account-local days, written in the transaction that completes the job.
///
/// Window (unless `from`/`to`, `YYYY-MM-DD`, are given): from the last synced date minus the platform's lookback to
/// today in the account's time zone; a first sync backfills the organization plan's retention
/// (``SyncSettings/window(platform:plan:timeZone:lastSynced:)``). Every fetch completes before anything is written,
/// so a failed or malformed response writes nothing. The write replaces the window's metrics with an upsert that
/// touches only changed rows, records a `sync_runs` row and completes the job, all in one transaction.
public struct SyncAdAccountHandler: JobHandler {
    public struct Args: Decodable, Sendable {
        public var adAccountID: RowID
        public var from: String?
        public var to: String?
        enum CodingKeys: String, CodingKey {
            case adAccountID = "ad_account_id"
            case from, to
        }
    }

    public static let kind = "sync_ad_account"
    public var timeout: Duration { .seconds(900) }
    let environment: SyncEnvironment

    public init(environment: SyncEnvironment) { self.environment = environment }

    struct AccountRow {
        var connectionID: Int64
        var account: AdAccount
        var lastSyncedDate: LocalDate?
        var plan: String
        var runnable: Bool
    }

    public func run(_ args: Args, context: JobContext) async throws {
        let id = args.adAccountID.value
        let store = try environment.store()
        guard let row = try await loadAccount(id, pool: context.pool) else {
            throw JobDiscard("ad account \(id) does not exist")
        }
        guard row.runnable else {
            context.logger.info(
                "ad account's connection or organization is not active; skipped", ("ad_account", "\(id)"))
            return
        }
        let stored = try await loadConnection(row.connectionID, store: store, pool: context.pool)
        guard stored.status == "active" else { return }
        guard let tz = TimeZone(identifier: row.account.timeZone) else {
            throw JobDiscard("ad account \(id) has an unknown time zone '\(row.account.timeZone)'")
        }
        let settings = environment.settings
        let platform = row.account.platform
        let window =
            try requestedWindow(args)
            ?? settings.window(platform: platform, plan: row.plan, timeZone: tz, lastSynced: row.lastSyncedDate)
        let today = LocalDate(settings.now(), in: tz)
        var policy = ErrorPolicy(
            context: context, store: store, connectionID: row.connectionID, organizationID: stored.organizationID,
            platform: platform, startingAccessToken: stored.tokens?.accessToken, session: nil, adAccountID: id,
            window: window, defaultSnooze: settings.rateLimitSnooze)
        guard let tokens = stored.tokens else {
            try await policy.markNeedsReauth(reason: "the connection holds no access token")
            throw JobDiscard("connection \(row.connectionID) holds no access token; re-authorization required")
        }
        let client = try environment.client(platform, pool: context.pool)
        let pool = context.pool
        let connectionID = row.connectionID
        let session = TokenSession(tokens: tokens) { fresh in
            try await pool.withConnection { c in try await store.saveTokens(connectionID, fresh, on: c) }
        }
        policy.session = session
        let account = row.account
        var entities: [AdEntity] = []
        var metrics: [DailyMetric] = []
        do {
            for level in ReportLevel.allCases {
                entities += try await settings.retryingTransient {
                    try await client.entities(level, account: account, session: session)
                }
            }
            for level in ReportLevel.allCases {
                metrics += try await settings.retryingTransient {
                    try await client.dailyMetrics(level, account: account, window: window, session: session)
                }
            }
        } catch let e as PlatformError {
            try await policy.fail(e)
        }
        let parents = SyncWriter.Parents(entities: entities)
        let finalBefore = today.adding(days: -settings.lookback(platform))
        let started = policy.started
        // Every HTTP request of this sync: pages, window chunks and retries, plus token refreshes.
        let calls = await session.requestCount + session.refreshCount
        let byStatus = await session.responseClasses
        let result = try await context.pool.withTransaction { c in
            try await SyncWriter.upsertEntities(entities, adAccountID: id, on: c)
            let written = try await SyncWriter.replaceMetrics(
                metrics, adAccountID: id, platform: platform, window: window, parents: parents,
                finalBefore: finalBefore, on: c)
            try await c.execute(
                """
                UPDATE nexcomet.ad_accounts
                   SET last_synced_date = greatest(last_synced_date, \(window.last.description)::date),
                       last_synced_at = now()
                 WHERE id = \(id)
                """)
            try await c.execute(
                """
                INSERT INTO nexcomet.sync_runs (ad_account_id, connection_id, job_id, window_start, window_end,
                                                rows_written, api_calls, api_calls_by_status, duration_ms, outcome,
                                                finished_at)
                VALUES (\(id), \(connectionID), \(context.id), \(window.first.description)::date,
                        \(window.last.description)::date, \(written.upserted + written.deleted), \(calls),
                        \(ErrorPolicy.statusJSON(byStatus))::jsonb,
                        \((ContinuousClock.now - started).milliseconds), 'succeeded', now())
                """)
            try await context.complete(on: c)
            return written
        }
        context.logger.info(
            "ad account synced", ("ad_account", "\(id)"), ("window", window.description),
            ("rows", "\(metrics.count)"), ("changed", "\(result.upserted)"), ("deleted", "\(result.deleted)"))
    }

    func requestedWindow(_ args: Args) throws -> DateWindow? {
        guard args.from != nil || args.to != nil else { return nil }
        guard let fromText = args.from, let toText = args.to, let from = LocalDate(parsing: fromText),
            let to = LocalDate(parsing: toText), from <= to
        else {
            throw JobDiscard("from and to must both be YYYY-MM-DD dates with from <= to")
        }
        return DateWindow(first: from, last: to)
    }

    func loadAccount(_ id: Int64, pool: PGPool) async throws -> AccountRow? {
        let rows = try await pool.query(
            """
            SELECT a.connection_id, a.platform, a.external_id, coalesce(a.name, ''), a.currency, a.timezone,
                   a.last_synced_date::text, o.plan,
                   (c.status = 'active' AND NOT o.processing_restricted AND o.deleted_at IS NULL)
              FROM nexcomet.ad_accounts a
              JOIN nexcomet.ad_connections c ON c.id = a.connection_id
              JOIN nexcomet.organizations o ON o.id = c.organization_id
             WHERE a.id = \(id)
            """)
        guard let r = rows.first else { return nil }
        guard let platform = AdPlatform(rawValue: try r.decode(1)) else {
            throw JobDiscard("ad account \(id) has an unknown platform")
        }
        let account = AdAccount(
            platform: platform, id: try r.decode(2), name: try r.decode(3), currency: try r.decode(4),
            timeZone: try r.decode(5))
        let last: String? = try r.decode(6)
        return AccountRow(
            connectionID: try r.decode(0), account: account, lastSyncedDate: last.flatMap { LocalDate(parsing: $0) },
            plan: try r.decode(7), runnable: try r.decode(8))
    }
}
