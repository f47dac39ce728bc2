import Foundation
import Logs
import NexcometJobs
import PGTestSupport
import Platforms
import Postgres
import Queue
import Synchronization
import XCTest

@testable import Privacy
@testable import Runtime
@testable import Sync

/// Issue 12, second part: erase never deadlocks with a running sync; retention covers every table and caps sync
/// windows by the plan; one catalogue of subject columns shared by export and erase, proven by a schema scan;
/// chunked exports.
final class PrivacyCompletenessTests: XCTestCase {
    var db: TestDatabase!

    override func setUp() async throws {
        do { db = try await TestDatabase.create(name) } catch {
            XCTFail("\(error)")
            throw error
        }
    }

    override func tearDown() async throws { await db?.drop() }

    func int(_ sql: PGQuery) async throws -> Int { try await db.pool.query(sql).first!.decode(0) }

    var tick: DueWorkContext {
        DueWorkContext(pool: db.pool, logger: Logger(label: "t", minimum: .error), holder: "t", isLeader: { true })
    }

    /// An organization (plan `plan`) with one user, one active connection with fake sealed tokens and one UTC ad
    /// account; returns (organization, user, connection, account).
    func tenant(_ name: String, plan: String = "pro") async throws -> (
        org: Int64, user: Int64, connection: Int64, account: Int64
    ) {
        let org: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.organizations (name, plan) VALUES (\(name), \(plan)) RETURNING id"
        ).first!.decode(0)
        let user: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.users (organization_id, email, name) VALUES (\(org), \(name + "@example.com"), \(name))
            RETURNING id
            """
        ).first!.decode(0)
        let connection: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.ad_connections (organization_id, platform, access_token_ciphertext,
                                                 refresh_token_ciphertext, token_key_id, external_user_id)
            VALUES (\(org), 'tiktok', '\\x01deadbeef'::bytea, '\\x01cafebabe'::bytea, 'k1', \(name + "-ext"))
            RETURNING id
            """
        ).first!.decode(0)
        let account: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.ad_accounts (connection_id, platform, external_id, currency, timezone)
            VALUES (\(connection), 'tiktok', \(name + "-acct"), 'USD', 'UTC') RETURNING id
            """
        ).first!.decode(0)
        return (org, user, connection, account)
    }

    func request(_ org: Int64, user: Int64? = nil, kind: String) async throws -> Int64 {
        try await db.pool.query(
            """
            INSERT INTO nexcomet.privacy_requests (organization_id, user_id, kind)
            VALUES (\(org), \(user), \(kind)) RETURNING id
            """
        ).first!.decode(0)
    }

    /// Turns pending requests into jobs (the scheduler's source) and runs request `id`'s job.
    func runRequest(_ id: Int64) async throws {
        _ = try await PrivacyRequestSource().run(tick)
        let job: Int64 = try await db.pool.query(
            "SELECT id FROM nexjobs.jobs WHERE unique_key = 'privacy_request:' || \(id)::text ORDER BY id DESC LIMIT 1"
        ).first!.decode(0)
        let kind: String = try await db.pool.query("SELECT kind FROM nexjobs.jobs WHERE id = \(job)").first!.decode(0)
        if kind == "gdpr_erase" {
            try await runAsFakeWorker(GDPREraseHandler(), jobID: job, pool: db.pool)
        } else {
            try await runAsFakeWorker(GDPRExportHandler(), jobID: job, pool: db.pool)
        }
    }

    // MARK: - Erase and sync lock order (item 1)

    /// The sync's write (organization, connection, account locks, entities, metrics, a sync_runs row) is under way
    /// when an organization erase starts; the erase must wait, not deadlock (40P01). Without the lock order the
    /// sync holds the account (entities' foreign key) and then needs the connection (sync_runs' foreign key) that
    /// the erase already holds: PostgreSQL aborts one of them with 40P01. Repeated, and also raced without a
    /// barrier.
    func testOrganizationEraseAndARunningSyncWriteNeverDeadlock() async throws {
        let today = LocalDate(Date(), in: TimeZone(identifier: "UTC")!)
        let window = DateWindow(first: today.adding(days: -2), last: today)
        for round in 0..<6 {
            let (org, _, connection, account) = try await tenant("t\(round)")
            let entity = AdEntity(
                platform: .tiktok, accountId: "t\(round)-acct", level: .campaign, id: "c1", name: "C", parentId: nil,
                campaignId: nil, status: "ENABLE", isDeleted: false, updatedAt: nil)
            let metrics = (0..<3).map { d in
                DailyMetric(
                    platform: .tiktok, accountId: "t\(round)-acct", level: .campaign, entityId: "c1",
                    date: today.adding(days: -d), currency: "USD", spend: Decimal(d) + 0.5, impressions: 10, clicks: 1,
                    conversions: 0, conversionValue: 0)
            }
            let erase = try await request(org, kind: "erase")
            let barrier = round % 2 == 0
            let locked = Flag()
            let pool = db.pool
            let sync = Task { () async throws -> Bool in
                try await pool.withTransaction { c in
                    guard try await SyncWriter.lockForWrite(adAccountID: account, on: c) else { return false }
                    try await SyncWriter.upsertEntities([entity], adAccountID: account, on: c)
                    locked.value.store(true, ordering: .sequentiallyConsistent)
                    if barrier { try await waitForALockWaiter(pool) }
                    _ = try await SyncWriter.replaceMetrics(
                        metrics, adAccountID: account, platform: .tiktok, window: window,
                        parents: SyncWriter.Parents(entities: [entity]), finalBefore: today.adding(days: -3), on: c)
                    try await c.execute(
                        """
                        INSERT INTO nexcomet.sync_runs (ad_account_id, connection_id, outcome, finished_at)
                        VALUES (\(account), \(connection), 'succeeded', now())
                        """)
                    return true
                }
            }
            if barrier {
                let deadline = ContinuousClock.now + .seconds(20)
                while !locked.value.load(ordering: .sequentiallyConsistent) && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(5))
                }
                XCTAssertTrue(locked.value.load(ordering: .sequentiallyConsistent), "the sync took its locks")
            }
            var failures: [String] = []
            do { try await runRequest(erase) } catch {
                failures.append("erase: \(error)")
            }
            do { _ = try await sync.value } catch {
                failures.append("sync: \(error)")
            }
            XCTAssertEqual(failures, [], "round \(round): neither side fails (no 40P01)")
            for e in failures where e.contains("40P01") || e.contains("deadlock") {
                XCTFail("round \(round): deadlock: \(e)")
            }
            let left = try await int(
                """
                SELECT (SELECT count(*) FROM nexcomet.organizations WHERE id = \(org))
                     + (SELECT count(*) FROM nexcomet.daily_metrics WHERE ad_account_id = \(account))
                     + (SELECT count(*) FROM nexcomet.sync_runs WHERE ad_account_id = \(account))::int
                """)
            XCTAssertEqual(left, 0, "round \(round): the erase ran after the sync and removed its writes too")
        }
    }

    /// A sync whose organization was erased (or deleted, restricted, disconnected) while it fetched writes nothing:
    /// the lock step finds it gone.
    func testTheSyncWriteLockRefusesAGoneOrStoppedOrganization() async throws {
        let (org, _, connection, account) = try await tenant("a")
        func lockable() async throws -> Bool {
            try await db.pool.withTransaction { c in try await SyncWriter.lockForWrite(adAccountID: account, on: c) }
        }
        let ready = try await lockable()
        XCTAssertTrue(ready)
        try await db.pool.execute("UPDATE nexcomet.organizations SET processing_restricted = true WHERE id = \(org)")
        let restricted = try await lockable()
        XCTAssertFalse(restricted, "restricted")
        try await db.pool.execute("UPDATE nexcomet.organizations SET processing_restricted = false WHERE id = \(org)")
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET status = 'disconnected' WHERE id = \(connection)")
        let disconnected = try await lockable()
        XCTAssertFalse(disconnected, "disconnected")
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET status = 'active' WHERE id = \(connection)")
        try await db.pool.execute("UPDATE nexcomet.organizations SET deleted_at = now() WHERE id = \(org)")
        let deleted = try await lockable()
        XCTAssertFalse(deleted, "deleted")
        try await db.pool.execute("DELETE FROM nexcomet.organizations WHERE id = \(org)")
        let gone = try await lockable()
        XCTAssertFalse(gone, "gone")
    }

    // MARK: - Retention (item 2)

    /// Every table holding customer data is purged by its rule; a restricted organization too; a pro organization
    /// downgraded to free keeps 7 days at the next run.
    func testRetentionCoversEveryTableRestrictedOrganizationsAndADowngrade() async throws {
        let (free, _, freeConnection, freeAccount) = try await tenant("free", plan: "free")
        let (down, _, _, downAccount) = try await tenant("down", plan: "pro")
        let (ent, _, _, entAccount) = try await tenant("ent", plan: "enterprise")
        try await db.pool.execute("UPDATE nexcomet.organizations SET processing_restricted = true WHERE id = \(free)")
        for account in [freeAccount, downAccount, entAccount] {
            try await db.pool.execute(
                """
                INSERT INTO nexcomet.daily_metrics (platform, ad_account_id, level, entity_id, date, currency, spend)
                SELECT 'tiktok', \(account), l.level, l.entity, (now() AT TIME ZONE 'UTC')::date - d, 'USD', 1
                  FROM generate_series(0, 119) d,
                       (VALUES ('campaign', 'live'), ('ad_group', 'live-g'), ('ad', 'live-a')) l(level, entity)
                """)
            try await db.pool.execute(
                """
                INSERT INTO nexcomet.daily_metrics (platform, ad_account_id, level, entity_id, date, currency, spend)
                SELECT 'tiktok', \(account), l.level, l.entity, (now() AT TIME ZONE 'UTC')::date - 100, 'USD', 1
                  FROM (VALUES ('campaign', 'stale'), ('ad_group', 'stale-g'), ('ad', 'stale-a')) l(level, entity)
                """)
            // Entities: one with metrics today, one whose last metrics are 100 days old (both created long ago),
            // and one created today without any metrics.
            try await db.pool.execute(
                """
                INSERT INTO nexcomet.campaigns (ad_account_id, external_id, status, created_at)
                VALUES (\(account), 'live', 'ENABLE', now() - interval '200 days'),
                       (\(account), 'stale', 'ENABLE', now() - interval '200 days'),
                       (\(account), 'new', 'ENABLE', now())
                """)
            try await db.pool.execute(
                """
                INSERT INTO nexcomet.ad_groups (ad_account_id, campaign_external_id, external_id, status, created_at)
                VALUES (\(account), 'live', 'live-g', 'ENABLE', now() - interval '200 days'),
                       (\(account), 'stale', 'stale-g', 'ENABLE', now() - interval '200 days')
                """)
            try await db.pool.execute(
                """
                INSERT INTO nexcomet.ads (ad_account_id, ad_group_external_id, external_id, status, created_at)
                VALUES (\(account), 'live-g', 'live-a', 'ENABLE', now() - interval '200 days'),
                       (\(account), 'stale-g', 'stale-a', 'ENABLE', now() - interval '200 days')
                """)
        }
        try await db.pool.execute("UPDATE nexcomet.organizations SET plan = 'free' WHERE id = \(down)")
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.sync_runs (ad_account_id, connection_id, started_at)
            VALUES (\(freeAccount), \(freeConnection), now() - interval '13 months'),
                   (\(freeAccount), \(freeConnection), now())
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.notifications (organization_id, kind, created_at, sent_at)
            VALUES (\(free), 'sync_alert', now() - interval '14 months', now() - interval '13 months'),
                   (\(free), 'sync_alert', now() - interval '13 months', NULL),
                   (\(free), 'sync_alert', now() - interval '11 months', NULL),
                   (\(free), 'sync_alert', now(), now())
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.usage_logs (organization_id, at, event)
            VALUES (\(free), now() - interval '13 months', 'old'), (NULL, now() - interval '13 months', 'old-no-org'),
                   (\(free), now(), 'new')
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.privacy_audit (action, organization_id, at)
            VALUES ('disconnect', \(free), now() - interval '13 months'), ('disconnect', \(free), now() - interval '11 months')
            """)
        let oldExport = try await request(free, kind: "export")
        let recentExport = try await request(free, kind: "export")
        let failed = try await request(free, kind: "export")
        try await db.pool.execute(
            """
            UPDATE nexcomet.privacy_requests SET status = 'completed', result = '{"x": 1}',
                   completed_at = now() - CASE id WHEN \(oldExport) THEN interval '31 days' ELSE interval '29 days' END
             WHERE id IN (\(oldExport), \(recentExport))
            """)
        try await db.pool.execute(
            """
            UPDATE nexcomet.privacy_requests SET status = 'failed', error = 'x', completed_at = now() - interval '40 days'
             WHERE id = \(failed)
            """)
        // Configured above the policy: still capped at 7 (free) and 90 (pro).
        let settings = SyncSettings.fromEnvironment([
            "NEXJOBS_SYNC_RETENTION_FREE": "30", "NEXJOBS_SYNC_RETENTION_PRO": "400",
        ])
        try await enqueueAndRun(RetentionPurgeHandler(settings: settings), args: #"{"batch_size": 5}"#, pool: db.pool)

        func metricDays(_ account: Int64) async throws -> Int {
            try await int(
                "SELECT count(DISTINCT date)::int FROM nexcomet.daily_metrics WHERE ad_account_id = \(account)")
        }
        let freeDays = try await metricDays(freeAccount)
        let downDays = try await metricDays(downAccount)
        let entDays = try await metricDays(entAccount)
        XCTAssertEqual(
            freeDays, 7, "a restricted free organization is purged to 7 days (NEXJOBS_SYNC_RETENTION_FREE=30 capped)")
        XCTAssertEqual(downDays, 7, "pro downgraded to free: 7 days at the next run")
        XCTAssertEqual(entDays, 120, "enterprise keeps everything")
        for (table, column) in [("campaigns", "external_id"), ("ad_groups", "external_id"), ("ads", "external_id")] {
            let rows: [String] = try await db.pool.query(
                PGQuery(unsafeSQL: "SELECT ad_account_id || ':' || \(column) FROM nexcomet.\(table) ORDER BY 1")
            ).map { try $0.decode(0) }
            for account in [freeAccount, downAccount] {
                XCTAssertFalse(
                    rows.contains { $0.hasPrefix("\(account):stale") }, "\(table): no metrics in the window: purged")
                XCTAssertTrue(
                    rows.contains { $0.hasPrefix("\(account):live") }, "\(table): metrics in the window: kept")
            }
            XCTAssertTrue(rows.contains("\(entAccount):stale") || table != "campaigns", "enterprise entities stay")
            if table == "campaigns" {
                XCTAssertTrue(rows.contains("\(freeAccount):new"), "created inside the window: kept")
            }
        }
        let runs = try await int("SELECT count(*)::int FROM nexcomet.sync_runs")
        XCTAssertEqual(runs, 1, "sync_runs older than 12 months go")
        let notifications = try await int("SELECT count(*)::int FROM nexcomet.notifications")
        XCTAssertEqual(notifications, 2, "notifications older than 12 months go, sent or not")
        let logs: [String] = try await db.pool.query("SELECT event FROM nexcomet.usage_logs ORDER BY event").map {
            try $0.decode(0)
        }
        XCTAssertEqual(logs, ["new"], "usage logs older than 12 months go, with or without an organization")
        let audit = try await int(
            "SELECT count(*)::int FROM nexcomet.privacy_audit WHERE action = 'disconnect'")
        XCTAssertEqual(audit, 1, "privacy_audit older than 12 months goes")
        let requests: [Int64] = try await db.pool.query(
            "SELECT id FROM nexcomet.privacy_requests ORDER BY id"
        ).map { try $0.decode(0) }
        XCTAssertEqual(requests, [recentExport, failed], "completed 30 days ago: gone with its export; open ones stay")
    }

    /// Plan windows cap configuration and sync args: free 7, pro 90, enterprise unlimited; an explicit `from` is
    /// moved up to the oldest kept day, a window entirely before it is refused; the schedule is hourly.
    func testPlanWindowsCapSettingsSyncArgsAndTheScheduleIsHourly() async throws {
        let r = PlanRetention(days: ["free": 30, "pro": 400, "enterprise": 1000])
        XCTAssertEqual(r.days(plan: "free"), 7)
        XCTAssertEqual(r.days(plan: "pro"), 90)
        XCTAssertEqual(r.days(plan: "enterprise"), 1000)
        XCTAssertEqual(r.days(plan: "unknown"), 7)
        XCTAssertEqual(PlanRetention(days: ["free": 3]).days(plan: "free"), 3, "lower than the policy is allowed")
        let env = SyncSettings.fromEnvironment(["NEXJOBS_SYNC_RETENTION_PRO": "365"])
        XCTAssertEqual(env.retention(plan: "pro"), 90)
        let now = Date(timeIntervalSince1970: 1_780_000_000)  // 2026-05-28 UTC
        var settings = SyncSettings(retentionDays: ["free": 30, "pro": 400, "enterprise": 365])
        settings.now = { now }
        let handler = SyncAdAccountHandler(
            environment: SyncEnvironment(
                keyRing: .failure(SyncConfigurationError("unused")),
                clients: PlatformClientProvider { _, _ in throw SyncConfigurationError("unused") }, settings: settings))
        let utc = TimeZone(identifier: "UTC")!
        let today = LocalDate(now, in: utc)
        func args(_ from: LocalDate, _ to: LocalDate) -> SyncAdAccountHandler.Args {
            try! JSONDecoder().decode(
                SyncAdAccountHandler.Args.self,
                from: Data(#"{"ad_account_id": 1, "from": "\#(from)", "to": "\#(to)"}"#.utf8))
        }
        let old = today.adding(days: -300)
        XCTAssertEqual(
            try handler.requestedWindow(args(old, today), plan: "free", timeZone: utc),
            DateWindow(first: today.adding(days: -6), last: today))
        XCTAssertEqual(
            try handler.requestedWindow(args(old, today), plan: "pro", timeZone: utc),
            DateWindow(first: today.adding(days: -89), last: today))
        XCTAssertEqual(
            try handler.requestedWindow(args(old, today), plan: "enterprise", timeZone: utc),
            DateWindow(first: old, last: today), "enterprise is unlimited")
        XCTAssertThrowsError(
            try handler.requestedWindow(args(old, today.adding(days: -7)), plan: "free", timeZone: utc)
        ) { XCTAssertTrue("\($0)".contains("retention"), "\($0)") }
        // Hostile ranges (review finding): `to` is capped at today, and one job fetches at most ten years of days.
        XCTAssertEqual(
            try handler.requestedWindow(args(old, today.adding(days: 400)), plan: "enterprise", timeZone: utc),
            DateWindow(first: old, last: today), "no day after today is fetched")
        XCTAssertThrowsError(
            try handler.requestedWindow(
                args(LocalDate(parsing: "0001-01-01")!, LocalDate(parsing: "9999-12-31")!), plan: "enterprise",
                timeZone: utc)
        ) { XCTAssertTrue("\($0)".contains("spans more than 3660 days"), "\($0)") }
        XCTAssertThrowsError(
            try handler.requestedWindow(args(today.adding(days: 1), today.adding(days: 9)), plan: "pro", timeZone: utc)
        ) { XCTAssertTrue("\($0)".contains("after today"), "\($0)") }
        let first = settings.window(platform: .tiktok, plan: "free", timeZone: utc, lastSynced: nil)
        XCTAssertEqual(first.first, today.adding(days: -6), "a first sync backfills 7 days, not the configured 30")

        let cron: String = try await db.pool.query(
            "SELECT cron FROM nexjobs.schedules WHERE name = 'retention_purge'"
        ).first!.decode(0)
        XCTAssertEqual(cron, "17 * * * *", "the purge runs hourly")
    }

    // MARK: - Catalogue and schema scan (items 3 and 4)

    /// Seeds one row (or more) into every table of the `nexcomet` schema for a tenant whose every text value
    /// contains `mark`; returns (organization, first user, second user).
    @discardableResult
    func seedEverything(_ mark: String) async throws -> (org: Int64, user: Int64, other: Int64) {
        let (org, user, connection, account) = try await tenant(mark)
        let other: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.users (organization_id, email, name) VALUES (\(org), \(mark + "-second@example.com"), 'S')
            RETURNING id
            """
        ).first!.decode(0)
        try await db.pool.execute(
            "UPDATE nexcomet.ad_accounts SET name = \(mark + "-account") WHERE id = \(account)")
        try await db.pool.execute(
            "INSERT INTO nexcomet.campaigns (ad_account_id, external_id, name, status) VALUES (\(account), \(mark + "-c"), \(mark), 'ENABLE')"
        )
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.ad_groups (ad_account_id, campaign_external_id, external_id, name, status)
            VALUES (\(account), \(mark + "-c"), \(mark + "-g"), \(mark), 'ENABLE')
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.ads (ad_account_id, ad_group_external_id, external_id, name, status)
            VALUES (\(account), \(mark + "-g"), \(mark + "-a"), \(mark), 'ENABLE')
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.daily_metrics (platform, ad_account_id, level, entity_id, date, currency, spend)
            SELECT 'tiktok', \(account), 'campaign', \(mark + "-c"), (now() AT TIME ZONE 'UTC')::date - d, 'USD', 2.5
              FROM generate_series(0, 2) d
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.sync_runs (ad_account_id, connection_id, outcome, error)
            VALUES (\(account), \(connection), 'failed', \(mark + " run error"))
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.notifications (organization_id, connection_id, kind, payload)
            VALUES (\(org), \(connection), 'sync_alert', jsonb_build_object('reason', \(mark)::text))
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.usage_logs (organization_id, user_id, event, details)
            VALUES (\(org), \(user), 'login', jsonb_build_object('ip', \(mark + "-ip")::text)),
                   (NULL, \(user), 'signup', jsonb_build_object('email', \(mark + "@example.com")::text)),
                   (\(org), \(other), 'login', '{}')
            """)
        try await db.pool.execute(
            "INSERT INTO nexcomet.privacy_audit (action, organization_id, details) VALUES ('disconnect', \(org), '{\"n\": 1}')"
        )
        // A sealed token copy awaiting revocation at the platform (as a disconnect leaves it).
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.token_revocations (connection_id, organization_id, platform, access_token_ciphertext)
            VALUES (\(connection), \(org), 'tiktok', '\\x01deadbeef'::bytea)
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.sync_writes (ad_account_id, job_id, window_start, window_end, rows_upserted, rows_deleted)
            VALUES (\(account), 1, current_date - 7, current_date, 3, 0)
            """)
        // A sync in progress (issue 14's resumable syncs) and the per-platform reconcile counter (no tenant).
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.sync_progress (ad_account_id, job_id, window_start, window_end)
            VALUES (\(account), 1, current_date - 7, current_date)
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.sync_reconcile_counters (platform, mismatches) VALUES ('tiktok', 1)
            ON CONFLICT (platform) DO UPDATE SET mismatches = sync_reconcile_counters.mismatches + 1
            """)
        // privacy_requests and privacy_export_chunks: an earlier organization export.
        let export = try await request(org, kind: "export")
        try await runRequest(export)
        return (org, user, other)
    }

    func catalogueRows(_ t: CatalogueTable, org: Int64) async throws -> Int {
        try await db.pool.query(
            PGQuery(
                unsafeSQL: "SELECT count(*)::int FROM nexcomet.\(t.table) t WHERE \(t.organizationRows)",
                binds: [String(org)])
        ).first!.decode(0)
    }

    /// Rows of every `nexcomet` table whose text form contains `needle`, by table.
    func traces(_ needle: String) async throws -> [String: Int] {
        var out: [String: Int] = [:]
        for table in try await schemaTables() {
            let n: Int = try await db.pool.query(
                PGQuery(
                    unsafeSQL: "SELECT count(*)::int FROM nexcomet.\(table) t WHERE strpos(t::text, $1) > 0",
                    binds: [needle])
            ).first!.decode(0)
            if n > 0 { out[table] = n }
        }
        return out
    }

    func schemaTables() async throws -> [String] {
        try await db.pool.query(
            """
            SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = 'nexcomet' AND table_type = 'BASE TABLE' ORDER BY 1
            """
        ).map { try $0.decode(0) }
    }

    /// A digest of every row of organization `org` in every catalogued table.
    func fingerprint(_ org: Int64) async throws -> [String: String] {
        var out: [String: String] = [:]
        for t in PrivacyCatalogue.tables {
            out[t.table] = try await db.pool.query(
                PGQuery(
                    unsafeSQL: """
                        SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')
                          FROM nexcomet.\(t.table) t WHERE \(t.organizationRows)
                        """, binds: [String(org)])
            ).first!.decode(0)
        }
        return out
    }

    /// The catalogue lists every table of the schema (a new table fails here until catalogued); seeded with a row
    /// in every table, an organization's export holds every category and no token material nor another tenant;
    /// its erasure leaves no trace of it anywhere (only the id-and-count audit) and touches no other tenant.
    func testSchemaScanCatalogueExportAndEraseCoverEveryTable() async throws {
        let tables = try await schemaTables()
        XCTAssertEqual(
            Set(tables), Set(PrivacyCatalogue.tables.map(\.table)),
            "every table of the nexcomet schema is in PrivacyCatalogue.tables, and nothing else")
        let a = try await seedEverything("alphamark")
        let b = try await seedEverything("betamark")
        for t in PrivacyCatalogue.tables where t.holdsTenantRows {
            let n = try await catalogueRows(t, org: a.org)
            XCTAssertGreaterThan(n, 0, "seeded: \(t.table)")
        }
        let export = try await request(a.org, kind: "export")
        try await runRequest(export)
        let text = try await PrivacyExport.read(export, pool: db.pool).get()
        let rows = exportRows(text)
        for t in PrivacyCatalogue.tables {
            guard let category = t.category else { continue }
            XCTAssertGreaterThan(rows[category]?.count ?? 0, 0, "the export holds category \(category)")
        }
        XCTAssertEqual(rows["daily_metrics"]?.count, 3)
        XCTAssertTrue(
            rows["usage_logs"]?.contains { ($0["organization_id"] is NSNull) } ?? false,
            "logs without an organization id are exported")
        for secret in [
            "deadbeef", "cafebabe", "access_token_ciphertext", "refresh_token_ciphertext", "token_key_id", "\"k1\"",
        ] {
            XCTAssertFalse(text.contains(secret), "no token material in the export: \(secret)")
        }
        XCTAssertFalse(text.contains("betamark"), "nothing of another tenant")
        let firstLine = text.prefix { $0 != "\n" }
        XCTAssertTrue(firstLine.contains(GDPRExportHandler.format), String(firstLine))

        let before = try await fingerprint(b.org)
        try await runRequest(try await request(a.org, kind: "erase"))
        let left = try await traces("alphamark")
        XCTAssertEqual(left, [:], "no row anywhere mentions the erased organization")
        for t in PrivacyCatalogue.tables where !t.keptAfterOrganizationErasure {
            let n = try await catalogueRows(t, org: a.org)
            XCTAssertEqual(n, 0, "erased: \(t.table)")
        }
        let nonNumeric = try await int(
            """
            SELECT count(*)::int FROM nexcomet.privacy_audit p, jsonb_each(p.details) e
             WHERE p.organization_id = \(a.org) AND jsonb_typeof(e.value) NOT IN ('number', 'boolean', 'null')
               AND e.key NOT IN ('kind', 'to', 'from', 'reason')
            """)
        XCTAssertEqual(nonNumeric, 0, "the kept audit holds ids, counts and fixed words only")
        let after = try await fingerprint(b.org)
        XCTAssertEqual(after, before, "the other tenant is untouched")
    }

    /// A member's erasure: no row anywhere keeps their email, name, logs (with or without organization) or the
    /// earlier exports holding them; external_user_id goes; the other member and the other tenant stay.
    func testAUsersErasureLeavesNoTraceOfTheUser() async throws {
        let a = try await seedEverything("alphamark")
        let b = try await seedEverything("betamark")
        try await db.pool.execute("UPDATE nexcomet.users SET name = 'ursula-unique' WHERE id = \(a.user)")
        let userExport = try await request(a.org, user: a.user, kind: "export")
        try await runRequest(userExport)
        let exported = try await PrivacyExport.read(userExport, pool: db.pool).get()
        let rows = exportRows(exported)
        XCTAssertEqual(rows["users"]?.count, 1, "only the subject's own user row")
        XCTAssertGreaterThan(rows["privacy_requests"]?.count ?? 0, 0, "the subject's requests")
        XCTAssertGreaterThan(rows["privacy_audit"]?.count ?? 0, 0, "the subject's audit entries")
        XCTAssertEqual(rows["connections"]?.count, 1, "connection metadata")
        XCTAssertTrue(rows["usage_logs"]?.contains { $0["organization_id"] is NSNull } ?? false)
        XCTAssertFalse(exported.contains("alphamark-second"), "not the other member")
        XCTAssertFalse(exported.contains("deadbeef"))
        let before = try await fingerprint(b.org)
        try await runRequest(try await request(a.org, user: a.user, kind: "erase"))
        for needle in ["ursula-unique", "alphamark@example.com", "alphamark-ip", "alphamark-ext"] {
            let left = try await traces(needle)
            XCTAssertEqual(left, [:], "no trace of \(needle)")
        }
        let second = try await int("SELECT count(*)::int FROM nexcomet.users WHERE id = \(a.other)")
        XCTAssertEqual(second, 1, "the other member stays")
        let after = try await fingerprint(b.org)
        XCTAssertEqual(after, before, "the other tenant is untouched")
    }
}

final class Flag: Sendable {
    let value = Atomic<Bool>(false)
}

/// Waits (deadline 20 s) until some session of this database waits for a row or relation lock.
func waitForALockWaiter(_ pool: PGPool) async throws {
    let deadline = ContinuousClock.now + .seconds(20)
    while ContinuousClock.now < deadline {
        let n: Int = try await pool.query(
            """
            SELECT count(*)::int FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
            """
        ).first!.decode(0)
        if n > 0 { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    XCTFail("no session started waiting for a lock within 20 s")
}
