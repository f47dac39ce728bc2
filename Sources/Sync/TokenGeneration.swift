import Foundation
import Platforms
import Postgres

/// The token generation (sql/067) a job's platform requests use: the one it loaded, advanced by the refreshes its
/// session makes or takes. A refresh result is stored only while the row still holds the generation it started
/// from (``TokenRefresher``), and a grant error marks the connection `needs_reauth` only for this one, so tokens a
/// reauthorization (or another job) stored meanwhile are neither overwritten nor wiped.
actor TokenGeneration {
    private(set) var value: Int64

    init(_ value: Int64) { self.value = value }
}

extension TokenGeneration {
    /// Moves to a generation stored elsewhere (by the leased refresh of ``session(tokens:connectionID:client:store:pool:now:)``).
    func adopt(_ generation: Int64) { value = generation }

    /// A job's token session whose refreshes go through ``TokenRefresher``'s lease on the connection row: of several
    /// jobs (or processes) whose sessions need a refresh at once, one refreshes at the platform and stores; the
    /// others wait for its lease and take the tokens it stored. Without it each job refreshed with the same refresh
    /// token, and on a platform that retires a refresh token when used, a job whose refresh failed before the first
    /// one's store committed marked the connection `needs_reauth` and wiped the good tokens.
    ///
    /// A refresh asked for by the client (the token is about to expire, or the platform refused it) refreshes at the
    /// platform only while the row still holds this session's generation; a newer one (another job's refresh, a
    /// reauthorization) is adopted as it is.
    func session(
        tokens: OAuthTokens, connectionID: Int64, client: any AdPlatformClient, store: ConnectionStore, pool: PGPool,
        now: @escaping @Sendable () -> Date
    ) -> TokenSession {
        TokenSession(
            tokens: tokens,
            refreshWith: { [self] _ in
                let from = await value
                let r = try await TokenRefresher.refreshIfNeeded(
                    connectionID: connectionID, store: store, client: client, margin: .seconds(300), now: now(),
                    pool: pool, force: from)
                guard let fresh = r.tokens, r.refreshed || r.generation != from else {
                    // Not active any more (wiped, disconnected) or no refresh token: nothing newer to go on with.
                    throw TokenRefreshConflict(
                        connectionID: connectionID, message: "the connection has no tokens to refresh or take")
                }
                await adopt(r.generation)
                return (fresh, r.refreshed)
            })
    }
}
