import Foundation
import PGTestSupport
import Platforms
import Postgres
import Privacy
import Queue
import Sandbox
import XCTest

@testable import Sync

final class TokenStorageTests: XCTestCase {
    func testTokensRoundTripAndRefreshIsStoredSealed() async throws {
        let h = try await SyncHarness.make(tiktok: 0, snap: 1)
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        let id = connections[0].id
        let loaded = try await h.db.pool.withConnection { try await h.store.load(id, on: $0) }
        let original = try XCTUnwrap(loaded.tokens)
        XCTAssertEqual(loaded.keyID, "k1")
        XCTAssertNotNil(original.accessTokenExpiresAt)

        // An access token near expiry is refreshed by sync_connection before use, and the new one stored sealed.
        try await h.db.pool.execute(
            "UPDATE nexcomet.ad_connections SET access_token_expires_at = now() + interval '1 minute' WHERE id = \(id)")
        try await h.run(SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(id)"}"#)
        let refreshed = try await h.db.pool.withConnection { try await h.store.load(id, on: $0) }
        XCTAssertNotEqual(refreshed.tokens?.accessToken, original.accessToken)
        XCTAssertGreaterThan(refreshed.tokens!.accessTokenExpiresAt!, Date().addingTimeInterval(600))

        // refresh_token with a token far from expiry does nothing; near expiry it refreshes.
        try await h.run(RefreshTokenHandler(environment: h.environment), args: #"{"connection_id":"\#(id)"}"#)
        let unchanged = try await h.db.pool.withConnection { try await h.store.load(id, on: $0) }
        XCTAssertEqual(unchanged.tokens?.accessToken, refreshed.tokens?.accessToken)
        try await h.db.pool.execute(
            "UPDATE nexcomet.ad_connections SET access_token_expires_at = now() WHERE id = \(id)")
        try await h.run(RefreshTokenHandler(environment: h.environment), args: #"{"connection_id":"\#(id)"}"#)
        let again = try await h.db.pool.withConnection { try await h.store.load(id, on: $0) }
        XCTAssertNotEqual(again.tokens?.accessToken, refreshed.tokens?.accessToken)
    }

    func testRefreshWithoutRefreshTokenWaitsForExpiryThenAsksForReauthorization() async throws {
        let h = try await SyncHarness.make(tiktok: 0, snap: 0)
        addTeardownBlock { await h.close() }
        let id = try await h.db.pool.withConnection { c in
            try await h.store.create(
                organizationID: h.orgID, platform: .tiktok,
                tokens: OAuthTokens(accessToken: "long-lived", accessTokenExpiresAt: Date().addingTimeInterval(300)),
                on: c)
        }
        try await h.run(RefreshTokenHandler(environment: h.environment), args: #"{"connection_id":"\#(id)"}"#)
        func status() async throws -> String {
            try await h.db.pool.query("SELECT status FROM nexcomet.ad_connections WHERE id = \(id)").first!.decode(0)
        }
        let before = try await status()
        XCTAssertEqual(before, "active", "a valid long-lived token is left alone")
        // Expired by the handler's clock (the harness's, fixed at its start) as well as by the database's: on a
        // loaded machine setup takes more than a second, so `now() - 1 s` could still lie after the harness clock.
        let expired = h.start.addingTimeInterval(-1)
        try await h.db.pool.execute(
            "UPDATE nexcomet.ad_connections SET access_token_expires_at = \(expired) WHERE id = \(id)")
        do {
            try await h.run(RefreshTokenHandler(environment: h.environment), args: #"{"connection_id":"\#(id)"}"#)
            XCTFail("expected a discard")
        } catch let e as JobDiscard {
            XCTAssertTrue(e.message.contains("re-authorization required"), e.message)
        }
        let after = try await status()
        XCTAssertEqual(after, "needs_reauth")
    }

    func testTamperedWrongKeyAndMovedCiphertextsFailClearly() async throws {
        let h = try await SyncHarness.make(tiktok: 2, snap: 0)
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        let (a, b) = (connections[0].id, connections[1].id)

        // Wrong key: same id, other bytes.
        let otherRing = try KeyRing(keys: [(id: "k1", key: Array(repeating: 9, count: 32))])
        let wrong = ConnectionStore(vault: TokenVault(keyRing: otherRing))
        try await assertUndecryptable(h, wrong, a, contains: "authenticationFailed")
        // Unknown key id.
        let unknown = ConnectionStore(
            vault: TokenVault(keyRing: try KeyRing(keys: [(id: "k2", key: Array(repeating: 7, count: 32))])))
        try await assertUndecryptable(h, unknown, a, contains: "unknownKeyID")

        // Ciphertext moved from row b to row a.
        try await h.db.pool.execute(
            """
            UPDATE nexcomet.ad_connections SET access_token_ciphertext =
                   (SELECT access_token_ciphertext FROM nexcomet.ad_connections WHERE id = \(b)) WHERE id = \(a)
            """)
        try await assertUndecryptable(h, h.store, a, contains: "authenticationFailed")

        // One flipped bit in row b.
        try await h.db.pool.execute(
            """
            UPDATE nexcomet.ad_connections
               SET access_token_ciphertext = set_byte(access_token_ciphertext, 20,
                                                      get_byte(access_token_ciphertext, 20) # 1)
             WHERE id = \(b)
            """)
        try await assertUndecryptable(h, h.store, b, contains: "authenticationFailed")

        // The job fails for good with the clear reason, no retry.
        do {
            try await h.run(SyncConnectionHandler(environment: h.environment), args: #"{"connection_id":"\#(b)"}"#)
            XCTFail("expected a discard")
        } catch let e as JobDiscard {
            XCTAssertTrue(e.message.contains("access_token cannot be decrypted"), e.message)
        }
    }

    private func assertUndecryptable(
        _ h: SyncHarness, _ store: ConnectionStore, _ id: Int64, contains code: String, line: UInt = #line
    ) async throws {
        do {
            _ = try await h.db.pool.withConnection { try await store.load(id, on: $0) }
            XCTFail("expected a decryption failure", line: line)
        } catch let e as ConnectionStoreError {
            XCTAssertEqual(e.code, .undecryptable, line: line)
            XCTAssertTrue(e.description.contains(code), e.description, line: line)
        }
    }

    func testKeyRotationResealsEveryTokenUnderTheActiveKey() async throws {
        let h = try await SyncHarness.make(tiktok: 2, snap: 2)
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        let before = try await h.db.pool.withConnection { c in
            try await connections.asyncMap { try await h.store.load($0.id, on: c).tokens! }
        }
        let newRing = try KeyRing(keys: [
            (id: "k2", key: Array(repeating: 3, count: 32)), (id: "k1", key: Array(repeating: 7, count: 32)),
        ])
        let rotating = ConnectionStore(vault: TokenVault(keyRing: newRing))
        let result = try await rotating.rotateKeys(pool: h.db.pool, batchSize: 3)
        XCTAssertEqual(result.resealed, 4)
        XCTAssertTrue(result.failures.isEmpty)
        let again = try await rotating.rotateKeys(pool: h.db.pool, batchSize: 3)
        XCTAssertEqual(again.resealed, 0)
        XCTAssertEqual(again.current, 4)

        let onlyNew = ConnectionStore(
            vault: TokenVault(keyRing: try KeyRing(keys: [(id: "k2", key: Array(repeating: 3, count: 32))])))
        let after = try await h.db.pool.withConnection { c in
            try await connections.asyncMap { try await onlyNew.load($0.id, on: c).tokens! }
        }
        XCTAssertEqual(before.map(\.accessToken), after.map(\.accessToken))
        XCTAssertEqual(before.map(\.refreshToken), after.map(\.refreshToken))
        let keyIDs: [String] = try await h.db.pool.query(
            "SELECT DISTINCT token_key_id FROM nexcomet.ad_connections"
        ).map { try $0.decode(0) }
        XCTAssertEqual(keyIDs, ["k2"])
    }

    func testNoPlaintextTokenInDatabaseOrLogs() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 1)
        addTeardownBlock { await h.close() }
        let connections = try await h.connectAll()
        // Force Snap refreshes mid-sync so refreshed tokens are written too, and a revoked grant's error path runs.
        h.sandbox.expireSnapTokens()
        try await h.syncEverything(connections.map(\.id))
        h.sandbox.revokeConnection(.tiktok, 0)
        let errors = try await h.resyncAccounts()
        XCTAssertEqual(errors.count, 1, "the first job of the revoked grant fails, later ones skip it: \(errors)")

        var secrets = Set<String>()
        for info in h.sandbox.connections() {
            secrets.insert(info.accessToken)
            secrets.insert(info.refreshToken)
        }
        for c in connections {
            if let t = try? await h.db.pool.withConnection({ try await h.store.load(c.id, on: $0) }).tokens {
                secrets.insert(t.accessToken)
                if let r = t.refreshToken { secrets.insert(r) }
            }
        }
        secrets.insert("tiktok-app-secret")
        secrets.insert("snap-client-secret")
        let tables: [String] = try await h.db.pool.query(
            """
            SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables
             WHERE table_schema IN ('nexcomet', 'nexjobs') AND table_type = 'BASE TABLE'
            """
        ).map { try $0.decode(0) }
        XCTAssertTrue(tables.contains("nexcomet.ad_connections"))
        var dump = ""
        for table in tables {
            let rows = try await h.db.pool.query(PGQuery(unsafeSQL: "SELECT t::text FROM \(table) t"))
            for r in rows { dump += (r.text(0) ?? "") + "\n" }
        }
        XCTAssertTrue(dump.contains("reauth_required"), "the dump covers the error paths")
        let logs = h.logs.text
        XCTAssertFalse(logs.isEmpty)
        for secret in secrets {
            XCTAssertFalse(dump.contains(secret), "a token appears in the database")
            XCTAssertFalse(logs.contains(secret), "a token appears in the logs")
        }
    }
}

extension Array where Element: Sendable {
    func asyncMap<T>(_ body: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for e in self { out.append(try await body(e)) }
        return out
    }
}
