import Foundation
import HTTP
import Logs
import PGTestSupport
import Postgres
import Queue
import Synchronization
import XCTest

@testable import Platforms
@testable import Sync

/// Reauthorization against work still running with the old grant (sql/067): a refresh of the old tokens, a sync
/// session's refresh, and a grant error computed with the old tokens all lose to the tokens the reauthorization
/// stored; and a deleted or restricted organization is not reauthorized.
final class ReauthorizeRaceTests: XCTestCase {
    let newGrant = OAuthTokens(
        accessToken: "reauth-at", refreshToken: "reauth-rt", accessTokenExpiresAt: Date().addingTimeInterval(86_400))

    func connection(_ h: SyncHarness) async throws -> Int64 {
        try await h.db.pool.withConnection { c in
            try await h.store.create(
                organizationID: h.orgID, platform: .tiktok,
                tokens: OAuthTokens(
                    accessToken: "old-at", refreshToken: "old-rt", accessTokenExpiresAt: Date().addingTimeInterval(60)),
                on: c)
        }
    }

    func assertHoldsNewGrant(_ h: SyncHarness, _ id: Int64, file: StaticString = #filePath, line: UInt = #line)
        async throws
    {
        let stored = try await h.db.pool.withConnection { c in try await h.store.load(id, on: c) }
        XCTAssertEqual(stored.status, "active", file: file, line: line)
        XCTAssertEqual(stored.tokens?.accessToken, "reauth-at", file: file, line: line)
        XCTAssertEqual(stored.tokens?.refreshToken, "reauth-rt", file: file, line: line)
    }

    /// 1a. The token refresher holds the lease and is inside the OAuth call (refreshing the OLD grant) when the
    /// reauthorization commits: its result is not stored, the lease is gone, the new grant stays.
    func testARefreshInFlightDoesNotOverwriteReauthorizedTokens() async throws {
        let h = try await SyncHarness.make(tiktok: 0, snap: 0)
        addTeardownBlock { await h.close() }
        let id = try await connection(h)
        let other = try PGPool(url: h.db.url, maxConnections: 1)
        addTeardownBlock { await other.close() }
        let store = h.store
        let grant = newGrant
        let client = try tikTokRefreshFixture { _ in
            // While the refresher holds the lease and waits for this answer, the user authorizes the app again.
            let leased: Bool =
                (try? await other.query(
                    "SELECT token_refresh_lease_owner IS NOT NULL FROM nexcomet.ad_connections WHERE id = \(id)"
                ).first?.decode(0)) ?? false
            let outcome = try? await other.withConnection { c in try await store.reauthorize(id, tokens: grant, on: c) }
            guard leased, outcome == .reauthorized(wasNeedsReauth: false) else {
                return .text("fixture failed", status: 500)
            }
            return .json(
                #"{"code":0,"message":"OK","request_id":"r","data":{"access_token":"from-old-grant-at","refresh_token":"from-old-grant-rt","access_token_expire_in":86400,"refresh_token_expire_in":31536000}}"#
            )
        }
        do {
            let r = try await TokenRefresher.refreshIfNeeded(
                connectionID: id, store: h.store, client: client, margin: .seconds(600), now: Date(), pool: h.db.pool)
            XCTFail("the refresh of the old grant was stored: \(r.refreshed)")
        } catch is TokenRefreshConflict {}
        try await assertHoldsNewGrant(h, id)
        let free: Bool = try await h.db.pool.query(
            "SELECT token_refresh_lease_owner IS NULL FROM nexcomet.ad_connections WHERE id = \(id)"
        ).first!.decode(0)
        XCTAssertTrue(free, "no lease left behind")
    }

    static func refreshed(_ n: Int) -> HTTPResponse {
        .json(
            #"{"code":0,"message":"OK","request_id":"r","data":{"access_token":"refreshed-\#(n)-at","refresh_token":"refreshed-\#(n)-rt","access_token_expire_in":86400,"refresh_token_expire_in":31536000}}"#
        )
    }

    /// 1b. A sync's token session (the leased one the sync handlers use) refreshes the OLD grant while the
    /// reauthorization commits: nothing is stored and the new grant stays; the session does not go on with tokens
    /// that were not stored. Control: with no reauthorization the same kind of session stores its refreshes.
    func testASyncSessionRefreshDoesNotOverwriteReauthorizedTokens() async throws {
        let h = try await SyncHarness.make(tiktok: 0, snap: 0)
        addTeardownBlock { await h.close() }
        let id = try await connection(h)
        let stored = try await h.db.pool.withConnection { c in try await h.store.load(id, on: c) }
        let (store, pool, grant) = (h.store, h.db.pool, newGrant)
        let other = try PGPool(url: h.db.url, maxConnections: 1)
        addTeardownBlock { await other.close() }
        let client = try tikTokRefreshFixture { refreshToken in
            guard refreshToken == "old-rt" else { return .text("unexpected refresh token", status: 500) }
            // The platform answers the refresh of the old grant after the reauthorization committed.
            let outcome = try? await other.withConnection { c in try await store.reauthorize(id, tokens: grant, on: c) }
            guard outcome == .reauthorized(wasNeedsReauth: false) else { return .text("fixture failed", status: 500) }
            return Self.refreshed(0)
        }
        let generation = TokenGeneration(stored.tokenGeneration)
        let session = await generation.session(
            tokens: stored.tokens!, connectionID: id, client: client, store: store, pool: pool, now: { Date() })
        do {
            _ = try await session.refresh(replacing: "old-at") { _ in
                XCTFail("the client's own refresh is not used")
                return OAuthTokens(accessToken: "unused")
            }
            XCTFail("the session stored the refresh of the old grant")
        } catch is TokenRefreshConflict {}
        try await assertHoldsNewGrant(h, id)
        let sessionTokens = await session.tokens
        XCTAssertEqual(sessionTokens.accessToken, "old-at", "the session does not go on with unstored tokens")
        let kept = await generation.value
        XCTAssertEqual(kept, stored.tokenGeneration, "no generation adopted from a refresh that was not stored")

        // Control: without a reauthorization the session stores its refresh, twice in a row.
        let calls = Mutex(0)
        let counting = try tikTokRefreshFixture { _ in
            Self.refreshed(
                calls.withLock { n in
                    n += 1; return n
                })
        }
        let again = TokenGeneration(
            try await h.db.pool.withConnection { c in try await h.store.load(id, on: c) }.tokenGeneration)
        let own = await again.session(
            tokens: newGrant, connectionID: id, client: counting, store: store, pool: pool, now: { Date() })
        for _ in 1...2 {
            let current = await own.tokens.accessToken
            _ = try await own.refresh(replacing: current) { _ in OAuthTokens(accessToken: "unused") }
        }
        let after = try await h.db.pool.withConnection { c in try await h.store.load(id, on: c) }
        XCTAssertEqual(after.tokens?.accessToken, "refreshed-2-at")
        XCTAssertEqual(after.tokens?.refreshToken, "refreshed-2-rt")
        XCTAssertEqual(calls.withLock { $0 }, 2)
    }

    /// Several jobs' sessions of one connection need a refresh at once (a Snap access token lasts 30 minutes;
    /// TikTok retires a refresh token once used): one refreshes at the platform under the connection's lease, the
    /// others wait for it and take the tokens it stored. One platform call, one stored generation, every session on
    /// the new tokens, and no session refreshing with a retired refresh token (which the fixture refuses, as
    /// TikTok would, and which used to mark the connection needs_reauth).
    func testConcurrentSessionRefreshesOfOneConnectionRefreshOnce() async throws {
        let h = try await SyncHarness.make(tiktok: 0, snap: 0)
        addTeardownBlock { await h.close() }
        let id = try await connection(h)
        let stored = try await h.db.pool.withConnection { c in try await h.store.load(id, on: c) }
        let calls = Mutex<[String]>([])
        let client = try tikTokRefreshFixture { refreshToken in
            let n = calls.withLock { c in
                c.append(refreshToken)
                return c.count
            }
            guard refreshToken == "old-rt", n == 1 else {
                return .json(#"{"code":40104,"message":"refresh token expired or revoked","request_id":"r","data":{}}"#)
            }
            // Slow enough that the other sessions ask while this refresh is in flight.
            try? await Task.sleep(for: .milliseconds(300))
            return Self.refreshed(1)
        }
        let sessions = (0..<4).map { _ in TokenGeneration(stored.tokenGeneration) }
        var built: [TokenSession] = []
        for g in sessions {
            built.append(
                await g.session(
                    tokens: stored.tokens!, connectionID: id, client: client, store: h.store, pool: h.db.pool,
                    now: { Date() }))
        }
        let results = try await withThrowingTaskGroup(of: String.self) { group in
            for s in built {
                group.addTask {
                    try await s.refresh(replacing: "old-at") { _ in OAuthTokens(accessToken: "x") }.accessToken
                }
            }
            var out: [String] = []
            for try await r in group { out.append(r) }
            return out
        }
        XCTAssertEqual(results, Array(repeating: "refreshed-1-at", count: 4))
        XCTAssertEqual(calls.withLock { $0 }, ["old-rt"], "one platform refresh for all four sessions")
        var counted = 0
        for s in built { counted += await s.refreshCount }
        XCTAssertEqual(counted, 1, "only the platform call counts as a request (sync_runs.api_calls)")
        let after = try await h.db.pool.withConnection { c in try await h.store.load(id, on: c) }
        XCTAssertEqual(after.status, "active")
        XCTAssertEqual(after.tokens?.accessToken, "refreshed-1-at")
        XCTAssertEqual(after.tokenGeneration, stored.tokenGeneration + 1)
        for g in sessions { let v = await g.value; XCTAssertEqual(v, stored.tokenGeneration + 1) }

        // A session still on an older generation takes the newer tokens without calling the platform, even with a
        // clock that says they expired (a test harness's moved clock): the generation decides, not the expiry.
        let late = TokenGeneration(stored.tokenGeneration)
        let lateSession = await late.session(
            tokens: stored.tokens!, connectionID: id, client: client, store: h.store, pool: h.db.pool,
            now: { Date().addingTimeInterval(10 * 86_400) })
        let taken = try await lateSession.refresh(replacing: "old-at") { _ in OAuthTokens(accessToken: "x") }
        XCTAssertEqual(taken.accessToken, "refreshed-1-at")
        XCTAssertEqual(calls.withLock { $0.count }, 1, "no platform call to take stored tokens")
        let lateCount = await lateSession.refreshCount
        XCTAssertEqual(lateCount, 0)
        let lateValue = await late.value
        XCTAssertEqual(lateValue, stored.tokenGeneration + 1)
    }

    func policy(_ h: SyncHarness, _ id: Int64, generation: Int64) -> ErrorPolicy {
        ErrorPolicy(
            context: JobContext(
                id: 0, kind: "sync_connection", queue: "default", attempt: 1, maxAttempts: 5, workerID: "w",
                pool: h.db.pool, logger: Logger(label: "t", minimum: .error)),
            store: h.store, connectionID: id, organizationID: h.orgID, platform: .tiktok,
            tokenGeneration: generation, session: nil)
    }

    func openNotices(_ h: SyncHarness, _ id: Int64) async throws -> Int {
        try await h.db.pool.query(
            """
            SELECT count(*)::int FROM nexcomet.notifications
             WHERE connection_id = \(id) AND kind = 'reauth_required' AND sent_at IS NULL
            """
        ).first!.decode(0)
    }

    /// 2. A grant error of the OLD tokens, checked before the reauthorization committed (the
    /// `tokensReplacedElsewhere` read) and written after it: the connection is not marked, its new tokens not wiped.
    func testAGrantErrorOfTheOldTokensDoesNotMarkTheReauthorizedConnection() async throws {
        let h = try await SyncHarness.make(tiktok: 0, snap: 0)
        addTeardownBlock { await h.close() }
        let id = try await connection(h)
        let old = try await h.db.pool.withConnection { c in try await h.store.load(id, on: c) }
        let failing = policy(h, id, generation: old.tokenGeneration)
        let outcome = try await h.db.pool.withConnection { c in
            try await h.store.reauthorize(id, tokens: newGrant, on: c)
        }
        XCTAssertEqual(outcome, .reauthorized(wasNeedsReauth: false))
        do {
            try await failing.markNeedsReauth(reason: "tiktok reauthorizationRequired: token revoked")
            XCTFail("the reauthorized connection was marked")
        } catch is RetryableSyncError {}
        try await assertHoldsNewGrant(h, id)
        let open = try await openNotices(h, id)
        XCTAssertEqual(open, 0)
        // Through the policy's whole path too: retried, not discarded.
        do {
            try await failing.fail(
                PlatformError(.reauthorizationRequired, platform: .tiktok, endpoint: "/x", message: "revoked"))
        } catch is RetryableSyncError {}
        try await assertHoldsNewGrant(h, id)

        // Control: a grant error of the stored tokens does mark the connection (and sql/030 wipes them).
        let current = try await h.db.pool.withConnection { c in try await h.store.load(id, on: c) }
        try await policy(h, id, generation: current.tokenGeneration).markNeedsReauth(reason: "revoked")
        let marked = try await h.db.pool.withConnection { c in try await h.store.load(id, on: c) }
        XCTAssertEqual(marked.status, "needs_reauth")
        XCTAssertNil(marked.tokens)
        XCTAssertGreaterThan(marked.tokenGeneration, current.tokenGeneration, "a wipe advances the generation")
        let notices = try await openNotices(h, id)
        XCTAssertEqual(notices, 1)
    }

    /// 3. A deleted or restricted organization's connection is not reauthorized: a distinct outcome, nothing changed.
    func testReauthorizeRefusesADeletedOrRestrictedOrganization() async throws {
        let h = try await SyncHarness.make(tiktok: 0, snap: 0)
        addTeardownBlock { await h.close() }
        let id = try await connection(h)
        try await h.db.pool.execute("UPDATE nexcomet.ad_connections SET status = 'needs_reauth' WHERE id = \(id)")
        func snapshot() async throws -> String {
            try await h.db.pool.query(
                """
                SELECT row_to_json(c)::text FROM nexcomet.ad_connections c WHERE id = \(id)
                """
            ).first!.decode(0)
        }
        let before = try await snapshot()
        try await h.db.pool.execute(
            "UPDATE nexcomet.organizations SET processing_restricted = true, processing_restricted_by = 'restrict' WHERE id = \(h.orgID)"
        )
        var outcome = try await h.db.pool.withConnection { c in
            try await h.store.reauthorize(id, tokens: newGrant, on: c)
        }
        XCTAssertEqual(outcome, .organizationUnavailable(deleted: false))
        var now = try await snapshot()
        XCTAssertEqual(now, before, "nothing changed")
        try await h.db.pool.execute(
            "UPDATE nexcomet.organizations SET processing_restricted = false, processing_restricted_by = NULL, deleted_at = now() WHERE id = \(h.orgID)"
        )
        outcome = try await h.db.pool.withConnection { c in try await h.store.reauthorize(id, tokens: newGrant, on: c) }
        XCTAssertEqual(outcome, .organizationUnavailable(deleted: true))
        now = try await snapshot()
        XCTAssertEqual(now, before, "nothing changed")
        try await h.db.pool.execute("UPDATE nexcomet.organizations SET deleted_at = NULL WHERE id = \(h.orgID)")
        outcome = try await h.db.pool.withConnection { c in try await h.store.reauthorize(id, tokens: newGrant, on: c) }
        XCTAssertEqual(outcome, .reauthorized(wasNeedsReauth: true))
    }
}
