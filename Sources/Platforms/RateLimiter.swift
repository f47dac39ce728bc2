import Foundation

/// Paces requests per platform and ad account before they are sent.
///
/// `acquire` returns when the caller may send one request for `key`, or throws a `PlatformError` of kind
/// `.rateLimited` when the wait would exceed the limiter's bound.
public protocol RequestRateLimiter: Sendable {
    func acquire(platform: AdPlatform, accountId: String) async throws
}

/// A limiter that never waits (tests, tools, and calls that are not tied to an account).
public struct UnlimitedRateLimiter: RequestRateLimiter {
    public init() {}
    public func acquire(platform: AdPlatform, accountId: String) async throws {}
}

/// Rate settings shared by the rate limiter implementations.
public struct RateLimitPolicy: Sendable {
    /// Requests per second allowed per platform+account, unless overridden. Default: 10 for both platforms (TikTok's
    /// basic app tier; Snap publishes no number).
    public var requestsPerSecond: [AdPlatform: Double]
    /// Fraction of the rate kept in reserve so network jitter cannot push the platform's own per-second count over
    /// the limit. Default 0.1 (pace at 90 %).
    public var headroom: Double
    /// Longest a caller waits for its slot before `acquire` throws `rateLimited`. Default 30 s.
    public var maxWait: Duration

    public init(
        requestsPerSecond: [AdPlatform: Double] = [.tiktok: 10, .snapchat: 10], headroom: Double = 0.1,
        maxWait: Duration = .seconds(30)
    ) {
        self.requestsPerSecond = requestsPerSecond
        self.headroom = headroom
        self.maxWait = maxWait
    }

    /// Time between two consecutive requests for one key on `platform`, or nil when unlimited.
    public func spacing(for platform: AdPlatform) -> Duration? {
        guard let rate = requestsPerSecond[platform], rate > 0 else { return nil }
        let effective = rate * max(0.01, 1 - headroom)
        return .microseconds(Int64((1_000_000 / effective).rounded(.up)))
    }

    static func key(_ platform: AdPlatform, _ accountId: String) -> String { "\(platform.rawValue):\(accountId)" }
}

/// Spaces requests per key within one process (GCRA with no burst): each caller reserves the next free slot and
/// sleeps until it. Use `PostgresRateLimiter` when several processes share an account.
public actor InProcessRateLimiter: RequestRateLimiter {
    private let policy: RateLimitPolicy
    private let logger: PlatformLogger
    private var nextSlot: [String: ContinuousClock.Instant] = [:]

    public init(policy: RateLimitPolicy = RateLimitPolicy(), logger: PlatformLogger = .disabled) {
        self.policy = policy
        self.logger = logger
    }

    public func acquire(platform: AdPlatform, accountId: String) async throws {
        guard let spacing = policy.spacing(for: platform) else { return }
        let key = RateLimitPolicy.key(platform, accountId)
        let now = ContinuousClock.now
        let slot = max(nextSlot[key] ?? now, now)
        let wait = slot - now
        if wait > policy.maxWait {
            logger.log(.warning, "rate limit wait exceeds bound", ["key": key, "wait": "\(wait)"])
            throw PlatformError(
                .rateLimited(retryAfter: wait), platform: platform, endpoint: "client rate limiter",
                message: "local rate limit for account \(accountId) would wait \(wait), more than \(policy.maxWait)")
        }
        nextSlot[key] = slot + spacing
        if wait > .zero {
            logger.log(wait >= .seconds(1) ? .info : .debug, "rate limit wait", ["key": key, "wait": "\(wait)"])
            try await Task.sleep(until: slot, clock: .continuous)
        }
    }
}
