import Foundation
import Postgres

/// Paces requests per platform+account and per app across every process sharing one PostgreSQL database.
///
/// Each `acquire` reserves one slot under both of the request's keys (its account and its app, see
/// `RateLimitPolicy`) with one atomic statement (`nexjobs.rate_limit_reserve_all`, from migration
/// `051_rate_limit_app.sql`) and sleeps until it, so ten workers on one advertiser together send at most the account
/// rate, and any number of workers on any accounts of one app together send at most the app rate. Slots are spaced
/// evenly (no burst) at the rate less `RateLimitPolicy.headroom`. When the wait would exceed
/// `RateLimitPolicy.maxWait`, no slot is taken under any key and `acquire` throws `PlatformError` `.rateLimited`.
/// Waits of a second or more are logged at info, shorter ones at debug.
public struct PostgresRateLimiter: RequestRateLimiter {
    private let pool: PGPool
    private let policy: RateLimitPolicy
    private let logger: PlatformLogger

    public init(pool: PGPool, policy: RateLimitPolicy = RateLimitPolicy(), logger: PlatformLogger = .disabled) {
        self.pool = pool
        self.policy = policy
        self.logger = logger
    }

    public func acquire(platform: AdPlatform, accountId: String?) async throws {
        let keys = policy.keys(platform, accountId)
        guard !keys.isEmpty else { return }
        let names = keys.map(\.key)
        let spacings = keys.map { $0.spacing.microsecondsSaturating }
        let maxWaitMicros = policy.maxWait.microsecondsSaturating
        let waitMicros: Int64?
        do {
            let rows = try await pool.query(
                "SELECT nexjobs.rate_limit_reserve_all(\(names)::text[], \(spacings)::bigint[], \(maxWaitMicros))")
            waitMicros = try rows.first?.decode(0, as: Int64?.self)
        } catch let error as CancellationError {
            throw error
        } catch {
            throw PlatformError(
                .transient, platform: platform, endpoint: "client rate limiter",
                message: "rate limit reservation failed for \(accountId.map { "account \($0)" } ?? "the app"): \(error)"
            )
        }
        let keyList = names.joined(separator: ",")
        guard let waitMicros else {
            logger.log(.warning, "rate limit wait exceeds bound", ["key": keyList, "max_wait": "\(policy.maxWait)"])
            throw PlatformError(
                .rateLimited(retryAfter: policy.maxWait), platform: platform, endpoint: "client rate limiter",
                message:
                    "shared rate limit for \(accountId.map { "account \($0)" } ?? "the app") or its app is booked beyond \(policy.maxWait)"
            )
        }
        guard waitMicros > 0 else { return }
        let wait = Duration.microseconds(waitMicros)
        logger.log(wait >= .seconds(1) ? .info : .debug, "rate limit wait", ["key": keyList, "wait": "\(wait)"])
        try await Task.sleep(for: wait)
    }
}
