import Foundation

/// The read-only operations a sync needs from an ad platform, implemented by `TikTokClient` and `SnapchatClient`.
///
/// Every list is complete (all pages fetched) and every failure is a `PlatformError`. Calls that take a
/// `TokenSession` refresh an expired access token once on their own and retry; a second rejection, or a rejection
/// the platform marks as revoked, becomes `.reauthorizationRequired`.
public protocol AdPlatformClient: Sendable {
    var platform: AdPlatform { get }

    /// Exchanges the authorization code from the OAuth callback for tokens.
    func exchangeAuthorizationCode(_ code: String) async throws -> OAuthTokens

    /// Obtains new tokens from a refresh token.
    func refreshTokens(_ refreshToken: String) async throws -> OAuthTokens

    /// All advertisers (TikTok) / ad accounts (Snap) the grant can read, with currency and IANA time zone.
    func adAccounts(session: TokenSession) async throws -> [AdAccount]

    /// All entities of `level` in the account, including paused and deleted ones.
    func entities(_ level: ReportLevel, account: AdAccount, session: TokenSession) async throws -> [AdEntity]

    /// Daily performance of every entity of `level` for the account-local days of `window`, split into as many
    /// requests as the platform's window limit needs.
    func dailyMetrics(
        _ level: ReportLevel, account: AdAccount, window: DateWindow, session: TokenSession
    ) async throws -> [DailyMetric]

    /// Revokes the grant behind `accessToken` at the platform, where the platform documents a revoke endpoint.
    /// Returns false when it has none (the default); true when the platform confirmed, or the token was already
    /// invalid there. Throws on failures worth retrying.
    func revokeAccessToken(_ accessToken: String) async throws -> Bool
    /// The account's own totals of spend, impressions and conversions over `window`, aggregated by the platform
    /// independently of the entity-level reports (reconciliation, issue 14).
    func accountTotals(account: AdAccount, window: DateWindow, session: TokenSession) async throws -> AccountTotals
}

extension AdPlatformClient {
    /// No revoke endpoint (Snap's Marketing API documents none).
    public func revokeAccessToken(_ accessToken: String) async throws -> Bool { false }
}

/// Spend, impressions and conversions summed over a window (the three that reconciliation compares), with clicks
/// (Snap swipes) and conversion value, asked in the same request so that ``isQuiet`` covers every stored metric.
public struct AccountTotals: Sendable, Equatable, CustomStringConvertible {
    public var spend: Decimal
    public var impressions: Int64
    public var conversions: Decimal
    public var clicks: Int64
    public var conversionValue: Decimal

    public init(
        spend: Decimal = 0, impressions: Int64 = 0, conversions: Decimal = 0, clicks: Int64 = 0,
        conversionValue: Decimal = 0
    ) {
        self.spend = spend
        self.impressions = impressions
        self.conversions = conversions
        self.clicks = clicks
        self.conversionValue = conversionValue
    }

    public var description: String { "spend \(spend), impressions \(impressions), conversions \(conversions)" }

    /// Every metric is zero: the account delivered nothing in the window.
    public var isQuiet: Bool {
        spend == 0 && impressions == 0 && conversions == 0 && clicks == 0 && conversionValue == 0
    }

    /// Spend, impressions and conversions agree (what reconciliation compares, issue 14).
    public func reconciles(with other: AccountTotals) -> Bool {
        spend == other.spend && impressions == other.impressions && conversions == other.conversions
    }

    /// Whether spend, impressions and conversions each lie between `lower` and `upper` (inclusive): stored sums
    /// read from reports made after the totals `lower` and before the totals `upper` agree with the platform at some
    /// instant in between, when the numbers only grew meanwhile (today's delivery, late conversions).
    public func lies(between lower: AccountTotals, and upper: AccountTotals) -> Bool {
        lower.spend <= spend && spend <= upper.spend && lower.impressions <= impressions
            && impressions <= upper.impressions && lower.conversions <= conversions && conversions <= upper.conversions
    }

    /// The totals of two disjoint windows (or of two parts of one answer) added. Counts saturate at the Int64
    /// bounds instead of trapping (they come from the platform's response).
    public static func + (a: AccountTotals, b: AccountTotals) -> AccountTotals {
        AccountTotals(
            spend: a.spend + b.spend, impressions: a.impressions.saturatingAdding(b.impressions),
            conversions: a.conversions + b.conversions, clicks: a.clicks.saturatingAdding(b.clicks),
            conversionValue: a.conversionValue + b.conversionValue)
    }

    public static func += (a: inout AccountTotals, b: AccountTotals) { a = a + b }
}

extension AdPlatformClient {
    /// All campaigns of the account, including paused and deleted ones.
    public func campaigns(account: AdAccount, session: TokenSession) async throws -> [AdEntity] {
        try await entities(.campaign, account: account, session: session)
    }

    /// All ad groups (TikTok) / ad squads (Snap) of the account, including paused and deleted ones.
    public func adGroups(account: AdAccount, session: TokenSession) async throws -> [AdEntity] {
        try await entities(.adGroup, account: account, session: session)
    }

    /// All ads of the account, including paused and deleted ones.
    public func ads(account: AdAccount, session: TokenSession) async throws -> [AdEntity] {
        try await entities(.ad, account: account, session: session)
    }
}

extension FixedWidthInteger {
    /// `self + other`, held at the type's bounds instead of trapping: counts summed from a platform's response
    /// (a hostile or broken answer must not kill the worker with a signal).
    public func saturatingAdding(_ other: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other < 0 ? .min : .max) : sum
    }
}
