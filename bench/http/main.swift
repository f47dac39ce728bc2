// A tiny server for load tests: GET /hello answers "hello" through the Router, like any other handler.
// Usage: http-bench [--port P]   (prints the port, serves until SIGINT/SIGTERM)
import Dispatch
import Foundation
import HTTP

#if canImport(Glibc)
    import Glibc
#endif

var port = 8089
if let i = CommandLine.arguments.firstIndex(of: "--port"), i + 1 < CommandLine.arguments.count,
    let p = Int(CommandLine.arguments[i + 1])
{
    port = p
}
let router = Router()
router.add("GET", "/hello") { _ in .text("hello\n") }
let server = HTTPServer(host: "127.0.0.1", port: port, handler: router.handle)
let bound = try server.start()
print("http-bench listening on http://127.0.0.1:\(bound)/hello")
fflush(nil)

signal(SIGINT, SIG_IGN)
signal(SIGTERM, SIG_IGN)
let done = DispatchSemaphore(value: 0)
let sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: .global()) }
for s in sources {
    s.setEventHandler { @Sendable in
        Task {
            await server.stop()
            done.signal()
        }
    }
    s.resume()
}
done.wait()
