import Foundation

/// Paces requests per platform and ad account before they are sent.
///
/// `acquire` returns when the caller may send one request for `key`, or throws a `PlatformError` of kind
/// `.rateLimited` when the wait would exceed the limiter's bound.
public protocol RequestRateLimiter: Sendable {
    func acquire(platform: AdPlatform, accountId: String?) async throws
}

/// A limiter that never waits (tests, tools, and calls that are not tied to an account).
public struct UnlimitedRateLimiter: RequestRateLimiter {
    public init() {}
    public func acquire(platform: AdPlatform, accountId: String?) async throws {}
}

/// Rate settings shared by the rate limiter implementations.
///
/// A request is paced under two keys at once: its ad account (`platform:<account id>`, ``requestsPerSecond``) and
/// the app it is sent as (`platform:app:<app id>`, ``appRequestsPerSecond``). It is sent only when both have a slot.
public struct RateLimitPolicy: Sendable {
    /// Requests per second allowed per platform+account, unless overridden. Default: 10 for both platforms (TikTok's
    /// basic app tier; Snap publishes no number).
    public var requestsPerSecond: [AdPlatform: Double]
    /// Requests per second allowed per app (all accounts and all processes of one app together); a platform missing
    /// here, or a rate of 0, is not limited per app.
    ///
    /// TikTok: default 10, the Basic tier of the app QPS (ad-apis.md A5: "Basic: 10/sec, Advanced: 20/sec,
    /// Premium: 30/sec"; over it TikTok answers HTTP 200 with code 40100 "... QPS limit ..."); raise it to 20 or 30
    /// for an Advanced or Premium app. Snap: default none (unlimited), since Snap publishes no numeric limit
    /// (ad-apis.md B5: only 429 with `X-Rate-Limit-*` and `Retry-After` when exceeded).
    public var appRequestsPerSecond: [AdPlatform: Double]
    /// The app id each platform's requests are sent as (TikTok `app_id`, Snap `client_id`), naming the app key
    /// `platform:app:<id>`. A platform missing here uses the key `platform:app`: one app per platform and deployment.
    public var appIds: [AdPlatform: String]
    /// Fraction of the rate kept in reserve so network jitter cannot push the platform's own per-second count over
    /// the limit. Default 0.1 (pace at 90 %). Applies to the account and the app rate alike.
    public var headroom: Double
    /// Longest a caller waits for its slot before `acquire` throws `rateLimited`. Default 30 s.
    public var maxWait: Duration

    public init(
        requestsPerSecond: [AdPlatform: Double] = [.tiktok: 10, .snapchat: 10],
        appRequestsPerSecond: [AdPlatform: Double] = [.tiktok: 10], appIds: [AdPlatform: String] = [:],
        headroom: Double = 0.1, maxWait: Duration = .seconds(30)
    ) {
        self.requestsPerSecond = requestsPerSecond
        self.appRequestsPerSecond = appRequestsPerSecond
        self.appIds = appIds
        self.headroom = headroom
        self.maxWait = maxWait
    }

    /// Time between two consecutive requests for one account on `platform`, or nil when unlimited.
    public func spacing(for platform: AdPlatform) -> Duration? {
        Self.spacing(rate: requestsPerSecond[platform], headroom: headroom)
    }

    /// Time between two consecutive requests of one app on `platform`, or nil when unlimited.
    public func appSpacing(for platform: AdPlatform) -> Duration? {
        Self.spacing(rate: appRequestsPerSecond[platform], headroom: headroom)
    }

    private static func spacing(rate: Double?, headroom: Double) -> Duration? {
        guard let rate, rate.isFinite, rate > 0 else { return nil }
        let effective = rate * max(0.01, min(1, 1 - headroom))
        // At most one hour between requests keeps the conversion far from Int64 overflow for any tiny rate.
        let micros = min((1_000_000 / effective).rounded(.up), 3_600_000_000)
        return .microseconds(Int64(micros))
    }

    /// The account key of `platform`: `tiktok:account:<id>`. Its own namespace, so that no account id (as a platform
    /// or a hostile API returns it, e.g. "app") can share a key, and with it a quota, with the app key.
    static func key(_ platform: AdPlatform, _ accountId: String) -> String {
        "\(platform.rawValue):account:\(accountId)"
    }

    /// The app key of `platform`: `tiktok:app:<app id>`, or `tiktok:app` when no app id is configured.
    func appKey(_ platform: AdPlatform) -> String {
        guard let id = appIds[platform], !id.isEmpty else { return "\(platform.rawValue):app" }
        return "\(platform.rawValue):app:\(id)"
    }

    /// Every key (with its spacing) a request for `accountId` needs a slot under (the app key only for a request tied
    /// to no account, such as advertiser discovery); empty when nothing limits it.
    func keys(_ platform: AdPlatform, _ accountId: String?) -> [(key: String, spacing: Duration)] {
        var out: [(key: String, spacing: Duration)] = []
        if let accountId, let s = spacing(for: platform) { out.append((Self.key(platform, accountId), s)) }
        if let s = appSpacing(for: platform) { out.append((appKey(platform), s)) }
        return out
    }
}

/// Spaces requests per key within one process (GCRA with no burst): each caller reserves the next slot free under
/// both its account key and its app key, and sleeps until it. Use `PostgresRateLimiter` when several processes share
/// an account or an app.
public actor InProcessRateLimiter: RequestRateLimiter {
    private let policy: RateLimitPolicy
    private let logger: PlatformLogger
    private var nextSlot: [String: ContinuousClock.Instant] = [:]

    public init(policy: RateLimitPolicy = RateLimitPolicy(), logger: PlatformLogger = .disabled) {
        self.policy = policy
        self.logger = logger
    }

    public func acquire(platform: AdPlatform, accountId: String?) async throws {
        let keys = policy.keys(platform, accountId)
        guard !keys.isEmpty else { return }
        let now = ContinuousClock.now
        // The slot is free under every key: the latest of now and each key's next slot.
        let slot = keys.reduce(now) { max($0, nextSlot[$1.key] ?? now) }
        let wait = slot - now
        let names = keys.map(\.key).joined(separator: ",")
        if wait > policy.maxWait {
            logger.log(.warning, "rate limit wait exceeds bound", ["key": names, "wait": "\(wait)"])
            throw PlatformError(
                .rateLimited(retryAfter: wait), platform: platform, endpoint: "client rate limiter",
                message:
                    "local rate limit for \(accountId.map { "account \($0)" } ?? "the app") would wait \(wait), more than \(policy.maxWait)"
            )
        }
        for (key, spacing) in keys { nextSlot[key] = slot + spacing }
        if wait > .zero {
            logger.log(wait >= .seconds(1) ? .info : .debug, "rate limit wait", ["key": names, "wait": "\(wait)"])
            try await Task.sleep(until: slot, clock: .continuous)
        }
    }
}
