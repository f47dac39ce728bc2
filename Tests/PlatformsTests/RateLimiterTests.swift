import Foundation
import HTTP
import XCTest

@testable import Platforms

/// Runs `clients` TikTok clients concurrently against one advertiser, each reading `pages` pages, and returns the
/// per-second request counts the fixture server saw plus the elapsed time.
func runConcurrentClients(
    clients: Int, pages: Int, limiterFor: @escaping @Sendable (Int) -> any RequestRateLimiter
) async throws -> (perSecond: [Int: Int], total: Int, elapsed: Duration) {
    let server = try FixtureServer()
    let arrivals = LockedBox<[Int: Int]>([:])
    let items = (0..<pages).map { #"{"ad_id":"\#($0)","ad_name":"a"}"# }
    server.router.add("GET", "/open_api/v1.3/ad/get/") { request in
        let second = Int(Date().timeIntervalSince1970.rounded(.down))
        arrivals.withLock { $0[second, default: 0] += 1 }
        return TikTokFixture.page(items, request: request)
    }
    let account = AdAccount(platform: .tiktok, id: "7001035076276387841", name: "a", currency: "USD", timeZone: "UTC")
    let start = ContinuousClock.now
    try await withThrowingTaskGroup(of: Int.self) { group in
        for index in 0..<clients {
            let client = makeTikTokClient(server, pageSize: 1, rateLimiter: limiterFor(index))
            group.addTask {
                let session = TokenSession(tokens: OAuthTokens(accessToken: "t"))
                return try await client.ads(account: account, session: session).count
            }
        }
        for try await count in group { XCTAssertEqual(count, pages) }
    }
    let elapsed = ContinuousClock.now - start
    await server.stop()
    return (arrivals.current, server.requests.count, elapsed)
}

final class RateLimiterTests: XCTestCase {
    func testPolicySpacingIncludesHeadroom() {
        let policy = RateLimitPolicy(requestsPerSecond: [.tiktok: 10], headroom: 0.1)
        XCTAssertEqual(policy.spacing(for: .tiktok), .microseconds(111_112))
        XCTAssertNil(policy.spacing(for: .snapchat))
        XCTAssertEqual(
            RateLimitPolicy(requestsPerSecond: [.snapchat: 4], headroom: 0).spacing(for: .snapchat), .milliseconds(250))
    }

    /// An account id is whatever the platform (or a hostile fake of it) returns: one spelled like the app key must
    /// still get a key, and a quota, of its own.
    func testAccountKeysCannotCollideWithTheAppKey() {
        let noAppID = RateLimitPolicy(requestsPerSecond: [.tiktok: 10], appRequestsPerSecond: [.tiktok: 20])
        for id in ["app", "app:x", "7001"] {
            let keys = noAppID.keys(.tiktok, id).map(\.key)
            XCTAssertEqual(keys, ["tiktok:account:\(id)", "tiktok:app"])
        }
        var withAppID = noAppID
        withAppID.appIds = [.tiktok: "x"]
        XCTAssertEqual(withAppID.keys(.tiktok, "app:x").map(\.key), ["tiktok:account:app:x", "tiktok:app:x"])
        XCTAssertTrue(withAppID.keys(.snapchat, "app").isEmpty, "nothing limits snapchat here")
    }

    func testInProcessLimiterKeepsTenConcurrentClientsUnderTenPerSecond() async throws {
        let limiter = InProcessRateLimiter(policy: RateLimitPolicy(requestsPerSecond: [.tiktok: 10]))
        let result = try await runConcurrentClients(clients: 10, pages: 2) { _ in limiter }
        XCTAssertEqual(result.total, 20)
        XCTAssertLessThanOrEqual(result.perSecond.values.max() ?? 0, 10, "\(result.perSecond)")
        // 20 requests spaced 111 ms apart need at least 19 gaps: proves the limiter paced them.
        XCTAssertGreaterThanOrEqual(result.elapsed, .milliseconds(19 * 111))
    }

    func testInProcessLimiterRefusesWaitsBeyondItsBoundWithoutBooking() async throws {
        let limiter = InProcessRateLimiter(
            policy: RateLimitPolicy(requestsPerSecond: [.snapchat: 1], headroom: 0, maxWait: .milliseconds(500)))
        let start = ContinuousClock.now
        try await limiter.acquire(platform: .snapchat, accountId: "a")  // slot at start; the next is start + 1 s
        try await limiter.acquire(platform: .snapchat, accountId: "b")  // another key is not delayed
        do {
            try await limiter.acquire(platform: .snapchat, accountId: "a")  // would wait ~1 s > 0.5 s
            XCTFail("expected rateLimited")
        } catch let error as PlatformError {
            guard case .rateLimited(let retryAfter) = error.kind else { return XCTFail("kind \(error.kind)") }
            XCTAssertNotNil(retryAfter)
        }
        XCTAssertLessThan(ContinuousClock.now - start, .milliseconds(400), "a refusal must not wait")
        // Had the refused call booked start + 1 s, a caller arriving then would face another full second and be
        // refused too; since it booked nothing, that slot is free.
        try await Task.sleep(until: start + .milliseconds(1050), clock: .continuous)
        try await limiter.acquire(platform: .snapchat, accountId: "a")
        XCTAssertLessThan(ContinuousClock.now - start, .milliseconds(1500))
    }

    func testPolicyPacesEachRequestUnderItsAccountAndItsApp() {
        let policy = RateLimitPolicy()
        XCTAssertEqual(policy.keys(.tiktok, "7001").map(\.key), ["tiktok:account:7001", "tiktok:app"])
        XCTAssertEqual(policy.appSpacing(for: .tiktok), .microseconds(111_112), "TikTok Basic tier: 10/s")
        XCTAssertEqual(
            policy.keys(.snapchat, "u-1").map(\.key), ["snapchat:account:u-1"], "Snap: no app limit by default")
        var named = RateLimitPolicy(appRequestsPerSecond: [.tiktok: 20, .snapchat: 0], appIds: [.tiktok: "app-9"])
        XCTAssertEqual(named.keys(.tiktok, "7001").map(\.key), ["tiktok:account:7001", "tiktok:app:app-9"])
        XCTAssertEqual(named.keys(.snapchat, "u-1").map(\.key), ["snapchat:account:u-1"], "0 means unlimited")
        named.requestsPerSecond = [:]
        XCTAssertEqual(named.keys(.tiktok, "7001").map(\.key), ["tiktok:app:app-9"])
        XCTAssertTrue(named.keys(.snapchat, "u-1").isEmpty)
    }

    func testInProcessLimiterWaitsForBothTheAccountAndTheAppSlot() async throws {
        // Account: one per 500 ms; app: one per 250 ms.
        let limiter = InProcessRateLimiter(
            policy: RateLimitPolicy(
                requestsPerSecond: [.tiktok: 2], appRequestsPerSecond: [.tiktok: 4], headroom: 0, maxWait: .seconds(5)))
        let start = ContinuousClock.now
        try await limiter.acquire(platform: .tiktok, accountId: "a")
        XCTAssertLessThan(ContinuousClock.now - start, .milliseconds(200))
        try await limiter.acquire(platform: .tiktok, accountId: "b")  // b is free; the app's next slot is +250 ms
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(250))
        try await limiter.acquire(platform: .tiktok, accountId: "a")  // the app is free at +500, a at +500 ms
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(500))
        try await limiter.acquire(platform: .tiktok, accountId: "c")  // app: +750 ms
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(750))

        // The app bound refuses even a fresh account, without booking its account key.
        let strict = InProcessRateLimiter(
            policy: RateLimitPolicy(
                requestsPerSecond: [.tiktok: 1], appRequestsPerSecond: [.tiktok: 1], headroom: 0,
                maxWait: .milliseconds(300)))
        try await strict.acquire(platform: .tiktok, accountId: "a")
        do {
            try await strict.acquire(platform: .tiktok, accountId: "b")
            XCTFail("expected rateLimited")
        } catch let error as PlatformError {
            guard case .rateLimited = error.kind else { return XCTFail("kind \(error.kind)") }
        }
    }

    func testARequestTiedToNoAccountStillTakesAnAppSlot() async throws {
        // Discovery requests (TikTok advertiser/info, Snap organizations) name no ad account; before, they skipped
        // the limiter entirely and a 200-connection scale run drew 626 app-QPS refusals from the sandbox.
        let policy = RateLimitPolicy(
            requestsPerSecond: [.tiktok: 1000], appRequestsPerSecond: [.tiktok: 4], headroom: 0, maxWait: .seconds(5))
        XCTAssertEqual(policy.keys(.tiktok, nil).map(\.key), ["tiktok:app"])
        let limiter = InProcessRateLimiter(policy: policy)
        let start = ContinuousClock.now
        try await limiter.acquire(platform: .tiktok, accountId: nil)
        try await limiter.acquire(platform: .tiktok, accountId: nil)  // the app's next slot is +250 ms
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(250))
        try await limiter.acquire(platform: .tiktok, accountId: "a")  // +500 ms: accounts share the app's slots
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(500))
    }
}
