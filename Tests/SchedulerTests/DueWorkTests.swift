import Foundation
import NexcometJobs
import PGTestSupport
import Postgres
import Runtime
import Synchronization
import XCTest

/// Set-based due work: connection syncs and token refreshes.
final class DueWorkTests: XCTestCase {
    func scheduler(_ db: TestDatabase, _ sources: [any DueWorkSource]) -> Scheduler {
        var o = SchedulerOptions()
        o.sources = sources
        return Scheduler(pool: db.pool, options: o, holder: "t", logger: quietLogger)
    }

    /// `count` connections spread over `orgs` organizations; the first `due` (by id) are due now, the rest
    /// in the next hour.
    func seed(_ db: TestDatabase, connections count: Int, due: Int, orgs: Int = 100) async throws {
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.organizations (name) SELECT 'org ' || g FROM generate_series(1, \(orgs)) g
            """)
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.ad_connections (organization_id, platform, last_synced_at, next_sync_at)
            SELECT 1 + g % \(orgs), CASE WHEN g % 2 = 0 THEN 'tiktok' ELSE 'snapchat' END,
                   now() - interval '1 hour',
                   CASE WHEN g <= \(due) THEN now() - interval '1 second' * g
                        ELSE now() + interval '1 minute' + interval '1 second' * (g % 3000) END
              FROM generate_series(1, \(count)) g
            """)
        try await db.pool.execute("ANALYZE nexcomet.ad_connections")
    }

    func syncJobs(_ db: TestDatabase) async throws -> [String] {
        try await db.pool.query(
            """
            SELECT args->>'connection_id' FROM nexjobs.jobs WHERE kind = 'sync_connection' ORDER BY id
            """
        ).map { try $0.decode(0) }
    }

    func testOneTickEnqueuesExactlyTheDueConnectionsAmongAHundredThousand() async throws {
        let db = try await TestDatabase.create()
        try await seed(db, connections: 100_000, due: 1_000)
        var source = ConnectionSyncSource()
        source.batchSize = 300  // several batches in one tick
        let s = scheduler(db, [source])
        let counts = try await s.tickOnce()
        XCTAssertEqual(counts["sync_connection"], 1_000)
        let jobs = try await syncJobs(db)
        XCTAssertEqual(jobs.count, 1_000)
        XCTAssertEqual(Set(jobs), Set((1...1_000).map(String.init)), "exactly the due connections")
        let keys: Int = try await db.pool.query(
            """
            SELECT count(*) FROM nexjobs.jobs
             WHERE kind = 'sync_connection' AND unique_key = 'sync_connection:' || (args->>'connection_id')
            """
        ).first!.decode(0)
        XCTAssertEqual(keys, 1_000)
        // Their next sync moved to now + cadence (1 h) + up to 10 % jitter; nobody else moved.
        let moved = try await db.pool.query(
            """
            SELECT count(*) FILTER (WHERE next_sync_at BETWEEN now() + interval '59 minutes' AND now() + interval '67 minutes'),
                   count(DISTINCT next_sync_at) FILTER (WHERE id <= 1000),
                   count(*) FILTER (WHERE next_sync_at <= now())
              FROM nexcomet.ad_connections
            """
        ).first!
        XCTAssertEqual(try moved.decode(0, as: Int.self), 1_000)
        XCTAssertGreaterThan(try moved.decode(1, as: Int.self), 900, "jitter spreads the next syncs")
        XCTAssertEqual(try moved.decode(2, as: Int.self), 0)
        // Nothing is due any more: the next tick enqueues nothing.
        let v1 = try await s.tickOnce()["sync_connection"]
        XCTAssertEqual(v1, 0)
        await db.drop()
    }

    /// Issue 14: connections that never synced (a deploy, an import), here all admitted at once (no backlog limit;
    /// the limit's own test is `testFirstSyncsAreAdmittedByBacklog...`): their next syncs are spread uniformly over
    /// one cadence instead of staying within 10 % of it for ever.
    func testFirstSyncsSpreadTheNextSyncsOverAWholeCadence() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute("INSERT INTO nexcomet.organizations (name) VALUES ('o')")
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.ad_connections (organization_id, platform)
            SELECT 1, 'tiktok' FROM generate_series(1, 2000)
            """)
        var source = ConnectionSyncSource()
        source.firstSyncBacklog = nil
        let counts = try await scheduler(db, [source]).tickOnce()
        XCTAssertEqual(counts["sync_connection"], 2_000, "every first sync starts at once")
        // Next syncs by 6-minute bucket of the hour: each of the ten buckets holds about 200 (uniform). The phase is
        // measured from the tick's own now() (its job's created_at, same transaction), not this later query's: a
        // phase of a few milliseconds would otherwise fall into an eleventh bucket below zero.
        let buckets: [Int] = try await db.pool.query(
            """
            SELECT count(*)::int FROM nexcomet.ad_connections c
              JOIN nexjobs.jobs j ON j.kind = 'sync_connection' AND j.args->>'connection_id' = c.id::text
             GROUP BY floor(extract(epoch FROM c.next_sync_at - j.created_at) / 360) ORDER BY 1
            """
        ).map { try $0.decode(0) }
        XCTAssertEqual(buckets.count, 10, "spread over the whole hour: \(buckets)")
        XCTAssertGreaterThan(buckets.min() ?? 0, 120, "no empty stretch: \(buckets)")
        XCTAssertLessThan(buckets.max() ?? 0, 300, "no burst: \(buckets)")
        await db.drop()
    }

    /// `platformQueues` (NEXJOBS_SYNC_QUEUE_*): each platform's discoveries go to its own queue, a platform not
    /// named to the source's queue.
    func testDueSyncsGoToTheirPlatformsQueue() async throws {
        let db = try await TestDatabase.create()
        try await seed(db, connections: 10, due: 10, orgs: 2)
        var source = ConnectionSyncSource()
        source.queue = "discover"
        source.platformQueues = ["tiktok": "sync.tiktok"]
        // Each queue that got jobs is notified (workers of sync.tiktok wake at once, not at their poll).
        let heard = Mutex<[String]>([])
        let listener = PGListener(
            config: db.pool.config, channels: ["nexjobs_jobs"],
            onNotify: { n in heard.withLock { $0.append(n.payload) } })
        listener.start()
        defer { listener.stop() }
        let listening = await waitUntil(timeout: .seconds(10)) {
            _ = try? await db.pool.execute("SELECT pg_notify('nexjobs_jobs', 'ready')")
            return heard.withLock { $0.contains("ready") }
        }
        XCTAssertTrue(listening)
        heard.withLock { $0.removeAll() }
        let counts = try await scheduler(db, [source]).tickOnce()
        XCTAssertEqual(counts["sync_connection"], 10)
        let routed: [String] = try await db.pool.query(
            """
            SELECT c.platform || '>' || j.queue || ':' || count(*) FROM nexjobs.jobs j
              JOIN nexcomet.ad_connections c ON c.id = (j.args->>'connection_id')::bigint
             WHERE j.kind = 'sync_connection' GROUP BY c.platform, j.queue ORDER BY 1
            """
        ).map { try $0.decode(0) }
        XCTAssertEqual(routed, ["snapchat>discover:5", "tiktok>sync.tiktok:5"])
        let notified = await waitUntil(timeout: .seconds(10)) {
            // A probe sent while the listener was connecting may arrive late: only the queues count.
            Set(heard.withLock { $0 }.filter { $0 != "ready" }) == ["discover", "sync.tiktok"]
        }
        XCTAssertTrue(notified, "\(heard.withLock { $0 })")
        await db.drop()
    }

    /// sql/068, "the scheduler should spread first syncs": a wave of new connections is admitted by backlog (first
    /// syncs only while fewer than `firstSyncBacklog` sync jobs wait, oldest due first), while connections synced
    /// before are enqueued as they come due whatever the backlog.
    func testFirstSyncsAreAdmittedByBacklogWhileRegularSyncsAreNotHeldBack() async throws {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        try await seed(db, connections: 6, due: 5, orgs: 1)  // ids 1-6, synced before; 1-5 due now
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.ad_connections (organization_id, platform, next_sync_at)
            SELECT 1, 'tiktok', now() - interval '1 minute' - interval '1 second' * g FROM generate_series(1, 30) g
            """)  // ids 7-36, never synced, due; 36 has waited longest
        var source = ConnectionSyncSource()
        source.firstSyncBacklog = 10
        let s = scheduler(db, [source])
        func firstSyncsEnqueued() async throws -> [Int] {
            try await db.pool.query(
                """
                SELECT (args->>'connection_id')::int FROM nexjobs.jobs
                 WHERE kind = 'sync_connection' AND (args->>'connection_id')::int > 6 ORDER BY 1
                """
            ).map { try $0.decode(0) }
        }
        var counts = try await s.tickOnce()
        XCTAssertEqual(counts["sync_connection"], 15, "5 regular + 10 first syncs (nothing waited)")
        var firsts = try await firstSyncsEnqueued()
        XCTAssertEqual(firsts, Array(27...36), "the longest-waiting new connections first")
        // 15 jobs wait (>= 10): no first sync is admitted, but a regular sync that comes due is.
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET next_sync_at = now() WHERE id = 6")
        counts = try await s.tickOnce()
        XCTAssertEqual(counts["sync_connection"], 1, "the regular sync only")
        firsts = try await firstSyncsEnqueued()
        XCTAssertEqual(firsts.count, 10)
        // Workers drain the queue down to 4 waiting: 6 more first syncs.
        try await db.pool.execute(
            """
            UPDATE nexjobs.jobs SET state = 'completed', finished_at = now()
             WHERE id IN (SELECT id FROM nexjobs.jobs WHERE state = 'available' ORDER BY id LIMIT 12)
            """)
        counts = try await s.tickOnce()
        XCTAssertEqual(counts["sync_connection"], 6)
        firsts = try await firstSyncsEnqueued()
        XCTAssertEqual(firsts, Array(21...36))
        // No limit (nil): everything due at once, as before sql/068.
        source.firstSyncBacklog = nil
        counts = try await scheduler(db, [source]).tickOnce()
        XCTAssertEqual(counts["sync_connection"], 14)
        firsts = try await firstSyncsEnqueued()
        XCTAssertEqual(firsts, Array(7...36))
    }

    func testAConnectionWithALiveSyncJobGetsNoSecondOne() async throws {
        let db = try await TestDatabase.create()
        try await seed(db, connections: 3, due: 3, orgs: 1)
        let s = scheduler(db, [ConnectionSyncSource()])
        let v2 = try await s.tickOnce()["sync_connection"]
        XCTAssertEqual(v2, 3)
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET next_sync_at = now() - interval '1 second'")
        let v3 = try await s.tickOnce()["sync_connection"]
        XCTAssertEqual(v3, 0, "the first jobs are still live")
        try await db.pool.execute(
            """
            UPDATE nexjobs.jobs SET state = 'completed', finished_at = now() WHERE args->>'connection_id' = '2'
            """)
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET next_sync_at = now() - interval '1 second'")
        let v4 = try await s.tickOnce()["sync_connection"]
        XCTAssertEqual(v4, 1)
        await db.drop()
    }

    func testRestrictedDeletedAndInactiveConnectionsAreNotScheduledAndLiftingTheRestrictionSchedulesThem()
        async throws
    {
        let db = try await TestDatabase.create()
        // Connection g belongs to organization 1 + g % 4: connection 3 to org 4, connection 6 to org 3.
        try await seed(db, connections: 40, due: 40, orgs: 4)
        try await db.pool.execute("UPDATE nexcomet.organizations SET processing_restricted = true WHERE id = 1")
        try await db.pool.execute("UPDATE nexcomet.organizations SET deleted_at = now() WHERE id = 2")
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET status = 'needs_reauth' WHERE id = 3")
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET status = 'disconnected' WHERE id = 6")
        let s = scheduler(db, [ConnectionSyncSource()])
        let v5 = try await s.tickOnce()["sync_connection"]
        XCTAssertEqual(v5, 18)
        let orgsScheduled: [Int] = try await db.pool.query(
            """
            SELECT DISTINCT c.organization_id FROM nexjobs.jobs j
              JOIN nexcomet.ad_connections c ON c.id = (j.args->>'connection_id')::bigint ORDER BY 1
            """
        ).map { try $0.decode(0) }
        XCTAssertEqual(orgsScheduled, [3, 4])
        let v6 = try await s.tickOnce()["sync_connection"]
        XCTAssertEqual(v6, 0, "still restricted")
        try await db.pool.execute("UPDATE nexcomet.organizations SET processing_restricted = false WHERE id = 1")
        let v7 = try await s.tickOnce()["sync_connection"]
        XCTAssertEqual(v7, 10, "lifting the restriction schedules them")
        let org1: Int = try await db.pool.query(
            """
            SELECT count(*) FROM nexjobs.jobs j JOIN nexcomet.ad_connections c
                ON c.id = (j.args->>'connection_id')::bigint WHERE c.organization_id = 1
            """
        ).first!.decode(0)
        XCTAssertEqual(org1, 10)
        await db.drop()
    }

    func testTokensNearExpiryGetOneRefreshJob() async throws {
        let db = try await TestDatabase.create()
        try await db.pool.execute("INSERT INTO nexcomet.organizations (id, name) VALUES (1, 'o'), (2, 'r')")
        try await db.pool.execute("UPDATE nexcomet.organizations SET processing_restricted = true WHERE id = 2")
        try await db.pool.execute(
            """
            INSERT INTO nexcomet.ad_connections
                (id, organization_id, platform, status, next_sync_at, refresh_token_ciphertext,
                 access_token_expires_at, refresh_token_expires_at)
            VALUES (1, 1, 'tiktok', 'active', NULL, '\\x01', now() + interval '5 minutes', NULL),
                   (2, 1, 'snapchat', 'active', NULL, '\\x01', now() + interval '1 hour', NULL),
                   (3, 1, 'snapchat', 'active', NULL, NULL, now() + interval '1 minute', NULL),
                   (4, 1, 'tiktok', 'active', NULL, '\\x01', now() - interval '1 minute', now() - interval '1 day'),
                   (5, 1, 'tiktok', 'needs_reauth', NULL, '\\x01', now(), NULL),
                   (6, 2, 'tiktok', 'active', NULL, '\\x01', now(), NULL),
                   (7, 1, 'snapchat', 'active', NULL, '\\x01', now() - interval '1 minute', now() + interval '1 day')
            """)
        let s = scheduler(db, [TokenRefreshSource()])
        let v8 = try await s.tickOnce()["refresh_token"]
        XCTAssertEqual(v8, 2)
        let ids: [String] = try await db.pool.query(
            """
            SELECT args->>'connection_id' FROM nexjobs.jobs WHERE kind = 'refresh_token' AND priority = -10
             AND unique_key = 'refresh_token:' || (args->>'connection_id') ORDER BY 1
            """
        ).map { try $0.decode(0) }
        XCTAssertEqual(ids, ["1", "7"])
        // The job fails for good; the connection is not re-enqueued every tick but after the throttle.
        try await db.pool.execute("UPDATE nexjobs.jobs SET state = 'failed', finished_at = now()")
        let v9 = try await s.tickOnce()["refresh_token"]
        XCTAssertEqual(v9, 0)
        try await db.pool.execute(
            """
            UPDATE nexcomet.ad_connections SET refresh_enqueued_at = now() - interval '16 minutes' WHERE id = 1
            """)
        let v10 = try await s.tickOnce()["refresh_token"]
        XCTAssertEqual(v10, 1)
        await db.drop()
    }

    func testNewDueWorkKindsPlugInAsSources() async throws {
        struct Probe: DueWorkSource {
            var name: String { "probe" }
            var interval: Duration { .zero }
            func run(_ context: DueWorkContext) async throws -> Int {
                try await context.pool.execute("SELECT nexjobs.enqueue('privacy_probe')")
                return 1
            }
        }
        let db = try await TestDatabase.create()
        let s = scheduler(db, [ConnectionSyncSource(), Probe()])
        let v11 = try await s.tickOnce()
        XCTAssertEqual(v11, ["sync_connection": 0, "probe": 1])
        let n: Int = try await db.pool.query("SELECT count(*) FROM nexjobs.jobs WHERE kind = 'privacy_probe'")
            .first!.decode(0)
        XCTAssertEqual(n, 1)
        await db.drop()
    }
}
