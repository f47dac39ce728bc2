import Foundation

/// The live OAuth tokens of one connection, shared by every call made for it.
///
/// Clients read the access token from here and, when the platform says it expired, refresh it here exactly once
/// for all concurrent callers: a caller whose token is already stale just picks up the new one. `onRefresh` lets
/// the owner persist new tokens (encrypted) before they are used.
public actor TokenSession {
    public private(set) var tokens: OAuthTokens
    private let onRefresh: @Sendable (OAuthTokens) async throws -> Void
    /// Replaces the client's platform refresh when set: the owner's own way to obtain new tokens (a refresh
    /// serialized across processes, which may also find tokens another process stored). It returns the tokens and
    /// whether it called the platform for them (only then is the refresh counted in `refreshCount`).
    private let refreshWith: (@Sendable (String) async throws -> (tokens: OAuthTokens, calledPlatform: Bool))?
    private var inFlight: Task<(tokens: OAuthTokens, calledPlatform: Bool), any Error>?
    /// Number of refreshes performed through this session (for tests and logs).
    public private(set) var refreshCount = 0
    /// When this session last refreshed its tokens; nil before the first refresh.
    public private(set) var lastRefreshAt: Date?
    /// Authorized API requests sent with this session's tokens, retries included (token refreshes are
    /// `refreshCount`). Sync runs record the sum as their API calls.
    public private(set) var requestCount = 0

    /// Responses to those requests by HTTP status class (`2xx` ... `5xx`; `error` when no response arrived).
    /// Sync runs record them (`sync_runs.api_calls_by_status`) for the `nexjobs_platform_api_calls_total` metric.
    public private(set) var responseClasses: [String: Int] = [:]

    /// Counts one API request about to be sent with this session's tokens.
    func countRequest() { requestCount += 1 }

    /// Counts the outcome of a request counted by `countRequest`: its HTTP status, or nil for a transport failure.
    func countResponse(status: Int?) {
        let key = status.map { (100...599).contains($0) ? "\($0 / 100)xx" : "other" } ?? "error"
        responseClasses[key, default: 0] += 1
    }

    /// Creates a session; `onRefresh` is awaited with the new tokens after each successful refresh. `refreshWith`,
    /// when given, is called with the refresh token instead of the client's platform refresh.
    public init(
        tokens: OAuthTokens, onRefresh: @escaping @Sendable (OAuthTokens) async throws -> Void = { _ in },
        refreshWith: (@Sendable (String) async throws -> (tokens: OAuthTokens, calledPlatform: Bool))? = nil
    ) {
        self.tokens = tokens
        self.refreshWith = refreshWith
        self.onRefresh = onRefresh
    }

    /// Refreshes the tokens unless `staleAccessToken` was already replaced, coalescing concurrent refreshes.
    ///
    /// - Parameters:
    ///   - staleAccessToken: the access token the caller just saw rejected (or about to expire).
    ///   - refresher: performs the platform refresh from a refresh token.
    /// - Returns: the tokens to use now.
    func refresh(
        replacing staleAccessToken: String,
        using refresher: @escaping @Sendable (String) async throws -> OAuthTokens
    ) async throws -> OAuthTokens {
        if tokens.accessToken != staleAccessToken { return tokens }
        if let inFlight { return try await inFlight.value.tokens }
        guard let refreshToken = tokens.refreshToken else {
            throw RefreshUnavailable()
        }
        let override = refreshWith
        let task = Task { () -> (tokens: OAuthTokens, calledPlatform: Bool) in
            if let override { return try await override(refreshToken) }
            return (try await refresher(refreshToken), true)
        }
        inFlight = task
        defer { inFlight = nil }
        let outcome = try await task.value
        var fresh = outcome.tokens
        // Snap may omit the refresh token on refresh: the old one stays valid.
        if fresh.refreshToken == nil { fresh.refreshToken = refreshToken }
        if fresh.grantedAccountIds.isEmpty { fresh.grantedAccountIds = tokens.grantedAccountIds }
        try await onRefresh(fresh)
        tokens = fresh
        if outcome.calledPlatform { refreshCount += 1 }
        lastRefreshAt = Date()
        return fresh
    }
}

/// Thrown by `TokenSession.refresh` when the connection holds no refresh token.
struct RefreshUnavailable: Error {}
