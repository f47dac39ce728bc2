import Dispatch
import Foundation

/// Delivers SIGTERM/SIGINT (or others) to a closure through Dispatch sources instead of async-signal handlers.
///
/// The default action of each signal is ignored while the handler lives, so the process is not killed before it
/// can shut down gracefully. `@unchecked Sendable`: the sources are created once and only cancelled afterwards.
public final class SignalHandler: @unchecked Sendable {
    private let sources: [DispatchSourceSignal]

    public init(signals: [Int32], queue: DispatchQueue = .global(), handler: @escaping @Sendable (Int32) -> Void) {
        sources = signals.map { sig in
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            s.setEventHandler { handler(sig) }
            s.resume()
            return s
        }
    }

    public func cancel() {
        for s in sources { s.cancel() }
    }
}
