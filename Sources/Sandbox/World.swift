import Foundation

/// Which API an entity or token belongs to.
public enum SandboxPlatform: String, Sendable, CaseIterable {
    case tiktok
    case snapchat
}

/// Entity level in the campaign hierarchy, named as in the normalized metrics schema.
public enum SandboxLevel: String, Sendable, CaseIterable {
    case campaign
    case adgroup
    case ad
}

/// Status of a synthetic entity; mapped to each platform's own vocabulary when served.
enum EntityStatus: Sendable {
    case active, paused, deleted
}

struct Ad: Sendable {
    let id: String
    let name: String
    let adGroupID: String
    let campaignID: String
    let status: EntityStatus
    /// Stable key feeding the metrics hash.
    let key: UInt64
    /// First day it can deliver, for ads created after the world was built (``Sandbox/addAd(account:)``).
    var createdDay: CivilDay? = nil
}

struct AdGroup: Sendable {
    let id: String
    let name: String
    let campaignID: String
    let status: EntityStatus
    let budgetCents: Int64
    var ads: [Ad]
}

struct Campaign: Sendable {
    let id: String
    let name: String
    let status: EntityStatus
    let objective: String
    let budgetCents: Int64
    var adGroups: [AdGroup]
}

struct Account: Sendable {
    let platform: SandboxPlatform
    let id: String
    let name: String
    let currency: String
    let timezoneID: String
    let timezone: TimeZone
    let connection: Int
    /// Snap only: the owning organization.
    let organizationID: String
    let createdUnix: Int
    /// Delivers nothing on any day (``SandboxConfig/quietAccountPercent``).
    var quiet = false
    var campaigns: [Campaign]

    var allAds: [Ad] { campaigns.flatMap { $0.adGroups.flatMap(\.ads) } }
    var allAdGroups: [AdGroup] { campaigns.flatMap(\.adGroups) }
}

struct Connection: Sendable {
    let platform: SandboxPlatform
    let index: Int
    let authCode: String
    /// Snap only.
    let organizationID: String
    let organizationName: String
    let userID: String
    let accountIDs: [String]
}

/// The immutable synthetic world built from a `SandboxConfig`.
struct World: Sendable {
    let config: SandboxConfig
    let connections: [Connection]
    var accounts: [String: Account]
    let accountOrder: [String]
    /// Entity id to owning account id, for every campaign, ad group and ad.
    var owner: [String: String]
    /// Entity id to level.
    var level: [String: SandboxLevel]
    /// The first day with metrics, per account.
    let firstDay: [String: CivilDay]
    /// Unix seconds of the initial "today" instant.
    let baseNow: Int

    static let currencies = ["USD", "EUR", "JPY", "GBP", "AUD", "CAD"]
    static let timezones = [
        "America/Los_Angeles", "Europe/Paris", "Asia/Tokyo", "America/New_York", "UTC", "Australia/Sydney",
    ]
    static let objectives = ["TRAFFIC", "CONVERSIONS", "REACH", "APP_PROMOTION", "VIDEO_VIEWS"]
    static let snapObjectives = ["WEB_CONVERSION", "AWARENESS", "APP_INSTALL", "ENGAGEMENT"]

    init(config: SandboxConfig) {
        self.config = config
        baseNow = Int((config.today ?? Date()).timeIntervalSince1970)
        var rng = SplitMix64(seed: config.seed)
        var connections: [Connection] = []
        var accounts: [String: Account] = [:]
        var order: [String] = []
        var owner: [String: String] = [:]
        var level: [String: SandboxLevel] = [:]
        var firstDay: [String: CivilDay] = [:]
        var usedIDs = Set<String>()

        func tiktokID() -> String {
            while true {
                // 19 digits, far above 2^53 (9007199254740992), below Int64.max.
                let id = String(6_900_000_000_000_000_000 + Int64(rng.next() % 1_000_000_000_000_000_00))
                if usedIDs.insert(id).inserted { return id }
            }
        }
        func pick(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &rng) }
        func status() -> EntityStatus {
            switch rng.next() % 10 {
            case 0, 1: return .paused
            case 2: return .deleted
            default: return .active
            }
        }

        var accountCounter = [SandboxPlatform.tiktok: 0, .snapchat: 0]
        for platform in SandboxPlatform.allCases {
            let count = platform == .tiktok ? config.tiktokConnections : config.snapConnections
            for i in 0..<count {
                let orgID = platform == .snapchat ? rng.uuid() : ""
                let userID = platform == .snapchat ? rng.uuid() : ""
                var ids: [String] = []
                for a in 0..<pick(config.accountsPerConnection) {
                    let n = accountCounter[platform]!
                    accountCounter[platform] = n + 1
                    let id = platform == .tiktok ? tiktokID() : rng.uuid()
                    let tzID = World.timezones[n % World.timezones.count]
                    let tz = TimeZone(identifier: tzID) ?? TimeZone(secondsFromGMT: 0)!
                    let label = platform == .tiktok ? "TikTok" : "Snap"
                    var account = Account(
                        platform: platform, id: id, name: "\(label) Advertiser \(i)-\(a)",
                        currency: World.currencies[(n * 5 + 1) % World.currencies.count], timezoneID: tzID,
                        timezone: tz, connection: i, organizationID: orgID,
                        createdUnix: baseNow - (config.days + 30 + Int(rng.next() % 300)) * 86_400, campaigns: [])
                    var adKey: UInt64 = UInt64(n) << 32 | (platform == .tiktok ? 0 : 1 << 31)
                    // A hash, not the generator: the rest of the world stays the same for every percentage.
                    account.quiet =
                        SplitMix64.hash(config.seed, 0x5155_4945_5400, adKey) % 100
                        < UInt64(max(0, min(100, config.quietAccountPercent)))
                    for c in 0..<pick(config.campaignsPerAccount) {
                        let cid = platform == .tiktok ? tiktokID() : rng.uuid()
                        var campaign = Campaign(
                            id: cid, name: "Campaign \(c + 1)", status: c == 0 ? .active : status(),
                            objective: platform == .tiktok
                                ? World.objectives[Int(rng.next() % 5)] : World.snapObjectives[Int(rng.next() % 4)],
                            budgetCents: Int64(5_000 + rng.next() % 50_000) * 100, adGroups: [])
                        owner[cid] = id
                        level[cid] = .campaign
                        for g in 0..<pick(config.adGroupsPerCampaign) {
                            let gid = platform == .tiktok ? tiktokID() : rng.uuid()
                            // The first ad group and ad of the first campaign stay active, so every account
                            // has something live to show.
                            let gStatus: EntityStatus =
                                campaign.status == .deleted ? .deleted : (c == 0 && g == 0 ? .active : status())
                            var group = AdGroup(
                                id: gid, name: "Ad group \(c + 1).\(g + 1)", campaignID: cid, status: gStatus,
                                budgetCents: Int64(2_000 + rng.next() % 20_000) * 100, ads: [])
                            owner[gid] = id
                            level[gid] = .adgroup
                            for d in 0..<pick(config.adsPerAdGroup) {
                                let aid = platform == .tiktok ? tiktokID() : rng.uuid()
                                adKey += 1
                                group.ads.append(
                                    Ad(
                                        id: aid, name: "Ad \(c + 1).\(g + 1).\(d + 1)", adGroupID: gid,
                                        campaignID: cid,
                                        status: gStatus == .deleted
                                            ? .deleted : (c == 0 && g == 0 && d == 0 ? .active : status()),
                                        key: adKey))
                                owner[aid] = id
                                level[aid] = .ad
                            }
                            campaign.adGroups.append(group)
                        }
                        account.campaigns.append(campaign)
                    }
                    let today = Zone.localDay(tz, at: baseNow)
                    firstDay[id] = today - (config.days - 1)
                    accounts[id] = account
                    order.append(id)
                    ids.append(id)
                }
                let code = platform == .tiktok ? "tiktok-auth-\(i)" : "snap-auth-\(i)"
                connections.append(
                    Connection(
                        platform: platform, index: i, authCode: code, organizationID: orgID,
                        organizationName: "Snap Org \(i)", userID: userID, accountIDs: ids))
            }
        }
        self.connections = connections
        self.accounts = accounts
        self.accountOrder = order
        self.owner = owner
        self.level = level
        self.firstDay = firstDay
    }

    func connection(_ platform: SandboxPlatform, _ index: Int) -> Connection? {
        connections.first { $0.platform == platform && $0.index == index }
    }

    func accounts(of platform: SandboxPlatform) -> [Account] {
        accountOrder.compactMap { accounts[$0] }.filter { $0.platform == platform }
    }
}
