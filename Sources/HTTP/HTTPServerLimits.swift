/// Limits the server enforces on every connection; each breach gets a status response, then a close.
public struct HTTPServerLimits: Sendable {
    /// Request line plus headers, in bytes (default 16 KiB); beyond it: 431.
    public var maxHeaderBytes: Int
    /// Number of header fields (default 100); beyond it: 431.
    public var maxHeaderCount: Int
    /// Body bytes from `Content-Length` (default 1 MiB); beyond it: 413, before reading the body.
    public var maxBodyBytes: Int
    /// Time to receive a whole request, head and body, from its first byte (default 10 s); on a new
    /// connection it counts from accept. Beyond it: 408 (this is what stops slowloris clients).
    public var readTimeout: Duration
    /// Time a keep-alive connection may wait for its next request (default 30 s); then closed silently.
    public var idleTimeout: Duration
    /// Connections open at once (default 512); one more is answered 503 and closed.
    public var maxConnections: Int

    /// Creates limits; every default is documented on its property.
    public init(
        maxHeaderBytes: Int = 16 * 1024, maxHeaderCount: Int = 100, maxBodyBytes: Int = 1024 * 1024,
        readTimeout: Duration = .seconds(10), idleTimeout: Duration = .seconds(30), maxConnections: Int = 512
    ) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
        self.readTimeout = readTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
    }
}

extension Duration {
    /// Whole milliseconds, rounded up so a tiny positive duration still waits.
    var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + (atto + 999_999_999_999_999) / 1_000_000_000_000_000
    }
}
