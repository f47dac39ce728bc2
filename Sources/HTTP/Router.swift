import Synchronization

/// Dispatches requests by method and path pattern.
///
/// Patterns are matched segment by segment, exactly (a trailing `/` matters, as on TikTok's API); a segment
/// `:name` matches any one non-empty segment and is captured into `HTTPRequest.pathParameters`. Routes are
/// tried in the order added. No path match answers 404; a path match with another method answers 405 with
/// `Allow`. `HEAD` falls back to the `GET` route (the server sends no body for `HEAD`).
public final class Router: Sendable {
    private struct Route: Sendable {
        let method: String
        let segments: [String]
        let handler: HTTPHandler
    }

    private let routes = Mutex<[Route]>([])

    /// Creates an empty router.
    public init() {}

    /// Registers `handler` for `method` (e.g. "GET") and `pattern` (e.g. "/v1/adaccounts/:id/stats").
    public func add(_ method: String, _ pattern: String, _ handler: @escaping HTTPHandler) {
        let route = Route(method: method, segments: Self.split(pattern), handler: handler)
        routes.withLock { $0.append(route) }
    }

    /// Routes `request` to the first matching handler, or answers 404 / 405.
    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        let segments = request.pathSegments ?? Self.split(request.path)
        let all = routes.withLock { $0 }
        var allowed: [String] = []
        var fallback: (Route, [String: String])?
        for route in all {
            guard let params = Self.match(route.segments, segments) else { continue }
            if route.method == request.method {
                var req = request
                req.pathParameters = params
                return await route.handler(req)
            }
            if request.method == "HEAD" && route.method == "GET" && fallback == nil {
                fallback = (route, params)
            }
            if !allowed.contains(route.method) { allowed.append(route.method) }
        }
        if let (route, params) = fallback {
            var req = request
            req.pathParameters = params
            return await route.handler(req)
        }
        if allowed.isEmpty {
            return .text("not found\n", status: 404)
        }
        var response = HTTPResponse.text("method not allowed\n", status: 405)
        response.headers["Allow"] = allowed.joined(separator: ", ")
        return response
    }

    static func split(_ path: String) -> [String] {
        path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    }

    private static func match(_ pattern: [String], _ path: [String]) -> [String: String]? {
        guard pattern.count == path.count else { return nil }
        var params: [String: String] = [:]
        for (p, s) in zip(pattern, path) {
            if p.hasPrefix(":") {
                guard !s.isEmpty else { return nil }
                params[String(p.dropFirst())] = s
            } else if p != s {
                return nil
            }
        }
        return params
    }
}
