import Foundation
import Platforms
import Postgres
import Privacy
import Queue

/// `refresh_token {connection_id}`: refreshes an active connection's tokens ahead of expiry (the scheduler enqueues
/// it when the access token expires within its margin) and stores them sealed, in the transaction that completes
/// the job. Tokens someone else already refreshed are left alone. A refused refresh marks the connection
/// `needs_reauth` with one notification.
public struct RefreshTokenHandler: JobHandler {
    public typealias Args = ConnectionJobArgs

    public static let kind = "refresh_token"
    public var timeout: Duration { .seconds(120) }
    let environment: SyncEnvironment

    public init(environment: SyncEnvironment) { self.environment = environment }

    public func run(_ args: Args, context: JobContext) async throws {
        let id = args.connectionID.value
        guard let (store, stored) = try await environment.connectionForPlatformCall(id, context: context) else {
            return
        }
        let policy = ErrorPolicy(
            context: context, store: store, connectionID: id, organizationID: stored.organizationID,
            platform: stored.platform, tokenGeneration: stored.tokenGeneration, session: nil,
            defaultSnooze: environment.settings.rateLimitSnooze)
        guard stored.tokens?.refreshToken != nil else {
            // Long-lived grants (TikTok advertiser tokens) have no refresh token: fine until the access token expires.
            guard let expiry = stored.tokens?.accessTokenExpiresAt, expiry <= environment.settings.now() else { return }
            try await policy.markNeedsReauth(
                reason: "the access token expired and the connection holds no refresh token")
            throw JobDiscard("connection \(id) holds no refresh token; re-authorization required")
        }
        let client = try environment.client(stored.platform, pool: context.pool)
        do {
            let refreshed = try await TokenRefresher.refreshIfNeeded(
                connectionID: id, store: store, client: client, margin: environment.settings.refreshMargin,
                now: environment.settings.now(), pool: context.pool, complete: context
            ).refreshed
            context.logger.info("token refresh", ("connection", "\(id)"), ("refreshed", "\(refreshed)"))
        } catch let e as PlatformError {
            try await policy.fail(e)
        }
    }
}
