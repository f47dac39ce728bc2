import Foundation
import Logs
import NexcometJobs
import PGTestSupport
import Platforms
import Postgres
import Queue
import XCTest

@testable import Privacy
@testable import Runtime
@testable import Sync

/// The privacy jobs against a real database: retention_purge, disconnect, gdpr_export, gdpr_erase, and the
/// scheduler source that turns privacy requests into jobs.
final class PrivacyJobsTests: XCTestCase {
    var db: TestDatabase!

    override func setUp() async throws {
        do { db = try await TestDatabase.create(name) } catch {
            XCTFail("\(error)")
            throw error
        }
    }

    override func tearDown() async throws { await db?.drop() }

    func count(_ sql: String) async throws -> Int {
        try await db.pool.query(PGQuery(unsafeSQL: sql)).first!.decode(0)
    }

    /// An organization with a user, one connection with sealed-looking tokens, one UTC account and `days` days of
    /// ad metrics ending today; returns (organization, user, connection, account).
    @discardableResult
    func tenant(_ name: String, plan: String, days: Int = 120, deletedDaysAgo: Int? = nil) async throws
        -> (Int64, Int64, Int64, Int64)
    {
        let org: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.organizations (name, plan, deleted_at)
            VALUES (\(name), \(plan), now() - \(deletedDaysAgo.map { "\($0) days" })::interval) RETURNING id
            """
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
                                                 refresh_token_ciphertext, token_key_id)
            VALUES (\(org), 'tiktok', '\\x01deadbeef'::bytea, '\\x01cafebabe'::bytea, 'k1') RETURNING id
            """
        ).first!.decode(0)
        let account: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.ad_accounts (connection_id, platform, external_id, currency, timezone)
            VALUES (\(connection), 'tiktok', \(name + "-acct"), 'USD', 'UTC') RETURNING id
            """
        ).first!.decode(0)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.campaigns (ad_account_id, external_id, name, status)
            VALUES (\(account), \(name + "-c1"), 'Campaign', 'ENABLE')
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.daily_metrics (platform, ad_account_id, level, entity_id, date, currency, spend)
            SELECT 'tiktok', \(account), 'campaign', \(name + "-c1"), (now() AT TIME ZONE 'UTC')::date - d, 'USD', 1.25
              FROM generate_series(0, \(days - 1)) d
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.usage_logs (organization_id, user_id, at, event)
            VALUES (\(org), \(user), now() - interval '13 months', 'login'), (\(org), \(user), now(), 'login')
            """)
        return (org, user, connection, account)
    }

    func testRetentionPurgeKeepsEachPlansDaysAndPurgesExpiredAndDeletedData() async throws {
        let (free, _, _, freeAccount) = try await tenant("free", plan: "free")
        let (pro, _, _, proAccount) = try await tenant("pro", plan: "pro")
        let (_, _, _, entAccount) = try await tenant("ent", plan: "enterprise")
        let (gone, _, _, _) = try await tenant("gone", plan: "pro", deletedDaysAgo: 31)
        let (recent, _, _, _) = try await tenant("recent", plan: "pro", days: 3, deletedDaysAgo: 29)
        try await db.pool.execute(
            "UPDATE nexcomet.users SET deleted_at = now() - interval '40 days' WHERE organization_id = \(free)")
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.sync_runs (ad_account_id, started_at) VALUES (\(proAccount), now() - interval '13 months'),
                   (\(proAccount), now())
            """)
        // A free account far east of UTC: its "today" is usually UTC's tomorrow, so it keeps one UTC day less.
        let kiritimati: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.ad_accounts (connection_id, platform, external_id, currency, timezone)
            SELECT id, 'tiktok', 'east', 'USD', 'Pacific/Kiritimati' FROM nexcomet.ad_connections
             WHERE organization_id = \(free) RETURNING id
            """
        ).first!.decode(0)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.daily_metrics (platform, ad_account_id, level, entity_id, date, currency, spend)
            SELECT 'tiktok', \(kiritimati), 'campaign', 'c', (now() AT TIME ZONE 'UTC')::date - d, 'USD', 1
              FROM generate_series(0, 29) d
            """)
        let settings = SyncSettings()
        let utcToday = LocalDate(Date(), in: TimeZone(identifier: "UTC")!)
        let eastToday = LocalDate(Date(), in: TimeZone(identifier: "Pacific/Kiritimati")!)
        try await enqueueAndRun(RetentionPurgeHandler(settings: settings), args: #"{"batch_size": 7}"#, pool: db.pool)
        let east = try await count(
            "SELECT count(*)::int FROM nexcomet.daily_metrics WHERE ad_account_id = \(kiritimati)")
        // Kept: UTC dates from the zone's today - 6 up to UTC today.
        let eastFirstKept = eastToday.adding(days: -6)
        var expectedEast = 0
        var day = eastFirstKept
        while day <= utcToday {
            expectedEast += 1
            day = day.adding(days: 1)
        }
        XCTAssertEqual(east, expectedEast, "the cutoff is the account's local date (\(eastToday) vs UTC \(utcToday))")

        let kept: [(Int64, Int)] = try await db.pool.query(
            "SELECT ad_account_id, count(*)::int FROM nexcomet.daily_metrics GROUP BY 1 ORDER BY 1"
        ).map { (try $0.decode(0), try $0.decode(1)) }
        XCTAssertEqual(kept.first { $0.0 == freeAccount }?.1, settings.retention(plan: "free"), "free keeps 7 days")
        XCTAssertEqual(kept.first { $0.0 == proAccount }?.1, settings.retention(plan: "pro"), "pro keeps 90 days")
        XCTAssertEqual(kept.first { $0.0 == entAccount }?.1, 120, "enterprise keeps everything")
        let oldest: String = try await db.pool.query(
            "SELECT min(date)::text FROM nexcomet.daily_metrics WHERE ad_account_id = \(freeAccount)"
        ).first!.decode(0)
        let today = try await db.pool.query("SELECT ((now() AT TIME ZONE 'UTC')::date - 6)::text").first!
            .decode(0, as: String.self)
        XCTAssertEqual(oldest, today, "the free plan's 7 days are today and the 6 before")

        let orgs: [Int64] = try await db.pool.query("SELECT id FROM nexcomet.organizations ORDER BY id").map {
            try $0.decode(0)
        }
        XCTAssertFalse(orgs.contains(gone), "deleted more than 30 days ago: purged with everything it owned")
        XCTAssertTrue(orgs.contains(recent), "deleted 29 days ago: kept")
        let recentTokens = try await count(
            """
            SELECT count(*)::int FROM nexcomet.ad_connections
             WHERE organization_id = \(recent) AND (access_token_ciphertext IS NOT NULL OR status <> 'disconnected')
            """)
        XCTAssertEqual(recentTokens, 0, "a deleted organization's tokens go at once, not after 30 days")
        XCTAssertTrue(orgs.contains(pro))
        let goneRows = try await count(
            "SELECT count(*)::int FROM nexcomet.ad_connections WHERE organization_id = \(gone)")
        XCTAssertEqual(goneRows, 0)
        let freeUsers = try await count("SELECT count(*)::int FROM nexcomet.users WHERE organization_id = \(free)")
        XCTAssertEqual(freeUsers, 0, "a user deleted 40 days ago is purged")
        let oldLogs = try await count(
            "SELECT count(*)::int FROM nexcomet.usage_logs WHERE at < now() - interval '12 months'")
        let newLogs = try await count("SELECT count(*)::int FROM nexcomet.usage_logs")
        XCTAssertEqual(oldLogs, 0)
        XCTAssertEqual(newLogs, 3, "this month's logs of the three remaining tenants whose users remain")
        let runs = try await count("SELECT count(*)::int FROM nexcomet.sync_runs")
        XCTAssertEqual(runs, 1)
        let summary: String = try await db.pool.query(
            """
            SELECT details::text FROM nexcomet.privacy_audit
             WHERE action = 'retention_purge' AND organization_id IS NULL ORDER BY id DESC LIMIT 1
            """
        ).first!.decode(0)
        XCTAssertTrue(summary.contains(#""organizations": 1"#), summary)
        let nonNumeric = try await count(
            """
            SELECT count(*)::int FROM nexcomet.privacy_audit a, jsonb_each(a.details) e
             WHERE jsonb_typeof(e.value) <> 'number'
               AND NOT (a.action = 'token_wipe' AND e.key = 'reason' AND e.value = '"organization deleted"')
            """)
        XCTAssertEqual(nonNumeric, 0, "the audit holds ids, counts and fixed reasons only")

        // A second run deletes exactly what expired since: one old row added now, everything else kept.
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.daily_metrics (platform, ad_account_id, level, entity_id, date, currency, spend)
            VALUES ('tiktok', \(proAccount), 'ad', 'late', (now() AT TIME ZONE 'UTC')::date - 200, 'USD', 1)
            """)
        let before = try await count("SELECT count(*)::int FROM nexcomet.daily_metrics")
        try await enqueueAndRun(RetentionPurgeHandler(settings: settings), args: "{}", pool: db.pool)
        let after = try await count("SELECT count(*)::int FROM nexcomet.daily_metrics")
        XCTAssertEqual(after, before - 1)
    }

    func testWorkersRunThePrivacyKinds() {
        let kinds = Set(defaultRegistry(environment: [:]).kinds)
        XCTAssertTrue(
            kinds.isSuperset(of: ["retention_purge", "disconnect", "gdpr_export", "gdpr_erase", "revoke_tokens"]),
            "\(kinds)")
    }

    func testRetentionScheduleIsEnabledOnTheDefaultQueueAndBadArgsChangeNothing() async throws {
        let row = try await db.pool.query(
            "SELECT enabled, queue FROM nexjobs.schedules WHERE name = 'retention_purge'"
        ).first!
        XCTAssertEqual(try row.decode(0, as: Bool.self), true)
        XCTAssertEqual(try row.decode(1, as: String.self), "default")
        try await tenant("free", plan: "free")
        do {
            try await enqueueAndRun(
                RetentionPurgeHandler(settings: SyncSettings()), args: #"{"batch_size": 0}"#, pool: db.pool)
            XCTFail("batch_size 0 must be refused")
        } catch let e as JobDiscard {
            XCTAssertTrue(e.message.contains("batch_size"), e.message)
        }
        let rows = try await count("SELECT count(*)::int FROM nexcomet.daily_metrics")
        XCTAssertEqual(rows, 120)
    }

    func testDisconnectDeletesTokensAndTheConnectionsDataOnly() async throws {
        let (org, _, connection, _) = try await tenant("a", plan: "pro")
        let (_, _, otherConnection, otherAccount) = try await tenant("b", plan: "pro")
        try await enqueueAndRun(DisconnectHandler(), args: #"{"connection_id": \#(connection)}"#, pool: db.pool)
        let c = try await db.pool.query(
            """
            SELECT status, access_token_ciphertext IS NULL AND refresh_token_ciphertext IS NULL AND token_key_id IS NULL,
                   next_sync_at IS NULL
              FROM nexcomet.ad_connections WHERE id = \(connection)
            """
        ).first!
        XCTAssertEqual(try c.decode(0, as: String.self), "disconnected")
        XCTAssertEqual(try c.decode(1, as: Bool.self), true, "tokens deleted")
        XCTAssertEqual(try c.decode(2, as: Bool.self), true, "never scheduled again")
        let accounts = try await count(
            "SELECT count(*)::int FROM nexcomet.ad_accounts WHERE connection_id = \(connection)")
        XCTAssertEqual(accounts, 0)
        let otherMetrics = try await count(
            "SELECT count(*)::int FROM nexcomet.daily_metrics WHERE ad_account_id = \(otherAccount)")
        XCTAssertEqual(otherMetrics, 120, "another tenant's data is untouched")
        let otherTokens = try await count(
            "SELECT count(*)::int FROM nexcomet.ad_connections WHERE id = \(otherConnection) AND token_key_id = 'k1'")
        XCTAssertEqual(otherTokens, 1)
        let audit = try await count(
            "SELECT count(*)::int FROM nexcomet.privacy_audit WHERE action = 'disconnect' AND organization_id = \(org)")
        XCTAssertEqual(audit, 1)
        // A refresh that was in flight cannot bring the tokens back.
        let keys = try KeyRing(parsing: "k1:" + Data(repeating: 7, count: 32).base64EncodedString())
        let store = ConnectionStore(vault: TokenVault(keyRing: keys))
        do {
            try await db.pool.withConnection { conn in
                try await store.saveTokens(connection, OAuthTokens(accessToken: "late-token"), on: conn)
            }
            XCTFail("tokens must not be saved on a disconnected connection")
        } catch let e as ConnectionStoreError {
            XCTAssertEqual(e.code, .notFound)
        }
        do {
            try await enqueueAndRun(DisconnectHandler(), args: #"{"connection_id": 999999}"#, pool: db.pool)
            XCTFail("an unknown connection must fail the job")
        } catch let e as JobDiscard {
            XCTAssertTrue(e.message.contains("999999"), e.message)
        }
    }

    func testExportHoldsTheSubjectsDataWithoutTokensOrOtherTenants() async throws {
        let (org, user, _, _) = try await tenant("alice", plan: "pro", days: 5)
        try await tenant("mallory", plan: "pro", days: 5)
        let request: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.privacy_requests (organization_id, kind) VALUES (\(org), 'export') RETURNING id"
        ).first!.decode(0)
        try await enqueueAndRun(GDPRExportHandler(), args: #"{"request_id": \#(request)}"#, pool: db.pool)
        let status: String = try await db.pool.query(
            "SELECT status FROM nexcomet.privacy_requests WHERE id = \(request)"
        ).first!.decode(0)
        XCTAssertEqual(status, "completed")
        let text = try await PrivacyExport.read(request, pool: db.pool).get()
        let lines = exportRows(text)
        XCTAssertEqual(lines["users"]?.first?["email"] as? String, "alice@example.com")
        XCTAssertEqual(lines["daily_metrics"]?.count, 5)
        XCTAssertEqual(lines["campaigns"]?.count, 1)
        XCTAssertEqual(lines["connections"]?.count, 1)
        XCTAssertEqual(lines["usage_logs"]?.count, 2)
        for secret in ["access_token_ciphertext", "refresh_token_ciphertext", "token_key_id", "deadbeef", "cafebabe"] {
            XCTAssertFalse(text.contains(secret), "the export holds no token material: \(secret)")
        }
        XCTAssertFalse(text.contains("mallory"), "nothing of another organization")

        // A user-level request: the user's own data.
        let userRequest: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.privacy_requests (organization_id, user_id, kind) VALUES (\(org), \(user), 'export')
            RETURNING id
            """
        ).first!.decode(0)
        try await enqueueAndRun(GDPRExportHandler(), args: #"{"request_id": "\#(userRequest)"}"#, pool: db.pool)
        let userExport = try await PrivacyExport.read(userRequest, pool: db.pool).get()
        XCTAssertTrue(userExport.contains("alice@example.com"))
        XCTAssertFalse(userExport.contains("daily_metrics"))
        // The wrong kind of request is refused.
        do {
            try await enqueueAndRun(GDPREraseHandler(), args: #"{"request_id": \#(request)}"#, pool: db.pool)
            XCTFail("an export request must not be erased")
        } catch let e as JobDiscard {
            XCTAssertTrue(e.message.contains("'export'"), e.message)
        }
    }

    func testEraseOfAUserAndOfAnOrganizationLeavesOnlyANonPersonalAuditRecord() async throws {
        let (org, user, _, _) = try await tenant("bob", plan: "free", days: 2)
        let colleague: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.users (organization_id, email) VALUES (\(org), 'carol@example.com') RETURNING id"
        ).first!.decode(0)
        // An organization export made earlier holds bob's row; bob's own export request is still pending.
        let orgExport: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.privacy_requests (organization_id, kind) VALUES (\(org), 'export') RETURNING id"
        ).first!.decode(0)
        try await enqueueAndRun(GDPRExportHandler(), args: #"{"request_id": \#(orgExport)}"#, pool: db.pool)
        let bobExport: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.privacy_requests (organization_id, user_id, kind) VALUES (\(org), \(user), 'export')
            RETURNING id
            """
        ).first!.decode(0)
        let userRequest: Int64 = try await db.pool.query(
            """
            INSERT INTO nexcomet.privacy_requests (organization_id, user_id, kind) VALUES (\(org), \(user), 'erase')
            RETURNING id
            """
        ).first!.decode(0)
        try await enqueueAndRun(GDPREraseHandler(), args: #"{"request_id": \#(userRequest)}"#, pool: db.pool)
        let users = try await count("SELECT count(*)::int FROM nexcomet.users WHERE id = \(user)")
        let logs = try await count("SELECT count(*)::int FROM nexcomet.usage_logs WHERE user_id = \(user)")
        XCTAssertEqual(users + logs, 0)
        let status: String = try await db.pool.query(
            "SELECT status FROM nexcomet.privacy_requests WHERE id = \(userRequest)"
        ).first!.decode(0)
        XCTAssertEqual(status, "completed")
        let metrics = try await count("SELECT count(*)::int FROM nexcomet.daily_metrics")
        XCTAssertEqual(metrics, 2, "erasing a user keeps the organization's campaign data")
        let oldExport = try await count(
            "SELECT count(*)::int FROM nexcomet.privacy_requests WHERE id = \(orgExport) AND result IS NULL")
        XCTAssertEqual(oldExport, 1, "an earlier export holding the erased user's data is dropped")
        // Bob's pending export is still about bob (never the whole organization) after his row is gone: it is
        // refused, and the request ends failed saying why (issue 12: the subject no longer exists).
        do {
            try await enqueueAndRun(GDPRExportHandler(), args: #"{"request_id": \#(bobExport)}"#, pool: db.pool)
            XCTFail("the export of an erased user is refused")
        } catch let e as JobDiscard {
            XCTAssertTrue(e.message.contains("no longer exists"), e.message)
        }
        let bob = try await db.pool.query(
            "SELECT status, result IS NULL, error FROM nexcomet.privacy_requests WHERE id = \(bobExport)"
        ).first!
        XCTAssertEqual(try bob.decode(0) as String, "failed")
        XCTAssertTrue(try bob.decode(1) as Bool, "no export of the organization in its place")
        XCTAssertTrue((try bob.decode(2) as String?)?.contains("no longer exists") == true)
        _ = colleague

        let orgRequest: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.privacy_requests (organization_id, kind) VALUES (\(org), 'erase') RETURNING id"
        ).first!.decode(0)
        let job = try await JobClient(pool: db.pool).enqueue(
            NewJob(kind: GDPREraseHandler.kind, args: #"{"request_id": \#(orgRequest)}"#))
        try await runAsFakeWorker(GDPREraseHandler(), jobID: job.id, pool: db.pool)
        for table in ["organizations", "ad_connections", "ad_accounts", "daily_metrics", "privacy_requests"] {
            let n = try await count("SELECT count(*)::int FROM nexcomet.\(table)")
            XCTAssertEqual(n, 0, table)
        }
        let audit: String = try await db.pool.query(
            "SELECT string_agg(action || ' ' || details::text, '; ' ORDER BY id) FROM nexcomet.privacy_audit"
        ).first!.decode(0)
        XCTAssertTrue(audit.contains("erase"), audit)
        let leftLogs = try await count("SELECT count(*)::int FROM nexcomet.usage_logs")
        XCTAssertEqual(leftLogs, 0, "the organization's users' logs went with it")
        // Running the erasure job again (a retry after a crash) finds the work done.
        try await db.pool.execute("UPDATE nexjobs.jobs SET state = 'available' WHERE id = \(job.id)")
        try await runAsFakeWorker(GDPREraseHandler(), jobID: job.id, pool: db.pool)
    }

    func testARequestNamingAnotherOrganizationsUserIsRefusedAndTouchesNothing() async throws {
        let (a, _, _, _) = try await tenant("dave", plan: "pro", days: 1)
        let (_, erin, _, _) = try await tenant("erin", plan: "pro", days: 1)
        for kind in ["erase", "export"] {
            let request: Int64 = try await db.pool.query(
                """
                INSERT INTO nexcomet.privacy_requests (organization_id, user_id, kind) VALUES (\(a), \(erin), \(kind))
                RETURNING id
                """
            ).first!.decode(0)
            do {
                if kind == "erase" {
                    try await enqueueAndRun(GDPREraseHandler(), args: #"{"request_id": \#(request)}"#, pool: db.pool)
                } else {
                    try await enqueueAndRun(GDPRExportHandler(), args: #"{"request_id": \#(request)}"#, pool: db.pool)
                }
                XCTFail("\(kind) of another organization's user must be refused")
            } catch let e as JobDiscard {
                XCTAssertTrue(e.message.contains("does not belong"), e.message)
            }
        }
        let erinLogs = try await count("SELECT count(*)::int FROM nexcomet.usage_logs WHERE user_id = \(erin)")
        XCTAssertEqual(erinLogs, 2)
        let erinRow = try await count("SELECT count(*)::int FROM nexcomet.users WHERE id = \(erin)")
        XCTAssertEqual(erinRow, 1)
    }

    /// Two organizations connecting the same advertiser get two ad accounts: one tenant's data never moves to the
    /// other's connection.
    func testTheSameAdvertiserUnderTwoOrganizationsIsTwoAccounts() async throws {
        let (_, _, first, _) = try await tenant("one", plan: "pro", days: 1)
        let (_, _, second, _) = try await tenant("two", plan: "pro", days: 1)
        let shared = AdAccount(
            platform: .tiktok, id: "7000000000000000042", name: "shared", currency: "usd", timeZone: "UTC")
        let handler = SyncConnectionHandler(environment: SyncEnvironment.fromEnvironment([:]))
        let a = try await db.pool.withConnection { c in
            try await handler.upsertAccounts([shared], connectionID: first, platform: .tiktok, on: c)
        }
        let b = try await db.pool.withConnection { c in
            try await handler.upsertAccounts([shared], connectionID: second, platform: .tiktok, on: c)
        }
        XCTAssertEqual(a.count, 1)
        XCTAssertEqual(b.count, 1)
        XCTAssertNotEqual(a, b)
        let owners: [Int64] = try await db.pool.query(
            "SELECT connection_id FROM nexcomet.ad_accounts WHERE external_id = '7000000000000000042' ORDER BY 1"
        ).map { try $0.decode(0) }
        XCTAssertEqual(owners, [first, second].sorted())
    }

    func testPendingRequestsBecomeOneJobEachAndRestrictIsAppliedAtOnce() async throws {
        let (org, _, _, _) = try await tenant("carol", plan: "pro", days: 1)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.privacy_requests (organization_id, kind)
            VALUES (\(org), 'export'), (\(org), 'erase'), (\(org), 'restrict')
            """)
        let context = DueWorkContext(
            pool: db.pool, logger: Logger(label: "test", minimum: .error), holder: "test", isLeader: { true })
        let first = try await PrivacyRequestSource().run(context)
        XCTAssertEqual(first, 3)
        let second = try await PrivacyRequestSource().run(context)
        XCTAssertEqual(second, 0, "requests already handed over are not enqueued again")
        let kinds: [String] = try await db.pool.query(
            "SELECT kind FROM nexjobs.jobs ORDER BY kind"
        ).map { try $0.decode(0) }
        XCTAssertEqual(kinds, ["gdpr_erase", "gdpr_export"])
        let restricted: Bool = try await db.pool.query(
            "SELECT processing_restricted FROM nexcomet.organizations WHERE id = \(org)"
        ).first!.decode(0)
        XCTAssertTrue(restricted)
        let statuses: [String] = try await db.pool.query(
            "SELECT kind || ':' || status FROM nexcomet.privacy_requests ORDER BY kind"
        ).map { try $0.decode(0) }
        XCTAssertEqual(statuses, ["erase:running", "export:running", "restrict:completed"])
    }
}

/// The rows of an NDJSON export by category (the header line excluded).
func exportRows(_ text: String) -> [String: [[String: Any]]] {
    var out: [String: [[String: Any]]] = [:]
    for line in text.split(separator: "\n") {
        guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let category = o["category"] as? String, let row = o["row"] as? [String: Any]
        else { continue }
        out[category, default: []].append(row)
    }
    return out
}
