import Foundation
import Logs
import NexcometJobs
import PGTestSupport
import Platforms
import Postgres
import Queue
import Sandbox
import XCTest

@testable import Privacy
@testable import Runtime
@testable import Sync

/// Issue 12, tokens: revocation at the platform on disconnect and on organization deletion, best effort with
/// retries, never delaying the local deletion; Snapchat (no revoke endpoint) gets instructions instead.
final class TokenRevocationTests: XCTestCase {
    /// A client whose revoke call fails as a platform outage would (transient).
    struct FailingRevoke: AdPlatformClient {
        var platform: AdPlatform { .tiktok }
        func exchangeAuthorizationCode(_ code: String) async throws -> OAuthTokens { throw err }
        func refreshTokens(_ refreshToken: String) async throws -> OAuthTokens { throw err }
        func adAccounts(session: TokenSession) async throws -> [AdAccount] { throw err }
        func entities(_ level: ReportLevel, account: AdAccount, session: TokenSession) async throws -> [AdEntity] {
            throw err
        }
        func dailyMetrics(_ level: ReportLevel, account: AdAccount, window: DateWindow, session: TokenSession)
            async throws -> [DailyMetric]
        { throw err }
        func revokeAccessToken(_ accessToken: String) async throws -> Bool { throw err }
        func accountTotals(account: AdAccount, window: DateWindow, session: TokenSession) async throws
            -> AccountTotals
        { throw err }
        var err: PlatformError {
            PlatformError(
                .transient, platform: .tiktok, endpoint: "/open_api/v1.3/oauth2/revoke_token/", message: "HTTP 503")
        }
    }

    func testDisconnectDeletesAtOnceThenRevokesAtThePlatformWithRetriesAndSnapGetsInstructions() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 1)
        do {
            let connected = try await h.connectAll()
            let tiktok = connected.first { $0.info.platform == .tiktok }!
            let snap = connected.first { $0.info.platform == .snapchat }!
            let pool = h.db.pool
            for c in [tiktok, snap] {
                try await h.run(DisconnectHandler(), args: #"{"connection_id": \#(c.id)}"#)
            }
            // Local deletion at once: no ciphertext left on the connections, before any platform call.
            let left: Int = try await pool.query(
                """
                SELECT count(*)::int FROM nexcomet.ad_connections
                 WHERE access_token_ciphertext IS NOT NULL OR refresh_token_ciphertext IS NOT NULL
                """
            ).first!.decode(0)
            XCTAssertEqual(left, 0)
            XCTAssertEqual(h.sandbox.revocations(), [], "nothing was called at the platform during the disconnect")
            let copies: [Int64] = try await pool.query(
                "SELECT connection_id FROM nexcomet.token_revocations ORDER BY id"
            ).map { try $0.decode(0) }
            XCTAssertEqual(copies, [tiktok.id], "a sealed copy only for the platform with a revoke endpoint")
            let payloads: [String: String] = try await Dictionary(
                uniqueKeysWithValues: pool.query(
                    "SELECT payload->>'platform', payload::text FROM nexcomet.notifications WHERE kind = 'disconnected'"
                ).map { (try $0.decode(0) as String, try $0.decode(1) as String) })
            XCTAssertTrue(payloads["tiktok"]?.contains(#""revocation": "requested""#) ?? false, "\(payloads)")
            XCTAssertTrue(payloads["snapchat"]?.contains(#""revocation": "unavailable""#) ?? false, "\(payloads)")
            XCTAssertTrue(payloads["snapchat"]?.contains("Connected Apps") ?? false, "\(payloads)")
            let queued: Int = try await pool.query(
                "SELECT count(*)::int FROM nexjobs.jobs WHERE kind = 'revoke_tokens' AND state = 'available'"
            ).first!.decode(0)
            XCTAssertEqual(queued, 1, "the disconnect queued one revoke_tokens job")

            // First attempt: the platform is down. The copy stays, retried later; the error names no token.
            var failing = h.environment
            failing.clients = PlatformClientProvider { _, _ in FailingRevoke() }
            try await h.run(RevokeTokensHandler(environment: failing), args: "{}")
            guard
                let r = try await pool.query(
                    "SELECT attempts, next_attempt_at > now(), last_error FROM nexcomet.token_revocations"
                ).first
            else {
                XCTFail("no token copy was kept for revocation")
                await h.close()
                return
            }
            XCTAssertEqual(try r.decode(0) as Int, 1)
            XCTAssertTrue(try r.decode(1) as Bool, "backoff")
            let error: String = try r.decode(2)
            XCTAssertFalse(error.contains(tiktok.info.accessToken), "no token in the recorded error")
            // Not due yet: a run now does nothing.
            try await h.run(RevokeTokensHandler(environment: h.environment), args: "{}")
            XCTAssertEqual(h.sandbox.revocations(), [])
            try await pool.execute("UPDATE nexcomet.token_revocations SET next_attempt_at = now()")
            try await h.run(RevokeTokensHandler(environment: h.environment), args: "{}")
            XCTAssertEqual(
                h.sandbox.revocations(), [SandboxRevocation(platform: .tiktok, connection: tiktok.info.index)])
            let remaining: Int = try await pool.query("SELECT count(*)::int FROM nexcomet.token_revocations")
                .first!.decode(0)
            XCTAssertEqual(remaining, 0, "the copy goes once the platform confirmed")
            let audit: String = try await pool.query(
                "SELECT details::text FROM nexcomet.privacy_audit WHERE action = 'revoke'"
            ).first!.decode(0)
            XCTAssertTrue(audit.contains(#""revoked": 1"#), audit)
            // The grant is dead at the platform: the old token no longer reads anything.
            let client = try h.environment.clients.client(for: .tiktok, pool: pool)
            do {
                _ = try await client.adAccounts(
                    session: TokenSession(tokens: OAuthTokens(accessToken: tiktok.info.accessToken)) { _ in })
                XCTFail("a revoked grant must be refused")
            } catch let e as PlatformError {
                XCTAssertEqual(e.kind, .reauthorizationRequired, "\(e)")
            }
            // A copy older than 24 hours is dropped unrevoked.
            try await pool.execute(
                """
                INSERT INTO nexcomet.token_revocations (connection_id, organization_id, platform, access_token_ciphertext,
                                                        expires_at)
                VALUES (999, \(h.orgID), 'tiktok', '\\x01'::bytea, now() - interval '1 second')
                """)
            try await h.run(RevokeTokensHandler(environment: h.environment), args: "{}")
            let expired: Int = try await pool.query(
                "SELECT count(*)::int FROM nexcomet.privacy_audit WHERE action = 'revoke' AND details ? 'expired'"
            ).first!.decode(0)
            XCTAssertEqual(expired, 1)
        } catch {
            await h.close()
            throw error
        }
        await h.close()
    }

    func testADeletedOrganizationsTikTokGrantIsRevokedAfterItsTokensAreWiped() async throws {
        let h = try await SyncHarness.make(tiktok: 1, snap: 0)
        do {
            let connected = try await h.connectAll()
            let pool = h.db.pool
            try await pool.execute("UPDATE nexcomet.organizations SET deleted_at = now() WHERE id = \(h.orgID)")
            let tick = DueWorkContext(
                pool: pool, logger: Logger(label: "t", minimum: .error), holder: "t", isLeader: { true })
            _ = try await PrivacyRequestSource().run(tick)
            let ciphertext: Int = try await pool.query(
                "SELECT count(*)::int FROM nexcomet.ad_connections WHERE access_token_ciphertext IS NOT NULL"
            ).first!.decode(0)
            XCTAssertEqual(ciphertext, 0, "wiped within the tick")
            let job: Int64 = try await pool.query(
                "SELECT id FROM nexjobs.jobs WHERE kind = 'revoke_tokens' AND state = 'available'"
            ).first!.decode(0)
            try await h.runExisting(RevokeTokensHandler(environment: h.environment), jobID: job)
            XCTAssertEqual(
                h.sandbox.revocations(), [SandboxRevocation(platform: .tiktok, connection: connected[0].info.index)])
        } catch {
            await h.close()
            throw error
        }
        await h.close()
    }
}
