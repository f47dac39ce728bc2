import Foundation

/// The ad platforms NexJobs syncs; the raw value is the `platform` column of normalized rows.
public enum AdPlatform: String, Sendable, Hashable, Codable, CaseIterable {
    case tiktok
    case snapchat
}

/// The reporting level of a metrics row: one row per entity of that level per account-local day.
public enum ReportLevel: String, Sendable, Hashable, Codable, CaseIterable {
    case campaign
    case adGroup = "ad_group"
    case ad
}

/// OAuth tokens for one connection; `description` never shows the token text.
public struct OAuthTokens: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessToken: String
    /// Nil when the platform issued none (TikTok's long-lived advertiser tokens).
    public var refreshToken: String?
    /// When the access token stops working; nil when the platform gave no lifetime.
    public var accessTokenExpiresAt: Date?
    /// When the refresh token stops working, if the platform said so.
    public var refreshTokenExpiresAt: Date?
    /// Advertiser ids granted by the authorization (TikTok returns them with the token), as strings.
    public var grantedAccountIds: [String]
    /// Granted scope as the platform sent it (Snap: a space-separated string; TikTok: numbers joined by commas).
    public var scope: String?

    public init(
        accessToken: String, refreshToken: String? = nil, accessTokenExpiresAt: Date? = nil,
        refreshTokenExpiresAt: Date? = nil, grantedAccountIds: [String] = [], scope: String? = nil
    ) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.accessTokenExpiresAt = accessTokenExpiresAt
        self.refreshTokenExpiresAt = refreshTokenExpiresAt
        self.grantedAccountIds = grantedAccountIds
        self.scope = scope
    }

    public var description: String {
        "OAuthTokens(accessToken: <redacted>, refreshToken: \(refreshToken == nil ? "nil" : "<redacted>"), "
            + "expiresAt: \(accessTokenExpiresAt.map { "\($0)" } ?? "nil"), accounts: \(grantedAccountIds.count))"
    }
    public var debugDescription: String { description }
}

/// An advertiser (TikTok) or ad account (Snap) with the currency and IANA time zone its metrics are reported in.
public struct AdAccount: Sendable, Hashable {
    public var platform: AdPlatform
    public var id: String
    public var name: String
    /// ISO 4217 code, e.g. `USD`.
    public var currency: String
    /// IANA identifier, e.g. `America/Los_Angeles`; metrics dates are calendar days in this zone.
    public var timeZone: String
    /// Platform status text as sent (e.g. `STATUS_ENABLE`, `ACTIVE`).
    public var status: String?
    /// Snap organization id; nil for TikTok.
    public var organizationId: String?

    public init(
        platform: AdPlatform, id: String, name: String, currency: String, timeZone: String, status: String? = nil,
        organizationId: String? = nil
    ) {
        self.platform = platform
        self.id = id
        self.name = name
        self.currency = currency
        self.timeZone = timeZone
        self.status = status
        self.organizationId = organizationId
    }
}

/// One campaign, ad group / ad squad, or ad; `parentId` links an ad group to its campaign and an ad to its ad group.
public struct AdEntity: Sendable, Hashable {
    public var platform: AdPlatform
    public var accountId: String
    public var level: ReportLevel
    public var id: String
    public var name: String
    /// Campaign id for ad groups, ad group id for ads, nil for campaigns.
    public var parentId: String?
    /// Campaign id for ads (nil when the platform does not say), the campaign itself for campaigns.
    public var campaignId: String?
    /// Platform status text (TikTok `secondary_status`/`operation_status`, Snap `status`), e.g. paused or deleted.
    public var status: String
    /// Whether the platform reports the entity as deleted.
    public var isDeleted: Bool
    /// Last modification time text as the platform sent it.
    public var updatedAt: String?

    public init(
        platform: AdPlatform, accountId: String, level: ReportLevel, id: String, name: String, parentId: String?,
        campaignId: String?, status: String, isDeleted: Bool, updatedAt: String?
    ) {
        // Memberwise (`duplicates` pairs it with other configuration inits: alike in shape only).
        self.platform = platform
        self.accountId = accountId
        self.level = level
        self.id = id
        self.name = name
        self.parentId = parentId
        self.campaignId = campaignId
        self.status = status
        self.isDeleted = isDeleted
        self.updatedAt = updatedAt
    }
}

/// One normalized performance row: platform x account x level x entity x account-local day.
///
/// Money is `Decimal` in the account currency (Snap micro-currency already divided by 1,000,000); a metric the
/// platform left empty (`"-"`, absent) is nil, never zero.
public struct DailyMetric: Sendable, Hashable {
    public var platform: AdPlatform
    public var accountId: String
    public var level: ReportLevel
    public var entityId: String
    public var date: LocalDate
    public var currency: String
    public var spend: Decimal
    public var impressions: Int64?
    /// TikTok clicks; Snap swipe-ups.
    public var clicks: Int64?
    public var conversions: Decimal?
    public var conversionValue: Decimal?
    /// Whether the platform says the day's figures will not change any more: Snap's `finalized_data_end_time`
    /// (the day ends at or before it). nil when the platform does not say (TikTok): the writer then treats days
    /// older than the attribution lookback as final.
    public var isFinal: Bool?

    public init(
        platform: AdPlatform, accountId: String, level: ReportLevel, entityId: String, date: LocalDate,
        currency: String, spend: Decimal, impressions: Int64?, clicks: Int64?, conversions: Decimal?,
        conversionValue: Decimal?, isFinal: Bool? = nil
    ) {
        self.isFinal = isFinal
        self.platform = platform
        self.accountId = accountId
        self.level = level
        self.entityId = entityId
        self.date = date
        self.currency = currency
        self.spend = spend
        self.impressions = impressions
        self.clicks = clicks
        self.conversions = conversions
        self.conversionValue = conversionValue
    }
}
