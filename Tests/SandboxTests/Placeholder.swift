import XCTest

final class SandboxPlaceholder: XCTestCase {}
