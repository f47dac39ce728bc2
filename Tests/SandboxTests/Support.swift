import Foundation
import HTTP
import XCTest

@testable import Sandbox

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// An HTTP reply as the tests look at it.
struct Reply {
    var status: Int
    var headers: [String: String]
    var text: String
    var json: JSONValue? { JSONValue.parse(text) }
    func header(_ name: String) -> String? {
        headers.first { $0.key.lowercased() == name.lowercased() }?.value
    }
}

/// A plain URLSession client, one session per test so no connection is shared between tests.
final class Client: Sendable {
    let session: URLSession

    init() {
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = 10
        session = URLSession(configuration: config)
    }

    func send(
        _ method: String, _ url: String, headers: [String: String] = [:], body: String? = nil
    ) async throws -> Reply {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        if let body { request.httpBody = Data(body.utf8) }
        let (data, response) = try await session.data(for: request)
        let http = response as! HTTPURLResponse
        var h: [String: String] = [:]
        for (k, v) in http.allHeaderFields { h["\(k)"] = "\(v)" }
        return Reply(status: http.statusCode, headers: h, text: String(decoding: data, as: UTF8.self))
    }

    func get(_ url: String, _ headers: [String: String] = [:]) async throws -> Reply {
        try await send("GET", url, headers: headers)
    }
}

/// 2026-03-20 12:00:00 UTC: history then spans the 2026-03-08 US and (with days > 20) 2026-03-29 EU DST changes.
let fixedToday = Date(timeIntervalSince1970: 1_774_008_000)

/// Query-string builder that percent-encodes JSON parameter values.
func query(_ pairs: [(String, String)]) -> String {
    pairs.map { "\($0.0)=\(URLEncoding.percentEncode($0.1))" }.joined(separator: "&")
}

class SandboxTestCase: XCTestCase {
    var sandboxes: [Sandbox] = []
    let client = Client()

    func makeSandbox(_ config: SandboxConfig = SandboxConfig(today: fixedToday)) throws -> Sandbox {
        let s = Sandbox(config: config)
        try s.start()
        sandboxes.append(s)
        return s
    }

    override func tearDown() async throws {
        for s in sandboxes { await s.stop() }
        sandboxes = []
    }

    func tiktok(_ s: Sandbox, _ path: String, _ params: [(String, String)], token: String?) async throws -> Reply {
        var headers: [String: String] = [:]
        if let token { headers["Access-Token"] = token }
        return try await client.get(s.tiktokBaseURL + path + "?" + query(params), headers)
    }

    func snap(_ s: Sandbox, _ pathOrURL: String, token: String?) async throws -> Reply {
        var headers: [String: String] = [:]
        if let token { headers["Authorization"] = "Bearer \(token)" }
        let url = pathOrURL.hasPrefix("http") ? pathOrURL : s.snapAPIBaseURL + pathOrURL
        return try await client.get(url, headers)
    }

    func demo(_ s: Sandbox, _ platform: SandboxPlatform, _ index: Int = 0) -> SandboxConnectionInfo {
        s.connections().first { $0.platform == platform && $0.index == index }!
    }
}
