import Foundation
import HTTP
import XCTest

@testable import Platforms

/// Proves the clients are read-only: every request any client operation sends is a GET, except POSTs to the OAuth
/// token endpoints. The fixture server records each request it receives.
final class ReadOnlyTests: XCTestCase {
    func testEveryClientOperationIssuesOnlyGETsApartFromTokenPOSTs() async throws {
        let server = try FixtureServer()
        let base = server.base
        // TikTok: every endpoint answers a one-item page; tokens expire once to exercise the refresh path.
        let expiredOnce = LockedBox(true)
        for path in ["campaign/get/", "adgroup/get/", "ad/get/", "report/integrated/get/"] {
            server.router.add("GET", "/open_api/v1.3/\(path)") { request in
                let expire = expiredOnce.withLock { value -> Bool in
                    defer { value = false }
                    return value
                }
                if expire { return TikTokFixture.error(40102, "expired") }
                return TikTokFixture.page(
                    [
                        #"{"campaign_id":"1","adgroup_id":"2","ad_id":"3","dimensions":{"campaign_id":"1","adgroup_id":"2","ad_id":"3","stat_time_day":"2024-01-01 00:00:00"},"metrics":{"spend":"1"}}"#
                    ],
                    request: request)
            }
        }
        server.router.add("GET", "/open_api/v1.3/oauth2/advertiser/get/") { _ in
            TikTokFixture.envelope(#"{"list":[{"advertiser_id":"1"}]}"#)
        }
        server.router.add("GET", "/open_api/v1.3/advertiser/info/") { _ in
            TikTokFixture.envelope(#"{"list":[{"advertiser_id":"1","currency":"USD","timezone":"UTC"}]}"#)
        }
        for path in ["oauth2/access_token/", "oauth2/refresh_token/"] {
            server.router.add("POST", "/open_api/v1.3/\(path)") { _ in
                TikTokFixture.envelope(#"{"access_token":"t2","refresh_token":"r2"}"#)
            }
        }
        // Snap.
        let snapExpiredOnce = LockedBox(true)
        func snapList(_ pattern: String, _ root: String, _ item: String) {
            server.router.add("GET", pattern) { request in
                let expire = snapExpiredOnce.withLock { value -> Bool in
                    defer { value = false }
                    return value
                }
                if expire { return SnapFixture.error(401, code: "E0001", message: "expired") }
                return SnapFixture.page(
                    [#"{"id":"x","currency":"USD","timezone":"UTC","campaign_id":"c","ad_squad_id":"s"}"#],
                    root: root, item: item, request: request, base: base)
            }
        }
        snapList("/v1/me/organizations", "organizations", "organization")
        snapList("/v1/organizations/:id/adaccounts", "adaccounts", "adaccount")
        snapList("/v1/adaccounts/:id/campaigns", "campaigns", "campaign")
        snapList("/v1/adaccounts/:id/adsquads", "adsquads", "adsquad")
        snapList("/v1/adaccounts/:id/ads", "ads", "ad")
        server.router.add("GET", "/v1/adaccounts/:id/stats") { _ in
            .json(#"{"request_status":"SUCCESS","timeseries_stats":[]}"#)
        }
        server.router.add("POST", "/login/oauth2/access_token") { _ in SnapFixture.token("s2") }

        let tiktok: any AdPlatformClient = makeTikTokClient(server)
        let snap: any AdPlatformClient = makeSnapClient(server)
        let window = DateWindow(first: date("2024-01-01"), last: date("2024-03-01"))
        for client in [tiktok, snap] {
            _ = try await client.exchangeAuthorizationCode("code")
            _ = try await client.refreshTokens("r1")
            let session = TokenSession(tokens: OAuthTokens(accessToken: "t1", refreshToken: "r1"))
            let accounts = try await client.adAccounts(session: session)
            XCTAssertFalse(accounts.isEmpty)
            for level in ReportLevel.allCases {
                _ = try await client.entities(level, account: accounts[0], session: session)
                _ = try await client.dailyMetrics(level, account: accounts[0], window: window, session: session)
            }
        }
        await server.stop()

        let requests = server.requests
        XCTAssertGreaterThan(requests.count, 20)
        let tokenPaths: Set<String> = [
            "/open_api/v1.3/oauth2/access_token/", "/open_api/v1.3/oauth2/refresh_token/", "/login/oauth2/access_token",
        ]
        for request in requests where request.method != "GET" {
            XCTAssertEqual(request.method, "POST", "\(request.method) \(request.path)")
            XCTAssertTrue(tokenPaths.contains(request.path), "non-GET to \(request.path)")
        }
        // Both refresh paths really ran (an expired token on each platform), and the API calls were all GETs.
        XCTAssertEqual(Set(requests.filter { $0.method == "POST" }.map(\.path)), tokenPaths)
        XCTAssertTrue(requests.filter { !tokenPaths.contains($0.path) }.allSatisfy { $0.method == "GET" })
    }
}
