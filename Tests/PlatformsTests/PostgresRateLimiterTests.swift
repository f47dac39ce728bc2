import Foundation
import PGTestSupport
import Postgres
import Sandbox
import XCTest

@testable import Platforms

/// The PostgreSQL-shared rate limiter. Needs `NEXJOBS_TEST_DATABASE_URL` (see PGTestSupport): without it these
/// tests fail, they never skip.
final class PostgresRateLimiterTests: XCTestCase {
    func testReservationSpacesSlotsAndRefusesBeyondTheBoundWithoutBooking() async throws {
        let db = try await TestDatabase.create()
        do {
            // 10 s spacing, 15 s bound: slots at +0 and +10 s; a third (+20 s) is refused and books nothing.
            func reserve() async throws -> Int64? {
                try await db.pool.query(
                    "SELECT nexjobs.rate_limit_reserve(\("tiktok:1"), \(Int64(10_000_000)), \(Int64(15_000_000)))"
                ).first?.decode(0, as: Int64?.self)
            }
            let first = try await reserve()
            let second = try await reserve()
            let third = try await reserve()
            let fourth = try await reserve()
            XCTAssertEqual(first, 0)
            XCTAssertEqual(Double(second ?? 0) / 1e6, 10, accuracy: 0.5)
            XCTAssertNil(third)
            XCTAssertNil(fourth)
            let ahead: Double = try await db.pool.query(
                "SELECT extract(epoch FROM next_slot - clock_timestamp())::float8 FROM nexjobs.rate_limits WHERE key = \("tiktok:1")"
            ).first!.decode(0)
            XCTAssertEqual(ahead, 20, accuracy: 0.5)
            // Another key is independent.
            let other: Int64? = try await db.pool.query(
                "SELECT nexjobs.rate_limit_reserve(\("snapchat:1"), \(Int64(10_000_000)), \(Int64(15_000_000)))"
            ).first?.decode(0, as: Int64?.self)
            XCTAssertEqual(other, 0)
        } catch {
            await db.drop()
            throw error
        }
        await db.drop()
    }

    func testLimiterThrowsRateLimitedWhenBookedBeyondMaxWait() async throws {
        let db = try await TestDatabase.create()
        let limiter = PostgresRateLimiter(
            pool: db.pool,
            policy: RateLimitPolicy(requestsPerSecond: [.snapchat: 0.1], headroom: 0, maxWait: .seconds(5)))
        do {
            try await limiter.acquire(platform: .snapchat, accountId: "acct")  // immediate
            let start = ContinuousClock.now
            do {
                try await limiter.acquire(platform: .snapchat, accountId: "acct")  // would wait 10 s
                XCTFail("expected rateLimited")
            } catch let error as PlatformError {
                XCTAssertEqual(error.kind, .rateLimited(retryAfter: .seconds(5)))
                XCTAssertTrue("\(error)".contains("acct"))
            }
            XCTAssertLessThan(ContinuousClock.now - start, .seconds(2), "a refusal must not wait")
            try await limiter.acquire(platform: .tiktok, accountId: "acct")  // TikTok has no limit configured here
        } catch {
            await db.drop()
            throw error
        }
        await db.drop()
    }

    func testMigrationIsIdempotent() async throws {
        let db = try await TestDatabase.create()
        do {
            let text = try String(
                contentsOf: TestDatabase.sqlDirectory.appendingPathComponent("050_rate_limits.sql"), encoding: .utf8)
            // The test database already has it applied once by the migrator; twice more must change nothing.
            try await db.pool.withConnection { try await $0.simpleQuery(text) }
            try await db.pool.withConnection { try await $0.simpleQuery(text) }
            let count: Int64 = try await db.pool.query("SELECT count(*) FROM nexjobs.rate_limits").first!.decode(0)
            XCTAssertEqual(count, 0)
        } catch {
            await db.drop()
            throw error
        }
        await db.drop()
    }

    /// Ten clients, each with its own connection pool and limiter (as ten worker processes would have), read one
    /// advertiser at 10 req/s: the sandbox never sees more than 10 requests for it in any second.
    func testTenClientsInSeparatePoolsStayUnderTenPerSecondAtTheSandbox() async throws {
        let db = try await TestDatabase.create()
        let harness = try SandboxHarness(
            SandboxConfig(
                seed: 21, tiktokConnections: 1, snapConnections: 1, accountsPerConnection: 1...1,
                campaignsPerAccount: 4...4, days: 5))
        var pools: [PGPool] = []
        do {
            let account = try await harness.tiktok().adAccounts(session: harness.session(.tiktok))[0]
            harness.sandbox.resetRequestCounts()
            let policy = RateLimitPolicy(requestsPerSecond: [.tiktok: 10])
            for _ in 0..<10 { pools.append(try PGPool(url: db.url, maxConnections: 1)) }
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Int.self) { group in
                for pool in pools {
                    let client = harness.tiktok(pageSize: 1, limiter: PostgresRateLimiter(pool: pool, policy: policy))
                    let session = harness.session(.tiktok)
                    group.addTask { try await client.campaigns(account: account, session: session).count }
                }
                for try await count in group { XCTAssertEqual(count, 4) }
            }
            let elapsed = ContinuousClock.now - start
            let counts = harness.sandbox.requestCounts().filter { $0.accountID == account.id }
            XCTAssertEqual(counts.map(\.count).reduce(0, +), 40)
            XCTAssertLessThanOrEqual(harness.sandbox.maxRequestsPerSecond(account: account.id), 10, "\(counts)")
            // 40 requests at one per 111 ms take at least 39 gaps: the limiter really paced them.
            XCTAssertGreaterThanOrEqual(elapsed, .milliseconds(39 * 111))
        } catch {
            for pool in pools { await pool.close() }
            await harness.stop()
            await db.drop()
            throw error
        }
        for pool in pools { await pool.close() }
        await harness.stop()
        await db.drop()
    }
}
