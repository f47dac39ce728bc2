import Foundation
import HTTP
import Synchronization

/// A value or the error response to send instead.
enum Answer<Value> {
    case success(Value)
    case failure(HTTPResponse)
}

/// One row of the sandbox's ground truth: what a correct sync must have stored for one entity and day.
/// One served report request (TikTok `report/integrated/get/`, Snap `/stats`).
public struct ReportRequest: Sendable, Equatable {
    public var platform: SandboxPlatform
    public var accountID: String
    /// TikTok `data_level` (e.g. `AUCTION_AD`); Snap `breakdown` (or `none`).
    public var level: String
    /// `DAY` (TikTok with `stat_time_day`, Snap `granularity=DAY`) or `TOTAL` (TikTok without a time dimension:
    /// one row per id for the whole range; Snap `granularity=TOTAL`).
    public var granularity: String
    /// First and last account-local day asked for, `YYYY-MM-DD`.
    public var first: String
    public var last: String
}

public struct TruthRow: Sendable, Equatable {
    public var platform: SandboxPlatform
    public var accountID: String
    public var level: SandboxLevel
    public var entityID: String
    /// Account-local date, `YYYY-MM-DD`.
    public var date: String
    public var currency: String
    public var spend: Decimal
    public var impressions: Int64
    /// TikTok clicks, Snap swipes.
    public var clicks: Int64
    public var conversions: Int64
    public var conversionValue: Decimal
}

/// Sums over every day and ad of one account (the account level of the truth).
public struct AccountTotal: Sendable, Equatable {
    public var platform: SandboxPlatform
    public var accountID: String
    public var currency: String
    public var spend: Decimal
    public var impressions: Int64
    public var clicks: Int64
    public var conversions: Int64
    public var conversionValue: Decimal
}

/// How many API requests for one account arrived within one wall-clock second.
public struct RequestCount: Sendable, Equatable {
    public var platform: SandboxPlatform
    public var accountID: String
    /// Unix seconds.
    public var second: Int
    public var count: Int
}

/// One OAuth grant of the synthetic world, with the demo tokens issued for it at start.
public struct SandboxConnectionInfo: Sendable, Equatable {
    public var platform: SandboxPlatform
    public var index: Int
    public var authCode: String
    public var accessToken: String
    public var refreshToken: String
    /// Advertiser ids (TikTok) or ad account ids (Snap) the grant covers.
    public var accountIDs: [String]
    /// Snap only (empty for TikTok).
    public var organizationID: String
}

/// A local fake of the TikTok Marketing API v1.3 and the Snap Marketing API v1, with control endpoints.
///
/// See `Sources/Sandbox/README.md` for the world, the tokens, the control endpoints and the faults.
/// Everything is deterministic from `SandboxConfig.seed`, except Snap token expiry (wall clock) and the
/// per-second request counts.
public final class Sandbox: Sendable {
    enum TokenKind: Sendable {
        case access, refresh
    }

    struct Token: Sendable {
        let platform: SandboxPlatform
        let connection: Int
        let kind: TokenKind
        /// Wall-clock expiry (Snap access tokens); nil never expires.
        var expiresAt: Date?
        var revoked = false
    }

    struct State: Sendable {
        var tokens: [String: Token] = [:]
        /// Grants revoked through a platform's revoke endpoint, in order.
        var revokedGrants: [SandboxRevocation] = []
        var generations: [String: Int] = [:]
        var faults: FaultEngine
        var counts: [String: [Int: Int]] = [:]
        var dayOffset = 0
        var requestSeq = 0
        var server: HTTPServer?
        var port = 0
        var demo: [SandboxConnectionInfo] = []
        var reportLog: [ReportRequest] = []
        /// Account id to (spend cents added to its account-level totals, remaining times; nil: always).
        var totalSkew: [String: (cents: Int64, times: Int?)] = [:]
        /// Accounts whose today grows with every report request (``Sandbox/setLiveToday(account:step:)``).
        var liveToday: [String: (step: Int64, added: Int64)] = [:]
        /// Ads the entity lists leave out (``Sandbox/hideFromLists(ad:_:)``); their reports are unchanged.
        var hiddenFromLists: Set<String> = []
        /// Per-app QPS limits (absent: unlimited) and their rolling windows and refusal counts.
        var appQPS: [SandboxPlatform: Int] = [:]
        var appWindows: [SandboxPlatform: AppQPSWindow] = [:]
        var appRefusals: [SandboxPlatform: Int] = [:]
    }

    let config: SandboxConfig
    /// The world; mutable only through ``addAd(account:)`` (an entity created mid-sync).
    let worldBox: Mutex<World>
    var world: World { worldBox.withLock { $0 } }
    let state: Mutex<State>

    /// Builds the world from `config`; nothing listens until `start`.
    public init(config: SandboxConfig = .init()) {
        self.config = config
        let world = World(config: config)
        self.worldBox = Mutex(world)
        self.state = Mutex(State(faults: FaultEngine(seed: config.seed)))
        var demo: [SandboxConnectionInfo] = []
        for c in world.connections {
            let (access, refresh) = issueTokens(c.platform, c.index)
            demo.append(
                SandboxConnectionInfo(
                    platform: c.platform, index: c.index, authCode: c.authCode, accessToken: access,
                    refreshToken: refresh, accountIDs: c.accountIDs, organizationID: c.organizationID))
        }
        state.withLock {
            $0.demo = demo
            if let q = config.tiktokAppQPS, q > 0 { $0.appQPS[.tiktok] = min(q, Sandbox.appQPSRange.upperBound) }
            if let q = config.snapAppQPS, q > 0 { $0.appQPS[.snapchat] = min(q, Sandbox.appQPSRange.upperBound) }
        }
    }

    /// Starts serving both APIs and the control endpoints; returns the bound port (0 picks a free one).
    @discardableResult
    public func start(host: String = "127.0.0.1", port: Int = 0) throws -> Int {
        let router = Router()
        registerTikTok(router)
        registerSnap(router)
        registerControl(router)
        let server = HTTPServer(host: host, port: port, handler: router.handle)
        let bound = try server.start()
        state.withLock {
            $0.server = server
            $0.port = bound
        }
        return bound
    }

    /// Stops serving (in-flight requests finish first).
    public func stop() async {
        // Dropping the server breaks the sandbox -> server -> router -> handler -> sandbox cycle.
        let server = state.withLock { s -> HTTPServer? in
            defer { s.server = nil }
            return s.server
        }
        await server?.stop(grace: .seconds(2))
    }

    /// `http://127.0.0.1:PORT` once started.
    public var baseURL: String { "http://127.0.0.1:\(state.withLock { $0.port })" }
    /// TikTok base URL to configure clients with (ends with `/`).
    public var tiktokBaseURL: String { baseURL + "/open_api/v1.3/" }
    /// Snap API base URL to configure clients with (ends with `/`).
    public var snapAPIBaseURL: String { baseURL + "/v1/" }
    /// Snap OAuth token URL.
    public var snapOAuthURL: String { baseURL + "/login/oauth2/access_token" }

    // MARK: In-process control (the same as the `/_sandbox/` endpoints)

    /// Replaces the fault configuration.
    public func setFaults(_ faults: FaultConfig) {
        state.withLock { $0.faults.config = faults }
    }

    /// The current fault configuration (rule counts show what is left).
    public func faults() -> FaultConfig {
        state.withLock { $0.faults.config }
    }

    /// The OAuth grants with their demo tokens.
    public func connections() -> [SandboxConnectionInfo] {
        state.withLock { $0.demo }
    }

    /// Grants revoked through a revoke endpoint (TikTok `oauth2/revoke_token/`), oldest first.
    public func revocations() -> [SandboxRevocation] {
        state.withLock { $0.revokedGrants }
    }

    /// Revokes one token (access or refresh); false when unknown.
    @discardableResult
    public func revoke(token: String) -> Bool {
        state.withLock { s in
            guard s.tokens[token] != nil else { return false }
            s.tokens[token]!.revoked = true
            return true
        }
    }

    /// Revokes every token of a connection, as when the user removes the app; new auth-code exchanges work.
    public func revokeConnection(_ platform: SandboxPlatform, _ index: Int) {
        state.withLock { s in
            for (k, t) in s.tokens where t.platform == platform && t.connection == index {
                s.tokens[k]!.revoked = true
            }
        }
    }

    /// Makes the Snap access tokens of one connection (or all, when nil) expire now.
    public func expireSnapTokens(connection: Int? = nil) {
        let now = Date()
        state.withLock { s in
            for (k, t) in s.tokens where t.platform == .snapchat && t.kind == .access {
                if connection == nil || t.connection == connection { s.tokens[k]!.expiresAt = now }
            }
        }
    }

    /// How far the sandbox clock may move from its start, in days, in total and per call: -36500...36500.
    public static let clockDays: ClosedRange<Int> = -36_500...36_500

    /// Moves the sandbox clock by whole days: new days get metrics, recent days restate their conversions.
    /// The total offset stays in `clockDays`: a move past it is ignored (see `tryAdvanceDays`).
    public func advanceDays(_ days: Int) {
        _ = tryAdvanceDays(days)
    }

    /// Moves the clock unless the total offset would leave `clockDays`; returns whether it moved.
    @discardableResult
    public func tryAdvanceDays(_ days: Int) -> Bool {
        guard Sandbox.clockDays.contains(days) else { return false }
        return state.withLock { s in
            guard Sandbox.clockDays.contains(s.dayOffset + days) else { return false }
            s.dayOffset += days
            return true
        }
    }

    /// The ground truth as the report endpoints serve it right now (entity-days with any non-zero metric).
    /// - Parameters: filters; nil matches all. Dates are `YYYY-MM-DD`, inclusive, account-local.
    public func groundTruth(
        platform: SandboxPlatform? = nil, account: String? = nil, from: String? = nil, to: String? = nil
    ) -> [TruthRow] {
        let fromDay = from.flatMap { CivilDay(parsing: $0[...]) }
        let toDay = to.flatMap { CivilDay(parsing: $0[...]) }
        var rows: [TruthRow] = []
        for acct in world.accountOrder.compactMap({ world.accounts[$0] }) {
            if let platform, acct.platform != platform { continue }
            if let account, acct.id != account { continue }
            let today = localToday(acct)
            let first = world.firstDay[acct.id]!
            let lo = max(first, fromDay ?? first)
            let hi = min(today, toDay ?? today)
            guard lo <= hi else { continue }
            for dayNumber in lo.day...hi.day {
                let day = CivilDay(day: dayNumber)
                for campaign in acct.campaigns {
                    var campaignSum = DayMetrics()
                    var groupRows: [TruthRow] = []
                    for group in campaign.adGroups {
                        var groupSum = DayMetrics()
                        for ad in group.ads {
                            let m = metrics(acct, ad, day)
                            groupSum += m
                            if !m.isZero { rows.append(truthRow(acct, .ad, ad.id, day, m)) }
                        }
                        campaignSum += groupSum
                        if !groupSum.isZero { groupRows.append(truthRow(acct, .adgroup, group.id, day, groupSum)) }
                    }
                    rows += groupRows
                    if !campaignSum.isZero { rows.append(truthRow(acct, .campaign, campaign.id, day, campaignSum)) }
                }
            }
        }
        return rows
    }

    /// Per-account sums over the whole history (what the ad-level truth adds up to).
    public func accountTotals(platform: SandboxPlatform? = nil) -> [AccountTotal] {
        world.accountOrder.compactMap { world.accounts[$0] }.filter { platform == nil || $0.platform == platform }
            .map { acct in
                var sum = DayMetrics()
                let today = localToday(acct)
                for d in world.firstDay[acct.id]!.day...today.day {
                    for ad in acct.allAds { sum += metrics(acct, ad, CivilDay(day: d)) }
                }
                return AccountTotal(
                    platform: acct.platform, accountID: acct.id, currency: acct.currency,
                    spend: .fromCents(sum.spendCents), impressions: sum.impressions, clicks: sum.clicks,
                    conversions: sum.conversions, conversionValue: .fromCents(sum.valueCents))
            }
    }

    /// API requests seen per account and wall-clock second, sorted by account then second.
    public func requestCounts() -> [RequestCount] {
        state.withLock { s in
            s.counts.flatMap { key, seconds in
                let parts = key.split(separator: "|", maxSplits: 1)
                return seconds.map {
                    RequestCount(
                        platform: SandboxPlatform(rawValue: String(parts[0]))!, accountID: String(parts[1]),
                        second: $0.key, count: $0.value)
                }
            }
        }.sorted { ($0.accountID, $0.second) < ($1.accountID, $1.second) }
    }

    /// The most requests one account saw within any single second (0 when none).
    public func maxRequestsPerSecond(account: String) -> Int {
        requestCounts().filter { $0.accountID == account }.map(\.count).max() ?? 0
    }

    /// Creates a new active ad in the first ad group of the account's first campaign, as a user would between two
    /// requests of a sync; it delivers from the account's local today on. Returns its id, nil when the account is
    /// unknown or has no ad group. Lists now hold it in its ad group's place, so later pages shift by one.
    @discardableResult
    public func addAd(account: String) -> String? {
        let today = world.accounts[account].map { localToday($0) }
        return worldBox.withLock { w -> String? in
            guard var acct = w.accounts[account], let today, !acct.campaigns.isEmpty,
                !acct.campaigns[0].adGroups.isEmpty
            else { return nil }
            let group = acct.campaigns[0].adGroups[0]
            let n = w.owner.count + 1
            let id =
                acct.platform == .tiktok
                ? String(6_800_000_000_000_000_000 + Int64(n)) : String(format: "00000000-0000-4000-8000-%012d", n)
            let key = UInt64(0xADD) << 40 | UInt64(n)
            acct.campaigns[0].adGroups[0].ads.append(
                Ad(
                    id: id, name: "Ad added \(n)", adGroupID: group.id, campaignID: group.campaignID, status: .active,
                    key: key, createdDay: today))
            w.accounts[account] = acct
            w.owner[id] = account
            w.level[id] = .ad
            return id
        }
    }

    /// Makes `account` deliver nothing (`quiet`) or deliver again, over its whole history, as a dormant advertiser
    /// who starts (or stops) spending would look to a sync that re-reads a window (``SandboxConfig/quietAccountPercent``).
    /// Returns false when the account is unknown.
    @discardableResult
    public func setQuiet(account: String, _ quiet: Bool) -> Bool {
        worldBox.withLock { w in
            guard w.accounts[account] != nil else { return false }
            w.accounts[account]!.quiet = quiet
            return true
        }
    }

    /// Makes the account-level totals of `account` (TikTok `AUCTION_ADVERTISER` reports, Snap ad-account `TOTAL`
    /// stats) disagree with its entity reports by `spendCents`, for the next `times` such requests (nil: until
    /// cleared with 0). The entity-level reports and the ground truth are unchanged.
    public func skewAccountTotals(account: String, spendCents: Int64, times: Int? = nil) {
        state.withLock { $0.totalSkew[account] = spendCents == 0 ? nil : (spendCents, times) }
    }

    /// Makes today's delivery of `account` grow while a sync runs, as a spending account's does: every report or
    /// stats request for it (entity reports and account totals alike) first adds `step` impressions and `step`
    /// cents of spend to each of its ads that delivers today. Answers made at one instant agree with each other;
    /// answers made one after the other do not. `step` 0 stops it (what was added stays).
    public func setLiveToday(account: String, step: Int64) {
        state.withLock { s in
            let added = s.liveToday[account]?.added ?? 0
            s.liveToday[account] = (max(0, min(step, 1_000_000)), added)
        }
    }

    /// Leaves `ad` out of the ad lists (TikTok `ad/get/`, Snap `adaccounts/{id}/ads`) while it still delivers in the
    /// reports, as an ad a platform reports but no longer lists would; `false` lists it again.
    public func hideFromLists(ad: String, _ hidden: Bool = true) {
        state.withLock { s in
            if hidden { s.hiddenFromLists.insert(ad) } else { s.hiddenFromLists.remove(ad) }
        }
    }

    func isHiddenFromLists(_ ad: String) -> Bool { state.withLock { $0.hiddenFromLists.contains(ad) } }

    /// The skew to apply to one account-total answer now (0 when none), counting it down.
    func takeTotalSkew(_ account: String) -> Int64 {
        state.withLock { s in
            guard let skew = s.totalSkew[account] else { return 0 }
            if let times = skew.times {
                s.totalSkew[account] = times <= 1 ? nil : (skew.cents, times - 1)
            }
            return skew.cents
        }
    }

    /// Forgets all request counts, the app QPS refusal counts and the report request log.
    public func resetRequestCounts() {
        state.withLock {
            $0.counts = [:]
            $0.reportLog = []
            $0.appRefusals = [:]
        }
    }

    /// Largest per-app QPS limit the sandbox accepts (flags, `POST /_sandbox/app-qps`, `setAppQPS`).
    public static let appQPSRange: ClosedRange<Int> = 0...100_000

    /// Sets (or, with nil or 0, removes) the per-app QPS limit of `platform`; the rolling window starts empty.
    /// Values above `appQPSRange` are clamped to it.
    public func setAppQPS(_ platform: SandboxPlatform, _ limit: Int?) {
        state.withLock { s in
            s.appWindows[platform] = nil
            if let limit, limit > 0 {
                s.appQPS[platform] = min(limit, Sandbox.appQPSRange.upperBound)
            } else {
                s.appQPS[platform] = nil
            }
        }
    }

    /// The per-app QPS limits in force (a platform missing is unlimited).
    public func appQPS() -> [SandboxPlatform: Int] {
        state.withLock { $0.appQPS }
    }

    /// Requests refused for exceeding a per-app QPS limit since start (or the last `resetRequestCounts`).
    public func appQPSRefusals(_ platform: SandboxPlatform) -> Int {
        state.withLock { $0.appRefusals[platform] ?? 0 }
    }

    /// Admits one authorized API request under `platform`'s app QPS limit: nil when admitted (or unlimited), else the
    /// limit and the QPS the request would have made, counted as a refusal. Refused requests do not enter the window.
    func admitAppQPS(_ platform: SandboxPlatform) -> (qps: Int, limit: Int)? {
        state.withLock { s in
            // The clock is read under the lock so the window's entries stay in arrival order.
            let now = ContinuousClock.now
            guard let limit = s.appQPS[platform] else { return nil }
            var window = s.appWindows[platform] ?? AppQPSWindow()
            let count = window.count(since: now - .seconds(1))
            if count >= limit {
                s.appWindows[platform] = window
                s.appRefusals[platform, default: 0] += 1
                return (count + 1, limit)
            }
            window.append(now)
            s.appWindows[platform] = window
            return nil
        }
    }

    /// Every report / stats request served (validated and answered), oldest first: which account, level and days.
    public func reportRequests() -> [ReportRequest] {
        state.withLock { $0.reportLog }
    }

    func logReport(
        _ platform: SandboxPlatform, account: String, level: String, granularity: String, first: CivilDay,
        last: CivilDay
    ) {
        state.withLock {
            if let live = $0.liveToday[account], live.step > 0 {
                $0.liveToday[account]!.added = min(live.added + live.step, 1_000_000_000_000)  // far from overflow
            }
            $0.reportLog.append(
                ReportRequest(
                    platform: platform, accountID: account, level: level, granularity: granularity,
                    first: first.description, last: last.description))
        }
    }

    // MARK: Internals shared by both APIs

    func localToday(_ account: Account) -> CivilDay {
        let offset = state.withLock { $0.dayOffset }
        return Zone.localDay(account.timezone, at: world.baseNow + offset * 86_400)
    }

    func metrics(_ account: Account, _ ad: Ad, _ day: CivilDay, today: CivilDay? = nil) -> DayMetrics {
        let today = today ?? localToday(account)
        var m = MetricsModel.adDay(
            seed: config.seed, account: account, ad: ad, day: day, today: today, firstDay: world.firstDay[account.id]!)
        if day == today, m.impressions > 0, let added = state.withLock({ $0.liveToday[account.id]?.added }) {
            m.impressions += added
            m.spendCents += added * (account.currency == "JPY" ? 100 : 1)  // yen has no minor unit
        }
        return m
    }

    private func truthRow(_ a: Account, _ level: SandboxLevel, _ id: String, _ day: CivilDay, _ m: DayMetrics)
        -> TruthRow
    {
        TruthRow(
            platform: a.platform, accountID: a.id, level: level, entityID: id, date: day.description,
            currency: a.currency, spend: .fromCents(m.spendCents), impressions: m.impressions, clicks: m.clicks,
            conversions: m.conversions, conversionValue: .fromCents(m.valueCents))
    }

    func nextRequestID() -> String {
        let n = state.withLock { s -> Int in
            s.requestSeq += 1
            return s.requestSeq
        }
        return String(format: "sbx%012d", n)
    }

    /// Issues a new access + refresh token pair for a connection.
    func issueTokens(_ platform: SandboxPlatform, _ index: Int) -> (access: String, refresh: String) {
        let ttl = config.snapAccessTokenTTL
        let ttlSeconds = Double(ttl.components.seconds) + Double(ttl.components.attoseconds) / 1e18
        return state.withLock { s in
            let key = "\(platform.rawValue)-\(index)"
            let gen = s.generations[key, default: 0]
            s.generations[key] = gen + 1
            let h = SplitMix64.hash(config.seed, platform == .tiktok ? 1 : 2, UInt64(index), UInt64(gen))
            let suffix = String(h, radix: 16)
            let prefix = platform == .tiktok ? "tt" : "snap"
            let access = "\(prefix)-at-\(index)-\(gen)-\(suffix)"
            let refresh = "\(prefix)-rt-\(index)-\(gen)-\(String(SplitMix64.mix(h), radix: 16))"
            s.tokens[access] = Token(
                platform: platform, connection: index, kind: .access,
                expiresAt: platform == .snapchat ? Date().addingTimeInterval(ttlSeconds) : nil)
            s.tokens[refresh] = Token(platform: platform, connection: index, kind: .refresh, expiresAt: nil)
            return (access, refresh)
        }
    }

    enum TokenCheck {
        case ok(connection: Int)
        case missing, unknown, revoked, expired
    }

    func checkToken(_ token: String?, _ platform: SandboxPlatform, kind: TokenKind = .access) -> TokenCheck {
        guard let token, !token.isEmpty else { return .missing }
        return state.withLock { s in
            guard let t = s.tokens[token], t.platform == platform, t.kind == kind else { return .unknown }
            if t.revoked { return .revoked }
            if let e = t.expiresAt, e <= Date() { return .expired }
            return .ok(connection: t.connection)
        }
    }

    /// Counts the request for rate-limit evidence and decides its fault.
    func admit(
        _ platform: SandboxPlatform, account: String?, path: String, query: String = "", isOAuth: Bool, isReport: Bool
    ) -> FaultKind? {
        let second = Int(Date().timeIntervalSince1970)
        return state.withLock { s in
            if let account {
                s.counts["\(platform.rawValue)|\(account)", default: [:]][second, default: 0] += 1
            }
            return s.faults.decide(
                platform: platform, account: account, path: path, query: query, isOAuth: isOAuth, isReport: isReport)
        }
    }

    func slowDelay() -> Duration {
        state.withLock { $0.faults.config.slowDelay }
    }

    func nextServerErrorTurn() -> Int {
        state.withLock { s in
            s.faults.serverErrorTurn += 1
            return s.faults.serverErrorTurn
        }
    }
}

/// The admitted requests of the last second for one app, oldest first (a queue with a moving head).
struct AppQPSWindow: Sendable {
    private var times: [ContinuousClock.Instant] = []
    private var head = 0

    /// Drops entries at or before `cutoff` and returns how many remain.
    mutating func count(since cutoff: ContinuousClock.Instant) -> Int {
        while head < times.count, times[head] <= cutoff { head += 1 }
        if head > 1024, head * 2 > times.count {
            times.removeFirst(head)
            head = 0
        }
        return times.count - head
    }

    mutating func append(_ t: ContinuousClock.Instant) { times.append(t) }
}

/// One grant revoked at the sandbox's revoke endpoint.
public struct SandboxRevocation: Sendable, Equatable {
    public var platform: SandboxPlatform
    /// The connection index (as in ``Sandbox/connections()``).
    public var connection: Int
    public init(platform: SandboxPlatform, connection: Int) {
        self.platform = platform
        self.connection = connection
    }
}
