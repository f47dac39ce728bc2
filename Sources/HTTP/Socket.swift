#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An error from the server's socket setup, carrying the failing call and errno text (never request data).
public struct HTTPServerError: Error, CustomStringConvertible, Sendable {
    /// What failed, e.g. "bind 127.0.0.1:8080".
    public var operation: String
    /// The errno value, or 0 when not from a system call.
    public var errno: Int32

    public var description: String {
        errno == 0 ? "HTTP server: \(operation)" : "HTTP server: \(operation): \(String(cString: strerror(errno)))"
    }
}

/// Thin POSIX socket helpers; every function is blocking and meant for the server's own threads.
enum Socket {
    static func ignoreSIGPIPE() {
        signal(SIGPIPE, SIG_IGN)
    }

    /// Creates a listening TCP socket on `host:port` and returns it with the bound port.
    static func listen(host: String, port: Int, backlog: Int32) throws -> (fd: Int32, port: Int) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if os(Linux)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
            hints.ai_socktype = SOCK_STREAM
        #endif
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else {
            throw HTTPServerError(operation: "resolve \(host): \(String(cString: gai_strerror(rc)))", errno: 0)
        }
        defer { freeaddrinfo(result) }
        var lastErrno: Int32 = 0
        var info: UnsafeMutablePointer<addrinfo>? = first
        while let ai = info {
            info = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            if fd < 0 {
                lastErrno = errno
                continue
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if bind(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) != 0 || systemListen(fd, backlog) != 0 {
                lastErrno = errno
                close(fd)
                continue
            }
            return (fd, boundPort(fd))
        }
        throw HTTPServerError(operation: "bind \(host):\(port)", errno: lastErrno)
    }

    static func boundPort(_ fd: Int32) -> Int {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard ok == 0 else { return 0 }
        return Int(address(of: storage).port)
    }

    /// Formats a socket address as host and port.
    static func address(of storage: sockaddr_storage) -> (host: String, port: UInt16) {
        var storage = storage
        var buf = [CChar](repeating: 0, count: 64)
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
                    return (cText(buf), UInt16(bigEndian: sin.pointee.sin_port))
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                    var a = sin.pointee.sin6_addr
                    inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
                    return (cText(buf), UInt16(bigEndian: sin.pointee.sin6_port))
                }
            }
        default:
            return ("", 0)
        }
    }

    static func cText(_ buf: [CChar]) -> String {
        String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Accepts one connection; nil on a transient failure (EINTR, EAGAIN, ECONNABORTED, EMFILE...).
    /// `client` is the peer's address without the port (IPv4-mapped IPv6 addresses in IPv4 form), the key of
    /// the per-client connection cap.
    static func accept(_ listenFD: Int32) -> (fd: Int32, remote: String, client: String)? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { systemAccept(listenFD, $0, &len) }
        }
        guard fd >= 0 else { return nil }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        #if canImport(Darwin)
            setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        let (host, port) = address(of: storage)
        let remote = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let client = host.hasPrefix("::ffff:") && host.contains(".") ? String(host.dropFirst(7)) : host
        return (fd, remote, client)
    }

    /// Bounds how long one `send` may block, so a client that never reads cannot pin a thread.
    static func setSendTimeout(_ fd: Int32, _ duration: Duration) {
        let ms = max(1, duration.milliseconds)
        var tv = timeval()
        tv.tv_sec = .init(ms / 1000)
        tv.tv_usec = .init(ms % 1000 * 1000)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Waits until `fd` is readable (or hung up) for at most `timeoutMS`; true when readable.
    static func waitReadable(_ fd: Int32, timeoutMS: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let rc = poll(&p, 1, timeoutMS)
            if rc < 0 && errno == EINTR { continue }
            return rc > 0
        }
    }

    /// Reads what is available into `buffer`; returns the byte count, 0 at end of stream, -1 on error.
    static func read(_ fd: Int32, into buffer: inout [UInt8], max: Int) -> Int {
        var chunk = [UInt8](repeating: 0, count: max)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, max, 0) }
            if n < 0 && errno == EINTR { continue }
            if n > 0 { buffer.append(contentsOf: chunk[0..<n]) }
            return n
        }
    }

    /// Sends all of `bytes`; false when the peer is gone or the send timed out.
    static func sendAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>, flags: Int32 = 0) -> Bool {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let n = bytes[offset...].withUnsafeBytes { raw in
                send(fd, raw.baseAddress, raw.count, flags | noSignalFlag)
            }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }

    #if os(Linux)
        static let noSignalFlag = Int32(MSG_NOSIGNAL)
    #else
        static let noSignalFlag: Int32 = 0
    #endif

    /// Milliseconds on a monotonic clock.
    static func nowMS() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

// Module-qualified names avoid the clash between these C functions and the `Socket.listen`/`accept` helpers.
#if canImport(Glibc)
    private let systemListen = Glibc.listen
    private let systemAccept = Glibc.accept
#elseif canImport(Musl)
    private let systemListen = Musl.listen
    private let systemAccept = Musl.accept
#elseif canImport(Darwin)
    private let systemListen = Darwin.listen
    private let systemAccept = Darwin.accept
#endif
