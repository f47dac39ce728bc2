import XCTest

final class CLIPlaceholder: XCTestCase {}
