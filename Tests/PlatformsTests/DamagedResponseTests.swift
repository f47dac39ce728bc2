import Foundation
import HTTP
import XCTest

@testable import Platforms

/// Damaged HTTP 200 bodies (not JSON, cut short, not the documented shape) are delivery faults: the client tries the
/// request again itself, and after its bounded tries reports them as retryable, naming what was wrong without any
/// secret or query string. Well-formed API errors are answered at once.
final class DamagedResponseTests: XCTestCase {
    static let tiktokToken = "tt-access-TOKEN-123"
    static let snapToken = "snap-access-TOKEN-456"

    /// One scripted damage per case, for each platform: its HTTP answer and the kind it must end as.
    enum Damage: String, CaseIterable {
        case html, truncatedJSON, shortTransfer, empty, wrongShape

        var kind: PlatformError.Kind { self == .wrongShape ? .malformedResponse : .transient }

        func response(good: HTTPResponse, wrongShape: String) -> HTTPResponse {
            switch self {
            case .html: return .text("<html><body>502 Bad Gateway</body></html>", contentType: "text/html")
            case .truncatedJSON:
                var r = good
                r.body = Array(r.body.prefix(r.body.count - 7))
                return r
            case .shortTransfer:
                // Content-Length of the whole body, half of it sent, connection closed.
                var r = good
                r.truncatedBodyLength = r.body.count / 2
                return r
            case .empty: return .json("")
            case .wrongShape: return .json(wrongShape)
            }
        }
    }

    static let tiktokGood = TikTokFixture.envelope(
        #"{"list":[{"advertiser_id":"7001","advertiser_name":"A"}],"page_info":{"page":1,"total_page":1}}"#)
    static let tiktokInfo = TikTokFixture.envelope(
        #"{"list":[{"advertiser_id":"7001","name":"A","currency":"USD","timezone":"Etc/GMT+8","display_timezone":"America/Los_Angeles"}]}"#
    )

    /// A TikTok fixture whose `oauth2/advertiser/get/` answers `script[n]` to its n-th request (then good).
    func tiktokServer(_ script: @escaping @Sendable (Int) -> HTTPResponse?) throws -> FixtureServer {
        let server = try FixtureServer()
        let count = LockedBox(0)
        server.router.add("GET", "/open_api/v1.3/oauth2/advertiser/get/") { _ in
            let n = count.withLock { c -> Int in
                c += 1
                return c
            }
            return script(n) ?? Self.tiktokGood
        }
        server.router.add("GET", "/open_api/v1.3/advertiser/info/") { _ in Self.tiktokInfo }
        return server
    }

    static func snapOrganizations(_ base: String) -> HTTPResponse {
        .json(
            #"{"request_status":"SUCCESS","request_id":"r1","organizations":[{"sub_request_status":"SUCCESS","organization":{"id":"org-1"}}]}"#
        )
    }
    static let snapAccounts = HTTPResponse.json(
        #"{"request_status":"SUCCESS","request_id":"r2","adaccounts":[{"sub_request_status":"SUCCESS","adaccount":{"id":"acc-1","name":"A","currency":"USD","timezone":"Europe/Paris"}}]}"#
    )

    func snapServer(_ script: @escaping @Sendable (Int) -> HTTPResponse?) throws -> FixtureServer {
        let server = try FixtureServer()
        let count = LockedBox(0)
        let base = server.base
        server.router.add("GET", "/v1/me/organizations") { _ in
            let n = count.withLock { c -> Int in
                c += 1
                return c
            }
            return script(n) ?? Self.snapOrganizations(base)
        }
        server.router.add("GET", "/v1/organizations/org-1/adaccounts") { _ in Self.snapAccounts }
        return server
    }

    func tiktok(_ server: FixtureServer, tries: Int = 3) -> TikTokClient {
        TikTokClient(
            configuration: TikTokConfiguration(
                baseURL: server.tiktokBase, appId: "app-1", secret: "tt-app-secret-XYZ", requestTimeout: .seconds(5),
                responseTries: tries, responseRetryDelay: .milliseconds(10)))
    }

    func snap(_ server: FixtureServer, tries: Int = 3) -> SnapchatClient {
        SnapchatClient(
            configuration: SnapchatConfiguration(
                apiBaseURL: server.snapBase, tokenURL: server.snapTokenURL, clientId: "client-1",
                clientSecret: "snap-secret-XYZ", requestTimeout: .seconds(5), responseTries: tries,
                responseRetryDelay: .milliseconds(10)))
    }

    func session(_ token: String) -> TokenSession {
        TokenSession(tokens: OAuthTokens(accessToken: token, refreshToken: "refresh-SECRET-789"))
    }

    /// A damaged first answer is fetched again at once and the call succeeds with the good second answer.
    func testDamagedBodyIsRetriedOnTheRequestAndTheCallSucceeds() async throws {
        for damage in Damage.allCases {
            let tiktokServer = try tiktokServer { n in
                n == 1
                    ? damage.response(
                        good: Self.tiktokGood, wrongShape: #"{"code":0,"message":"OK","data":{"list":"x"}}"#)
                    : nil
            }
            let accounts = try await tiktok(tiktokServer).adAccounts(session: session(Self.tiktokToken))
            XCTAssertEqual(accounts.map(\.id), ["7001"], "tiktok \(damage)")
            XCTAssertEqual(
                tiktokServer.requests(path: "/open_api/v1.3/oauth2/advertiser/get/").count, 2,
                "tiktok \(damage): one retry of the same request")
            await tiktokServer.stop()

            let snapServer = try snapServer { n in
                n == 1
                    ? damage.response(good: Self.snapOrganizations(""), wrongShape: #"{"request_status":"SUCCESS"}"#)
                    : nil
            }
            let snapAccounts = try await snap(snapServer).adAccounts(session: session(Self.snapToken))
            XCTAssertEqual(snapAccounts.map(\.id), ["acc-1"], "snap \(damage)")
            XCTAssertEqual(snapServer.requests(path: "/v1/me/organizations").count, 2, "snap \(damage)")
            await snapServer.stop()
        }
    }

    /// Damaged on every try: after exactly `responseTries` requests the error is retryable (`transient` for a body
    /// that is not JSON or cut short, `malformedResponse` for the wrong shape), names the endpoint and what was
    /// wrong, and holds no token, secret or query string.
    func testAlwaysDamagedBodyEndsRetryableAfterBoundedTriesWithoutSecrets() async throws {
        for damage in Damage.allCases {
            for platform in AdPlatform.allCases {
                let server: FixtureServer
                let path: String
                let error: PlatformError?
                if platform == .tiktok {
                    server = try tiktokServer { _ in
                        damage.response(
                            good: Self.tiktokGood, wrongShape: #"{"code":0,"message":"OK","data":{"list":"x"}}"#)
                    }
                    path = "/open_api/v1.3/oauth2/advertiser/get/"
                    let client = tiktok(server)
                    error = await expectPlatformError {
                        _ = try await client.adAccounts(session: self.session(Self.tiktokToken))
                    }
                } else {
                    server = try snapServer { _ in
                        damage.response(good: Self.snapOrganizations(""), wrongShape: #"{"request_status":"SUCCESS"}"#)
                    }
                    path = "/v1/me/organizations"
                    let client = snap(server)
                    error = await expectPlatformError {
                        _ = try await client.adAccounts(session: self.session(Self.snapToken))
                    }
                }
                await server.stop()
                let label = "\(platform) \(damage)"
                XCTAssertEqual(server.requests(path: path).count, 3, "\(label): bounded tries of the request")
                XCTAssertEqual(error?.kind, damage.kind, label)
                let text = error.map { "\($0)" } ?? ""
                XCTAssertTrue(text.contains(path), "\(label): \(text)")
                XCTAssertTrue(text.contains("after 3 tries"), "\(label): \(text)")
                switch damage {
                case .html:
                    XCTAssertTrue(text.contains("not JSON") && text.contains("text/html"), "\(label): \(text)")
                case .truncatedJSON:
                    XCTAssertTrue(text.contains("not JSON (truncated at byte"), "\(label): \(text)")
                case .shortTransfer:
                    XCTAssertTrue(
                        text.contains("connection lost") || text.contains("cut short"), "\(label): \(text)")
                case .empty: XCTAssertTrue(text.contains("empty body"), "\(label): \(text)")
                case .wrongShape: XCTAssertTrue(text.contains("missing"), "\(label): \(text)")
                }
                for secret in [
                    Self.tiktokToken, Self.snapToken, "refresh-SECRET-789", "tt-app-secret-XYZ", "snap-secret-XYZ",
                    "?", "app_id=", "limit=",
                ] {
                    XCTAssertFalse(text.contains(secret), "\(label) leaks \(secret): \(text)")
                }
            }
        }
    }

    /// A well-formed answer whose API code says the request is invalid is the platform's verdict: one request,
    /// `permanent`. A rate limit is not retried on the request either (the job layer snoozes it).
    func testWellFormedApiErrorsAreNotRetriedOnTheRequest() async throws {
        let server = try tiktokServer { _ in TikTokFixture.error(40002, "Invalid params") }
        let error = await expectPlatformError {
            _ = try await self.tiktok(server).adAccounts(session: self.session(Self.tiktokToken))
        }
        XCTAssertEqual(error?.kind, .permanent)
        XCTAssertEqual(server.requests(path: "/open_api/v1.3/oauth2/advertiser/get/").count, 1)
        await server.stop()

        let snap = try snapServer { _ in SnapFixture.error(400, code: "E1008", message: "bad window") }
        let snapError = await expectPlatformError {
            _ = try await self.snap(snap).adAccounts(session: self.session(Self.snapToken))
        }
        XCTAssertEqual(snapError?.kind, .permanent)
        XCTAssertEqual(snap.requests(path: "/v1/me/organizations").count, 1)
        await snap.stop()
    }

    /// A token POST whose answer is damaged is not replayed (a processed refresh rotates the refresh token), but
    /// it is still retryable at the job level rather than a failure for good.
    func testDamagedTokenResponseIsTransientAndNotReplayed() async throws {
        let server = try FixtureServer()
        server.router.add("POST", "/login/oauth2/access_token") { _ in
            var r = SnapFixture.token("snap-new-access")
            r.body = Array(r.body.prefix(r.body.count / 2))
            return r
        }
        let error = await expectPlatformError { _ = try await self.snap(server).refreshTokens("refresh-SECRET-789") }
        await server.stop()
        XCTAssertEqual(error?.kind, .transient)
        XCTAssertEqual(server.requests.count, 1, "a token POST is sent once")
        XCTAssertFalse("\(error.map { "\($0)" } ?? "")".contains("refresh-SECRET-789"))
    }
}
