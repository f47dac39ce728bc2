/// Limits the server enforces on every connection; each breach gets a status response, then a close.
public struct HTTPServerLimits: Sendable {
    /// Request line plus headers, in bytes (default 16 KiB); beyond it: 431.
    public var maxHeaderBytes: Int
    /// Number of header fields (default 100); beyond it: 431.
    public var maxHeaderCount: Int
    /// Body bytes from `Content-Length` (default 1 MiB); beyond it: 413, before reading the body.
    public var maxBodyBytes: Int
    /// Time to receive a whole request, head and body, from its first byte (default 10 s); on a new
    /// connection it counts from accept. Beyond it: 408.
    public var readTimeout: Duration
    /// Time to receive the request line and every header field, in total (not per byte), from the request's
    /// first byte, or from accept on a new connection (default 5 s, never more than `readTimeout`). Beyond it:
    /// 408 and a close: a client trickling header bytes (slowloris) is cut off here however steadily it sends.
    public var headerTimeout: Duration
    /// Time a keep-alive connection may wait for its next request (default 30 s); then closed silently.
    public var idleTimeout: Duration
    /// Connections open at once (default 512), not counting `reservedConnections`; one more is answered 503
    /// and closed (or served on a reserved slot, see `reservedPaths`).
    public var maxConnections: Int
    /// Connections one peer IP address may hold open at once; one more is answered 503 and closed, so no single
    /// client can take the whole `maxConnections` budget. All clients behind one proxy share its address. Default
    /// 512, the same as `maxConnections`: no per-client cap unless set (the sandbox and benchmarks, whose clients
    /// are all local, keep it off; `nexjobs serve` sets 16).
    public var maxConnectionsPerClient: Int
    /// Paths (exact, decoded, `GET`/`HEAD`) still answered when `maxConnections` is used up, e.g. `/healthz`
    /// (default none). Such a connection gets one request, read within `reservedReadTimeout`; a reserved path
    /// is answered by the handler, anything else 503, then the connection closes.
    public var reservedPaths: Set<String>
    /// Connections beyond `maxConnections` that may wait for their request to see whether it asks for a
    /// reserved path (default 8, at most 2 per peer address); past that, 503 at once.
    public var reservedConnections: Int
    /// Time a reserved-slot connection gets to send its whole request (default 1 s); then closed with 408.
    public var reservedReadTimeout: Duration

    /// Creates limits; every default is documented on its property.
    public init(
        maxHeaderBytes: Int = 16 * 1024, maxHeaderCount: Int = 100, maxBodyBytes: Int = 1024 * 1024,
        readTimeout: Duration = .seconds(10), headerTimeout: Duration = .seconds(5),
        idleTimeout: Duration = .seconds(30), maxConnections: Int = 512, maxConnectionsPerClient: Int = 512,
        reservedPaths: Set<String> = [], reservedConnections: Int = 8, reservedReadTimeout: Duration = .seconds(1)
    ) {
        // Memberwise (`duplicates` pairs it with other configuration inits: alike in shape only).
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
        self.readTimeout = readTimeout
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.maxConnectionsPerClient = maxConnectionsPerClient
        self.reservedPaths = reservedPaths
        self.reservedConnections = reservedConnections
        self.reservedReadTimeout = reservedReadTimeout
    }

    /// Reserved connections one peer address may hold at once.
    static let reservedPerClient = 2
}

extension Duration {
    /// Whole milliseconds, rounded up so a tiny positive duration still waits.
    var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + (atto + 999_999_999_999_999) / 1_000_000_000_000_000
    }
}
