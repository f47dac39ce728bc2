import Foundation
import Logs
import PGTestSupport
import Postgres
import Runtime
import XCTest

let quietLogger = Logger(label: "test", minimum: .error, sink: Logger.Sink { _ in })

/// Short terms so the tests run in seconds; the relations between the durations match the defaults.
func fastElection() -> LeaderElectionOptions {
    var o = LeaderElectionOptions()
    o.term = .milliseconds(1500)
    o.renewInterval = .milliseconds(300)
    o.standbyRetry = .milliseconds(200)
    o.safetyMargin = .milliseconds(500)
    return o
}

final class LeaderElectionTests: XCTestCase {
    func testOneCandidateWinsAndTheHolderExtendsItsOwnTerm() async throws {
        let db = try await TestDatabase.create()
        let a = LeaderElection(pool: db.pool, holder: "a", options: fastElection(), logger: quietLogger)
        let b = LeaderElection(pool: db.pool, holder: "b", options: fastElection(), logger: quietLogger)
        let aWon = await a.attempt()
        let bWon = await b.attempt()
        XCTAssertTrue(aWon)
        XCTAssertFalse(bWon)
        XCTAssertTrue(a.isLeader)
        XCTAssertFalse(b.isLeader)
        let first: Date = try await db.pool.query("SELECT term_until FROM nexjobs.leader WHERE name = 'scheduler'")
            .first!.decode(0)
        let extended = await a.attempt()
        XCTAssertTrue(extended)
        let second: Date = try await db.pool.query("SELECT term_until FROM nexjobs.leader WHERE name = 'scheduler'")
            .first!.decode(0)
        XCTAssertGreaterThan(second, first)
        XCTAssertEqual(a.timesElected, 1, "an extension is not a new election")
        await db.drop()
    }

    func testAStandbyTakesAnExpiredTermAndTheOldHolderLearnsItLost() async throws {
        let db = try await TestDatabase.create()
        let a = LeaderElection(pool: db.pool, holder: "a", options: fastElection(), logger: quietLogger)
        let b = LeaderElection(pool: db.pool, holder: "b", options: fastElection(), logger: quietLogger)
        let aWon = await a.attempt()
        XCTAssertTrue(aWon)
        // `a` stops extending (as if frozen): within the term the standby cannot take over, after it it can.
        let early = await b.attempt()
        XCTAssertFalse(early)
        let took = await waitUntil(timeout: .seconds(5)) { await b.attempt() }
        XCTAssertTrue(took)
        let v1 = try await currentHolder(db)
        XCTAssertEqual(v1, "b")
        let aAgain = await a.attempt()
        XCTAssertFalse(aAgain, "the old holder must not take back a live term")
        XCTAssertFalse(a.isLeader)
        await db.drop()
    }

    func testReleaseHandsOverAtOnce() async throws {
        let db = try await TestDatabase.create()
        let a = LeaderElection(pool: db.pool, holder: "a", options: fastElection(), logger: quietLogger)
        let b = LeaderElection(pool: db.pool, holder: "b", options: fastElection(), logger: quietLogger)
        _ = await a.attempt()
        await a.release()
        XCTAssertFalse(a.isLeader)
        let took = await waitUntil(timeout: .milliseconds(500)) { await b.attempt() }
        XCTAssertTrue(took, "a released term is free long before it would have expired")
        await db.drop()
    }

    func testALeaderThatCannotExtendStopsActingBeforeItsTermEnds() async throws {
        let db = try await TestDatabase.create()
        let admin = try PGPool(url: try TestDatabase.adminURL(), maxConnections: 1)
        let leaderPool = try PGPool(
            url: db.url, maxConnections: 1, acquireTimeout: .milliseconds(300),
            applicationName: "leader-under-test")
        let a = LeaderElection(pool: leaderPool, holder: "a", options: fastElection(), logger: quietLogger)
        let won = await a.attempt()
        XCTAssertTrue(won)
        // Cut the leader off the database: no new connections, existing ones killed.
        try await admin.execute(PGQuery(unsafeSQL: "ALTER DATABASE \"\(db.name)\" ALLOW_CONNECTIONS false"))
        try await admin.execute(
            """
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'leader-under-test'
            """)
        let task = Task { await a.run() }
        let stopped = await waitUntil(timeout: .seconds(5)) { !a.isLeader }
        XCTAssertTrue(stopped)
        // At the moment it stopped acting, its term (by the database clock) had not yet ended.
        let termLeft: Bool = try await db.pool.query(
            """
            SELECT term_until > clock_timestamp() FROM nexjobs.leader WHERE name = 'scheduler'
            """
        ).first!.decode(0)
        XCTAssertTrue(termLeft, "the leader must stop acting before its term ends, not after")
        task.cancel()
        await task.value
        try await admin.execute(PGQuery(unsafeSQL: "ALTER DATABASE \"\(db.name)\" ALLOW_CONNECTIONS true"))
        await admin.close()
        await leaderPool.close()
        await db.drop()
    }

    func currentHolder(_ db: TestDatabase) async throws -> String? {
        try await db.pool.query("SELECT holder FROM nexjobs.leader WHERE name = 'scheduler' AND term_until > now()")
            .first?.decode(0, as: String.self)
    }
}
