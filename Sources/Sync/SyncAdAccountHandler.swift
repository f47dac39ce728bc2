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
/// (``SyncSettings/window(platform:plan:timeZone:lastSynced:)``).
///
/// Commits per step (issue 14): the entity lists when fetched, then each report window (TikTok 30 days, Snap 31
/// days) in its own transaction that replaces that window's metrics (an upsert touching only changed rows) and
/// records the job's progress in `nexcomet.sync_progress`. A failed or malformed response writes nothing of its
/// window; a retry of the same job (after a snooze, a crash, a lost lease) resumes after the last committed window.
/// The last transaction advances `last_synced_date`, records the `sync_runs` row, clears the progress and completes
/// the job. How requests are spent: ``SyncCallPlan``.
public struct SyncAdAccountHandler: JobHandler {
    /// Typed args: `ad_account_id`, optional `from` / `to` (`YYYY-MM-DD`, both or neither); unique key
    /// `sync_ad_account:<id>`, so an account already queued or syncing is not queued twice.
    public struct Args: JobArgs {
        public static let kind = "sync_ad_account"
        public var adAccountID: RowID
        public var from: String?
        public var to: String?
        enum CodingKeys: String, CodingKey {
            case adAccountID = "ad_account_id"
            case from, to
        }
        public init(adAccountID: RowID, from: String? = nil, to: String? = nil) {
            self.adAccountID = adAccountID
            self.from = from
            self.to = to
        }
        public var uniqueKey: String? { "sync_ad_account:\(adAccountID)" }
    }

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
            try requestedWindow(args, plan: row.plan, timeZone: tz)
            ?? settings.window(platform: platform, plan: row.plan, timeZone: tz, lastSynced: row.lastSyncedDate)
        let today = LocalDate(settings.now(), in: tz)
        var policy = ErrorPolicy(
            context: context, store: store, connectionID: row.connectionID, organizationID: stored.organizationID,
            platform: platform, tokenGeneration: stored.tokenGeneration, session: nil, adAccountID: id,
            window: window, defaultSnooze: settings.rateLimitSnooze)
        guard let tokens = stored.tokens else {
            try await policy.markNeedsReauth(reason: "the connection holds no access token")
            throw JobDiscard("connection \(row.connectionID) holds no access token; re-authorization required")
        }
        let client = try environment.client(platform, pool: context.pool)
        let connectionID = row.connectionID
        let generation = policy.generation
        let session = await generation.session(
            tokens: tokens, connectionID: connectionID, client: client, store: store, pool: context.pool,
            now: settings.now)
        policy.session = session
        let account = row.account
        let pool = context.pool
        let finalBefore = today.adding(days: -settings.lookback(platform))
        // Resumable: the windows this job already committed (a snooze, a crash, a lost lease) are not fetched again.
        let resume = try await SyncProgress.load(adAccountID: id, jobID: context.id, window: window, on: pool)
        let remaining = SyncProgress.remainingWindows(
            window, committedThrough: resume?.committedThrough, maxDays: Self.reportWindowDays(platform))
        var entities: [AdEntity] = []
        var written = MetricsWriteResult(upserted: 0, deleted: 0)
        var rowCount = 0
        var reconcile: Reconciliation?
        do {
            var listsFetched = false
            func fetchEntities() async throws {
                listsFetched = true
                entities = []
                for level in ReportLevel.allCases {
                    entities += try await settings.retryingTransient {
                        try await client.entities(level, account: account, session: session)
                    }
                }
            }
            func fetchReport(_ level: ReportLevel, _ part: DateWindow) async throws -> [DailyMetric] {
                try await settings.retryingTransient {
                    try await client.dailyMetrics(level, account: account, window: part, session: session)
                }
            }
            // 0. Totals first (lean plan with reconciliation): the one account-total request reconciliation makes
            // anyway, made before the reports. When the platform reports no spend, impressions or conversions over
            // the whole window and nothing non-zero is stored for it, the account delivered nothing: no report
            // window can hold a non-zero row (the metrics are non-negative counts and amounts), so neither the
            // report windows nor the entity lists are fetched (issue 14: most report calls were for accounts and
            // days without delivery). Lists of a quiet account are fetched once it delivers: the first report
            // naming an unknown ad fetches them.
            var earlyTotals: AccountTotals?
            var earlyError: PlatformError?
            var quiet = false
            if settings.reconcile, settings.callPlan == .lean {
                do {
                    let api = try await settings.retryingTransient {
                        try await client.accountTotals(account: account, window: window, session: session)
                    }
                    earlyTotals = api
                    if api.isQuiet, try await Self.storedIsQuiet(id, window: window, on: pool) {
                        quiet = true
                        reconcile = Reconciliation(status: "ok")
                        context.logger.info(
                            "no delivery in the window; reports skipped", ("ad_account", "\(id)"),
                            ("window", window.description))
                    }
                } catch let e as PlatformError where !e.stopsTheSync {
                    // The totals query failed on its own (refused, damaged, down after the in-job retries): the
                    // full plan, as without it; reconciliation records `skipped` without asking again. Rate limits
                    // and grant errors go to the error policy like any request's (the reports would meet them too).
                    earlyError = e
                }
            }
            let freshSince = settings.now().addingTimeInterval(
                -Double(settings.entityRefreshInterval.components.seconds))
            if quiet, try await Self.entitiesAreFresh(id, since: freshSince, on: pool) == false {
                // A quiet account that delivered before keeps its stored lists current at the same interval as any
                // other (renames, pauses, deletions and new entities reach the database); one that never delivered
                // has none stored and costs nothing more.
                try await fetchEntities()
                try await commitEntities(entities, id: id, window: window, context: context)
            }
            if !quiet {
                // 1. Entities: the stored snapshot while it is fresh (lean plan) or when this job committed it before
                // a crash or snooze; else the three lists, committed at once.
                if resume != nil || settings.callPlan == .lean,
                    let stored = try await Self.storedEntities(
                        id, account: account, freshSince: resume != nil ? Date(timeIntervalSince1970: 0) : freshSince,
                        on: pool)
                {
                    entities = stored
                } else {
                    try await fetchEntities()
                    try await commitEntities(entities, id: id, window: window, context: context)
                }
                // 2. Each report window, fetched and committed on its own.
                func syncWindows(_ parts: [DateWindow]) async throws {
                    for part in parts {
                        var metrics: [DailyMetric] = []
                        switch settings.callPlan {
                        case .perLevel:
                            for level in ReportLevel.allCases { metrics += try await fetchReport(level, part) }
                        case .lean:
                            // One ad-level report; campaign and ad-group rows are its sums (LevelDerivation says why).
                            let adRows = try await fetchReport(.ad, part)
                            let knownAds = Set(entities.lazy.filter { $0.level == .ad }.map(\.id))
                            if !listsFetched, adRows.contains(where: { !knownAds.contains($0.entityId) }) {
                                // A new ad: the lists are out of date; fetch them, at most once per sync (an ad the
                                // fresh lists still lack makes each window ask the two levels below instead).
                                try await fetchEntities()
                                try await commitEntities(entities, id: id, window: window, context: context)
                            }
                            metrics = adRows
                            if let derived = LevelDerivation.derive(adRows, entities: entities) {
                                metrics += derived
                            } else {
                                // An ad the lists do not place (created between the list and the report): ask the API.
                                metrics += try await fetchReport(.adGroup, part)
                                metrics += try await fetchReport(.campaign, part)
                            }
                        }
                        let parents = SyncWriter.Parents(entities: entities)
                        let result = try await pool.withTransaction { c in
                            guard try await SyncWriter.lockForWrite(adAccountID: id, on: c) else { throw SyncStopped() }
                            let r = try await SyncWriter.replaceMetrics(
                                metrics, adAccountID: id, platform: platform, window: part, parents: parents,
                                finalBefore: finalBefore, on: c)
                            try await SyncProgress.save(
                                adAccountID: id, jobID: context.id, window: window, committedThrough: part.last, on: c)
                            // This transaction's record: its xmin is the version of every metric row written here.
                            try await c.execute(
                                """
                                INSERT INTO nexcomet.sync_writes (ad_account_id, job_id, window_start, window_end,
                                                                  rows_upserted, rows_deleted)
                                VALUES (\(id), \(context.id), \(part.first.description)::date,
                                        \(part.last.description)::date, \(r.upserted), \(r.deleted))
                                """)
                            return r
                        }
                        written.upserted += result.upserted
                        written.deleted += result.deleted
                        rowCount += metrics.count
                    }
                }
                try await syncWindows(remaining)
                // 3. Reconciliation: the platform's account totals over the whole synced window (one request per sync:
                // TikTok's report without stat_time_day spans up to 365 days, Snap's TOTAL stats have no documented
                // range limit; see the clients' `accountTotals`) against the stored ad-level sums of that window; a
                // difference re-syncs the whole window once, and one that persists is recorded (never fails the sync).
                if let e = earlyError {
                    reconcile = Reconciliation(status: "skipped", error: e.description)
                } else if settings.reconcile {
                    do {
                        func compare() async throws -> (api: AccountTotals, stored: AccountTotals) {
                            let api = try await settings.retryingTransient {
                                try await client.accountTotals(account: account, window: window, session: session)
                            }
                            return (api, try await Self.storedTotals(id, window: window, on: pool))
                        }
                        // The totals fetched before the reports serve as the first comparison's API side; when they
                        // differ they are asked again before re-syncing (the platform may have restated a day while
                        // the reports were fetched: one request more, only on a difference).
                        var check =
                            if let api = earlyTotals {
                                (api: api, stored: try await Self.storedTotals(id, window: window, on: pool))
                            } else { try await compare() }
                        if !check.api.reconciles(with: check.stored), earlyTotals != nil {
                            check = try await compare()
                        }
                        // Agreement: equal to the latest totals, or (numbers that grew while the sync ran: today's
                        // delivery, late conversions) between the totals asked before the reports and those asked
                        // after them, so the stored sums match the platform at some instant in between. A window
                        // that includes today is never still, and an exact comparison alone would re-sync, and then
                        // record a false mismatch, on every sync of an account that is spending.
                        func agrees(_ before: AccountTotals?, _ c: (api: AccountTotals, stored: AccountTotals)) -> Bool
                        {
                            c.api.reconciles(with: c.stored)
                                || before.map { c.stored.lies(between: $0, and: c.api) } == true
                        }
                        if agrees(earlyTotals, check) {
                            reconcile = Reconciliation(status: "ok")
                        } else if try await Self.mismatchedRecently(id, on: pool) {
                            // A difference one re-sync did not clear within the last day is not re-synced again on
                            // every (hourly) sync: recorded and counted, at the cost of one re-sync a day at most.
                            reconcile = Reconciliation(
                                status: "mismatch", api: check.api, stored: check.stored, resynced: false)
                        } else {
                            context.logger.warning(
                                "ad account totals differ from the stored sums; re-syncing the window once",
                                ("ad_account", "\(id)"), ("window", window.description))
                            let before = check.api
                            try await syncWindows(window.split(maxDays: Self.reportWindowDays(platform)))
                            check = try await compare()
                            reconcile =
                                agrees(before, check)
                                ? Reconciliation(status: "resynced")
                                : Reconciliation(status: "mismatch", api: check.api, stored: check.stored)
                        }
                    } catch let e as PlatformError {
                        reconcile = Reconciliation(status: "skipped", error: e.description)
                    }
                }
            }
        } catch let e as PlatformError {
            try await policy.fail(e)
        } catch is SyncStopped {
            // The organization was deleted or restricted, or the connection stopped, mid-sync: the final
            // transaction sees the same and completes the job without writing.
        }
        let started = policy.started
        // Every HTTP request of this attempt: pages, window chunks and retries, plus token refreshes.
        let calls = await session.requestCount + session.refreshCount
        let byStatus = await session.responseClasses
        let result = try await context.pool.withTransaction { c -> MetricsWriteResult? in
            // Organization, connection, account: the erasure's lock order. A deletion, restriction or disconnect
            // that committed while the platform answered leaves nothing more to write.
            guard try await SyncWriter.lockForWrite(adAccountID: id, on: c) else {
                try await context.complete(on: c)
                return nil
            }
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
                                                finished_at, reconcile_status, reconcile_difference)
                VALUES (\(id), \(connectionID), \(context.id), \(window.first.description)::date,
                        \(window.last.description)::date, \(written.upserted + written.deleted), \(calls),
                        \(ErrorPolicy.statusJSON(byStatus))::jsonb,
                        \((ContinuousClock.now - started).milliseconds), 'succeeded', now(),
                        \(reconcile?.status), \(reconcile?.differenceJSON)::jsonb)
                """)
            if reconcile?.status == "mismatch" {
                try await c.execute(
                    """
                    INSERT INTO nexcomet.sync_reconcile_counters (platform, mismatches) VALUES (\(platform.rawValue), 1)
                    ON CONFLICT (platform) DO UPDATE SET mismatches = sync_reconcile_counters.mismatches + 1
                    """)
            }
            try await SyncProgress.clear(adAccountID: id, on: c)
            try await context.complete(on: c)
            return written
        }
        guard let result else {
            context.logger.info(
                "ad account's connection or organization stopped during the sync; nothing written",
                ("ad_account", "\(id)"))
            return
        }
        context.logger.info(
            "ad account synced", ("ad_account", "\(id)"), ("window", window.description),
            ("rows", "\(rowCount)"), ("changed", "\(result.upserted)"), ("deleted", "\(result.deleted)"))
    }

    /// Whether a sync of this ad account re-synced its window and still recorded a reconciliation `mismatch` in the
    /// last 24 hours. Mismatches recorded without a re-sync (`"resynced": false`) do not count, so they cannot keep
    /// postponing the next re-sync: a lasting difference is re-synced once a day. Per account, not per window: a
    /// first sync's lasting mismatch also spares the incremental windows of that day their re-sync.
    static func mismatchedRecently(_ id: Int64, on pool: PGPool) async throws -> Bool {
        try await !pool.query(
            """
            SELECT 1 FROM nexcomet.sync_runs
             WHERE ad_account_id = \(id) AND reconcile_status = 'mismatch' AND started_at > now() - interval '24 hours'
               AND coalesce((reconcile_difference->>'resynced')::boolean, true)
             LIMIT 1
            """
        ).isEmpty
    }

    /// Longest report window per request: TikTok 30 days for `stat_time_day` reports (ad-apis.md A4, "Max range
    /// per request: DAY 30 days"; a longer range answers 40067), Snap 31 days for `granularity=DAY` stats
    /// (ad-apis.md B4, "Window: DAY <= 31 days"). Each such window is one request (pages aside) and one commit.
    static func reportWindowDays(_ platform: AdPlatform) -> Int {
        switch platform {
        case .tiktok: return 30
        case .snapchat: return 31
        }
    }

    /// Writes the entity lists and stamps the snapshot time, with a progress row saying this job has them.
    func commitEntities(_ entities: [AdEntity], id: Int64, window: DateWindow, context: JobContext) async throws {
        let now = environment.settings.now()
        try await context.pool.withTransaction { c in
            guard try await SyncWriter.lockForWrite(adAccountID: id, on: c) else { throw SyncStopped() }
            try await SyncWriter.upsertEntities(entities, adAccountID: id, on: c)
            try await c.execute("UPDATE nexcomet.ad_accounts SET entities_synced_at = \(now) WHERE id = \(id)")
            try await SyncProgress.save(
                adAccountID: id, jobID: context.id, window: window, committedThrough: nil, keepCommitted: true, on: c)
        }
    }

    /// The window of args `from`/`to`, capped by the plan's retention (policy section 7: no sync fetches or keeps
    /// data older than the plan's window): `from` moves up to the oldest day the plan keeps in the account's time
    /// zone; a window entirely before it is refused. Enterprise is unlimited. `to` is capped at today.
    ///
    /// Most days one `sync_ad_account` job fetches when args name `from`/`to`: 3660 (ten years).
    static let maxRequestedDays = 3660

    func requestedWindow(_ args: Args, plan: String, timeZone: TimeZone) throws -> DateWindow? {
        guard args.from != nil || args.to != nil else { return nil }
        guard let fromText = args.from, let toText = args.to, let from = LocalDate(parsing: fromText),
            let to = LocalDate(parsing: toText), from <= to
        else {
            throw JobDiscard("from and to must both be YYYY-MM-DD dates with from <= to")
        }
        // No day after today exists at the platform, and one job fetches at most `maxRequestedDays` (a hostile
        // `0001-01-01...9999-12-31` would otherwise cost hundreds of thousands of requests).
        let today = LocalDate(environment.settings.now(), in: timeZone)
        guard from <= today else {
            throw JobDiscard("the window starts after today (\(today)) in the account's time zone")
        }
        return try cappedWindow(from: from, to: min(to, today), today: today, plan: plan)
    }

    func cappedWindow(from: LocalDate, to: LocalDate, today: LocalDate, plan: String) throws -> DateWindow {
        var first = from
        let retention = PlanRetention(days: environment.settings.retentionDays)
        if retention.isLimited(plan: plan) {
            let days = retention.days(plan: plan)
            let oldest = today.adding(days: -(days - 1))
            guard oldest <= to else {
                throw JobDiscard(
                    "the window \(from)...\(to) lies before the \(plan) plan's \(days)-day retention (oldest day \(oldest))"
                )
            }
            first = max(from, oldest)
        }
        guard first.days(to: to) < Self.maxRequestedDays else {
            throw JobDiscard(
                "from...to spans more than \(Self.maxRequestedDays) days; split the backfill into several jobs")
        }
        return DateWindow(first: first, last: to)
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

/// A window's write found the organization deleted or restricted, or the connection no longer active (the lock
/// order of ``SyncWriter/lockForWrite(adAccountID:on:)`` refused): the sync stops writing.
struct SyncStopped: Error {}
