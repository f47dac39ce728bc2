import Foundation
import HTTP
import Logs
import NexcometJobs
import PGTestSupport
import Platforms
import Postgres
import Privacy
import Sandbox
import XCTest

@testable import Sync

/// Issue 14, reauthorization without double counting: new tokens on the existing connection keep its ad-account
/// rows and history; the CLI and the signed webhook take the same path.
final class ReauthorizeTests: XCTestCase {
    func testReauthorizeAfterRevocationKeepsAccountsAndCountsNothingTwice() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 1)
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        try await h.syncEverything(connections.map(\.id))
        let accountsBefore: [Int64] = try await h.db.pool.query("SELECT id FROM nexcomet.ad_accounts ORDER BY id")
            .map { try $0.decode(0) }
        // The history as it stands: every run row (whole) and every metric row.
        func rows(_ sql: String) async throws -> [String] {
            try await h.db.pool.query(PGQuery(unsafeSQL: sql)).map { try $0.decode(0) }
        }
        let runsSQL = "SELECT row_to_json(r)::text FROM nexcomet.sync_runs r ORDER BY id"
        let runsBefore = try await rows(runsSQL)
        let metricsBefore = try await h.databaseMetrics()
        XCTAssertFalse(runsBefore.isEmpty)
        XCTAssertFalse(metricsBefore.isEmpty)

        // The user removes the app on TikTok: the next sync marks the connection.
        let tiktok = try XCTUnwrap(connections.first { $0.info.platform == .tiktok })
        h.sandbox.revokeConnection(.tiktok, 0)
        _ = try await h.resyncAccounts()
        let marked: String = try await h.db.pool.query(
            "SELECT status FROM nexcomet.ad_connections WHERE id = \(tiktok.id)"
        ).first!.decode(0)
        XCTAssertEqual(marked, "needs_reauth")

        // ... and authorizes it again: new tokens for the same connection.
        let client = try h.environment.clients.client(for: .tiktok, pool: h.db.pool)
        let fresh = try await client.exchangeAuthorizationCode(tiktok.info.authCode)
        let outcome = try await h.db.pool.withConnection { c in
            try await h.store.reauthorize(tiktok.id, tokens: fresh, on: c)
        }
        XCTAssertEqual(outcome, .reauthorized(wasNeedsReauth: true))
        let row = try await h.db.pool.query(
            """
            SELECT status, last_error IS NULL, next_sync_at <= now(),
                   (SELECT count(*) FROM nexcomet.notifications WHERE connection_id = \(tiktok.id)
                       AND kind = 'reauth_required' AND sent_at IS NULL)::int
              FROM nexcomet.ad_connections WHERE id = \(tiktok.id)
            """
        ).first!
        XCTAssertEqual(try row.decode(0) as String, "active")
        XCTAssertTrue(try row.decode(1) as Bool)
        XCTAssertTrue(try row.decode(2) as Bool, "due for a sync at once")
        XCTAssertEqual(try row.decode(3) as Int, 0, "the open re-authorization notice is closed")
        let stored = try await h.db.pool.withConnection { c in try await h.store.load(tiktok.id, on: c) }
        XCTAssertEqual(stored.tokens?.accessToken, fresh.accessToken)

        // The next sync writes into the same account rows: same ids, history kept, metrics exact (not doubled).
        try await h.syncEverything(connections.map(\.id))
        let accountsAfter: [Int64] = try await h.db.pool.query("SELECT id FROM nexcomet.ad_accounts ORDER BY id")
            .map { try $0.decode(0) }
        XCTAssertEqual(accountsAfter, accountsBefore)
        // The history is kept: every run recorded before the revocation is still there, unchanged (not merely more
        // rows than before), and every metric row stored before is still there with the same values.
        let runsAfter = try await rows(runsSQL)
        XCTAssertEqual(Array(runsAfter.prefix(runsBefore.count)), runsBefore, "the old sync runs are kept unchanged")
        XCTAssertGreaterThan(runsAfter.count, runsBefore.count, "the new syncs are recorded after them")
        let metricsAfter = try await h.databaseMetrics()
        XCTAssertEqual(
            metricsBefore.filter { metricsAfter[$0.key] != $0.value }.count, 0, "metric rows stored before are kept")
        let first = try await h.retainedFirstDays(days: 90)
        assertSameMetrics(try await h.databaseMetrics(from: first), h.truth(firstDay: first), "after reauthorization")

        // A connection that does not exist, or was disconnected, is not reauthorized.
        let missing = try await h.db.pool.withConnection { c in
            try await h.store.reauthorize(999_999, tokens: fresh, on: c)
        }
        XCTAssertEqual(missing, .notFound)
        try await h.db.pool.execute(
            "UPDATE nexcomet.ad_connections SET status = 'disconnected' WHERE id = \(tiktok.id)")
        let gone = try await h.db.pool.withConnection { c in
            try await h.store.reauthorize(tiktok.id, tokens: fresh, on: c)
        }
        XCTAssertEqual(gone, .disconnected)
    }

    /// A database with one organization and one TikTok connection (access token "old-access"), and a web service
    /// whose reauthorized webhook opens tokens sealed with `store`.
    struct WebhookFixture {
        var db: TestDatabase
        var store: ConnectionStore
        var secret: [UInt8]
        var router: Router
        var org: Int64
        var id: Int64
    }

    func webhookFixture(keySeed: Int, secret: String) async throws -> WebhookFixture {
        let db = try await TestDatabase.create()
        addTeardownBlock { await db.drop() }
        let ring = try KeyRing(keys: [(id: "k1", key: (0..<32).map { UInt8($0 * keySeed % 251) })])
        let store = ConnectionStore(vault: TokenVault(keyRing: ring))
        let secretBytes = Array(secret.utf8)
        var service = WebService(
            pool: db.pool, webhookSecret: secretBytes, logger: Logger(label: "t", minimum: .error))
        service.tokenStore = store
        let org: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.organizations (name) VALUES ('o') RETURNING id"
        ).first!.decode(0)
        let id = try await db.pool.withConnection { c in
            try await store.create(
                organizationID: org, platform: .tiktok, tokens: OAuthTokens(accessToken: "old-access"), on: c)
        }
        return WebhookFixture(db: db, store: store, secret: secretBytes, router: service.router(), org: org, id: id)
    }

    func testSignedReauthorizedWebhookCarriesSealedTokensOnly() async throws {
        let f = try await webhookFixture(keySeed: 3, secret: "0123456789abcdef0123456789abcdef-test")
        let (db, store, secret, router, org, id) = (f.db, f.store, f.secret, f.router, f.org, f.id)
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET status = 'needs_reauth' WHERE id = \(id)")

        func sealed(_ doc: String, for connection: Int64) throws -> String {
            Data(
                try store.vault.seal(
                    doc, associatedData: ConnectionStore.reauthorizeAssociatedData(connectionID: connection))
            ).base64EncodedString()
        }
        func post(_ body: String, signature: String? = nil) async -> HTTPResponse {
            let stamp = String(Int(Date().timeIntervalSince1970))
            var headers = HTTPHeaders()
            headers.add("X-Nexjobs-Timestamp", stamp)
            headers.add(
                "X-Nexjobs-Signature",
                signature ?? WebService.signature(secret: secret, timestamp: stamp, body: Array(body.utf8)))
            return await router.handle(
                HTTPRequest(method: "POST", path: "/webhooks/reauthorized", headers: headers, body: Array(body.utf8)))
        }
        let doc = #"{"access_token":"new-access-XYZ","refresh_token":"new-refresh-XYZ","expires_in":3600}"#

        // Refused: bad signature, plaintext tokens, tokens sealed for another connection, unknown connection.
        let unsigned = await post(
            #"{"connection_id":\#(id),"sealed_tokens":"\#(try sealed(doc, for: id))"}"#, signature: "sha256=00")
        XCTAssertEqual(unsigned.status, 401)
        let plaintext = await post(#"{"connection_id":\#(id),"access_token":"new-access-XYZ"}"#)
        XCTAssertEqual(plaintext.status, 400)
        let otherRow = await post(#"{"connection_id":\#(id),"sealed_tokens":"\#(try sealed(doc, for: id + 1))"}"#)
        XCTAssertEqual(otherRow.status, 400, "a sealed document is bound to its connection")
        XCTAssertFalse(String(decoding: otherRow.body, as: UTF8.self).contains("XYZ"))
        let unknown = await post(#"{"connection_id":999999,"sealed_tokens":"\#(try sealed(doc, for: 999_999))"}"#)
        XCTAssertEqual(unknown.status, 404)
        var still = try await db.pool.withConnection { c in try await store.load(id, on: c) }
        // A needs_reauth connection holds no ciphertext (sql/030 clears it); refused requests stored none.
        XCTAssertNil(still.tokens, "nothing stored by a refused request")
        XCTAssertEqual(still.status, "needs_reauth")

        // Accepted: the same path as `connections reauthorize`.
        let ok = await post(#"{"connection_id":\#(id),"sealed_tokens":"\#(try sealed(doc, for: id))"}"#)
        XCTAssertEqual(ok.status, 200, String(decoding: ok.body, as: UTF8.self))
        XCTAssertTrue(String(decoding: ok.body, as: UTF8.self).contains(#""was_needs_reauth":true"#))
        still = try await db.pool.withConnection { c in try await store.load(id, on: c) }
        XCTAssertEqual(still.status, "active")
        XCTAssertEqual(still.tokens?.accessToken, "new-access-XYZ")
        XCTAssertEqual(still.tokens?.refreshToken, "new-refresh-XYZ")
        XCTAssertNotNil(still.tokens?.accessTokenExpiresAt)

        // A restricted or deleted organization: 409, nothing changed.
        let other = #"{"access_token":"other-access-XYZ","refresh_token":"other-refresh-XYZ"}"#
        for change in ["processing_restricted = true, processing_restricted_by = 'object'", "deleted_at = now()"] {
            try await db.pool.execute(
                PGQuery(unsafeSQL: "UPDATE nexcomet.organizations SET \(change) WHERE id = $1", binds: [String(org)]))
            let refused = await post(#"{"connection_id":\#(id),"sealed_tokens":"\#(try sealed(other, for: id))"}"#)
            XCTAssertEqual(refused.status, 409, change)
            let text = String(decoding: refused.body, as: UTF8.self)
            XCTAssertTrue(text.contains("restricted") || text.contains("deleted"), text)
            still = try await db.pool.withConnection { c in try await store.load(id, on: c) }
            XCTAssertEqual(still.tokens?.accessToken, "new-access-XYZ", change)
            try await db.pool.execute(
                """
                UPDATE nexcomet.organizations SET processing_restricted = false, processing_restricted_by = NULL,
                       deleted_at = NULL WHERE id = \(org)
                """)
        }

        // Without token keys the webhook is off.
        var keyless = WebService(pool: db.pool, webhookSecret: secret, logger: Logger(label: "t", minimum: .error))
        keyless.tokenStore = nil
        let body = #"{"connection_id":\#(id),"sealed_tokens":"\#(try sealed(doc, for: id))"}"#
        let stamp = String(Int(Date().timeIntervalSince1970))
        var headers = HTTPHeaders()
        headers.add("X-Nexjobs-Timestamp", stamp)
        headers.add(
            "X-Nexjobs-Signature", WebService.signature(secret: secret, timestamp: stamp, body: Array(body.utf8)))
        let off = await keyless.router().handle(
            HTTPRequest(method: "POST", path: "/webhooks/reauthorized", headers: headers, body: Array(body.utf8)))
        XCTAssertEqual(off.status, 503)
    }

    /// A captured reauthorized request sent again within its timestamp window (the signature still valid) must not
    /// restore the tokens it carried after a later rotation, nor set the connection active again: 409, nothing
    /// changed. A request that failed (here: disconnected connection) recorded nothing and can be retried.
    func testReplayedReauthorizedWebhookIsRefusedAndChangesNothing() async throws {
        let f = try await webhookFixture(keySeed: 7, secret: "0123456789abcdef0123456789abcdef-replay")
        let (db, store, secret, router, id) = (f.db, f.store, f.secret, f.router, f.id)
        let sealed = Data(
            try store.vault.seal(
                #"{"access_token":"captured-access","refresh_token":"captured-refresh"}"#,
                associatedData: ConnectionStore.reauthorizeAssociatedData(connectionID: id))
        ).base64EncodedString()
        // One signed request, sent several times byte for byte (as an eavesdropper would).
        let body = Array(#"{"connection_id":\#(id),"sealed_tokens":"\#(sealed)"}"#.utf8)
        let stamp = String(Int(Date().timeIntervalSince1970))
        var headers = HTTPHeaders()
        headers.add("X-Nexjobs-Timestamp", stamp)
        headers.add("X-Nexjobs-Signature", WebService.signature(secret: secret, timestamp: stamp, body: body))
        func send(_ path: String = "/webhooks/reauthorized") async -> HTTPResponse {
            await router.handle(HTTPRequest(method: "POST", path: path, headers: headers, body: body))
        }
        func state() async throws -> (status: String, access: String?, refresh: String?) {
            let c = try await db.pool.withConnection { c in try await store.load(id, on: c) }
            return (c.status, c.tokens?.accessToken, c.tokens?.refreshToken)
        }

        // Failed first: the connection is disconnected. Nothing is recorded, so the same request may be retried.
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET status = 'disconnected' WHERE id = \(id)")
        let failed = await send()
        XCTAssertEqual(failed.status, 409, String(decoding: failed.body, as: UTF8.self))
        XCTAssertTrue(String(decoding: failed.body, as: UTF8.self).contains("disconnected"))
        let recorded: Int = try await db.pool.query("SELECT count(*)::int FROM nexjobs.webhook_deliveries")
            .first!.decode(0)
        XCTAssertEqual(recorded, 0, "a request that changed nothing is not recorded")
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET status = 'needs_reauth' WHERE id = \(id)")

        // Accepted once.
        let first = await send()
        XCTAssertEqual(first.status, 200, String(decoding: first.body, as: UTF8.self))
        var now = try await state()
        XCTAssertEqual(now.status, "active")
        XCTAssertEqual(now.access, "captured-access")
        XCTAssertEqual(now.refresh, "captured-refresh")

        // The operator rotates the tokens (`connections reauthorize`); a replay must not restore the captured ones.
        let rotated = try await db.pool.withConnection { c in
            try await store.reauthorize(
                id, tokens: OAuthTokens(accessToken: "rotated-access", refreshToken: "rotated-refresh"), on: c)
        }
        XCTAssertEqual(rotated, .reauthorized(wasNeedsReauth: false))
        let replay = await send()
        XCTAssertEqual(replay.status, 409, String(decoding: replay.body, as: UTF8.self))
        XCTAssertTrue(String(decoding: replay.body, as: UTF8.self).contains("already processed"))
        XCTAssertFalse(String(decoding: replay.body, as: UTF8.self).contains("captured"))
        now = try await state()
        XCTAssertEqual(now.access, "rotated-access", "the replay did not restore the captured tokens")
        XCTAssertEqual(now.refresh, "rotated-refresh")

        // Nor does it set a connection marked since then active again.
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET status = 'needs_reauth' WHERE id = \(id)")
        let again = await send()
        XCTAssertEqual(again.status, 409)
        now = try await state()
        XCTAssertEqual(now.status, "needs_reauth")
        XCTAssertNil(now.access)

        // The signature does not cover the path: the same bytes sent to /webhooks/resync are taken as a resync of
        // this connection (documented, harmless: one pending sync at most).
        try await db.pool.execute("UPDATE nexcomet.ad_connections SET status = 'active' WHERE id = \(id)")
        let asResync = await send("/webhooks/resync")
        XCTAssertEqual(asResync.status, 202, String(decoding: asResync.body, as: UTF8.self))
        let repeated = await send("/webhooks/resync")
        XCTAssertTrue(String(decoding: repeated.body, as: UTF8.self).contains(#""duplicate":true"#))
    }
}
