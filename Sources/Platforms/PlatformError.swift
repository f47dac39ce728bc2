import Foundation

/// A classified ad-platform failure, safe to log: it names the endpoint path and API code, never a token or secret.
///
/// The `kind` tells the caller what to do: back off (`rateLimited`), retry later (`transient`), refresh then retry
/// (`accessTokenExpired`, which the clients already do once on their own), stop and ask the user to reconnect
/// (`reauthorizationRequired`), or fail for good (`permanent`, `malformedResponse`).
public struct PlatformError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is, which decides the retry strategy.
    public enum Kind: Sendable, Equatable {
        /// The platform throttled us (or our own shared limiter gave up waiting); `retryAfter` when known.
        case rateLimited(retryAfter: Duration?)
        /// Worth retrying with backoff: 5xx, platform system errors, timeouts, resets, truncated bodies.
        case transient
        /// The access token expired; refreshing it should fix the call.
        case accessTokenExpired
        /// The grant is no longer usable (revoked, invalid, refresh token expired, scope missing, logged out).
        case reauthorizationRequired
        /// Retrying cannot help: bad parameters, not found, forbidden.
        case permanent
        /// The response was not the documented shape (bad JSON, missing fields).
        case malformedResponse
    }

    public var kind: Kind
    public var platform: AdPlatform
    /// The API path (no host, no query string: query strings may carry the TikTok app secret).
    public var endpoint: String
    /// HTTP status when a response arrived.
    public var httpStatus: Int?
    /// The platform's own code: TikTok's numeric `code`, Snap's `error_code` or OAuth `error`.
    public var apiCode: String?
    /// Operator-facing explanation; scrubbed of the credentials the client knows.
    public var message: String

    public init(
        _ kind: Kind, platform: AdPlatform, endpoint: String, httpStatus: Int? = nil, apiCode: String? = nil,
        message: String
    ) {
        self.kind = kind
        self.platform = platform
        self.endpoint = endpoint
        self.httpStatus = httpStatus
        self.apiCode = apiCode
        self.message = message
    }

    public var description: String {
        var parts = ["\(platform.rawValue) \(kindName) on \(endpoint)"]
        if let httpStatus { parts.append("HTTP \(httpStatus)") }
        if let apiCode { parts.append("code \(apiCode)") }
        if case .rateLimited(let retryAfter?) = kind { parts.append("retry after \(retryAfter)") }
        return parts.joined(separator: ", ") + ": " + message
    }

    /// A short stable name of the kind, e.g. for metrics labels.
    public var kindName: String {
        switch kind {
        case .rateLimited: return "rate_limited"
        case .transient: return "transient"
        case .accessTokenExpired: return "access_token_expired"
        case .reauthorizationRequired: return "reauthorization_required"
        case .permanent: return "permanent"
        case .malformedResponse: return "malformed_response"
        }
    }
}

/// Maps platform answers to `PlatformError.Kind`; pure, so the tables are tested without I/O.
public enum ErrorClassifier {
    /// The class of a TikTok envelope `code` other than 0, or nil for 40067 (the caller halves its window) and 0.
    public static func tiktok(code: Int) -> PlatformError.Kind {
        switch code {
        case 40100, 40132, 40133, 61000: return .rateLimited(retryAfter: nil)
        case 40102: return .accessTokenExpired
        case 40103, 40104, 40105, 40107, 40114, 40130: return .reauthorizationRequired
        case 40200, 40201, 40202, 40700: return .transient
        case 50000, 50002, 60001: return .transient
        case 51000...51999: return .transient
        default:
            // Undocumented 5xxxx codes are server-side by TikTok's numbering; anything else is a request problem.
            if (50000...59999).contains(code) { return .transient }
            return .permanent
        }
    }

    /// The class of a Snap API HTTP status (non-2xx).
    ///
    /// A 401 is first taken as an expired token; the client refreshes once and a second 401 becomes
    /// `reauthorizationRequired`.
    public static func snap(status: Int) -> PlatformError.Kind {
        switch status {
        case 401: return .accessTokenExpired
        case 429: return .rateLimited(retryAfter: nil)
        case 408, 500...599: return .transient
        default: return .permanent
        }
    }

    /// The class of a failed OAuth token request (either platform), from its HTTP status and OAuth `error` code.
    public static func oauth(status: Int, error: String?) -> PlatformError.Kind {
        switch error {
        case "invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope", "access_denied":
            return .reauthorizationRequired
        default: break
        }
        switch status {
        case 429: return .rateLimited(retryAfter: nil)
        case 408, 500...599: return .transient
        case 400, 401, 403: return .reauthorizationRequired
        default: return .permanent
        }
    }

    /// A retry delay from `Retry-After` (seconds) or `X-Rate-Limit-Reset` (seconds from now, or an epoch time).
    public static func retryAfter(headers: [String: String], now: Date = Date()) -> Duration? {
        func value(_ name: String) -> String? {
            headers.first(where: { $0.key.caseInsensitiveCompare(name) == .orderedSame })?.value
                .trimmingCharacters(in: .whitespaces)
        }
        // A delay is at most one day: a header of 1e300, inf or nan must not trap the Int64 conversion.
        func delay(_ seconds: Double) -> Duration {
            .milliseconds(Int64((seconds.isFinite ? min(max(0, seconds), 86_400) : 86_400) * 1000))
        }
        if let text = value("Retry-After"), let seconds = Double(text), seconds >= 0 {
            return delay(seconds)
        }
        if let text = value("X-Rate-Limit-Reset"), let number = Double(text), number >= 0 {
            // Values this large are epoch seconds, not a delay.
            if number > 1_000_000_000 {
                return delay(number - now.timeIntervalSince1970)
            }
            return delay(number)
        }
        return nil
    }
}

/// Removes known secrets from text the platform sent back before it goes into an error message.
struct SecretScrubber: Sendable {
    var secrets: [String]

    func scrub(_ text: String) -> String {
        var result = text
        for secret in secrets where secret.count >= 4 {
            result = result.replacingOccurrences(of: secret, with: "<redacted>")
        }
        // Operators need the gist, not a 1 MB HTML error page.
        if result.count > 300 { result = String(result.prefix(300)) + "..." }
        return result
    }
}
