import Foundation

/// An advertiser (TikTok) or ad account (Snap) of the synthetic world.
public struct SandboxAccountInfo: Sendable, Equatable {
    public var platform: SandboxPlatform
    public var id: String
    public var name: String
    public var currency: String
    /// IANA time zone, e.g. `America/Los_Angeles`.
    public var timezone: String
    /// Index of the owning connection.
    public var connection: Int
    /// Snap only (empty for TikTok).
    public var organizationID: String
    /// The account-local date the sandbox clock is on, `YYYY-MM-DD`.
    public var today: String
    /// The first date with metrics, `YYYY-MM-DD`.
    public var firstDay: String
}

/// A campaign, ad group / ad squad or ad of the synthetic world.
public struct SandboxEntity: Sendable, Equatable {
    public var level: SandboxLevel
    public var id: String
    public var name: String
    /// Campaign id for ad groups, ad group id for ads, nil for campaigns.
    public var parentID: String?
    /// `active`, `paused` or `deleted` (Snap serves deleted as paused; TikTok hides them by default).
    public var status: String
}

extension Sandbox {
    /// Every account of the world, TikTok first, in creation order.
    public func accounts(platform: SandboxPlatform? = nil) -> [SandboxAccountInfo] {
        world.accountOrder.compactMap { world.accounts[$0] }.filter { platform == nil || $0.platform == platform }
            .map { a in
                SandboxAccountInfo(
                    platform: a.platform, id: a.id, name: a.name, currency: a.currency, timezone: a.timezoneID,
                    connection: a.connection, organizationID: a.organizationID, today: localToday(a).description,
                    firstDay: world.firstDay[a.id]!.description)
            }
    }

    /// The hierarchy of one account in serving order (campaigns, then ad groups, then ads), deleted included.
    public func entities(account: String, level: SandboxLevel? = nil) -> [SandboxEntity] {
        guard let a = world.accounts[account] else { return [] }
        func status(_ s: EntityStatus) -> String {
            switch s {
            case .active: return "active"
            case .paused: return "paused"
            case .deleted: return "deleted"
            }
        }
        var out: [SandboxEntity] = []
        if level == nil || level == .campaign {
            out += a.campaigns.map {
                SandboxEntity(level: .campaign, id: $0.id, name: $0.name, parentID: nil, status: status($0.status))
            }
        }
        if level == nil || level == .adgroup {
            out += a.allAdGroups.map {
                SandboxEntity(
                    level: .adgroup, id: $0.id, name: $0.name, parentID: $0.campaignID, status: status($0.status))
            }
        }
        if level == nil || level == .ad {
            out += a.allAds.map {
                SandboxEntity(level: .ad, id: $0.id, name: $0.name, parentID: $0.adGroupID, status: status($0.status))
            }
        }
        return out
    }
}
