import Foundation

/// A classified ad-platform failure, safe to log: it names the endpoint path and API code, never a token or secret.
///
/// The `kind` tells the caller what to do: back off (`rateLimited`), retry later (`transient`, `malformedResponse`),
/// refresh then retry (`accessTokenExpired`, which the clients already do once on their own), stop and ask the user
/// to reconnect (`reauthorizationRequired`), or fail for good (`permanent`).
///
/// A damaged response (a body that is not JSON, cut short, or JSON not in the documented shape) is first retried by
/// the client on the request itself (``TikTokConfiguration/responseTries``, ``SnapchatConfiguration/responseTries``);
/// only when every try was damaged is the error thrown, as `transient` or `malformedResponse`.
public struct PlatformError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is, which decides the retry strategy.
    public enum Kind: Sendable, Equatable {
        /// The platform throttled us (or our own shared limiter gave up waiting); `retryAfter` when known.
        case rateLimited(retryAfter: Duration?)
        /// Worth retrying with backoff: 5xx, platform system errors, timeouts, resets, and bodies that are cut short
        /// or are not JSON (a proxy's HTML page, a dropped connection), after the client's own request retries.
        case transient
        /// The access token expired; refreshing it should fix the call.
        case accessTokenExpired
        /// The grant is no longer usable (revoked, invalid, refresh token expired, scope missing, logged out).
        case reauthorizationRequired
        /// Retrying cannot help: a well-formed answer whose API code or HTTP status says the request is invalid (bad
        /// parameters, not found, forbidden).
        case permanent
        /// The response parsed as JSON but was not the documented shape (missing fields, wrong types), on every
        /// try of the request. Retried later like `transient`: a platform glitch, not proof the request is wrong.
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
    /// True when the response itself was damaged (not JSON, cut short): the client retries such a request at once.
    var damagedBody = false
    /// True for failures of an OAuth token POST: never retried on the request, since a refresh the platform did
    /// process (rotating the refresh token) but whose answer was lost cannot be replayed.
    var fromTokenRequest = false

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

    /// Whether the client tries the same request again before giving up: the body was damaged or not in the
    /// documented shape. A well-formed API error never is (its code is the platform's answer).
    var retriedOnRequest: Bool { !fromTokenRequest && (damagedBody || kind == .malformedResponse) }

    /// A short stable name of the kind, e.g. for metrics labels.
    /// A rate limit or a grant problem: whatever the request, the next one to the same account would meet it too,
    /// so a sync stops here (snooze, refresh, or re-authorization) instead of trying another request.
    public var stopsTheSync: Bool {
        switch kind {
        case .rateLimited, .accessTokenExpired, .reauthorizationRequired: return true
        case .transient, .permanent, .malformedResponse: return false
        }
    }

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
    /// The class of a TikTok envelope `code` other than 0 (40067, "query too large", is halved by the caller first).
    ///
    /// Codes and their handling from `shared/reference/ad-apis.md` A5 "Errors and limits" (TikTok's SDK
    /// `tiktok_code.py`): 40000/40002 invalid params and 40001/40003 permission are permanent; 401xx token codes need
    /// a refresh or re-authorization; 40100/40132/40133/61000 rate limits; 402xx/40700 task errors and 50000/50002/
    /// 51xxx/60001 system errors are retried. A code only classifies a well-formed envelope: a body that does not
    /// parse has no code and is a transient delivery fault (`PlatformError.unparseableBody`).
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

    /// The class of a Snap API HTTP status (non-2xx); statuses per ad-apis.md B5 (400, 401, 403, 404, 429, 500, 503).
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

extension PlatformError {
    /// The error for an HTTP 2xx body that does not parse as JSON: `transient`, since a complete answer from the
    /// platform is JSON by contract (TikTok: every response is the `{code, message, request_id, data}` envelope,
    /// ad-apis.md A2; Snap: every response carries `request_status`, ad-apis.md B2/B5), so a non-JSON or cut-short
    /// body is a delivery fault (proxy page, dropped connection, partial write), like a 5xx.
    ///
    /// The message names what was wrong and where (byte offsets, length, content type), never the body's content,
    /// which could echo a token.
    static func unparseableBody(
        _ error: JSONParseError, response: TransportResponse, platform: AdPlatform, endpoint: String
    ) -> PlatformError {
        let size = response.body.count
        var what: String
        if size == 0 {
            what = "returned an empty body instead of JSON"
        } else if error.offset >= size {
            what = "returned a body that is not JSON (truncated at byte \(size): the document ends early)"
        } else {
            what = "returned a body that is not JSON (\(error.reason) at byte \(error.offset) of \(size))"
        }
        if let type = response.header("Content-Type").map(safeHeaderValue), !type.isEmpty {
            what += ", Content-Type \(type)"
        }
        var failure = PlatformError(
            .transient, platform: platform, endpoint: endpoint, httpStatus: response.status, message: what)
        failure.damagedBody = true
        return failure
    }

    /// A header value reduced to visible ASCII, at most 60 characters (it goes into error messages).
    static func safeHeaderValue(_ value: String) -> String {
        String(String(value.unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7F }).prefix(60))
    }

    /// A transport failure (no response to classify) as a `transient` error; a body cut short, a connection lost
    /// mid-response or an unreadable response is marked damaged, so the client retries the request at once (the
    /// clients only retry GETs this way: token POSTs are not idempotent). Timeouts and refused connections are not:
    /// they are left to the job's retries.
    static func transport(_ error: any Error, platform: AdPlatform, endpoint: String) -> any Error {
        if error is CancellationError || error is PlatformError { return error }
        guard let transport = error as? TransportError else {
            return PlatformError(
                .transient, platform: platform, endpoint: endpoint, message: "network failure: \(type(of: error))")
        }
        var failure = PlatformError(
            .transient, platform: platform, endpoint: endpoint, message: "network failure: \(transport.description)")
        switch transport.reason {
        case .truncatedBody, .connectionLost, .invalidResponse: failure.damagedBody = true
        case .timedOut, .connectionFailed: failure.damagedBody = false
        }
        return failure
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
