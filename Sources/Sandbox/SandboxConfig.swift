import Foundation

/// The shape of the sandbox's synthetic world; every default is documented on its property.
public struct SandboxConfig: Sendable {
    /// Seed of the world and of probabilistic faults (default 42): same seed, same world, byte for byte.
    public var seed: UInt64
    /// TikTok OAuth grants (default 3); auth codes `tiktok-auth-0` ...
    public var tiktokConnections: Int
    /// Snap OAuth grants (default 3), each with one organization; auth codes `snap-auth-0` ...
    public var snapConnections: Int
    /// Advertisers (TikTok) or ad accounts (Snap) per connection (default 1...3).
    public var accountsPerConnection: ClosedRange<Int>
    /// Campaigns per account (default 1...4); 0 gives empty accounts, large values test pagination.
    public var campaignsPerAccount: ClosedRange<Int>
    /// Ad groups / ad squads per campaign (default 1...3).
    public var adGroupsPerCampaign: ClosedRange<Int>
    /// Ads per ad group (default 1...3).
    public var adsPerAdGroup: ClosedRange<Int>
    /// Days of metric history up to and including each account's local today (default 120).
    public var days: Int
    /// Lifetime of Snap access tokens, returned as `expires_in` (default 1800 s, shortenable for tests).
    public var snapAccessTokenTTL: Duration
    /// The reference instant whose account-local dates are "today"; nil (the default) means the wall clock
    /// at `init`. The sandbox clock then only moves through `advanceDays` / `POST /_sandbox/clock`.
    public var today: Date?
    /// Requests per second one TikTok app may make (the app QPS of ad-apis.md A5: Basic 10, Advanced 20, Premium
    /// 30), counted over a rolling one-second window across every authorized API request (OAuth endpoints excluded);
    /// the request over it is answered HTTP 200 with code 40100. nil or 0 (the default): unlimited.
    public var tiktokAppQPS: Int?
    /// The same for Snap (ad-apis.md B5 publishes no number), answered HTTP 429 with `Retry-After`. nil or 0 (the
    /// default): unlimited.
    public var snapAppQPS: Int?
    /// Percent of ad accounts (0...100, default 0) that deliver nothing in their whole history: their entities
    /// exist, every report row is zero. Chosen per account by a hash of the seed and the account's position, so the same
    /// seed picks the same accounts. Models the dormant accounts whose report calls issue 14 found wasted.
    public var quietAccountPercent: Int

    /// Creates a configuration; every default is documented on its property.
    public init(
        seed: UInt64 = 42, tiktokConnections: Int = 3, snapConnections: Int = 3,
        accountsPerConnection: ClosedRange<Int> = 1...3, campaignsPerAccount: ClosedRange<Int> = 1...4,
        adGroupsPerCampaign: ClosedRange<Int> = 1...3, adsPerAdGroup: ClosedRange<Int> = 1...3, days: Int = 120,
        snapAccessTokenTTL: Duration = .seconds(1800), today: Date? = nil, tiktokAppQPS: Int? = nil,
        snapAppQPS: Int? = nil, quietAccountPercent: Int = 0
    ) {
        // Memberwise (`duplicates` pairs it with other configuration inits: alike in shape only).
        self.seed = seed
        self.tiktokConnections = tiktokConnections
        self.snapConnections = snapConnections
        self.accountsPerConnection = accountsPerConnection
        self.campaignsPerAccount = campaignsPerAccount
        self.adGroupsPerCampaign = adGroupsPerCampaign
        self.adsPerAdGroup = adsPerAdGroup
        self.days = days
        self.snapAccessTokenTTL = snapAccessTokenTTL
        self.today = today
        self.tiktokAppQPS = tiktokAppQPS
        self.snapAppQPS = snapAppQPS
        self.quietAccountPercent = quietAccountPercent
    }
}
