import Foundation

/// Retries one GET whose response was damaged: a body that is not JSON or cut short, a connection lost mid-response,
/// or JSON that is not in the documented shape (`PlatformError.retriedOnRequest`).
///
/// A sync makes dozens of requests; restarting it from scratch on every damaged body (the job's own retry) rarely
/// finishes when a few percent of bodies are bad, so the request is tried again here first: up to `tries` times in
/// all, `delay`, `2 × delay`, ... apart. Well-formed API errors (rate limits, invalid requests, expired tokens) are
/// never retried here; they pass straight through. After the last try the error is thrown with the number of tries
/// in its message, still `transient` (damaged body) or `malformedResponse` (wrong shape), for the job to retry.
struct ResponseRetry: Sendable {
    /// Tries of one request in all, 1...10.
    var tries: Int
    /// Wait before the second try; doubled before each later one.
    var delay: Duration

    init(tries: Int, delay: Duration) {
        self.tries = max(1, min(tries, 10))
        self.delay = max(.zero, min(delay, .seconds(30)))
    }

    func run<T>(
        platform: AdPlatform, endpoint: String, logger: PlatformLogger, _ request: () async throws -> T
    ) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await request()
            } catch var error as PlatformError where error.retriedOnRequest {
                guard attempt < tries else {
                    if tries > 1 { error.message += " (after \(tries) tries)" }
                    throw error
                }
                logger.log(
                    .warning, "\(platform.rawValue) response unusable; trying the request again",
                    ["endpoint": endpoint, "try": String(attempt), "error": error.description])
                try await Task.sleep(for: delay * (1 << (attempt - 1)))
                attempt += 1
            }
        }
    }
}
