import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Serves one accepted socket on its own thread: reads requests, runs the handler, writes responses.
///
/// Not `Sendable`: it lives and dies on its connection thread.
struct HTTPConnection {
    let fd: Int32
    /// The server's stop signal: readable once stopping begins.
    let wakeFD: Int32
    let remoteAddress: String
    /// The peer's host without the port (``HTTPRequest/clientAddress``).
    let clientAddress: String
    let server: HTTPServer
    /// Accepted beyond `maxConnections`: one request, read within `reservedReadTimeout`, answered only when its
    /// path is one of `reservedPaths` (else 503), then closed.
    var reserved = false

    private static let readChunk = 16 * 1024

    private enum ReadResult {
        case data, eof, timeout, stopping
    }

    func serve() {
        let limits = server.limits
        Socket.setSendTimeout(fd, limits.readTimeout)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(4096)
        let acceptedAt = Socket.nowMS()
        // A reserved slot gets one short deadline for everything; otherwise the head must be complete within
        // `headerTimeout` and the whole request within `readTimeout`, both from the request's first byte (from
        // accept for the first request), however slowly the bytes trickle in.
        let readMS = reserved ? limits.reservedReadTimeout.milliseconds : limits.readTimeout.milliseconds
        let headMS = min(readMS, limits.headerTimeout.milliseconds)
        var first = true
        while true {
            // Wait for the first byte of the next request.
            let requestDeadline: Int64
            let headDeadline: Int64
            if buffer.isEmpty {
                let idleDeadline =
                    first
                    ? acceptedAt + headMS
                    : Socket.nowMS() + limits.idleTimeout.milliseconds
                switch read(into: &buffer, until: idleDeadline, stopAware: true) {
                case .data: break
                case .eof, .timeout, .stopping: return
                }
                let start = first ? acceptedAt : Socket.nowMS()
                requestDeadline = start + readMS
                headDeadline = start + headMS
            } else {
                if server.isStopping { return }
                requestDeadline = Socket.nowMS() + readMS
                headDeadline = Socket.nowMS() + headMS
            }
            first = false

            // Read the head.
            var searchFrom = 0
            var headEnd: Int?
            while true {
                if let end = RequestHeadParser.headEnd(in: buffer, from: searchFrom) {
                    headEnd = end
                    break
                }
                if buffer.count > limits.maxHeaderBytes {
                    return fail(431, "request head too large")
                }
                searchFrom = max(0, buffer.count - 3)
                switch read(into: &buffer, until: headDeadline, stopAware: false) {
                case .data: continue
                case .timeout: return fail(408, "request head not received in time")
                case .eof, .stopping: return
                }
            }
            guard let headEnd else { return }
            let head: RequestHead
            switch RequestHeadParser.parse(buffer[0..<headEnd], limits: limits) {
            case .failure(let e): return fail(e.status, e.reason)
            case .success(let h): head = h
            }
            guard let segments = RequestHeadParser.decodePath(head.rawPath) else {
                return fail(400, "malformed percent-encoding in path")
            }
            let path = "/" + segments.dropFirst().joined(separator: "/")
            if reserved
                && !((head.method == "GET" || head.method == "HEAD") && limits.reservedPaths.contains(path))
            {
                return fail(503, "too many connections")
            }

            // Read the body.
            let total = headEnd + head.contentLength
            if head.expectsContinue && head.contentLength > 0 && buffer.count < total {
                guard Socket.sendAll(fd, Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)[...]) else { return }
            }
            while buffer.count < total {
                switch read(into: &buffer, until: requestDeadline, stopAware: false) {
                case .data: continue
                case .timeout: return fail(408, "request body not received in time")
                case .eof, .stopping: return
                }
            }

            var request = HTTPRequest(
                method: head.method, path: path,
                rawQuery: head.rawQuery, headers: HTTPHeaders(head.headers.map { ($0.name, $0.value) }),
                body: Array(buffer[headEnd..<total]), remoteAddress: remoteAddress,
                clientAddress: clientAddress)
            request.pathSegments = segments
            buffer.removeFirst(total)

            let response = runHandler(request)
            let close =
                head.wantsClose || server.isStopping || reserved
                || response.headers["Connection"]?.lowercased() == "close" || response.truncatedBodyLength != nil
            var bytes = Self.serialize(response, close: close, headOnly: head.method == "HEAD")
            if let cut = response.truncatedBodyLength, head.method != "HEAD" {
                bytes.removeLast(max(0, response.body.count - max(0, cut)))
            }
            guard Socket.sendAll(fd, bytes[...]) else { return }
            if close {
                lingerClose()
                return
            }
        }
    }

    /// Runs the async handler on the cooperative pool; this (own) thread waits for it.
    private func runHandler(_ request: HTTPRequest) -> HTTPResponse {
        let box = Mutex<HTTPResponse?>(nil)
        let done = DispatchSemaphore(value: 0)
        let handler = server.handler
        Task {
            let response = await handler(request)
            box.withLock { $0 = response }
            done.signal()
        }
        done.wait()
        return box.withLock { $0 } ?? .text("internal error\n", status: 500)
    }

    private func read(into buffer: inout [UInt8], until deadline: Int64, stopAware: Bool) -> ReadResult {
        while true {
            let remaining = deadline - Socket.nowMS()
            if remaining <= 0 { return .timeout }
            if stopAware {
                var fds = [
                    pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0),
                ]
                let rc = poll(&fds, 2, Int32(clamping: remaining))
                if rc < 0 && errno != EINTR { return .eof }
                if fds[1].revents != 0 { return .stopping }
                guard fds[0].revents != 0 else { continue }
                let n = Socket.read(fd, into: &buffer, max: Self.readChunk)
                return n > 0 ? .data : .eof
            }
            if Socket.waitReadable(fd, timeoutMS: Int32(clamping: remaining)) {
                let n = Socket.read(fd, into: &buffer, max: Self.readChunk)
                return n > 0 ? .data : .eof
            }
        }
    }

    /// Answers a protocol or limit error and closes.
    private func fail(_ status: Int, _ reason: String) {
        let bytes = Self.serialize(.text(reason + "\n", status: status), close: true, headOnly: false)
        if Socket.sendAll(fd, bytes[...]) {
            lingerClose()
        }
    }

    /// Half-closes and drains briefly, so unread request bytes do not turn the close into a reset that
    /// would destroy the response before the client reads it.
    private func lingerClose() {
        shutdown(fd, Int32(SHUT_WR))
        let deadline = Socket.nowMS() + 500
        var sink: [UInt8] = []
        while Socket.nowMS() < deadline {
            guard Socket.waitReadable(fd, timeoutMS: Int32(clamping: max(1, deadline - Socket.nowMS()))) else {
                return
            }
            sink.removeAll(keepingCapacity: true)
            if Socket.read(fd, into: &sink, max: Self.readChunk) <= 0 { return }
        }
    }

    static func serialize(_ response: HTTPResponse, close: Bool, headOnly: Bool) -> [UInt8] {
        var head = "HTTP/1.1 \(response.status) \(HTTPResponse.reasonPhrase(response.status))\r\n"
        for (name, value) in response.headers {
            let lower = name.lowercased()
            if lower == "content-length" || lower == "date" || lower == "connection" || lower == "transfer-encoding" {
                continue
            }
            // Header injection guard: a CR or LF in a handler-supplied value would split the response.
            if name.utf8.contains(where: { $0 == 13 || $0 == 10 })
                || value.utf8.contains(where: { $0 == 13 || $0 == 10 })
            {
                continue
            }
            head += "\(name): \(value)\r\n"
        }
        head += "Content-Length: \(response.body.count)\r\n"
        head += "Date: \(HTTPDate.now())\r\n"
        if close { head += "Connection: close\r\n" }
        head += "\r\n"
        var bytes = Array(head.utf8)
        if !headOnly { bytes += response.body }
        return bytes
    }
}

/// IMF-fixdate formatting (RFC 9110 5.6.7) without Foundation formatters.
enum HTTPDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func now() -> String {
        format(time(nil))
    }

    static func format(_ t: time_t) -> String {
        var t = t
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(tm.tm_year + 1900) "
            + "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT"
    }
}
