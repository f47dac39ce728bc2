import Foundation
import Platforms
import Postgres
import Privacy
import Queue

/// `revoke_tokens {batch_size?}`: asks the platforms to end the grants whose tokens were deleted locally
/// (disconnect, deleted or erased organization), from the sealed copies in `nexcomet.token_revocations`
/// (sql/033). Best effort with retries: a failed call is retried with backoff (1, 2, 4 ... 60 minutes); a copy is
/// deleted when the platform confirms (or already rejects the token), when it cannot be opened (key gone), and in
/// any case when it expires, 24 hours after the local deletion. The local deletion never waits for any of this: it
/// committed before the copy was read here. Only platforms with a documented revoke endpoint get copies (TikTok
/// `oauth2/revoke_token/`, ``TikTokClient/revokeAccessToken(_:)``); Snap documents none, and its disconnect
/// notification tells the customer how to remove the app in Snapchat's settings (``DisconnectHandler``).
///
/// Each copy is handled in its own transaction, row locked (`SKIP LOCKED`, so workers share the backlog). Every
/// outcome is audited (`revoke`: `revoked`, `expired` or `unopenable` 1) without token material.
/// (Its batch args, timeout and init have the shape of `RetentionPurgeHandler`'s: the two handlers share no logic.)
public struct RevokeTokensHandler: JobHandler {
    public struct Args: Decodable, Sendable {
        public var batch_size: Int?
    }

    public static let kind = "revoke_tokens"
    public var timeout: Duration { .seconds(900) }
    let environment: SyncEnvironment

    public init(environment: SyncEnvironment) { self.environment = environment }

    public func run(_ args: Args, context: JobContext) async throws {
        if let b = args.batch_size, b < 1 || b > 100_000 {
            throw JobDiscard("batch_size must be between 1 and 100000")
        }
        let batch = args.batch_size ?? 1000
        let store = try environment.store()
        var done = 0
        while done < batch {
            let handled: Bool = try await context.pool.withTransaction { c in
                guard
                    let r = try await c.query(
                        """
                        SELECT id, connection_id, organization_id, platform, encode(access_token_ciphertext, 'hex'),
                               expires_at <= now(), attempts
                          FROM nexcomet.token_revocations
                         WHERE next_attempt_at <= now() ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
                        """
                    ).first
                else { return false }
                let id: Int64 = try r.decode(0)
                let connection: Int64 = try r.decode(1)
                let org: Int64 = try r.decode(2)
                let platformName: String = try r.decode(3)
                let hex: String = try r.decode(4)
                let expired: Bool = try r.decode(5)
                let attempts: Int = try r.decode(6)
                func finish(_ outcome: String) async throws {
                    try await c.execute("DELETE FROM nexcomet.token_revocations WHERE id = \(id)")
                    try await c.execute(
                        """
                        INSERT INTO nexcomet.privacy_audit (action, organization_id, details)
                        VALUES ('revoke', \(org), jsonb_build_object('connection_id', \(connection)::bigint,
                                                                      \(outcome)::text, 1, 'attempts', \(attempts + 1)::int))
                        """)
                }
                if expired {
                    try await finish("expired")
                    return true
                }
                guard let platform = AdPlatform(rawValue: platformName), let bytes = hexBytes(hex),
                    let token = try? store.vault.open(
                        bytes,
                        associatedData: ConnectionStore.associatedData(connectionID: connection, column: "access_token")
                    )
                else {
                    try await finish("unopenable")
                    return true
                }
                let failure: (any Error)?
                do {
                    let client = try environment.client(platform, pool: context.pool)
                    _ = try await client.revokeAccessToken(token)
                    failure = nil
                } catch {
                    failure = error
                }
                if let error = failure {
                    // The message of a PlatformError is scrubbed of secrets; others name no token either.
                    let reason = String(describing: error).prefix(500)
                    try await c.execute(
                        """
                        UPDATE nexcomet.token_revocations
                           SET attempts = attempts + 1, last_error = \(String(reason)),
                               next_attempt_at = now() + least(power(2, attempts), 60) * interval '1 minute'
                         WHERE id = \(id)
                        """)
                    context.logger.warning(
                        "token revocation failed; retried later", ("connection", "\(connection)"),
                        ("attempt", "\(attempts + 1)"))
                } else {
                    try await finish("revoked")
                }
                return true
            }
            guard handled else { break }
            done += 1
        }
    }

    func hexBytes(_ hex: String) -> [UInt8]? {
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let b = UInt8(String(decoding: chars[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
            out.append(b)
            i += 2
        }
        return out
    }
}
