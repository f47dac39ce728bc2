import Foundation
import HTTP
import PGTestSupport
import Platforms
import Postgres
import XCTest

@testable import Sync

/// Issue 10: no row lock is held across the OAuth refresh call, and concurrent refreshers still spend a rotating
/// refresh token only once.
final class TokenRefresherLockTests: XCTestCase {
    /// What the fixture OAuth server saw: refresh tokens sent and whether the row was lockable meanwhile.
    final class Log: @unchecked Sendable {  // guarded by `lock`
        private let lock = NSLock()
        private var entries: [(refreshToken: String, rowLockable: Bool)] = []
        func add(_ token: String, _ lockable: Bool) -> Int {
            lock.lock()
            defer { lock.unlock() }
            entries.append((token, lockable))
            return entries.count
        }
        var all: [(refreshToken: String, rowLockable: Bool)] {
            lock.lock()
            defer { lock.unlock() }
            return entries
        }
    }

    func testNoRowLockDuringTheOAuthCallAndTwoRefreshersSpendTheRefreshTokenOnce() async throws {
        let h = try await SyncHarness.make(tiktok: 0, snap: 0)
        addTeardownBlock { await h.close() }
        let id = try await h.db.pool.withConnection { c in
            try await h.store.create(
                organizationID: h.orgID, platform: .tiktok,
                tokens: OAuthTokens(
                    accessToken: "old-at", refreshToken: "old-rt", accessTokenExpiresAt: Date().addingTimeInterval(60)),
                on: c)
        }
        let probe = try PGPool(url: h.db.url, maxConnections: 1)
        addTeardownBlock { await probe.close() }
        let log = Log()
        // A TikTok-like OAuth endpoint that rotates refresh tokens and, while answering, checks from another
        // connection that the connection row can be locked without waiting.
        let client = try tikTokRefreshFixture { sent in
            // A lock held across this call stays for all of it; the second refresher's short lease check may lock
            // the row for an instant, so a few tries over 200 ms tell the two apart.
            var lockable = false
            for _ in 0..<10 where !lockable {
                do {
                    try await probe.withTransaction { c in
                        try await c.query("SELECT 1 FROM nexcomet.ad_connections WHERE id = \(id) FOR UPDATE NOWAIT")
                    }
                    lockable = true
                } catch {
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            let n = log.add(sent, lockable)
            try? await Task.sleep(for: .milliseconds(300))
            guard sent == "old-rt", n == 1 else {
                return .json(#"{"code":40107,"message":"Refresh token is invalid.","request_id":"r","data":{}}"#)
            }
            return .json(
                #"{"code":0,"message":"OK","request_id":"r","data":{"access_token":"new-at","refresh_token":"new-rt","access_token_expire_in":86400,"refresh_token_expire_in":31536000}}"#
            )
        }
        let store = h.store
        let pool = h.db.pool
        @Sendable func refresh() async throws -> (tokens: OAuthTokens?, refreshed: Bool, generation: Int64) {
            try await TokenRefresher.refreshIfNeeded(
                connectionID: id, store: store, client: client, margin: .seconds(600), now: Date(), pool: pool)
        }
        async let first = refresh()
        async let second = refresh()
        let (a, b) = try await (first, second)

        let calls = log.all
        XCTAssertEqual(calls.count, 1, "the refresh token was spent once: \(calls.map(\.refreshToken))")
        XCTAssertEqual(calls.first?.rowLockable, true, "the connection row was locked during the OAuth call")
        XCTAssertEqual(a.tokens?.accessToken, "new-at")
        XCTAssertEqual(b.tokens?.accessToken, "new-at", "the waiting refresher picked up the stored tokens")
        XCTAssertEqual([a.refreshed, b.refreshed].filter { $0 }.count, 1)
        let stored = try await pool.withConnection { try await store.load(id, on: $0) }
        XCTAssertEqual(stored.tokens?.accessToken, "new-at")
        XCTAssertEqual(stored.tokens?.refreshToken, "new-rt")
        let lease: Bool = try await pool.query(
            "SELECT token_refresh_lease_owner IS NULL AND token_refresh_lease_until IS NULL FROM nexcomet.ad_connections WHERE id = \(id)"
        ).first!.decode(0)
        XCTAssertTrue(lease, "the lease is released after the write")
    }

    func testAFailedRefreshReleasesTheLease() async throws {
        let h = try await SyncHarness.make(tiktok: 0, snap: 0)
        addTeardownBlock { await h.close() }
        let id = try await h.db.pool.withConnection { c in
            try await h.store.create(
                organizationID: h.orgID, platform: .tiktok,
                tokens: OAuthTokens(
                    accessToken: "old-at", refreshToken: "old-rt", accessTokenExpiresAt: Date().addingTimeInterval(60)),
                on: c)
        }
        let client = try tikTokRefreshFixture { _ in
            .json(#"{"code":40107,"message":"Refresh token is invalid.","request_id":"r","data":{}}"#)
        }
        do {
            _ = try await TokenRefresher.refreshIfNeeded(
                connectionID: id, store: h.store, client: client, margin: .seconds(600), now: Date(), pool: h.db.pool)
            XCTFail("a refused refresh throws")
        } catch let e as PlatformError {
            XCTAssertEqual(e.kind, .reauthorizationRequired)
        }
        let free: Bool = try await h.db.pool.query(
            "SELECT token_refresh_lease_owner IS NULL FROM nexcomet.ad_connections WHERE id = \(id)"
        ).first!.decode(0)
        XCTAssertTrue(free, "a failed refresh does not leave the lease for others to wait out")
    }
}
