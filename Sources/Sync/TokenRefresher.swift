import Foundation
import Platforms
import Postgres
import Queue

/// Refreshes a connection's tokens with the connection row locked, so concurrent jobs refresh it once.
///
/// TikTok rotates refresh tokens (the old one stops working), so two jobs refreshing with the same refresh token
/// would leave one of them with a revoked grant. Here the row is locked (`FOR UPDATE`), re-read, and refreshed only
/// if it still expires within `margin`; a job that waited for the lock picks up the tokens the other one stored.
enum TokenRefresher {
    /// - Parameter complete: when given, the job completes in the same transaction as the token write.
    /// - Returns: the tokens to use, and whether this call refreshed them.
    static func refreshIfNeeded(
        connectionID: Int64, store: ConnectionStore, client: any AdPlatformClient, margin: Duration, now: Date,
        pool: PGPool, complete context: JobContext? = nil
    ) async throws -> (tokens: OAuthTokens?, refreshed: Bool) {
        try await pool.withTransaction { c in
            let stored = try await store.load(connectionID, on: c, forUpdate: true)
            guard var tokens = stored.tokens, stored.status == "active" else {
                if let context { try await context.complete(on: c) }
                return (stored.tokens, false)
            }
            let marginSeconds = Double(margin.components.seconds)
            guard let expiry = tokens.accessTokenExpiresAt, expiry.timeIntervalSince(now) < marginSeconds,
                let refreshToken = tokens.refreshToken
            else {
                if let context { try await context.complete(on: c) }
                return (tokens, false)
            }
            var fresh = try await client.refreshTokens(refreshToken)
            if fresh.refreshToken == nil { fresh.refreshToken = refreshToken }
            try await store.saveTokens(connectionID, fresh, on: c)
            if let context { try await context.complete(on: c) }
            tokens = fresh
            return (tokens, true)
        }
    }
}
