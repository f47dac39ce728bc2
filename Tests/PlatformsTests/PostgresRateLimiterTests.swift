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
            assertAhead(Double(second ?? 0) / 1e6, 10)
            XCTAssertNil(third)
            XCTAssertNil(fourth)
            let ahead: Double = try await db.pool.query(
                "SELECT extract(epoch FROM next_slot - clock_timestamp())::float8 FROM nexjobs.rate_limits WHERE key = \("tiktok:1")"
            ).first!.decode(0)
            assertAhead(ahead, 20)
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

    /// `nexjobs.rate_limit_reserve_all` (051): one slot under several keys at once.
    func testReserveAllRespectsEveryKeyAndRefusesWithoutBooking() async throws {
        let db = try await TestDatabase.create()
        do {
            func reserve(_ keys: [String], _ spacingSeconds: [Int64], maxWait: Int64 = 60) async throws -> Double? {
                let spacings = spacingSeconds.map { $0 * 1_000_000 }
                let wait = try await db.pool.query(
                    "SELECT nexjobs.rate_limit_reserve_all(\(keys)::text[], \(spacings)::bigint[], \(maxWait * 1_000_000))"
                ).first?.decode(0, as: Int64?.self)
                return wait.map { Double($0) / 1e6 }
            }
            func ahead(_ key: String) async throws -> Double? {
                try await db.pool.query(
                    "SELECT extract(epoch FROM next_slot - clock_timestamp())::float8 FROM nexjobs.rate_limits WHERE key = \(key)"
                ).first?.decode(0, as: Double.self)
            }
            // Account spacing 10 s, app spacing 2 s.
            let first = try await reserve(["tiktok:a", "tiktok:app"], [10, 2])
            XCTAssertEqual(first, 0)
            // Another account: free, but the app is booked 2 s ahead.
            let second = try await reserve(["tiktok:app", "tiktok:b"], [2, 10])  // any key order
            assertAhead(second ?? -1, 2)
            // Account a again: its own key (10 s) binds, not the app's (4 s); the app's next slot follows it.
            let third = try await reserve(["tiktok:a", "tiktok:app"], [10, 2])
            assertAhead(third ?? -1, 10)
            let aheadA = try await ahead("tiktok:a")
            assertAhead(aheadA ?? -1, 20)
            let aheadApp = try await ahead("tiktok:app")
            assertAhead(aheadApp ?? -1, 12)
            let aheadB = try await ahead("tiktok:b")
            assertAhead(aheadB ?? -1, 12)
            // Over the bound: NULL, and nothing is booked under any key.
            let refused = try await reserve(["tiktok:c", "tiktok:app"], [1, 2], maxWait: 5)
            XCTAssertNil(refused)
            let aheadAppAfterRefusal = try await ahead("tiktok:app")
            assertAhead(aheadAppAfterRefusal ?? -1, 12)
            let aheadC = try await ahead("tiktok:c")
            XCTAssertLessThanOrEqual(aheadC ?? 0, 0, "a refused caller books no slot")
            let alone = try await reserve(["tiktok:c"], [1], maxWait: 5)
            XCTAssertEqual(alone, 0)
            // A key given twice counts once, with its larger spacing.
            let twice = try await reserve(["snapchat:d", "snapchat:d"], [1, 3])
            XCTAssertEqual(twice, 0)
            let aheadD = try await ahead("snapchat:d")
            assertAhead(aheadD ?? -1, 3)
            // Malformed calls are refused (SQLSTATE 22023), not guessed at.
            for (keys, spacings) in [([String](), [Int64]()), (["x"], [1, 2]), (["x"], [-1])] {
                do {
                    _ = try await reserve(keys, spacings)
                    XCTFail("accepted \(keys) \(spacings)")
                } catch let error as PGError {
                    XCTAssertEqual(error.sqlState, "22023", "\(error)")
                }
            }
        } catch {
            await db.drop()
            throw error
        }
        await db.drop()
    }

    /// Four connections reserve overlapping key sets given in different orders at once: the fixed lock order means
    /// no deadlock (PostgreSQL would abort one with 40P01), and every reservation is booked exactly once.
    func testReserveAllUnderConcurrencyNeverDeadlocks() async throws {
        let db = try await TestDatabase.create()
        var pools: [PGPool] = []
        do {
            for _ in 0..<4 { pools.append(try PGPool(url: db.url, maxConnections: 1)) }
            let orders = [["k1", "k2", "k3"], ["k3", "k2", "k1"], ["k2", "k3", "k1"], ["k3", "k1", "k2"]]
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (pool, keys) in zip(pools, orders) {
                    group.addTask {
                        for _ in 0..<40 {
                            let w = try await pool.query(
                                "SELECT nexjobs.rate_limit_reserve_all(\(keys)::text[], \([Int64](repeating: 1000, count: 3))::bigint[], \(Int64(60_000_000)))"
                            ).first?.decode(0, as: Int64?.self)
                            XCTAssertNotNil(w)
                        }
                    }
                }
                try await group.waitForAll()
            }
            // Every reservation booked all three keys at one slot, so they end on the same next slot.
            let row = try await db.pool.query(
                "SELECT count(*)::int, count(DISTINCT next_slot)::int FROM nexjobs.rate_limits"
            ).first!
            XCTAssertEqual(try row.decode(0, as: Int.self), 3)
            XCTAssertEqual(try row.decode(1, as: Int.self), 1)
        } catch {
            for pool in pools { await pool.close() }
            await db.drop()
            throw error
        }
        for pool in pools { await pool.close() }
        await db.drop()
    }

    /// Two worker processes (two pools, two limiters) on one app but different advertisers, against a sandbox that
    /// allows the app Q requests per second: paced by the shared app key, the sandbox refuses none and the rate
    /// stays under Q. Without the app key each account alone would run at 10/s, 20/s together.
    func testTwoProcessesOnOneAppStayUnderTheSandboxAppQPS() async throws {
        let q = 5
        let db = try await TestDatabase.create()
        let harness = try SandboxHarness(
            SandboxConfig(
                seed: 22, tiktokConnections: 2, snapConnections: 1, accountsPerConnection: 1...1,
                campaignsPerAccount: 6...6, days: 5, tiktokAppQPS: q))
        var pools: [PGPool] = []
        do {
            let accounts = harness.sandbox.accounts(platform: .tiktok).map {
                AdAccount(platform: .tiktok, id: $0.id, name: $0.name, currency: $0.currency, timeZone: $0.timezone)
            }
            XCTAssertEqual(accounts.count, 2)
            // Headroom 20 %: slots 1/(0.8 Q) apart leave 250 ms of slack in any one-second window for a request
            // sent late (at 10 %, 111 ms: a test machine starved of CPU by parallel builds once exceeded that).
            let policy = RateLimitPolicy(
                requestsPerSecond: [.tiktok: 10], appRequestsPerSecond: [.tiktok: Double(q)],
                appIds: [.tiktok: "sandbox-app"], headroom: 0.2)
            for _ in 0..<2 { pools.append(try PGPool(url: db.url, maxConnections: 1)) }
            harness.sandbox.resetRequestCounts()
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Int.self) { group in
                for (index, pool) in pools.enumerated() {
                    let client = harness.tiktok(pageSize: 1, limiter: PostgresRateLimiter(pool: pool, policy: policy))
                    let session = harness.session(.tiktok, index)
                    let account = accounts[index]
                    group.addTask { try await client.campaigns(account: account, session: session).count }
                }
                for try await count in group { XCTAssertEqual(count, 6) }
            }
            let elapsed = ContinuousClock.now - start
            let served = harness.sandbox.requestCounts().map(\.count).reduce(0, +)
            XCTAssertEqual(served, 12)
            XCTAssertEqual(harness.sandbox.appQPSRefusals(.tiktok), 0, "\(harness.sandbox.requestCounts())")
            // 12 requests: 11 gaps. Paced at Q less 20 % headroom, the measured rate is at most Q (2 % tolerance for
            // clock granularity; the pacing itself leaves 20 %).
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            XCTAssertLessThanOrEqual(Double(served - 1) / seconds, Double(q) * 1.02, "\(seconds) s")
            let keys: [String] = try await db.pool.query("SELECT key FROM nexjobs.rate_limits ORDER BY key").map {
                try $0.decode(0)
            }
            XCTAssertEqual(keys, (accounts.map { "tiktok:account:\($0.id)" } + ["tiktok:app:sandbox-app"]).sorted())
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
