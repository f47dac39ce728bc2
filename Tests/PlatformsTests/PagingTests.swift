import Foundation
import Sandbox
import XCTest

@testable import Platforms

/// A transport that runs a hook after each response (used to change the world between two page requests).
final class HookTransport: PlatformTransport {
    private let inner = URLSessionTransport()
    private let paths = LockedBox<[String]>([])
    let after: @Sendable (URL) -> Void

    init(after: @escaping @Sendable (URL) -> Void = { _ in }) { self.after = after }

    var requestedPaths: [String] { paths.current }

    func get(_ url: URL, headers: [String: String], timeout: Duration) async throws -> TransportResponse {
        paths.withLock { $0.append(QueryString.path(of: url)) }
        let r = try await inner.get(url, headers: headers, timeout: timeout)
        after(url)
        return r
    }

    func postToken(_ request: OAuthTokenRequest, timeout: Duration) async throws -> TransportResponse {
        try await inner.postToken(request, timeout: timeout)
    }
}

/// A transport that creates an ad in `account` right after the `afterPage`-th request whose URL contains `path`
/// (so every later item of that read shifts by one place), once.
struct AdAddedMidRead {
    let added = LockedBox<String?>(nil)
    let pages = LockedBox(0)
    let transport: HookTransport

    init(_ sandbox: Sandbox, account: String, afterPage: Int, of path: String) {
        let (added, pages) = (self.added, self.pages)
        transport = HookTransport { url in
            guard url.absoluteString.contains(path) else { return }
            guard
                pages.withLock({ p in
                    p += 1
                    return p
                }) == afterPage
            else { return }
            added.withLock { a in if a == nil { a = sandbox.addAd(account: account) } }
        }
    }
}

private func sandboxLevel(_ level: ReportLevel) -> SandboxLevel {
    switch level {
    case .campaign: return .campaign
    case .adGroup: return .adgroup
    case .ad: return .ad
    }
}

/// Issue 14, paging tested for real: every list and report endpoint read page by page, against the sandbox's own
/// introspection and ground truth; and a list that changes between two page requests.
final class PagingTests: XCTestCase {
    // 2 campaigns x 2 ad groups x 2 ads: 2, 4 and 8 entities.
    let small = SandboxConfig(
        seed: 31, tiktokConnections: 1, snapConnections: 1, accountsPerConnection: 1...1,
        campaignsPerAccount: 2...2, adGroupsPerCampaign: 2...2, adsPerAdGroup: 2...2, days: 10)

    func tiktok(_ sandbox: Sandbox, pageSize: Int, transport: HookTransport) -> TikTokClient {
        TikTokClient(
            configuration: TikTokConfiguration(
                baseURL: URL(string: sandbox.tiktokBaseURL)!, appId: "app", secret: "secret-XYZ", pageSize: pageSize,
                requestTimeout: .seconds(10)),
            transport: transport)
    }

    func snap(_ sandbox: Sandbox, pageSize: Int, statsPageSize: Int = 200, transport: HookTransport)
        -> SnapchatClient
    {
        SnapchatClient(
            configuration: SnapchatConfiguration(
                apiBaseURL: URL(string: sandbox.snapAPIBaseURL)!, tokenURL: URL(string: sandbox.snapOAuthURL)!,
                clientId: "client", clientSecret: "secret-XYZ", redirectURI: "http://localhost/cb",
                pageSize: pageSize, requestTimeout: .seconds(10), statsPageSize: statsPageSize),
            transport: transport)
    }

    func session(_ sandbox: Sandbox, _ platform: SandboxPlatform) -> TokenSession {
        let info = sandbox.connections().first { $0.platform == platform }!
        return TokenSession(tokens: OAuthTokens(accessToken: info.accessToken, refreshToken: info.refreshToken))
    }

    /// TikTok `page` / `page_size` / `page_info.total_page` with page sizes 1, 2 and 3, for the three entity lists
    /// and the three report levels: every entity and every entity-day exactly once, with the expected page count.
    func testTikTokListsAndReportsWithPageSizesOneTwoThree() async throws {
        let sandbox = Sandbox(config: small)
        try sandbox.start(port: 0)
        defer { Task { await sandbox.stop() } }
        let info = sandbox.accounts(platform: .tiktok)[0]
        let account = AdAccount(
            platform: .tiktok, id: info.id, name: info.name, currency: info.currency, timeZone: info.timezone)
        let truth = sandbox.groundTruth(platform: .tiktok, account: info.id)
        let days = truth.compactMap { LocalDate(parsing: $0.date) }
        let window = DateWindow(first: try XCTUnwrap(days.min()), last: try XCTUnwrap(days.max()))
        for pageSize in 1...3 {
            for level in ReportLevel.allCases {
                let transport = HookTransport()
                let client = tiktok(sandbox, pageSize: pageSize, transport: transport)
                let entities = try await client.entities(level, account: account, session: session(sandbox, .tiktok))
                let expected = sandbox.entities(account: info.id, level: sandboxLevel(level)).map(\.id)
                XCTAssertEqual(entities.map(\.id).sorted(), expected.sorted(), "\(level) page size \(pageSize)")
                let pages = (expected.count + pageSize - 1) / pageSize
                XCTAssertEqual(transport.requestedPaths.count, pages, "\(level) pages at size \(pageSize)")

                let reportTransport = HookTransport()
                let reports = tiktok(sandbox, pageSize: pageSize, transport: reportTransport)
                let rows = try await reports.dailyMetrics(
                    level, account: account, window: window, session: session(sandbox, .tiktok))
                let wanted = truth.filter { $0.level == sandboxLevel(level) }
                XCTAssertEqual(rows.count, wanted.count, "\(level) rows at page size \(pageSize)")
                var byKey: [String: Decimal] = [:]
                for r in rows { byKey["\(r.entityId)|\(r.date)"] = r.spend }
                for t in wanted { XCTAssertEqual(byKey["\(t.entityID)|\(t.date)"], t.spend) }
                XCTAssertEqual(
                    reportTransport.requestedPaths.count, (wanted.count + pageSize - 1) / pageSize,
                    "\(level) report pages at size \(pageSize)")
            }
        }
    }

    /// Snap `limit` + `paging.next_link`: the documented entity limit is 50...1000 (ad-apis.md B2), so 1, 2 and 3
    /// pages come from lists of 26 campaigns, 52 ad squads and 104 ads at limit 50.
    func testSnapListsFollowNextLinkOverOneTwoAndThreePages() async throws {
        let sandbox = Sandbox(
            config: SandboxConfig(
                seed: 32, tiktokConnections: 0, snapConnections: 1, accountsPerConnection: 1...1,
                campaignsPerAccount: 26...26, adGroupsPerCampaign: 2...2, adsPerAdGroup: 2...2, days: 5))
        try sandbox.start(port: 0)
        defer { Task { await sandbox.stop() } }
        let info = sandbox.accounts(platform: .snapchat)[0]
        let account = AdAccount(
            platform: .snapchat, id: info.id, name: info.name, currency: info.currency, timeZone: info.timezone)
        for (level, pages) in [(ReportLevel.campaign, 1), (.adGroup, 2), (.ad, 3)] {
            let transport = HookTransport()
            let client = snap(sandbox, pageSize: 50, transport: transport)
            let entities = try await client.entities(level, account: account, session: session(sandbox, .snapchat))
            let expected = sandbox.entities(account: info.id, level: sandboxLevel(level)).map(\.id)
            XCTAssertEqual(entities.map(\.id).sorted(), expected.sorted(), "\(level)")
            XCTAssertEqual(transport.requestedPaths.count, pages, "\(level) pages")
        }
    }

    /// Snap stats `limit` (1...200, ad-apis.md B2) + `paging.next_link` with 1, 2 and 3 breakdown entities per page:
    /// the daily stats of every level and the account totals, every entity-day once with its ground-truth spend and
    /// impressions, in exactly ceil(entities / limit) requests per window.
    func testSnapStatsAndTotalsFollowNextLinkWithLimitsOneTwoThree() async throws {
        let sandbox = Sandbox(config: small)
        try sandbox.start(port: 0)
        defer { Task { await sandbox.stop() } }
        let info = sandbox.accounts(platform: .snapchat)[0]
        let account = AdAccount(
            platform: .snapchat, id: info.id, name: info.name, currency: info.currency, timeZone: info.timezone)
        let truth = sandbox.groundTruth(platform: .snapchat, account: info.id)
        let days = truth.compactMap { LocalDate(parsing: $0.date) }
        let window = DateWindow(first: try XCTUnwrap(days.min()), last: try XCTUnwrap(days.max()))
        let whole = try await snap(sandbox, pageSize: 50, transport: HookTransport()).accountTotals(
            account: account, window: window, session: session(sandbox, .snapchat))
        for limit in 1...3 {
            for level in ReportLevel.allCases {
                let transport = HookTransport()
                let client = snap(sandbox, pageSize: 50, statsPageSize: limit, transport: transport)
                let rows = try await client.dailyMetrics(
                    level, account: account, window: window, session: session(sandbox, .snapchat))
                let wanted = truth.filter { $0.level == sandboxLevel(level) }
                var byKey: [String: (Decimal, Int64)] = [:]
                for r in rows where r.spend != 0 || (r.impressions ?? 0) != 0 {
                    XCTAssertNil(byKey["\(r.entityId)|\(r.date)"], "\(level) limit \(limit): a row twice")
                    byKey["\(r.entityId)|\(r.date)"] = (r.spend, r.impressions ?? 0)
                }
                XCTAssertEqual(byKey.count, wanted.count, "\(level) rows at limit \(limit)")
                for t in wanted {
                    XCTAssertEqual(byKey["\(t.entityID)|\(t.date)"]?.0, t.spend, "\(level) \(t.entityID) \(t.date)")
                    XCTAssertEqual(byKey["\(t.entityID)|\(t.date)"]?.1, t.impressions)
                }
                let entities = sandbox.entities(account: info.id, level: sandboxLevel(level)).count
                XCTAssertEqual(
                    transport.requestedPaths.count, (entities + limit - 1) / limit, "\(level) pages at limit \(limit)")
            }
            let transport = HookTransport()
            let totals = try await snap(sandbox, pageSize: 50, statsPageSize: limit, transport: transport)
                .accountTotals(account: account, window: window, session: session(sandbox, .snapchat))
            XCTAssertEqual(totals, whole, "totals at limit \(limit)")
            let campaigns = sandbox.entities(account: info.id, level: .campaign).count
            XCTAssertEqual(transport.requestedPaths.count, (campaigns + limit - 1) / limit, "totals pages")
        }
        XCTAssertEqual(whole.spend, truth.filter { $0.level == .ad }.reduce(Decimal(0)) { $0 + $1.spend })
        XCTAssertEqual(whole.impressions, truth.filter { $0.level == .ad }.reduce(Int64(0)) { $0 + $1.impressions })
    }

    /// An ad created between two page requests (it lands in the first ad group, so every later item shifts by one
    /// place): the list comes back with every ad that existed before exactly once, on both platforms.
    func testAnAdCreatedBetweenTwoPagesIsNeitherLostNorDuplicated() async throws {
        for platform in [SandboxPlatform.tiktok, .snapchat] {
            let config =
                platform == .tiktok
                ? small
                : SandboxConfig(
                    seed: 33, tiktokConnections: 0, snapConnections: 1, accountsPerConnection: 1...1,
                    campaignsPerAccount: 2...2, adGroupsPerCampaign: 2...2, adsPerAdGroup: 30...30, days: 5)
            let sandbox = Sandbox(config: config)
            try sandbox.start(port: 0)
            let info = sandbox.accounts(platform: platform)[0]
            let before = Set(sandbox.entities(account: info.id, level: .ad).map(\.id))
            let added = LockedBox<String?>(nil)
            let transport = HookTransport { url in
                let text = url.absoluteString
                let isAdList = text.contains("/ad/get/?") || text.contains("/ads?")
                guard isAdList else { return }
                added.withLock { a in if a == nil { a = sandbox.addAd(account: info.id) } }
            }
            let account = AdAccount(
                platform: platform == .tiktok ? .tiktok : .snapchat, id: info.id, name: info.name,
                currency: info.currency, timeZone: info.timezone)
            let ads: [AdEntity]
            if platform == .tiktok {
                ads = try await tiktok(sandbox, pageSize: 3, transport: transport).entities(
                    .ad, account: account, session: session(sandbox, .tiktok))
            } else {
                ads = try await snap(sandbox, pageSize: 50, transport: transport).entities(
                    .ad, account: account, session: session(sandbox, .snapchat))
            }
            XCTAssertNotNil(added.current, "the ad was created mid-list")
            XCTAssertGreaterThan(transport.requestedPaths.count, 1, "the list took several pages")
            let ids = ads.map(\.id)
            XCTAssertEqual(ids.count, Set(ids).count, "\(platform): no ad twice")
            XCTAssertTrue(before.isSubset(of: Set(ids)), "\(platform): no ad lost")
            await sandbox.stop()
        }
    }

    /// A TikTok report whose rows shift between two page requests (an ad created mid-report delivers today):
    /// every entity-day that existed before comes back exactly once, with its ground-truth spend.
    func testAReportThatShiftsBetweenPagesKeepsEveryRowOnce() async throws {
        let sandbox = Sandbox(config: small)
        try sandbox.start(port: 0)
        defer { Task { await sandbox.stop() } }
        let info = sandbox.accounts(platform: .tiktok)[0]
        let account = AdAccount(
            platform: .tiktok, id: info.id, name: info.name, currency: info.currency, timeZone: info.timezone)
        let truth = sandbox.groundTruth(platform: .tiktok, account: info.id).filter { $0.level == .ad }
        let days = truth.compactMap { LocalDate(parsing: $0.date) }
        let window = DateWindow(first: try XCTUnwrap(days.min()), last: try XCTUnwrap(days.max()))
        // The new ad's rows sort right after the first ad group's two ads: create it once the pages have passed
        // them (page 8 of 3 rows), so every later row shifts by its one row.
        let groupRows = truth.filter { r in
            sandbox.entities(account: info.id, level: .ad).prefix(2).contains { $0.id == r.entityID }
        }.count
        XCTAssertGreaterThan(8 * 3, groupRows)
        let shift = AdAddedMidRead(sandbox, account: info.id, afterPage: 8, of: "report/integrated/get/?")
        let rows = try await tiktok(sandbox, pageSize: 3, transport: shift.transport).dailyMetrics(
            .ad, account: account, window: window, session: session(sandbox, .tiktok))
        let newAd = try XCTUnwrap(shift.added.current)
        assertEveryRowOnce(rows, truth: truth, known: Set(truth.map(\.entityID)).union([newAd]))
    }

    /// Every entity-day of `truth` exactly once with its spend, and no entity outside `known`.
    func assertEveryRowOnce(
        _ rows: [DailyMetric], truth: [TruthRow], known: Set<String>, file: StaticString = #filePath, line: UInt = #line
    ) {
        let keys = rows.map { "\($0.entityId)|\($0.date)" }
        XCTAssertEqual(keys.count, Set(keys).count, "no entity-day twice", file: file, line: line)
        var spend: [String: Decimal] = [:]
        for r in rows { spend["\(r.entityId)|\(r.date)"] = r.spend }
        for t in truth {
            XCTAssertEqual(
                spend["\(t.entityID)|\(t.date)"], t.spend, "\(t.entityID) \(t.date)", file: file, line: line)
        }
        XCTAssertTrue(rows.allSatisfy { known.contains($0.entityId) }, file: file, line: line)
    }

    /// The same for Snap's stats: an ad created after the second page of an ad breakdown (limit 2) shifts every later
    /// ad by one place, so one ad comes back on two pages; every entity-day that existed before comes back once,
    /// with its ground-truth spend.
    func testSnapStatsThatShiftBetweenPagesKeepEveryRowOnce() async throws {
        let sandbox = Sandbox(config: small)
        try sandbox.start(port: 0)
        defer { Task { await sandbox.stop() } }
        let info = sandbox.accounts(platform: .snapchat)[0]
        let account = AdAccount(
            platform: .snapchat, id: info.id, name: info.name, currency: info.currency, timeZone: info.timezone)
        let truth = sandbox.groundTruth(platform: .snapchat, account: info.id).filter { $0.level == .ad }
        let days = truth.compactMap { LocalDate(parsing: $0.date) }
        let window = DateWindow(first: try XCTUnwrap(days.min()), last: try XCTUnwrap(days.max()))
        let shift = AdAddedMidRead(sandbox, account: info.id, afterPage: 2, of: "/stats?")
        let rows = try await snap(sandbox, pageSize: 50, statsPageSize: 2, transport: shift.transport).dailyMetrics(
            .ad, account: account, window: window, session: session(sandbox, .snapchat))
        let newAd = try XCTUnwrap(shift.added.current)
        let pages = shift.pages.current
        XCTAssertGreaterThan(pages, 4, "8 ads at 2 per page, one repeated: \(pages) pages")
        let known = Set(sandbox.entities(account: info.id, level: .ad).map(\.id)).union([newAd])
        assertEveryRowOnce(rows, truth: truth, known: known)
    }
}
