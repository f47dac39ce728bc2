import Foundation
import Sandbox

func sandboxCommand(_ args: [String]) async throws -> Int32 {
    await runSandboxCommand(arguments: args)
}
