import Foundation
import Platforms
import Postgres

/// Why the sync handlers cannot run in this process: configuration is missing or invalid.
///
/// Handlers turn it into a failed job with this message (no retries: a restart with the right environment is
/// needed). The message names variables, never their values.
public struct SyncConfigurationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "sync configuration: \(message)" }
}

/// Builds the platform client a job uses, given the job's database pool (for the shared rate limiter).
public struct PlatformClientProvider: Sendable {
    private let make: @Sendable (AdPlatform, PGPool) throws -> any AdPlatformClient

    /// - Parameter make: returns the client for a platform, or throws ``SyncConfigurationError``.
    public init(_ make: @escaping @Sendable (AdPlatform, PGPool) throws -> any AdPlatformClient) {
        self.make = make
    }

    /// The client for `platform`.
    public func client(for platform: AdPlatform, pool: PGPool) throws -> any AdPlatformClient {
        try make(platform, pool)
    }

    /// Clients configured from environment variables, rate limited through PostgreSQL.
    ///
    /// TikTok: `NEXJOBS_TIKTOK_APP_ID`, `NEXJOBS_TIKTOK_SECRET` (required), `NEXJOBS_TIKTOK_BASE_URL`.
    /// Snapchat: `NEXJOBS_SNAP_CLIENT_ID`, `NEXJOBS_SNAP_CLIENT_SECRET` (required), `NEXJOBS_SNAP_API_BASE_URL`,
    /// `NEXJOBS_SNAP_TOKEN_URL`, `NEXJOBS_SNAP_REDIRECT_URI`. Base URLs default to the production hosts.
    /// `NEXJOBS_RATE_LIMIT_RPS` overrides the per-account request rate of both platforms (default 10).
    /// `NEXJOBS_RATE_LIMIT_APP_RPS_TIKTOK` / `NEXJOBS_RATE_LIMIT_APP_RPS_SNAPCHAT` set the per-app rate (all workers
    /// and accounts of one app together; 0 = unlimited; defaults: TikTok 10, Snap unlimited, see
    /// `RateLimitPolicy.appRequestsPerSecond`). The app key is `tiktok:app:<NEXJOBS_TIKTOK_APP_ID>` and
    /// `snapchat:app:<NEXJOBS_SNAP_CLIENT_ID>`. Values outside `SyncSettings.checkEnvironment`'s ranges keep the
    /// defaults here (the processes refuse to start with them).
    /// Missing variables are reported when a job needs the client, so noop-only workers start fine.
    public static func fromEnvironment(
        _ env: [String: String], logger: PlatformLogger = .disabled
    ) -> PlatformClientProvider {
        var policy = RateLimitPolicy()
        if let rps = try? SyncSettings.accountRate(env) {
            policy.requestsPerSecond = [.tiktok: rps, .snapchat: rps]
        }
        for (platform, name) in SyncSettings.appRateVariables {
            if let rps = try? SyncSettings.appRate(env, name) { policy.appRequestsPerSecond[platform] = rps }
        }
        let rates = policy
        return PlatformClientProvider { platform, pool in
            func required(_ name: String) throws -> String {
                guard let v = env[name], !v.isEmpty else {
                    throw SyncConfigurationError("\(name) is not set (needed for \(platform.rawValue) jobs)")
                }
                return v
            }
            func url(_ name: String) throws -> URL? {
                guard let v = env[name], !v.isEmpty else { return nil }
                guard let u = URL(string: v), u.scheme != nil else {
                    throw SyncConfigurationError("\(name) is not an absolute URL")
                }
                return u
            }
            var rates = rates
            switch platform {
            case .tiktok:
                var config = TikTokConfiguration(
                    appId: try required("NEXJOBS_TIKTOK_APP_ID"), secret: try required("NEXJOBS_TIKTOK_SECRET"))
                if let base = try url("NEXJOBS_TIKTOK_BASE_URL") { config.baseURL = base }
                rates.appIds[.tiktok] = config.appId
                let limiter = PostgresRateLimiter(pool: pool, policy: rates, logger: logger)
                return TikTokClient(configuration: config, rateLimiter: limiter, logger: logger)
            case .snapchat:
                var config = SnapchatConfiguration(
                    clientId: try required("NEXJOBS_SNAP_CLIENT_ID"),
                    clientSecret: try required("NEXJOBS_SNAP_CLIENT_SECRET"),
                    redirectURI: env["NEXJOBS_SNAP_REDIRECT_URI"] ?? "")
                if let base = try url("NEXJOBS_SNAP_API_BASE_URL") { config.apiBaseURL = base }
                if let token = try url("NEXJOBS_SNAP_TOKEN_URL") { config.tokenURL = token }
                rates.appIds[.snapchat] = config.clientId
                let limiter = PostgresRateLimiter(pool: pool, policy: rates, logger: logger)
                return SnapchatClient(configuration: config, rateLimiter: limiter, logger: logger)
            }
        }
    }
}
