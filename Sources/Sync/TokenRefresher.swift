import Foundation
import Platforms
import Postgres
import Queue

/// Refreshes a connection's tokens once for all concurrent jobs, without holding a row lock across the OAuth call.
///
/// TikTok rotates refresh tokens (the old one stops working), so two jobs refreshing with the same refresh token
/// would leave one of them with a revoked grant. The approach is a lease on the connection row
/// (`token_refresh_lease_owner` / `token_refresh_lease_until`, sql/028):
/// 1. A short transaction locks the row, re-reads it and decides: tokens no longer due, or no refresh token ->
///    done (the job completes in that transaction). Another refresher's live lease -> wait (poll every 100 ms, up
///    to `leaseWait`) and decide again, so a waiter picks up the tokens the holder stored. Else it takes the lease
///    for `leaseDuration` and commits: the row lock lasts only for this transaction.
/// 2. The OAuth call runs with no transaction and no lock open.
/// 3. A second short transaction stores the new tokens only if the row still holds the tokens the refresh started
///    from: its token generation (sql/067) is unchanged (compare-and-set; a key rotation reseals without changing
///    it). It then clears the lease (if still its own) and completes the job. If the tokens changed meanwhile
///    (another refresher took over an expired lease and stored, a sync's session refreshed, `reauthorize` stored a
///    new grant and cleared the lease, a wipe), nothing is written and `TokenRefreshConflict` is thrown (the job
///    retries and finds the stored tokens): a refresh of the old grant never overwrites a newer one.
/// A failed OAuth call releases the lease at once. `leaseDuration` (2 min) exceeds the client's request timeout
/// (30 s), so a live holder never loses its lease.
enum TokenRefresher {
    static let leaseDuration: Duration = .seconds(120)
    static let leaseWait: Duration = .seconds(60)

    /// - Parameters:
    ///   - complete: when given, the job completes in the same transaction as the token write (or as the decision
    ///     that no refresh is needed).
    ///   - force: decide by generation instead of expiry: refresh while the row still holds this token generation
    ///     (a session whose token is about to expire or was refused), and return a newer one as it is.
    /// - Returns: the tokens to use, whether this call refreshed them, and their token generation.
    static func refreshIfNeeded(
        connectionID: Int64, store: ConnectionStore, client: any AdPlatformClient, margin: Duration, now: Date,
        pool: PGPool, complete context: JobContext? = nil, force: Int64? = nil
    ) async throws -> (tokens: OAuthTokens?, refreshed: Bool, generation: Int64) {
        enum Decision: Sendable {
            case done(OAuthTokens?, generation: Int64)
            case wait
            case refresh(refreshToken: String, generation: Int64)
        }
        let owner = UUID().uuidString
        let releaseLease: PGQuery = """
            UPDATE nexcomet.ad_connections SET token_refresh_lease_owner = NULL, token_refresh_lease_until = NULL
             WHERE id = \(connectionID) AND token_refresh_lease_owner = \(owner)
            """
        let marginSeconds = Double(margin.components.seconds)
        let waitUntil = ContinuousClock.now + leaseWait
        while true {
            let decision: Decision = try await pool.withTransaction { c in
                let stored = try await store.load(connectionID, on: c, forUpdate: true)
                // Forced (a session's refresh): decided by the generation alone, so newer tokens stored meanwhile
                // are taken as they are, whatever the clock says of their expiry.
                let due =
                    force.map { stored.tokenGeneration == $0 }
                    ?? (stored.tokens?.accessTokenExpiresAt.map { $0.timeIntervalSince(now) < marginSeconds } == true)
                guard let tokens = stored.tokens, stored.status == "active", let refreshToken = tokens.refreshToken, due
                else {
                    if let context { try await context.complete(on: c) }
                    return .done(stored.tokens, generation: stored.tokenGeneration)
                }
                let row = try await c.query(
                    """
                    SELECT coalesce(token_refresh_lease_until > now(), false)
                      FROM nexcomet.ad_connections WHERE id = \(connectionID)
                    """
                ).first!
                if try row.decode(0, as: Bool.self) { return .wait }
                try await c.execute(
                    """
                    UPDATE nexcomet.ad_connections
                       SET token_refresh_lease_owner = \(owner),
                           token_refresh_lease_until = now() + make_interval(secs => \(Double(leaseDuration.components.seconds)))
                     WHERE id = \(connectionID)
                    """)
                return .refresh(refreshToken: refreshToken, generation: stored.tokenGeneration)
            }
            switch decision {
            case .done(let tokens, let generation):
                return (tokens, false, generation)
            case .wait:
                guard ContinuousClock.now < waitUntil else {
                    throw TokenRefreshConflict(
                        connectionID: connectionID, message: "another refresh still holds the connection's lease")
                }
                try await Task.sleep(for: .milliseconds(100))
            case .refresh(let refreshToken, let generation):
                var fresh: OAuthTokens
                do {
                    fresh = try await client.refreshTokens(refreshToken)
                } catch {
                    _ = try? await pool.execute(releaseLease)
                    throw error
                }
                if fresh.refreshToken == nil { fresh.refreshToken = refreshToken }
                let stored = fresh
                let written: Int64? = try await pool.withTransaction { c in
                    let next = try await store.saveRefreshedTokens(connectionID, stored, replacing: generation, on: c)
                    // Stored or not, our lease (if still ours) is released, so no one waits it out.
                    try await c.execute(releaseLease)
                    if next != nil, let context { try await context.complete(on: c) }
                    return next
                }
                guard let written else {
                    throw TokenRefreshConflict(
                        connectionID: connectionID,
                        message: "the connection's tokens changed during the refresh; the new tokens were not stored")
                }
                return (stored, true, written)
            }
        }
    }
}

/// A refresh could not proceed or its result could not be stored because another refresher holds or changed the
/// connection; retrying later is safe. Never contains token text.
public struct TokenRefreshConflict: Error, Sendable, CustomStringConvertible {
    public var connectionID: Int64
    public var message: String
    public var description: String { "connection \(connectionID): \(message)" }
}
