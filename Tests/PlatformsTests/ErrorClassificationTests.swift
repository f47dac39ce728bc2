import Foundation
import XCTest

@testable import Platforms

final class ErrorClassificationTests: XCTestCase {
    func testTikTokCodes() {
        for code in [40100, 40132, 40133, 61000] {
            XCTAssertEqual(ErrorClassifier.tiktok(code: code), .rateLimited(retryAfter: nil), "\(code)")
        }
        for code in [50000, 50002, 51001, 51999, 60001, 40200, 40201, 40202, 40700] {
            XCTAssertEqual(ErrorClassifier.tiktok(code: code), .transient, "\(code)")
        }
        XCTAssertEqual(ErrorClassifier.tiktok(code: 40102), .accessTokenExpired)
        for code in [40103, 40104, 40105, 40107, 40114, 40130] {
            XCTAssertEqual(ErrorClassifier.tiktok(code: code), .reauthorizationRequired, "\(code)")
        }
        for code in [40000, 40001, 40002, 40003, 40067] {
            XCTAssertEqual(ErrorClassifier.tiktok(code: code), .permanent, "\(code)")
        }
    }

    func testSnapStatuses() {
        XCTAssertEqual(ErrorClassifier.snap(status: 401), .accessTokenExpired)
        XCTAssertEqual(ErrorClassifier.snap(status: 429), .rateLimited(retryAfter: nil))
        for status in [500, 502, 503, 504] { XCTAssertEqual(ErrorClassifier.snap(status: status), .transient) }
        for status in [400, 403, 404] { XCTAssertEqual(ErrorClassifier.snap(status: status), .permanent) }
        XCTAssertEqual(ErrorClassifier.oauth(status: 400, error: "invalid_grant"), .reauthorizationRequired)
        XCTAssertEqual(ErrorClassifier.oauth(status: 503, error: nil), .transient)
    }

    func testRetryAfterHeaders() {
        XCTAssertEqual(ErrorClassifier.retryAfter(headers: ["retry-after": "3"]), .seconds(3))
        XCTAssertEqual(ErrorClassifier.retryAfter(headers: ["X-Rate-Limit-Reset": "2"]), .seconds(2))
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        XCTAssertEqual(ErrorClassifier.retryAfter(headers: ["X-Rate-Limit-Reset": "1700000005"], now: now), .seconds(5))
        XCTAssertNil(ErrorClassifier.retryAfter(headers: ["Retry-After": "soon"]))
        XCTAssertNil(ErrorClassifier.retryAfter(headers: [:]))
        // Hostile headers never trap: the delay is capped at one day.
        for v in ["1e300", "inf", "9223372036854775808", "1e19"] {
            XCTAssertEqual(ErrorClassifier.retryAfter(headers: ["Retry-After": v]), .seconds(86_400), v)
            XCTAssertEqual(
                ErrorClassifier.retryAfter(headers: ["X-Rate-Limit-Reset": v], now: now), .seconds(86_400), v)
        }
    }

    func testDescriptionsNameEndpointAndCodeButNoTokens() {
        let tokens = OAuthTokens(accessToken: "secret-access-abc", refreshToken: "secret-refresh-def")
        XCTAssertFalse("\(tokens)".contains("secret-access-abc"))
        XCTAssertFalse("\(tokens)".contains("secret-refresh-def"))
        XCTAssertFalse(String(reflecting: tokens).contains("secret-"))
        let scrubbed = SecretScrubber(secrets: ["secret-access-abc"]).scrub("token secret-access-abc is invalid")
        XCTAssertEqual(scrubbed, "token <redacted> is invalid")
        let error = PlatformError(
            .rateLimited(retryAfter: .seconds(2)), platform: .tiktok, endpoint: "/open_api/v1.3/campaign/get/",
            httpStatus: 200, apiCode: "40100", message: "QPS limit")
        XCTAssertEqual(
            error.description,
            "tiktok rate_limited on /open_api/v1.3/campaign/get/, HTTP 200, code 40100, retry after 2.0 seconds: QPS limit"
        )
    }
}
