import Foundation
import HTTP
import XCTest

@testable import Sandbox

/// Per-app QPS limits of the fake APIs (ad-apis.md A5 for TikTok, B5 for Snap), over real HTTP.
final class SandboxAppQPSTests: SandboxTestCase {
    func testTikTokRefusesTheRequestOverTheAppQPSWithinOneSecondAndAdmitsAfterTheWindow() async throws {
        let s = try makeSandbox(
            SandboxConfig(tiktokConnections: 2, snapConnections: 1, today: fixedToday, tiktokAppQPS: 3))
        let a = demo(s, .tiktok, 0)
        let b = demo(s, .tiktok, 1)
        func campaigns(_ d: SandboxConnectionInfo, token: String? = nil) async throws -> Reply {
            try await tiktok(
                s, "campaign/get/", [("advertiser_id", d.accountIDs[0])], token: token ?? d.accessToken)
        }
        // Requests without a valid token are not the app's: they are neither counted nor refused.
        for _ in 0..<5 {
            let bad = try await campaigns(a, token: "not-a-token")
            XCTAssertEqual(bad.json?["code"], .number("40105"))
        }
        let start = ContinuousClock.now
        // Three requests of one app, from two connections and accounts: all admitted.
        for d in [a, b, a] {
            let ok = try await campaigns(d)
            XCTAssertEqual(ok.json?["code"], .number("0"), ok.text)
        }
        let over = try await campaigns(b)
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(1), "the four requests must fit in one second")
        XCTAssertEqual(over.status, 200)
        XCTAssertEqual(over.json?["code"], .number("40100"), over.text)
        let message = over.json?["message"]?.text ?? ""
        XCTAssertTrue(message.contains("QPS (4)") && message.contains("QPS limit 3"), message)
        XCTAssertEqual(s.appQPSRefusals(.tiktok), 1)
        XCTAssertEqual(s.appQPSRefusals(.snapchat), 0)
        // Snap has no app limit here: its requests pass.
        let snapOK = try await snap(s, "me", token: demo(s, .snapchat).accessToken)
        XCTAssertEqual(snapOK.status, 200)

        let stats = try await client.get(s.baseURL + "/_sandbox/requests")
        XCTAssertEqual(stats.json?["app_qps_refusals"]?["tiktok"], .number("1"), stats.text)
        XCTAssertEqual(stats.json?["app_qps_refusals"]?["snapchat"], .number("0"), stats.text)

        // Admitted again once the first admitted request is more than a second old, never before.
        let deadline = start + .seconds(10)
        var admittedAfter: Duration?
        while admittedAfter == nil, ContinuousClock.now < deadline {
            let r = try await campaigns(a)
            if r.json?["code"] == .number("0") {
                admittedAfter = ContinuousClock.now - start
            } else {
                XCTAssertEqual(r.json?["code"], .number("40100"), r.text)
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let after = try XCTUnwrap(admittedAfter, "never admitted again within 10 s")
        XCTAssertGreaterThan(after, .seconds(1))

        s.resetRequestCounts()
        XCTAssertEqual(s.appQPSRefusals(.tiktok), 0)
    }

    func testSnapRefusesOverTheAppQPSWith429AndRetryAfterAndTheLimitIsSetAtRuntime() async throws {
        let s = try makeSandbox(SandboxConfig(tiktokConnections: 1, snapConnections: 1, today: fixedToday))
        let token = demo(s, .snapchat).accessToken
        let set = try await client.send("POST", s.baseURL + "/_sandbox/app-qps", body: #"{"snapchat": 2}"#)
        XCTAssertEqual(set.status, 200, set.text)
        XCTAssertEqual(set.json?["snapchat"], .number("2"))
        XCTAssertEqual(set.json?["tiktok"], .null)
        XCTAssertEqual(s.appQPS(), [.snapchat: 2])

        let start = ContinuousClock.now
        for _ in 0..<2 {
            let ok = try await snap(s, "me", token: token)
            XCTAssertEqual(ok.status, 200, ok.text)
        }
        let over = try await snap(s, "me", token: token)
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(1), "the three requests must fit in one second")
        XCTAssertEqual(over.status, 429, over.text)
        XCTAssertEqual(over.header("Retry-After"), "1")
        XCTAssertEqual(over.header("X-Rate-Limit-Limit"), "2")
        XCTAssertEqual(over.header("X-Rate-Limit-Remaining"), "0")
        XCTAssertEqual(over.json?["request_status"]?.text, "ERROR")
        XCTAssertEqual(s.appQPSRefusals(.snapchat), 1)
        // The OAuth token endpoint is not an API request: not refused.
        let oauth = try await client.send(
            "POST", s.snapOAuthURL, headers: ["Content-Type": "application/x-www-form-urlencoded"],
            body:
                "grant_type=refresh_token&client_id=c&client_secret=s&refresh_token=\(demo(s, .snapchat).refreshToken)")
        XCTAssertEqual(oauth.status, 200, oauth.text)

        // 0 lifts the limit at once; out-of-range and non-integer values are refused and change nothing.
        for body in [#"{"snapchat": -1}"#, #"{"snapchat": 100001}"#, #"{"tiktok": "many"}"#, "nope"] {
            let bad = try await client.send("POST", s.baseURL + "/_sandbox/app-qps", body: body)
            XCTAssertEqual(bad.status, 400, body)
        }
        XCTAssertEqual(s.appQPS(), [.snapchat: 2])
        _ = try await client.send("POST", s.baseURL + "/_sandbox/app-qps", body: #"{"snapchat": 0}"#)
        XCTAssertEqual(s.appQPS(), [:])
        let again = try await snap(s, "me", token: token)
        XCTAssertEqual(again.status, 200, again.text)
        let get = try await client.get(s.baseURL + "/_sandbox/app-qps")
        XCTAssertEqual(get.json?["snapchat"], .null)
    }

    func testSandboxCommandChecksTheAppQPSFlags() async {
        for args in [
            ["--tiktok-app-qps", "-1"], ["--snap-app-qps", "100001"], ["--snap-app-qps", "1e3"], ["--tiktok-app-qps"],
        ] {
            let code = await runSandboxCommand(arguments: args)
            XCTAssertEqual(code, 2, "\(args)")
        }
    }
}
