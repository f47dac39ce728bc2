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
        do { db = try await TestDatabase.create(name) } catch { XCTFail("\(error)"); throw error }
    }

    override func tearDown() async throws { await db?.drop() }

    func int(_ sql: PGQuery) async throws -> Int { try await db.pool.query(sql).first!.decode(0) }

    var tick: DueWorkContext {
        DueWorkContext(pool: db.pool, logger: Logger(label: "t", minimum: .error), holder: "t", isLeader: { true })
    }

    /// An organization (plan `plan`) with one user, one active connection with fake sealed tokens and one UTC ad
    /// account; returns (organization, user, connection, account).
    func tenant(_ name: String, plan: String = "pro") async throws -> (org: Int64, user: Int64, connection: Int64, account: Int64) {
        let org: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.organizations (name, plan) VALUES (\(name), \(plan)) RETURNING id").first!.decode(0)
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
